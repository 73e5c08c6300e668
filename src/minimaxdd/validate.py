"""Validation of a surrogate set (IDC protocol): train a classifier on it, test on real images.

Protocol, as in IDC's train.py and the paper's copy of it (vimar-gu/MinimaxDiffusion train.py):
SGD (lr 0.01, momentum 0.9, weight decay 5e-4; IDC argument.py L120-123), batch 64 reshuffled
every epoch, lr x 0.2 after 2/3 and after 5/6 of the epochs (train.py L109-110), and at every step
the augmentation of `augment.augment_batch` then CutMix (beta 1, always on), with cross-entropy.
Images are resized and centre-cropped to 224 px once (data.py L275-277), and the test split is
scored every epochs // 100 epochs (argument.py L443, train.py L141): the paper reports the best of
these scores (MinimaxDiffusion train.py L97 prints the mean and std of the best accuracies).
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from minimaxdd.augment import AUGMENTS, NORMALIZATIONS, augment_batch, cutmix
from minimaxdd.augment import normalize as normalize_images
from minimaxdd.io import autocast
from minimaxdd.nets import arch_label, build_net
from minimaxdd.resume import Checkpointer


def to_unit(images: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 N x C x H x W -> float in [0, 1] on `device`, as torchvision's ToTensor."""
    return images.to(device).float().div_(255)


def to_model_input(images: torch.Tensor, device: torch.device | str, normalize: str = "imagenet") -> torch.Tensor:
    """uint8 images -> normalized float on `device`: the test-time input (no augmentation)."""
    return normalize_images(to_unit(images, device), normalize)


