"""IGD, influence-guided diffusion (Chen et al., "Influence-Guided Diffusion for Dataset
Distillation", ICLR 2025; code mchen725/DD_IGD): the sampler steers each image toward a high
training influence on its class (TracIn over a surrogate classifier's training trajectory) and away
from the images already generated for its class, with no retraining of the diffusion model.

Three stages, each a cached rule (workflow/rules/igd.smk):

1. `train_surrogate`: a ConvNet trained on the real training split, its weights kept at the epochs
   `igd.checkpoints` (0: the initial weights). DD_IGD train_ckpt.sh: ConvNet-6, 50 epochs, the full
   split, `--mixup vanilla` (IDC's train.py then applies no CutMix); sample.py `rand_ckpts` keeps
   epochs 0, 5, 16, 40 of the ImageWoof trajectory.
2. `class_gradients`: per class and kept checkpoint, the mean cross-entropy gradient of the
   surrogate's parameters over the class's first `igd.gradient_memory` training images (sample.py
   `get_grads`: 200 images, the mean of 50-image chunk means, i.e. the mean over the 200).
3. Guided sampling (`InfluenceGuide`, called by diffusion.GaussianDiffusion.p_step): at the chain
   indices of `igd.interval`, with x0 the step's predicted clean latent and J its objective

       J(x0) = k * sum_checkpoints cos(grad_theta CE(f_theta(D(x0)), c), G_c)
               - gamma * max_{m in M_c} cos(x0, m)

   (D the VAE decoder, G_c the class gradient of stage 2, M_c the final latents of the class's
   last `igd.memory_size` images), the DDPM step's mean moves by sigma_t^2 * dJ/dx_t, ADM's
   classifier guidance (guided-diffusion `condition_mean`), with dJ/dx_t = dJ/dx0 / sqrt(abar_t):
   the gradient goes through the decoder and the surrogate, not through the DiT. docs/method.md
   gives the source of each element and what we chose where DD_IGD's guidance function is not
   public.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from .augment import augment_batch
from .augment import normalize as normalize_images
from .classifier import to_model_input, to_unit, train_classifiers
from .io import load_torch, save_torch
from .nets import build_net
from .settings import HardLabel
from .validate import HardLabelSteps

GRADIENT_CHUNK = 50  # images per backward pass of a class gradient (DD_IGD get_grads: gap = 50); bounds memory only


class SurrogateSteps(HardLabelSteps):
    """The hard-label protocol's optimiser, schedule and augmentation without CutMix: DD_IGD trains
    its surrogate with `--mixup vanilla` (train_ckpt.sh)."""

    def batch(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, rng) -> tuple:
        images = augment_batch(to_unit(x[idx], x.device), self.protocol.augment, generator=rng.device)
        return normalize_images(images, self.normalize), y[idx]

    def loss(self, logits: torch.Tensor, targets) -> torch.Tensor:
        return F.cross_entropy(logits, targets)

    def record(self) -> dict:
        return {"protocol": "igd_surrogate", **self.protocol.params()}


def build_surrogate(saved: dict) -> nn.Module:
    """The surrogate's net (weights as built) for a saved trajectory of `train_surrogate`."""
    return build_net(saved["arch"], saved["channels"], saved["num_classes"], saved["resolution"],
                     saved["width_factor"]).eval()


def flat_gradient(net: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(net.parameters()))])


def class_gradient(net: nn.Module, images: torch.Tensor, label: int, normalize: str,
                   device: torch.device) -> torch.Tensor:
    """The mean cross-entropy gradient of `net`'s parameters over uint8 `images` of class `label`,
    flattened in parameter order; summed over chunks of GRADIENT_CHUNK images."""
    total = None
    for chunk in images.split(GRADIENT_CHUNK):
        logits = net(to_model_input(chunk, device, normalize))
        target = torch.full((len(chunk),), label, dtype=torch.long, device=device)
        part = flat_gradient(net, F.cross_entropy(logits, target, reduction="sum"))
        total = part if total is None else total + part
    return total / len(images)


