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
3. Guided sampling (`InfluenceGuide`, a guidance.Guide): at the chain
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

from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from ..augment import augment_batch
from ..augment import normalize as normalize_images
from ..classifier import to_model_input, to_unit, train_classifiers
from ..io import load_torch, save_torch
from ..nets import build_net
from ..settings import Recipe
from ..validate import RecipeSteps
from . import Guide, GuidanceMethod, Job

GRADIENT_CHUNK = 50  # images per backward pass of a class gradient (DD_IGD get_grads: gap = 50); bounds memory only


class SurrogateSteps(RecipeSteps):
    """The hard-label recipe's optimiser, schedule and augmentation without CutMix: DD_IGD trains
    its surrogate with `--mixup vanilla` (train_ckpt.sh). Scored on the test split at the kept
    epochs (the weights the guidance follows) and the last."""

    def __init__(self, arch: str, recipe: Recipe, keep: list[int]):
        super().__init__(arch, recipe)
        self.keep = keep

    def batch(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, rng) -> tuple:
        images = augment_batch(to_unit(x[idx], x.device), self.protocol.augment, generator=rng.device)
        return normalize_images(images, self.normalize), y[idx]

    def loss(self, logits: torch.Tensor, targets) -> torch.Tensor:
        return F.cross_entropy(logits, targets)

    def scored_epochs(self, epochs: int) -> list[int]:
        return sorted({e for e in self.keep if 0 < e <= epochs} | {epochs})

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


def train_surrogate(recipe: Recipe, train_x, train_y: torch.Tensor, test_x, test_y: torch.Tensor, *,
                    arch: str, num_classes: int, epochs: int, keep: list[int], seed: int, device: torch.device,
                    channels_last: bool, checkpointer, trajectory: Path) -> dict:
    """Train the surrogate (one run of `train_classifiers` with SurrogateSteps, at the training
    images' own side) and return its trajectory: the weights
    after each epoch of `keep` (0: as built), with what rebuilds the net.

    Each kept state is saved to `trajectory`/epoch<e>.pt as it is reached, so a job resumed from
    `checkpointer` finds the states of the epochs before its checkpoint there."""
    trajectory.mkdir(parents=True, exist_ok=True)

    def keep_state(epoch: int, models: list[nn.Module]) -> None:
        if epoch in keep:
            save_torch({k: v.detach().cpu().clone() for k, v in models[0].state_dict().items()},
                       trajectory / f"epoch{epoch}.pt")

    (_, record), = train_classifiers(SurrogateSteps(arch, recipe, keep), train_x, train_y, seeds=[seed],
                                     num_classes=num_classes, epochs=epochs, device=device, mode="loop",
                                     channels_last=channels_last, test_x=test_x, test_y=test_y, progress=True,
                                     checkpointer=checkpointer, on_epoch=keep_state)
    return {"arch": arch, "channels": train_x.shape[1], "num_classes": num_classes, "resolution": train_x.shape[2],
            "width_factor": recipe.width_factor, "normalize": recipe.normalize, "epochs": list(keep),
            "states": [load_torch(trajectory / f"epoch{e}.pt") for e in keep], "record": record}


def class_gradients(surrogate: dict, images: torch.Tensor, label: int, device: torch.device) -> torch.Tensor:
    """K x P: the class gradient of `label` (class_gradient over `images`) at each kept checkpoint."""
    net = build_surrogate(surrogate).to(device)
    rows = []
    for state in surrogate["states"]:
        net.load_state_dict(state)
        rows.append(class_gradient(net, images, label, surrogate["normalize"], device))
    return torch.stack(rows)


