"""Validation of a surrogate set (IDC protocol): train a classifier on it, test on real images.

Protocol, as in IDC's and the paper's train.py: SGD (lr 0.01, momentum 0.9, weight decay 5e-4),
batch 64 reshuffled every epoch, lr x 0.2 after 2/3 and after 5/6 of the epochs, and at every
step random resized crop (scale 0.5-1) + horizontal flip + CutMix (beta 1, always on), with
cross-entropy. The reported accuracy is top-1 on the test split after the last epoch.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from minimaxdd.augment import augment_batch, cutmix
from minimaxdd.nets import arch_label, build_net
from minimaxdd.resume import Checkpointer


def to_model_input(images: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 N x C x H x W -> float on `device`, normalized with mean 0.5, std 0.5 per channel."""
    return images.to(device).float().div_(127.5).sub_(1.0)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device | str,
             batch_size: int = 256) -> float:
    """Top-1 accuracy in percent of `model` on uint8 images `x`, moved to `device` a batch at a time."""
    device = torch.device(device)
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            correct += (model(to_model_input(xb, device)).argmax(1) == yb.to(device)).sum()
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
                       test_y: torch.Tensor, **settings) -> dict:
    """Train a classifier on (train_x, train_y) (see `train_classifier`), return its test accuracy
    on (test_x, test_y) and the facts of the run."""
    _check_split("test", test_x, test_y, settings["num_classes"])
    if test_x.shape[1:] != train_x.shape[1:]:
        raise ValueError(f"test images {tuple(test_x.shape[1:])} differ from train images "
                         f"{tuple(train_x.shape[1:])}")
    model, record = train_classifier(train_x, train_y, **settings)
    start = time.perf_counter()
    accuracy = evaluate(model, test_x, test_y.long(), record["device"])
    return {"accuracy": accuracy, **record, "wall_s": record["wall_s"] + time.perf_counter() - start}


def train_classifier(train_x: torch.Tensor, train_y: torch.Tensor, *, arch: str, num_classes: int, epochs: int, seed: int,
                     device: torch.device | str = "cpu", batch_size: int = 64, lr: float = 0.01,
                     momentum: float = 0.9, weight_decay: float = 5e-4, width_factor: float = 1.0,
                     progress: bool = True, checkpointer: Checkpointer | None = None) -> tuple[nn.Module, dict]:
    """Train `arch` from scratch on (train_x, train_y) with the IDC protocol; return the model and
    the facts of the run.

    The whole training set lives on `device` (surrogate sets are small). The same inputs and seed
    give the same result on the CPU, also when resumed from a checkpoint (saved every
    `checkpointer.every` epochs).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    _check_split("train", train_x, train_y, num_classes)
    start = time.perf_counter()
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its kernels
    torch.manual_seed(seed)  # weights, augmentation and CutMix draws
    order_rng = torch.Generator().manual_seed(seed)  # data order, drawn on the CPU for any device

    channels, resolution = train_x.shape[1], train_x.shape[2]
    model = build_net(arch, channels, num_classes, resolution, width_factor).to(device)
    x, y = to_model_input(train_x, device), train_y.long().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=[2 * epochs // 3, 5 * epochs // 6], gamma=0.2)  # stepped per epoch

    checkpointer = checkpointer or Checkpointer()
    first, epoch_loss = 0, float("nan")
    saved = checkpointer.load()
    if saved:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"])
        order_rng.set_state(saved["order_rng"])
        if on_cuda:
            torch.cuda.set_rng_state(saved["cuda_rng"])
        first, epoch_loss = saved["step"], saved["epoch_loss"]
    bar = tqdm(range(first, epochs), initial=first, total=epochs,
               desc=f"{arch_label(arch, resolution)} on {len(x)} images", disable=not progress)
    for epoch in bar:
        model.train()
        loss_sum = torch.zeros((), device=device)
        for idx in torch.randperm(len(x), generator=order_rng).to(device).split(batch_size):
            images, y_a, y_b, lam = cutmix(augment_batch(x[idx]), y[idx])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_cuda):
                logits = model(images)
                loss = lam * F.cross_entropy(logits, y_a) + (1 - lam) * F.cross_entropy(logits, y_b)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(idx)
        scheduler.step()
        epoch_loss = loss_sum.item() / len(x)  # one device sync per epoch
        bar.set_postfix(loss=f"{epoch_loss:.3f}")
        if checkpointer.due(epoch + 1, epochs):
            checkpointer.save(epoch + 1, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(), "order_rng": order_rng.get_state(), "epoch_loss": epoch_loss,
                "cuda_rng": torch.cuda.get_rng_state() if on_cuda else None})

    return model.eval(), {
        "final_loss": epoch_loss,  # mean training loss of the last epoch
        "epochs": epochs,
        "train_images": len(x),
        "wall_s": time.perf_counter() - start,
        "device": str(device),
        "arch": arch,
        "seed": seed,
        "width_factor": width_factor,
    }
