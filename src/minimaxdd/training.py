"""Training a DiT on cached latents: the tiny base model, and Difffit / minimax fine-tuning.

The VAE encoder never runs here: each step draws z = (mean + std * noise) * scaling_factor from the
cached latent distribution of the image or of its horizontal flip (the reference's random flip).

Data parallel (DDP, when a process group is initialised): every rank draws the whole global batch
(latents, timesteps, noise) from the same seeded generator and trains on its own contiguous slice,
so the diffusion loss is that of one process. Both minimax memories are updated with the whole
global batch (the predictions are all-gathered), so every rank holds the memories one process would.
The minimax terms themselves are computed on each rank's slice against those shared memories.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from tqdm import tqdm

from .diffusion import NUM_TIMESTEPS, GaussianDiffusion, linear_betas
from .dit import DiT, mark_difffit_trainable
from .io import autocast, compiled
from .minimax import ClassMemory, minimax_terms, update_memories
from .resume import Checkpointer

def load_latents(files: list[str], classes: list[int] | None = None) -> dict:
    """The encode jobs' caches (one per class chunk) joined into one, keeping only the latents of
    `classes` (every class when None): a fine-tuning phase holds its classes, not the dataset."""
    from .io import load_torch

    parts = []
    for file in files:
        cache = load_torch(file)
        keep = slice(None) if classes is None else torch.isin(cache["labels"], torch.tensor(classes))
        parts.append({k: cache[k][keep] for k in ("mean", "std", "labels")})
    return cache | {k: torch.cat([part[k] for part in parts]) for k in ("mean", "std", "labels")}


class LatentSet:
    """The encode stage's cache, held on the training device; `classes` keeps only those labels."""

    def __init__(self, cache: dict, device: torch.device, classes: list[int] | None = None):
        keep = slice(None) if classes is None else torch.isin(cache["labels"], torch.tensor(classes))
        self.mean = cache["mean"][keep].to(device)
        self.std = cache["std"][keep].to(device)
        self.scaling_factor = cache["scaling_factor"]
        self.labels = cache["labels"][keep].to(device)  # 0..K-1: the memories are kept per real class
        self.model_ids = torch.as_tensor(cache["class_ids"], device=device)[self.labels]  # conditioning ids
        self.num_classes = len(cache["class_ids"])

    def __len__(self) -> int:
        return len(self.labels)

    def draw(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flip = torch.randint(2, (len(index),), generator=generator, device=index.device)
        mean = self.mean[index, flip].float()
        std = self.std[index, flip].float()
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        return (mean + std * noise) * self.scaling_factor


@torch.no_grad()
def update_ema(ema: dict[str, torch.Tensor], params: dict[str, torch.nn.Parameter], decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * param, for all tensors in one foreach kernel (as a lerp)."""
    torch._foreach_lerp_([ema[name] for name in params], [p.detach() for p in params.values()], 1 - decay)


@dataclass
class StepResult:
    diffusion: float
    representativeness: float
    diversity: float
    total: float


class Trainer:
    """One optimisation step of the DiT on a batch of cached latents (+ the optional minimax terms)."""

    def __init__(self, model: DiT, params: dict[str, torch.nn.Parameter], lr: float, ema_decay: float, seed: int,
                 device: torch.device, minimax: dict | None = None, precision: str = "fp32", compile: bool = False):
        self.model = model.to(device).train()
        self.params = params
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank, self.world_size = (dist.get_rank(), dist.get_world_size()) if self.distributed else (0, 1)
        self.forward = self.model
        if self.distributed:
            device_ids = [device.index] if device.type == "cuda" else None
            self.forward = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        if compile:
            self.forward = compiled(self.forward)
        # The fused kernel: one pass over all tensors, on the CPU as on CUDA (the per-tensor loop
        # was ~8 % of a tiny step); the same update up to float rounding.
        self.opt = torch.optim.AdamW(params.values(), lr=lr, weight_decay=0, fused=True)
        self.ema = {k: v.detach().clone() for k, v in params.items()}
        self.ema_decay = ema_decay
        self.diffusion = GaussianDiffusion(linear_betas(NUM_TIMESTEPS)).to(device)
        self.generator = torch.Generator(device).manual_seed(seed)
        torch.manual_seed(seed)  # the DiT's label dropout draws from the global RNG, randomly seeded since torch 2.x
        self.device, self.precision = device, precision
        self.minimax = minimax
        if minimax:
            self.real_memory = ClassMemory(minimax["memory_size"], minimax.get("classes"))
            self.pred_memory = ClassMemory(minimax["memory_size"], minimax.get("classes"))

    def step(self, latents: LatentSet, index: torch.Tensor) -> StepResult:
        x0 = latents.draw(index, self.generator)
        t = torch.randint(NUM_TIMESTEPS, (len(index),), generator=self.generator, device=self.device)
        noise = torch.randn(x0.shape, generator=self.generator, device=self.device)
        labels = latents.labels[index]
        mine = self.shard(len(index))
        with autocast(self.device, self.precision):
            terms = self.diffusion.training_losses(self.forward, x0[mine], t[mine], latents.model_ids[index][mine],
                                                   noise[mine])
        diffusion_loss = terms["loss"].mean()
        total = diffusion_loss
        rep = div = torch.zeros((), device=self.device)
        if self.minimax:
            rep, div = minimax_terms(terms["pred_x0"], x0[mine], labels[mine], self.real_memory, self.pred_memory,
                                     self.minimax["representativeness"], self.minimax["diversity"], update=False)
            total = total + self.minimax["rep_weight"] * rep + self.minimax["div_weight"] * div
            update_memories(self.real_memory, self.pred_memory, x0, self.gather(terms["pred_x0"].detach()), labels)
        losses = self.mean_over_ranks(torch.stack([diffusion_loss, rep, div, total]).detach())
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        update_ema(self.ema, self.params, self.ema_decay)
        # The step's one wait for the device, after all its work is queued. A non-finite loss has
        # already changed the weights in memory, but they are never saved: the run stops here.
        values = losses.tolist()
        if not all(math.isfinite(v) for v in values):  # every rank sees the same values, so all stop
            raise FloatingPointError(f"non-finite training loss {values}")
        return StepResult(*values)

    def shard(self, batch_size: int) -> slice:
        if batch_size % self.world_size:
            raise ValueError(f"finetune.batch_size ({batch_size}) must divide evenly over finetune.gpus "
                             f"({self.world_size} processes)")
        size = batch_size // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return local
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local.contiguous())
        return torch.cat(parts)

    def mean_over_ranks(self, values: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(values)
            values /= self.world_size
        return values

    def state_dict(self) -> dict:
        state = {"params": {k: p.detach().clone() for k, p in self.params.items()}, "ema": self.ema,
                 "optimizer": self.opt.state_dict(), "generator": self.generator.get_state(),
                 "torch_rng": torch.get_rng_state()}  # the DiT's label dropout draws from the global RNG
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        if self.minimax:
            state["memories"] = (self.real_memory.state_dict(), self.pred_memory.state_dict())
        return state

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for name, value in state["params"].items():
                self.params[name].copy_(value)
        self.ema = {k: v.to(self.device) for k, v in state["ema"].items()}
        self.opt.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        if self.minimax:
            self.real_memory.load_state_dict(state["memories"][0])
            self.pred_memory.load_state_dict(state["memories"][1])


class RandomBatches:
    """Base-model training: each batch drawn with replacement."""

    def __init__(self, size: int, batch_size: int, generator: torch.Generator, device: torch.device):
        self.size, self.batch_size, self.generator, self.device = size, batch_size, generator, device

    def __call__(self, step: int) -> torch.Tensor:
        return torch.randint(self.size, (self.batch_size,), generator=self.generator, device=self.device)

    def position(self, step: int) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class EpochBatches(RandomBatches):
    """Fine-tuning, as in the reference: each epoch a fresh permutation cut into full batches (the
    last partial batch is dropped)."""

    def __init__(self, size: int, batch_size: int, generator: torch.Generator, device: torch.device):
        super().__init__(size, batch_size, generator, device)
        self.per_epoch = size // batch_size
        if self.per_epoch == 0:
            raise ValueError(f"finetune.batch_size ({batch_size}) exceeds the {size} training images")
        self.order = None

    def __call__(self, step: int) -> torch.Tensor:
        within = step % self.per_epoch
        if within == 0:
            self.order = torch.randperm(self.size, generator=self.generator, device=self.device)
        return self.order[within * self.batch_size: (within + 1) * self.batch_size]

    def position(self, step: int) -> dict:
        return {"epoch": step // self.per_epoch}

    def state_dict(self) -> dict:
        return {"order": self.order}

    def load_state_dict(self, state: dict) -> None:
        self.order = state["order"]


def run_steps(trainer: Trainer, latents: LatentSet, batches: RandomBatches, steps: int,
                checkpointer: Checkpointer, desc: str) -> list[dict]:
    """Run `steps` training steps, resuming from the checkpoint when there is a matching one, and
    saving one every `checkpointer.every` steps (rank 0). Returns one loss row per step."""
    rows, start = [], 0
    saved = checkpointer.load()
    if saved:
        trainer.load_state_dict(saved["trainer"])
        batches.load_state_dict(saved["batches"])
        rows, start = saved["rows"], saved["step"]
    last_saved = start if saved else None
    bar = tqdm(total=steps, initial=start, desc=desc, mininterval=5, disable=trainer.rank != 0)
    for step in range(start, steps):
        try:
            result = trainer.step(latents, batches(step))
        except FloatingPointError as error:
            kept = f"the last good checkpoint (step {last_saved}) is kept at {checkpointer.path}" \
                if last_saved else "no checkpoint was saved yet"
            raise FloatingPointError(f"{desc}: {error} at step {step + 1}; {kept}") from None
        rows.append({"step": step + 1, **batches.position(step), **vars(result)})
        if checkpointer.due(step + 1, steps) and trainer.rank == 0:
            checkpointer.save(step + 1, {"trainer": trainer.state_dict(), "batches": batches.state_dict(), "rows": rows})
            last_saved = step + 1
        bar.update()
        bar.set_postfix(loss=f"{result.diffusion:.4f}", refresh=False)
    bar.close()
    return rows


def pretrain_dit(model: DiT, latents: LatentSet, *, steps: int, batch_size: int, lr: float, ema_decay: float,
                 seed: int, device: torch.device, checkpointer: Checkpointer | None = None,
                 compile: bool = False) -> DiT:
    """Train every parameter of a (tiny) DiT from scratch; returns the EMA model."""
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    trainer = Trainer(model, params, lr, ema_decay, seed, device, precision="bf16", compile=compile)  # tiny: no reference
    batches = RandomBatches(len(latents), batch_size, trainer.generator, device)
    run_steps(trainer, latents, batches, steps, checkpointer or Checkpointer(), "train base DiT")
    ema_model = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, param in ema_model.named_parameters():
            if name in trainer.ema:
                param.copy_(trainer.ema[name])
    return ema_model


def finetune_dit(model: DiT, latents: LatentSet, *, representativeness: str, diversity: str, batch_size: int,
                 lr: float, ema_decay: float, seed: int, device: torch.device, epochs: int | None = None,
                 memory_size: int = 64,
                 rep_weight: float = 0.0, div_weight: float = 0.0, train_steps: int | None = None,
                 precision: str = "fp32", checkpointer: Checkpointer | None = None, compile: bool = False, log=print):
    """Difffit fine-tuning with the criteria in the given forms ("minimax", "mean" or "off"):
    `difffit` is ("off", "off"), the paper's method ("minimax", "minimax").

    It runs `epochs` passes over the latents, or `train_steps` steps when given (the reference
    samples the checkpoint of step 12000, about 7.4 of its 8 epochs on ImageWoof).

    Returns (trainable parameters, their EMA, per-step loss rows). `batch_size` is the global batch.
    """
    trainable = mark_difffit_trainable(model)
    params = dict(model.named_parameters())
    params = {k: params[k] for k in trainable}
    log(f"Difffit trainable parameters: {sum(p.numel() for p in params.values()):,} "
        f"of {sum(p.numel() for p in model.parameters()):,}")
    minimax = None
    if (representativeness, diversity) != ("off", "off"):
        minimax = {"memory_size": memory_size, "rep_weight": rep_weight, "div_weight": div_weight,
                   "representativeness": representativeness, "diversity": diversity, "classes": latents.num_classes}
    trainer = Trainer(model, params, lr, ema_decay, seed, device, minimax, precision, compile)
    trainer.shard(batch_size)  # fail before any work when the batch does not split over the processes
    batches = EpochBatches(len(latents), batch_size, trainer.generator, device)
    total = train_steps if train_steps is not None else epochs * batches.per_epoch
    rows = run_steps(trainer, latents, batches, total, checkpointer or Checkpointer(),
                     f"fine-tune ({representativeness}, {diversity})")
    return {k: p.detach().clone() for k, p in params.items()}, trainer.ema, rows