class InfluenceGuide(Guide):
    """IGD's guidance for one generation job: the surrogate at its kept checkpoints, the VAE, the
    real gradients of each class (`class_gradients(c)`, K x P from `class_gradients`), and for a
    group of classes the memories of their earlier latents.

    DD_IGD samples a class's images one after another, each one's deviation term seeing the
    class's earlier images. The same order here, batched across classes: a batch holds image i of
    each class of a group of `batch_size` classes, so image i of class c sees images 0..i-1 of
    class c whatever the batch. Calling the guide on a batch's predicted clean latents returns
    dJ/dx0 (see the module doc)."""

    def __init__(self, vae, surrogate: dict, class_gradients, *, influence_scale: float, deviation_scale: float,
                 interval: list[int], memory_size: int, device: torch.device):
        self.vae, self.device = vae, device
        self.net = build_surrogate(surrogate).to(device)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.checkpoints = [{k: v.to(device) for k, v in state.items()} for state in surrogate["states"]]
        self.normalize = surrogate["normalize"]
        self.class_gradients = class_gradients
        self.influence_scale, self.deviation_scale = influence_scale, deviation_scale
        self.low, self.high = interval
        self.memory_size = memory_size
        self.real, self.memory, self.labels = {}, {}, []
        self.batch_labels = self.batch_real = None

    # -- the guide interface (guidance.Guide) ---------------------------------------------------
    def batches(self, classes: list[int], ipc: int, batch_size: int) -> list[list[Job]]:
        groups = [list(classes[start:start + batch_size]) for start in range(0, len(classes), batch_size)]
        return [[(c, i) for c in group] for group in groups for i in range(ipc)]

    def begin_batch(self, batch: list[Job]) -> None:
        if batch[0][1] == 0:  # a new group of classes
            self.start_classes(sorted({c for c, _ in batch}))
        self.set_labels([c for c, _ in batch])

    def acts_at(self, index: int) -> bool:
        return self.low <= index <= self.high

    def mean_shift(self, x0: torch.Tensor, std: torch.Tensor, dx0_dxt: torch.Tensor) -> torch.Tensor:
        """sigma_t^2 dJ/dx_t: ADM's classifier guidance (`condition_mean`)."""
        return std**2 * dx0_dxt * self(x0)

    def end_batch(self, latents: torch.Tensor) -> None:
        """Keep the batch's final latents for the deviation term: per class, its last `memory_size`
        (DD_IGD sample.py: a FIFO of the class's generated samples)."""
        for c, latent in zip(self.labels, latents.detach().split(1)):
            self.memory[c] = [*self.memory[c], latent][-self.memory_size:] if self.memory_size else []

    # -- the classes and labels the guide works on ------------------------------------------------
    def start_classes(self, classes: list[int]) -> None:
        """A new group of classes, with the real gradient of each at every checkpoint; their
        memories start empty. The previous group's are dropped."""
        self.real = {c: self.class_gradients(c).to(self.device, torch.float32) for c in classes}
        self.memory = {c: [] for c in classes}

    def set_labels(self, labels: list[int]) -> None:
        """The class of each image of the next batch (classes of the current group), and per
        checkpoint each image's class gradient (K x N x P), gathered once for the batch's guided steps."""
        self.labels = list(labels)
        self.batch_labels = torch.tensor(self.labels, device=self.device)
        self.batch_real = torch.stack([self.real[c] for c in self.labels], dim=1)

    # -- the influence term ---------------------------------------------------------------------
    def _cosine(self, image: torch.Tensor, label: torch.Tensor, params: dict, real: torch.Tensor) -> torch.Tensor:
        """cos(grad_theta CE(f_theta(image), label), real) for one normalized image."""
        def loss(p):
            return F.cross_entropy(functional_call(self.net, p, (image[None],)), label[None])

        gradient = grad(loss)(params)
        flat = torch.cat([g.reshape(-1) for g in gradient.values()])
        return F.cosine_similarity(flat, real, dim=0)

    def influence(self, images: torch.Tensor) -> torch.Tensor:
        """Per image, the sum over checkpoints of the cosine of its gradient with its class's: the
        TracIn score IGD raises (in its cosine form). `images`: normalized surrogate inputs."""
        return sum(vmap(self._cosine, in_dims=(0, 0, None, 0))(images, self.batch_labels, params, real_k)
                   for params, real_k in zip(self.checkpoints, self.batch_real))

    def influence_gradient(self, images: torch.Tensor) -> torch.Tensor:
        """d influence / d images, per image (the cosine's gradient through the parameter gradient)."""
        return sum(vmap(grad(self._cosine), in_dims=(0, 0, None, 0))(images, self.batch_labels, params, real_k)
                   for params, real_k in zip(self.checkpoints, self.batch_real))

    def surrogate_input(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> decoded [0, 1] images, normalized as the surrogate was trained:
        differentiable (no clamp, no rounding, unlike the saved images)."""
        pixels = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return normalize_images(pixels.add(1).div(2), self.normalize)

    # -- the deviation term ---------------------------------------------------------------------
    def deviation(self, x0: torch.Tensor) -> torch.Tensor:
        """Per latent, minus its largest cosine similarity with its class's earlier latents (0
        for an image whose class has none yet)."""
        terms = []
        for latent, c in zip(x0, self.labels):
            if self.memory[c]:
                memory = torch.cat(self.memory[c]).flatten(1)
                terms.append(-F.cosine_similarity(latent.flatten()[None], memory, dim=1).max())
            else:
                terms.append(latent.sum() * 0)
        return torch.stack(terms)

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        """dJ/dx0 for a batch of predicted clean latents."""
        with torch.enable_grad():
            x0 = x0.detach().float().requires_grad_(True)
            images = self.surrogate_input(x0)
            pixel_grad = self.influence_gradient(images.detach())
            (direction,) = torch.autograd.grad(images, x0, grad_outputs=self.influence_scale * pixel_grad)
            (away,) = torch.autograd.grad(self.deviation_scale * self.deviation(x0).sum(), x0)
        return (direction + away).detach()


def influence_scores(guide: InfluenceGuide, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per uint8 image of a set, its TracIn score in IGD's cosine form (InfluenceGuide.influence)
    against its class's real gradients, one class at a time."""
    scores = torch.empty(len(images))
    for c in labels.unique().tolist():
        rows = (labels == c).nonzero().flatten()
        guide.start_classes([c])
        guide.set_labels([c] * len(rows))
        scores[rows] = guide.influence(to_model_input(images[rows], guide.device, guide.normalize)).detach().cpu()
    return scores


