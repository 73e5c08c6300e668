"""Validation of a surrogate set (IDC protocol): train a classifier on it, test on real images.

Protocol, as in IDC's train.py and the paper's copy of it (vimar-gu/MinimaxDiffusion train.py):
SGD (lr 0.01, momentum 0.9, weight decay 5e-4; IDC argument.py L120-123; for more than 100
classes lr 0.1, weight decay 1e-4, batch 128: MD argument.py L294-302, settings.hard_label_rule),
batch 64 reshuffled every epoch, lr x 0.2 after 2/3 and after 5/6 of the epochs (train.py L109-110), and at every step
the augmentation of `augment.augment_batch` then CutMix (beta 1, always on), with cross-entropy.
Images are resized and centre-cropped to 224 px once (data.py L275-277), and the test split is
scored every epochs // 100 epochs (argument.py L443, train.py L141; the full split after every
epoch, MD argument.py L426-437, set by the plan): the paper reports the best of
these scores (MinimaxDiffusion train.py L97 prints the mean and std of the best accuracies).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .augment import AUGMENTS, NORMALIZATIONS, augment_batch, cutmix
from .augment import normalize as normalize_images
from .classifier import RunRandom, check_split, to_unit, train_classifiers
from .nets import build_net
from .resume import Checkpointer
from .settings import HardLabel, Recipe
from .shards import Images

MOMENTUM = 0.9  # IDC argument.py L120-123, not a setting


def resize_for_validation(images: torch.Tensor, size: int | None, batch_size: int = 256) -> torch.Tensor:
    """uint8 images -> Resize(size) + CenterCrop(size) as uint8, IDC's pre-processing of train
    and test images at `size` = 224 (data.py L275-277); None keeps the images.

    Resize scales the shorter side to `size` with antialiased bilinear filtering (torch's
    antialias follows PIL's, which torchvision calls on IDC's PIL images); the crop is centred.
    """
    h, w = images.shape[-2:]
    if size is None or (h, w) == (size, size):
        return images
    if isinstance(images, Images):  # a mapped split: each batch resized as it is read
        return images.mapped(lambda batch: resize_for_validation(batch, size, batch_size), size)
    new_h, new_w = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    top, left = int(round((new_h - size) / 2)), int(round((new_w - size) / 2))  # as CenterCrop
    out = [F.interpolate(batch.float(), (new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
           [..., top:top + size, left:left + size].round_().clamp_(0, 255).to(torch.uint8)
           for batch in images.split(batch_size)]
    return torch.cat(out)


def evaluation_epochs(epochs: int, evaluations: int) -> list[int]:
    """The epochs after which the test split is scored: every max(1, epochs // evaluations)-th,
    and the last. IDC: every epochs // 100 (argument.py L443, train.py L141); for its epoch
    counts (300 to 3000) that includes the last; below 100 epochs IDC fails, we score every epoch."""
    every = max(1, epochs // evaluations)
    return sorted({e for e in range(every, epochs + 1, every)} | {epochs})


class RecipeSteps:
    """IDC's training recipe as the steps of classifier.train_classifiers, scored after the last
    epoch only (a test split given)."""

    vmappable = True

    def __init__(self, arch: str, protocol: Recipe):
        for name, value, valid in (("augment", protocol.augment, AUGMENTS),
                                   ("normalize", protocol.normalize, NORMALIZATIONS)):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid names: {', '.join(valid)}")
        self.arch, self.protocol = arch, protocol
        self.batch_size, self.normalize, self.precision = protocol.batch_size, protocol.normalize, protocol.precision

    def build_net(self, channels: int, num_classes: int, resolution: int) -> nn.Module:
        return build_net(self.arch, channels, num_classes, resolution, self.protocol.width_factor)

    def parameters(self, net: nn.Module):
        return net.parameters()

    def optimizer(self, parameters) -> torch.optim.Optimizer:
        return torch.optim.SGD(parameters, self.protocol.lr, momentum=MOMENTUM, weight_decay=self.protocol.weight_decay)

    def scheduler(self, optimizer, epochs: int):
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2 * epochs // 3, 5 * epochs // 6], gamma=0.2)

    def batch(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, rng: RunRandom) -> tuple:
        """Augmentation, normalisation, then CutMix; the targets are (y_a, y_b, lam). With augment
        "none", neither (DD-Ranking's `use_aug=False`: no augmentation function): lam = 1."""
        images = augment_batch(to_unit(x[idx], x.device), self.protocol.augment, generator=rng.device)
        if self.protocol.augment == "none":
            return normalize_images(images, self.normalize), (y[idx], y[idx], 1.0)
        images, y_a, y_b, lam = cutmix(normalize_images(images, self.normalize), y[idx], generator=rng.device,
                                       cpu_generator=rng.cpu)  # lam is drawn on the CPU: no device sync
        return images, (y_a, y_b, lam)

    def loss(self, logits: torch.Tensor, targets) -> torch.Tensor:
        y_a, y_b, lam = targets
        return lam * F.cross_entropy(logits, y_a) + (1 - lam) * F.cross_entropy(logits, y_b)

    def scored_epochs(self, epochs: int) -> list[int]:
        return [epochs]

    def record(self) -> dict:
        return {"protocol": "recipe", **self.protocol.params()}


class HardLabelSteps(RecipeSteps):
    """IDC's protocol: the recipe, scored every epochs // evaluations."""

    def __init__(self, arch: str, protocol: HardLabel):
        super().__init__(arch, protocol)

    def scored_epochs(self, epochs: int) -> list[int]:
        return evaluation_epochs(epochs, self.protocol.evaluations)

    def record(self) -> dict:
        return {"protocol": "hard_label", **self.protocol.params()}


def train_and_evaluate(protocol: HardLabel, arch: str, train_x: torch.Tensor, train_y: torch.Tensor,
                       test_x: torch.Tensor, test_y: torch.Tensor, *, num_classes: int, seeds: list[int], epochs: int,
                       device: torch.device | str, mode: str, channels_last: bool, progress: bool,
                       checkpointer: Checkpointer | None) -> list[dict]:
    """Resize both splits to `protocol.resolution` (None: keep), train `arch` once per seed of
    `seeds` on (train_x, train_y) with IDC's protocol, scored on (test_x, test_y) during training
    (classifier.train_classifiers, which says what a record holds); one record per seed."""
    check_split("test", test_x, test_y, num_classes)
    if test_x.shape[1:] != train_x.shape[1:]:
        raise ValueError(f"test images {tuple(test_x.shape[1:])} differ from train images "
                         f"{tuple(train_x.shape[1:])}")
    train_x = resize_for_validation(train_x, protocol.resolution)
    test_x = resize_for_validation(test_x, protocol.resolution)
    runs = train_classifiers(HardLabelSteps(arch, protocol), train_x, train_y, seeds=seeds, num_classes=num_classes,
                             epochs=epochs, device=device, mode=mode, channels_last=channels_last, test_x=test_x,
                             test_y=test_y, progress=progress, checkpointer=checkpointer)
    return [record for _, record in runs]