def resize_for_validation(images: torch.Tensor, size: int | None, batch_size: int = 256) -> torch.Tensor:
    """uint8 images -> Resize(size) + CenterCrop(size) as uint8, IDC's pre-processing of train
    and test images at `size` = 224 (data.py L275-277); None keeps the images.

    Resize scales the shorter side to `size` with antialiased bilinear filtering (torch's
    antialias follows PIL's, which torchvision calls on IDC's PIL images); the crop is centred.
    """
    h, w = images.shape[-2:]
    if size is None or (h, w) == (size, size):
        return images
    new_h, new_w = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    top, left = int(round((new_h - size) / 2)), int(round((new_w - size) / 2))  # as CenterCrop
    out = [F.interpolate(batch.float(), (new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
           [..., top:top + size, left:left + size].round_().clamp_(0, 255).to(torch.uint8)
           for batch in images.split(batch_size)]
    return torch.cat(out)


def evaluation_epochs(epochs: int, evaluations: int = 100) -> list[int]:
    """The epochs after which the test split is scored: every max(1, epochs // evaluations)-th,
    and the last. IDC: every epochs // 100 (argument.py L443, train.py L141); for its epoch
    counts (300 to 3000) that includes the last; below 100 epochs IDC fails, we score every epoch."""
    every = max(1, epochs // evaluations)
    return sorted({e for e in range(every, epochs + 1, every)} | {epochs})


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device | str,
             batch_size: int = 256, normalize: str = "imagenet", precision: str = "fp32") -> float:
    """Top-1 accuracy in percent of `model` on uint8 images `x`, moved to `device` a batch at a time."""
    device = torch.device(device)
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with autocast(device, precision):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            correct += (model(to_model_input(xb, device, normalize)).argmax(1) == yb.to(device)).sum()
    return 100.0 * correct.item() / len(y)


def _check_split(name: str, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> None:
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[2] != x.shape[3]:
        raise ValueError(f"{name}_x must be uint8 N x C x H x W with C in (1, 3) and H == W, "
                         f"got {x.dtype} of shape {tuple(x.shape)}")
    if len(x) == 0:
        raise ValueError(f"{name}_x is empty: there is nothing to {name} on")
    if y.shape != (len(x),):
        raise ValueError(f"{name}_y must hold one label per image ({len(x)}), got shape {tuple(y.shape)}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"{name}_y has labels in [{y.min()}, {y.max()}], outside [0, {num_classes})")


def train_and_evaluate(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                       test_y: torch.Tensor, *, resolution: int | None, **settings) -> dict:
    """Resize both splits to `resolution` (None: keep), train a classifier on (train_x, train_y)
    scored on (test_x, test_y) during training (see `train_classifier`), return the facts of the run."""
    _check_split("test", test_x, test_y, settings["num_classes"])
    if test_x.shape[1:] != train_x.shape[1:]:
        raise ValueError(f"test images {tuple(test_x.shape[1:])} differ from train images "
                         f"{tuple(train_x.shape[1:])}")
    train_x, test_x = resize_for_validation(train_x, resolution), resize_for_validation(test_x, resolution)
    _, record = train_classifier(train_x, train_y, test_x=test_x, test_y=test_y, **settings)
    return record | {"resolution": train_x.shape[-1]}


def check_training_inputs(train_x, train_y, test_x, test_y, num_classes: int, epochs: int, augment: str,
                          normalize: str) -> None:
    """Refuse what would fail (or mislead) only after training has started."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    _check_split("train", train_x, train_y, num_classes)
    if test_x is not None:
        _check_split("test", test_x, test_y, num_classes)
    for name, value, valid in (("augment", augment, AUGMENTS), ("normalize", normalize, NORMALIZATIONS)):
        if value not in valid:
            raise ValueError(f"unknown {name} {value!r}; valid names: {', '.join(valid)}")


def resume_run(checkpointer: Checkpointer, model: nn.Module, optimizer, scheduler,
                order_rng: torch.Generator) -> tuple[int, float, list]:
    """Restore a classifier's training from its checkpoint, if any: (first epoch, last loss, curve)."""
    saved = checkpointer.load()
    if not saved:
        return 0, float("nan"), []
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"])
    order_rng.set_state(saved["order_rng"])
    if saved["cuda_rng"] is not None:
        torch.cuda.set_rng_state(saved["cuda_rng"])
    return saved["step"], saved["epoch_loss"], saved["curve"]


def save_run(checkpointer: Checkpointer, epoch: int, model: nn.Module, optimizer, scheduler,
             order_rng: torch.Generator, epoch_loss: float, curve: list) -> None:
    """Everything a resumed run needs to continue bit for bit: weights, optimiser, schedule, RNGs."""
    cuda_rng = torch.cuda.get_rng_state() if next(model.parameters()).is_cuda else None
    checkpointer.save(epoch, {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(), "order_rng": order_rng.get_state(), "epoch_loss": epoch_loss,
        "cuda_rng": cuda_rng, "curve": curve})


def curve_scores(curve: list) -> dict:
    """The last and the best test accuracy of a run's curve, with the epoch of the best."""
    if not curve:
        return {}
    best = max(curve, key=lambda point: point[1])  # the first of equal maxima (IDC train.py L147)
    return {"accuracy_last": curve[-1][1], "accuracy_best": best[1], "best_epoch": best[0], "curve": curve}


def train_step(model: nn.Module, optimizer, images: torch.Tensor, labels: torch.Tensor, augment: str = "idc",
               normalize: str = "imagenet", precision: str = "fp32") -> torch.Tensor:
    """One step on a batch of uint8 images (on the model's device): augmentation, normalisation,
    CutMix, forward, backward, update. Returns the detached loss; waits for the device nowhere
    (CutMix draws its scalars on the CPU)."""
    device = images.device
    images = normalize_images(augment_batch(to_unit(images, device), augment), normalize)
    images, y_a, y_b, lam = cutmix(images, labels)
    with autocast(device, precision):  # fp32 (TF32 on CUDA) as IDC; bf16 is faster
        logits = model(images)
        loss = lam * F.cross_entropy(logits, y_a) + (1 - lam) * F.cross_entropy(logits, y_b)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def train_classifier(train_x: torch.Tensor, train_y: torch.Tensor, *, arch: str, num_classes: int, epochs: int,
                     seed: int, device: torch.device | str = "cpu", batch_size: int = 64, lr: float = 0.01,
                     momentum: float = 0.9, weight_decay: float = 5e-4, width_factor: float = 1.0,
                     augment: str = "idc", normalize: str = "imagenet", evaluations: int = 100,
                     precision: str = "fp32", channels_last: bool = False,
                     test_x: torch.Tensor | None = None, test_y: torch.Tensor | None = None,
                     progress: bool = True, checkpointer: Checkpointer | None = None) -> tuple[nn.Module, dict]:
    """Train `arch` from scratch on (train_x, train_y) with the IDC protocol; return the model and
    the facts of the run.

    With a test split, the record holds its top-1 accuracy after each epoch of
    `evaluation_epochs(epochs, evaluations)` as `curve` ([epoch, accuracy] pairs), the last one as
    `accuracy_last`, the best as `accuracy_best`, first reached at `best_epoch` (IDC train.py
    L147: strictly better replaces). The whole training set lives on `device` as uint8 (surrogate
    sets are small). The same inputs and seed give the same result on the CPU, also when resumed
    from a checkpoint (saved every `checkpointer.every` epochs). `channels_last` stores the net's
    weights in channels-last format (its convolutions then run channels-last: faster on GPUs).
    """
    check_training_inputs(train_x, train_y, test_x, test_y, num_classes, epochs, augment, normalize)
    start = time.perf_counter()
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its kernels
    torch.manual_seed(seed)  # weights, augmentation and CutMix draws
    order_rng = torch.Generator().manual_seed(seed)  # data order, drawn on the CPU for any device

    channels, resolution = train_x.shape[1], train_x.shape[2]
    model = build_net(arch, channels, num_classes, resolution, width_factor).to(device, memory_format=memory_format(channels_last))
    x, y = train_x.to(device), train_y.long().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=[2 * epochs // 3, 5 * epochs // 6], gamma=0.2)  # stepped per epoch
    scored = set(evaluation_epochs(epochs, evaluations)) if test_x is not None else set()

    checkpointer = checkpointer or Checkpointer()
    run = (model, optimizer, scheduler, order_rng)
    first, epoch_loss, curve = resume_run(checkpointer, *run)
    bar = tqdm(range(first, epochs), initial=first, total=epochs,
               desc=f"{arch_label(arch, resolution)} on {len(x)} images", disable=not progress)
    for epoch in bar:
        model.train()
        loss_sum = torch.zeros((), device=device)
        for idx in torch.randperm(len(x), generator=order_rng).to(device).split(batch_size):
            loss_sum += train_step(model, optimizer, x[idx], y[idx], augment, normalize, precision) * len(idx)
        scheduler.step()
        epoch_loss = loss_sum.item() / len(x)  # one device sync per epoch
        if epoch + 1 in scored:  # no random draw: scoring leaves the run as it is
            curve.append([epoch + 1, evaluate(model, test_x, test_y, device, normalize=normalize, precision=precision)])
        bar.set_postfix(loss=f"{epoch_loss:.3f}", **({"acc": f"{curve[-1][1]:.1f}"} if curve else {}))
        if checkpointer.due(epoch + 1, epochs):
            save_run(checkpointer, epoch + 1, *run, epoch_loss, curve)

    record = {
        "final_loss": epoch_loss,  # mean training loss of the last epoch
        "epochs": epochs,
        "train_images": len(x),
        "wall_s": time.perf_counter() - start,
        "device": str(device),
        "arch": arch,
        "seed": seed,
        "width_factor": width_factor,
        "augment": augment,
        "normalize": normalize,
        "precision": precision,
        "channels_last": channels_last,
    }
    return model.eval(), record | curve_scores(curve)


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format
