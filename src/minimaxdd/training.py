"""Training a DiT on cached latents: the tiny base model, and Difffit / minimax fine-tuning.

The VAE encoder never runs here: each step draws z = (mean + std * noise) * scaling_factor from the
cached latent distribution of the image or of its horizontal flip (the reference's random flip).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from tqdm import tqdm

from .diffusion import NUM_TIMESTEPS, GaussianDiffusion, linear_betas
from .dit import DiT, mark_difffit_trainable
from .minimax import ClassMemory, minimax_terms

class LatentSet:
    """The encode stage's cache, held on the training device; `classes` keeps only those labels."""

    def __init__(self, cache: dict, device: torch.device, classes: list[int] | None = None):
        keep = slice(None) if classes is None else torch.isin(cache["labels"], torch.tensor(classes))
        self.mean = cache["mean"][keep].to(device)
        self.std = cache["std"][keep].to(device)
        self.scaling_factor = cache["scaling_factor"]
        self.labels = cache["labels"][keep].to(device)  # 0..K-1: the memories are kept per real class
        self.model_ids = torch.as_tensor(cache["class_ids"], device=device)[self.labels]  # conditioning ids

    def __len__(self) -> int:
        return len(self.labels)

    def draw(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flip = torch.randint(2, (len(index),), generator=generator, device=index.device)
        mean = self.mean[index, flip].float()
        std = self.std[index, flip].float()
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        return (mean + std * noise) * self.scaling_factor


def autocast(device: torch.device):
    """bf16 autocast on CUDA (the losses are computed in float32 by the diffusion code); off on the CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def update_ema(ema: dict[str, torch.Tensor], params: dict[str, torch.nn.Parameter], decay: float) -> None:
    for name, value in params.items():
        ema[name].mul_(decay).add_(value.detach(), alpha=1 - decay)


@dataclass
class StepResult:
    diffusion: float
    representativeness: float
    diversity: float
    total: float


class Trainer:
    """One optimisation step of the DiT on a batch of cached latents (+ the optional minimax terms)."""

    def __init__(self, model: DiT, params: dict[str, torch.nn.Parameter], lr: float, ema_decay: float, seed: int,
                 device: torch.device, minimax: dict | None = None):
        self.model = model.to(device).train()
        self.params = params
        self.opt = torch.optim.AdamW(params.values(), lr=lr, weight_decay=0)
        self.ema = {k: v.detach().clone() for k, v in params.items()}
        self.ema_decay = ema_decay
        self.diffusion = GaussianDiffusion(linear_betas(NUM_TIMESTEPS))
        self.generator = torch.Generator(device).manual_seed(seed)
        self.device = device
        self.minimax = minimax
        if minimax:
            self.real_memory = ClassMemory(minimax["memory_size"])
            self.pred_memory = ClassMemory(minimax["memory_size"])

    def step(self, latents: LatentSet, index: torch.Tensor) -> StepResult:
        x0 = latents.draw(index, self.generator)
        t = torch.randint(NUM_TIMESTEPS, (len(index),), generator=self.generator, device=self.device)
        noise = torch.randn(x0.shape, generator=self.generator, device=self.device)
        with autocast(self.device):
            terms = self.diffusion.training_losses(self.model, x0, t, latents.model_ids[index], noise)
        diffusion_loss = terms["loss"].mean()
        total = diffusion_loss
        rep = div = torch.zeros((), device=self.device)
        if self.minimax:
            rep, div = minimax_terms(terms["pred_x0"], x0, latents.labels[index], self.real_memory, self.pred_memory,
                                     self.minimax["representativeness"], self.minimax["diversity"])
            total = total + self.minimax["rep_weight"] * rep + self.minimax["div_weight"] * div
        if not torch.isfinite(total):
            raise FloatingPointError("non-finite training loss")
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        update_ema(self.ema, self.params, self.ema_decay)
        return StepResult(diffusion_loss.item(), rep.item(), div.item(), total.item())


def pretrain_dit(model: DiT, latents: LatentSet, *, steps: int, batch_size: int, lr: float, ema_decay: float,
                 seed: int, device: torch.device) -> DiT:
    """Train every parameter of a (tiny) DiT from scratch; returns the EMA model."""
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    trainer = Trainer(model, params, lr, ema_decay, seed, device)
    bar = tqdm(range(steps), desc="train base DiT", mininterval=5)
    for _ in bar:
        index = torch.randint(len(latents), (batch_size,), generator=trainer.generator, device=device)
        result = trainer.step(latents, index)
        bar.set_postfix(loss=f"{result.diffusion:.4f}", refresh=False)
    ema_model = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, param in ema_model.named_parameters():
            if name in trainer.ema:
                param.copy_(trainer.ema[name])
    return ema_model


def finetune_dit(model: DiT, latents: LatentSet, *, representativeness: str, diversity: str, batch_size: int,
                 epochs: int, lr: float, ema_decay: float, seed: int, device: torch.device, memory_size: int = 64,
                 rep_weight: float = 0.0, div_weight: float = 0.0, log=print):
    """Difffit fine-tuning with the criteria in the given forms ("minimax", "mean" or "off"):
    `difffit` is ("off", "off"), the paper's method ("minimax", "minimax").

    Returns (trainable parameters, their EMA, per-step loss rows). As in the reference, each epoch
    is a fresh permutation cut into full batches (the last partial batch is dropped).
    """
    trainable = mark_difffit_trainable(model)
    params = dict(model.named_parameters())
    params = {k: params[k] for k in trainable}
    log(f"Difffit trainable parameters: {sum(p.numel() for p in params.values()):,} "
        f"of {sum(p.numel() for p in model.parameters()):,}")
    minimax = None
    if (representativeness, diversity) != ("off", "off"):
        minimax = {"memory_size": memory_size, "rep_weight": rep_weight, "div_weight": div_weight,
                   "representativeness": representativeness, "diversity": diversity}
    trainer = Trainer(model, params, lr, ema_decay, seed, device, minimax)
    steps_per_epoch = len(latents) // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"finetune.batch_size ({batch_size}) exceeds the {len(latents)} training images")
    rows = []
    bar = tqdm(total=epochs * steps_per_epoch, desc=f"fine-tune ({representativeness}, {diversity})", mininterval=5)
    for epoch in range(epochs):
        order = torch.randperm(len(latents), generator=trainer.generator, device=device)
        for index in order[: steps_per_epoch * batch_size].view(steps_per_epoch, batch_size):
            result = trainer.step(latents, index)
            rows.append({"step": len(rows) + 1, "epoch": epoch, **vars(result)})
            bar.update()
    bar.close()
    return {k: p.detach().clone() for k, p in params.items()}, trainer.ema, rows
