"""The real data on disk: each split a folder of per-class shards that its readers memory-map.

    data/<split>/index.json   class names, generator ids, image count and shard of each class
    data/<split>/<k>.npy      class k's images, uint8 n_k x C x H x W (NumPy's .npy format)
    data/<split>/<k>.json     class k's sources (path, size, mtime of each file) and their fingerprint

Why NumPy's .npy: a header and the raw array, mapped by `np.load(mmap_mode="r")` with numpy alone
(no extra dependency, readable by any tool), so a reader pages in only the images it touches,
and the kernel can reclaim them. Why one shard per class: a reader maps only the classes it
needs, a killed prepare keeps every class it finished (a shard whose sources are unchanged is
not decoded again), and no job holds more than one class in memory (ImageNet: 1,300 images of
196 KB at 256 px, 255 MB).

`open_split` returns a `Split`, which reads like an image set (`RealPack`): `class_names`,
`class_ids`, `labels`, `images`, `by_class`; its `images` gather from the shards on indexing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .io import atomic_path, load_json, save_json, verify, whole_npy

INDEX = "index.json"


class Images:
    """A split's images as one N x C x H x W uint8 sequence, read through the memory maps of its
    class shards: indexing copies only the indexed images (a tensor on the CPU). Image i is the
    i-th of the shards in class order, or with `order` the `order[i]`-th (a split whose source
    lists its images in another order: digits). `transform` maps each gathered batch (e.g.
    validation's resize), `size` its side after it."""

    dtype, ndim, device = torch.uint8, 4, torch.device("cpu")

    def __init__(self, shards: list[np.ndarray], transform: Callable | None = None, size: int | None = None,
                 order: np.ndarray | None = None, verified: list[bool] | None = None):
        self._shards, self.transform, self.order = shards, transform, order
        self._verified = [False] * len(shards) if verified is None else verified  # shared with mapped views
        self.offsets = np.cumsum([0] + [len(s) for s in shards])
        channels, height, width = shards[0].shape[1:]
        self.shape = torch.Size((int(self.offsets[-1]), channels, size or height, size or width))

    def __len__(self) -> int:
        return self.shape[0]

    def shard(self, s: int) -> np.ndarray:
        """Shard s, its content verified against its checksum when first read (io.verify)."""
        if not self._verified[s]:
            verify(self._shards[s].filename)
            self._verified[s] = True
        return self._shards[s]

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        index = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index, dtype=np.int64).reshape(-1)
        if len(index) and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} images")
        if self.order is not None:
            index = self.order[index]
        shard = np.searchsorted(self.offsets, index, side="right") - 1
        out = np.empty((len(index), *self._shards[0].shape[1:]), dtype=np.uint8)
        for s in np.unique(shard):
            rows = shard == s
            out[rows] = self.shard(s)[index[rows] - self.offsets[s]]
        batch = torch.from_numpy(out)
        return self.transform(batch) if self.transform else batch

    def split(self, batch_size: int) -> Iterator[torch.Tensor]:
        for start in range(0, len(self), batch_size):
            yield self[start:start + batch_size]

    def mapped(self, transform: Callable, size: int) -> Images:
        """The same images, each gathered batch passed through `transform` (to `size` x `size`)."""
        return Images(self._shards, transform, size, self.order, self._verified)


@dataclass
class Split:
    """One split of the real data, opened from its index: what a reader of an image set reads."""

    class_names: list[str]
    class_ids: list[int]
    counts: list[int]
    images: Images

    @property
    def labels(self) -> torch.Tensor:
        stored = torch.repeat_interleave(torch.arange(len(self.counts)), torch.tensor(self.counts))
        return stored if self.images.order is None else stored[torch.from_numpy(self.images.order)]

    def of_classes(self, classes: list[int] | None) -> tuple[Images, torch.Tensor]:
        """The images and labels of `classes` (every class when None: in the split's order), mapped."""
        if classes is None:
            return self.images, self.labels
        labels = torch.cat([torch.full((self.counts[k],), k, dtype=torch.int64) for k in classes])
        return Images([self.images.shard(k) for k in classes], verified=[True] * len(classes)), labels

    def by_class(self, k: int) -> torch.Tensor:
        """Class k's images, read into memory (one class: bounded by a shard)."""
        return torch.from_numpy(np.array(self.images.shard(k)))


def open_split(index: str | Path) -> Split:
    """Map the shards of the split whose index file is `index` (nothing is read until indexed)."""
    meta = load_json(index)
    folder = Path(index).parent
    shards = [np.load(folder / name, mmap_mode="r") for name in meta["shards"]]
    order = None if meta.get("order") is None else np.asarray(meta["order"], dtype=np.int64)
    return Split(meta["class_names"], meta["class_ids"], meta["counts"], Images(shards, order=order))


def fingerprint(sources: list, settings: dict) -> str:
    """What a class shard was decoded from: its files (path, size, mtime) and the decoding settings."""
    return hashlib.sha256(json.dumps([settings, sources], sort_keys=True).encode()).hexdigest()


def shard_name(k: int) -> str:
    return f"{k}.npy"


def finished_shard(folder: Path, k: int, expected: str) -> bool:
    """Whether class k's shard holds the images of these sources already (a resumed prepare)."""
    meta = folder / f"{k}.json"
    if not (meta.is_file() and whole_npy(folder / shard_name(k))):
        return False
    try:
        return load_json(meta)["fingerprint"] == expected
    except (ValueError, KeyError):  # ArtifactError too: a damaged record is decoded again
        return False


def write_shard(folder: Path, k: int, images: np.ndarray, sources: list, expected: str) -> None:
    """Class k's images (n x C x H x W uint8) and then its sources: a shard without its sources
    file is unfinished, and is decoded again."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{k}.json").unlink(missing_ok=True)
    with atomic_path(folder / shard_name(k)) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(images))
    save_json({"fingerprint": expected, "images": len(images), "sources": sources}, folder / f"{k}.json")


def write_index(index: str | Path, class_names: list[str], class_ids: list[int], counts: list[int],
                details: dict) -> None:
    """The index, written last: with it the split is complete. Shards of classes no longer in the
    split (a changed class list) are removed."""
    folder = Path(index).parent
    shards = [shard_name(k) for k in range(len(class_names))]
    for stale in folder.glob("*.npy"):
        if stale.name not in shards:
            stale.unlink()
            stale.with_suffix(".json").unlink(missing_ok=True)
    save_json({"class_names": list(class_names), "class_ids": [int(i) for i in class_ids],
               "counts": [int(n) for n in counts], "shards": shards, **details}, index)
