"""Surrogate sets built from real images, and writing any set as a PNG ImageFolder tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .io import atomic_dir


def random_subset(labels: torch.Tensor, ipc: int, seed: int) -> torch.Tensor:
    """Indices of `ipc` images per class, drawn without replacement; a prefix of a larger draw."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in sorted(labels.unique().tolist()):
        members = torch.nonzero(labels == c).flatten().numpy()
        if ipc > len(members):
            raise ValueError(f"IPC {ipc} exceeds the {len(members)} training images of class index {c}")
        chosen.append(rng.permutation(members)[:ipc])
    return torch.from_numpy(np.concatenate(chosen))


def first_per_class(labels: torch.Tensor, ipc: int) -> torch.Tensor:
    """Indices of the first `ipc` images of each class in the split's order (files sorted by name
    within a class folder): the reference's "random" baseline, which takes the first IPC samples of
    each class of torchvision's sorted ImageFolder (MD data.py L138-165, `slct_type == 'random'`)."""
    chosen = []
    for c in sorted(labels.unique().tolist()):
        members = torch.nonzero(labels == c).flatten()
        if ipc > len(members):
            raise ValueError(f"IPC {ipc} exceeds the {len(members)} training images of class index {c}")
        chosen.append(members[:ipc])
    return torch.cat(chosen)


def write_image_folder(images: torch.Tensor, labels: torch.Tensor, class_names: list[str], folder: str | Path) -> None:
    """`folder/<class name>/<index>.png`, readable by any ImageFolder loader."""
    counters = {}
    with atomic_dir(folder) as tmp:
        for image, label in zip(images, labels.tolist()):
            name = class_names[label]
            index = counters.get(name, 0)
            counters[name] = index + 1
            array = image.permute(1, 2, 0).numpy()
            (tmp / name).mkdir(exist_ok=True)
            Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(tmp / name / f"{index:05d}.png")