class InfluenceGuide:
    """IGD's guidance for one generation job: the surrogate at its kept checkpoints, the VAE, and
    per class its real gradients and the memory of its earlier latents.

    `start_class(c, gradients)` before a class's first batch; `remember(latents)` after each of its
    batches; `acts_at(index)` says whether the chain index is in the guided interval, and calling
    the guide on the predicted clean latents of a batch returns dJ/dx0 (see the module doc)."""

    def __init__(self, vae, surrogate: dict, *, influence_scale: float, deviation_scale: float,
                 interval: list[int], memory_size: int, device: torch.device):
        self.vae, self.device = vae, device
        self.net = build_surrogate(surrogate).to(device)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.checkpoints = [{k: v.to(device) for k, v in state.items()} for state in surrogate["states"]]
        self.normalize = surrogate["normalize"]
        self.influence_scale, self.deviation_scale = influence_scale, deviation_scale
        self.low, self.high = interval
        self.memory_size = memory_size
        self.label, self.real, self.memory = None, None, []

    def start_class(self, label: int, gradients: torch.Tensor) -> None:
        """`gradients`: the class's real gradient at each checkpoint (K x P, from class_gradients)."""
        self.label, self.real, self.memory = label, gradients.to(self.device, torch.float32), []

    def remember(self, latents: torch.Tensor) -> None:
        """Keep a batch's final latents for the deviation term: the class's last `memory_size`
        (DD_IGD sample.py: a FIFO of the generated samples)."""
        self.memory = [*self.memory, *latents.detach().split(1)][-self.memory_size:] if self.memory_size else []

    def acts_at(self, index: int) -> bool:
        return self.low <= index <= self.high

    # -- the influence term ---------------------------------------------------------------------
    def _cosine(self, image: torch.Tensor, params: dict, real: torch.Tensor) -> torch.Tensor:
        """cos(grad_theta CE(f_theta(image), label), real) for one normalized image."""
        label = torch.tensor([self.label], device=image.device)

        def loss(p):
            return F.cross_entropy(functional_call(self.net, p, (image[None],)), label)

        gradient = grad(loss)(params)
        flat = torch.cat([g.reshape(-1) for g in gradient.values()])
        return F.cosine_similarity(flat, real, dim=0)

    def influence(self, images: torch.Tensor) -> torch.Tensor:
        """Per image, the sum over checkpoints of the cosine of its gradient with the class's: the
        TracIn score IGD raises (in its cosine form). `images`: normalized surrogate inputs."""
        return sum(vmap(self._cosine, in_dims=(0, None, None))(images, params, real)
                   for params, real in zip(self.checkpoints, self.real))

    def influence_gradient(self, images: torch.Tensor) -> torch.Tensor:
        """d influence / d images, per image (the cosine's gradient through the parameter gradient)."""
        return sum(vmap(grad(self._cosine), in_dims=(0, None, None))(images, params, real)
                   for params, real in zip(self.checkpoints, self.real))

    def surrogate_input(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> decoded [0, 1] images, normalized as the surrogate was trained:
        differentiable (no clamp, no rounding, unlike the saved images)."""
        pixels = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return normalize_images(pixels.add(1).div(2), self.normalize)

    # -- the deviation term ---------------------------------------------------------------------
    def deviation(self, x0: torch.Tensor) -> torch.Tensor:
        """Per latent, minus its largest cosine similarity with the class's earlier latents (0
        before the class's first batch is remembered)."""
        if not self.memory:
            return torch.zeros(len(x0), device=x0.device)
        memory = torch.cat(self.memory).flatten(1)
        return -F.cosine_similarity(x0.flatten(1)[:, None], memory[None], dim=2).max(dim=1).values

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        """dJ/dx0 for a batch of predicted clean latents of the current class."""
        with torch.enable_grad():
            x0 = x0.detach().float().requires_grad_(True)
            images = self.surrogate_input(x0)
            pixel_grad = self.influence_gradient(images.detach())
            (direction,) = torch.autograd.grad(images, x0, grad_outputs=self.influence_scale * pixel_grad)
            if self.memory:
                (away,) = torch.autograd.grad(self.deviation_scale * self.deviation(x0).sum(), x0)
                direction = direction + away
        return direction.detach()


def train_surrogate(protocol: HardLabel, train_x, train_y: torch.Tensor, test_x, test_y: torch.Tensor, *,
                    arch: str, width_factor: float, num_classes: int, epochs: int, keep: list[int], seed: int,
                    device: torch.device, channels_last: bool, checkpointer, trajectory: Path) -> dict:
    """Train the surrogate (one run of `train_classifiers` with SurrogateSteps) and return its
    trajectory: the weights after each epoch of `keep` (0: as built), with what rebuilds the net.

    Each kept state is saved to `trajectory`/epoch<e>.pt as it is reached, so a job resumed from
    `checkpointer` finds the states of the epochs before its checkpoint there."""
    protocol = replace(protocol, width_factor=width_factor, resolution=None)  # the generated images' side
    trajectory.mkdir(parents=True, exist_ok=True)

    def keep_state(epoch: int, models: list[nn.Module]) -> None:
        if epoch in keep:
            save_torch({k: v.detach().cpu().clone() for k, v in models[0].state_dict().items()},
                       trajectory / f"epoch{epoch}.pt")

    (_, record), = train_classifiers(SurrogateSteps(arch, protocol), train_x, train_y, seeds=[seed],
                                     num_classes=num_classes, epochs=epochs, device=device, mode="loop",
                                     channels_last=channels_last, test_x=test_x, test_y=test_y, progress=True,
                                     checkpointer=checkpointer, on_epoch=keep_state)
    return {"arch": arch, "channels": train_x.shape[1], "num_classes": num_classes, "resolution": train_x.shape[2],
            "width_factor": width_factor, "normalize": protocol.normalize, "epochs": list(keep),
            "states": [load_torch(trajectory / f"epoch{e}.pt") for e in keep], "record": record}


def class_gradients(surrogate: dict, images: torch.Tensor, label: int, device: torch.device) -> torch.Tensor:
    """K x P: the class gradient of `label` (class_gradient over `images`) at each kept checkpoint."""
    net = build_surrogate(surrogate).to(device)
    rows = []
    for state in surrogate["states"]:
        net.load_state_dict(state)
        rows.append(class_gradient(net, images, label, surrogate["normalize"], device))
    return torch.stack(rows)


def influence_scores(guide: InfluenceGuide, images: torch.Tensor, labels: torch.Tensor, class_gradients) -> torch.Tensor:
    """Per uint8 image of a set, its TracIn score in IGD's cosine form (InfluenceGuide.influence)
    against its class's real gradients `class_gradients(c)`."""
    scores = torch.empty(len(images))
    for c in labels.unique().tolist():
        rows = (labels == c).nonzero().flatten()
        guide.start_class(c, class_gradients(c))
        scores[rows] = guide.influence(to_model_input(images[rows], guide.device, guide.normalize)).detach().cpu()
    return scores