class IGD(GuidanceMethod):
    """Methods `igd` and `igd_<fine-tuned method>`: the surrogate and its class gradients are rules
    of their own (workflow/rules/igd.smk), once per experiment, shared by every IGD set."""

    name, label, benchmark = "igd", "IGD", "generate_igd"

    def settings(self, section: dict, finetuned: bool) -> dict:
        model = "finetuned" if finetuned else "dit"
        return {"influence_scale": section["influence_scale"][model],
                "deviation_scale": section["deviation_scale"][model],
                "interval": [section["interval"]["low"], section["interval"]["high"]],
                "memory_size": section["memory_size"]}

    def inputs(self, paths, ipc: int) -> list[str]:
        return [paths.igd_surrogate, paths.igd_gradients]

    def check(self, settings: dict, steps: int) -> None:
        low, high = settings["interval"]
        if not low <= high < steps:
            raise ValueError(f"igd.interval (low {low}, high {high}) must be chain indices low <= high below its "
                             f"{steps} denoising steps")

    def check_data(self, config: dict, counts: dict[str, int], names: list[str]) -> None:
        igd = config["igd"]
        if max(igd["checkpoints"]) > igd["surrogate_epochs"]:
            raise ValueError(f"igd.checkpoints: epoch {max(igd['checkpoints'])} is beyond the surrogate's "
                             f"igd.surrogate_epochs ({igd['surrogate_epochs']})")
        name, fewest = min(counts.items(), key=lambda item: item[1])
        if igd["gradient_memory"] > fewest:
            raise ValueError(f"igd.gradient_memory: {igd['gradient_memory']} real images a class exceed the {fewest} "
                             f"training images of class '{name}' (methods {', '.join(names)}); lower it")

    def disk_bytes(self, config: dict, classes: int) -> int:
        """The class gradients: bfloat16, one per class and kept checkpoint."""
        igd, dataset = config["igd"], config["dataset"]
        with torch.device("meta"):  # the parameter count alone: nothing allocated
            net = build_net(igd["surrogate_arch"], dataset["channels"], classes, dataset["resolution"],
                            igd["width_factor"])
        return 2 * classes * len(igd["checkpoints"]) * sum(p.numel() for p in net.parameters())

    def shrink(self, section: dict, preset: dict, steps: int, epochs: int) -> None:
        """The guided interval and the kept epochs at the same fractions of the shorter chain and run."""
        chain, run = preset["generate"]["steps"], preset["igd"]["surrogate_epochs"]
        section["interval"] = {end: min(steps - 1, round(i * steps / chain)) for end, i in section["interval"].items()}
        section["surrogate_epochs"] = epochs
        section["checkpoints"] = sorted({round(e * epochs / run) for e in section["checkpoints"]})
        section["gradient_memory"] = min(section["gradient_memory"], 4)
        section["width_factor"] = min(section["width_factor"], 0.25)

    def build_guide(self, settings: dict, inputs: list[str], vae, device) -> Guide:
        surrogate, gradients = inputs
        return InfluenceGuide(vae, load_torch(surrogate), lambda c: load_torch(Path(gradients) / f"class{c}.pt"),
                              device=device, **settings)


METHOD = IGD()
