"""Real data: decode the dataset the config describes, once, into uint8 images.

The prepare stage writes each split as per-class shards (`prepare_split`, shards.py), which later
stages memory-map and never the raw files; an image set (a surrogate set, `pack.pt`) is a
`RealPack` held in memory. Both hold N x C x H x W uint8 images at the configured resolution and
channel count, labels 0..K-1 indexing `class_names`, and `class_ids`, each class's id in the
pretrained generator's label space. Three kinds of input are supported:

- digits:      scikit-learn's bundled 8x8 digits, with a fixed stratified train/test split.
- imagefolder: root/<train_dir|test_dir>/<class>/<image>, decoded with PIL and ADM's center crop.
- idx:         MNIST-format IDX files (optionally gzipped), parsed here with numpy.

Bad input fails early with a one-line DatasetError naming the config key or the file.
"""

from __future__ import annotations

import contextlib
import gzip
import mmap
import multiprocessing
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from . import shards
from .io import load_torch, save_torch

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
IDX_FILES = {  # split -> (images, labels)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SHOWN_IGNORED = 50  # non-image entries listed one by one in the prepare log
# What a broken file can raise inside PIL's or gzip's decoders.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError)


class DatasetError(ValueError):
    """Bad dataset config or input file; the one-line message names the config key or the file."""


class BadImageError(DatasetError):
    """An image file that cannot be decoded (truncated, corrupt, no image at all, a broken link)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: unreadable image ({reason}); set dataset.skip_bad_images: true to skip such files")
        self.path, self.reason = path, reason

    def __reduce__(self):  # picklable (exceptions are rebuilt from their arguments)
        return type(self), (self.path, self.reason)


@dataclass
class RealPack:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N, values 0..K-1 (index into class_names)
    class_names: list[str]
    class_ids: list[int]  # generator conditioning id of each class

    def save(self, path) -> None:
        # A dict of plain tensors and lists, so loading never depends on this class's pickle.
        save_torch({"images": self.images, "labels": self.labels,
                    "class_names": list(self.class_names), "class_ids": [int(i) for i in self.class_ids]}, path)

    @classmethod
    def load(cls, path) -> RealPack:
        d = load_torch(path)
        return cls(d["images"], d["labels"], list(d["class_names"]), list(d["class_ids"]))

    def by_class(self, k: int) -> torch.Tensor:
        return self.images[self.labels == k]


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------

def open_set(path: str | Path) -> RealPack | shards.Split:
    """An image set's file (`pack.pt`, read into memory), or a split of the real data (the
    `index.json` of its shards, memory-mapped): the same attributes either way."""
    return shards.open_split(path) if Path(path).name == shards.INDEX else RealPack.load(path)


def resolve_classes(dataset: dict) -> tuple[list[str], list[int]]:
    """Class names (label order) and the generator conditioning id of each class."""
    ds = dataset
    names = _class_names(ds)
    ids = ds["class_ids"]
    if ids is None:
        return names, list(range(len(names)))
    if isinstance(ids, str):  # a file listing the generator's classes in id order, e.g. ImageNet-1k wnids
        return names, _ids_from_file(ids, names)
    if len(ids) != len(names):
        raise DatasetError(f"dataset.class_ids has {len(ids)} entries but there are {len(names)} classes")
    return names, [int(i) for i in ids]


def _ids_from_file(path: str, names: list[str]) -> list[int]:
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"dataset.class_ids: file {file} does not exist")
    index = {name: i for i, name in enumerate(_read_name_list(file))}
    missing = [name for name in names if name not in index]
    if missing:
        raise DatasetError(f"dataset.class_ids: classes {missing[:5]} are not listed in {file}")
    return [index[name] for name in names]


def readable_class_names(names: list[str], wnids_file: str | Path, names_file: str | Path) -> list[str]:
    """Each class as a figure labels it: an ImageNet-1K wnid by its first common name ('n01440764'
    -> 'tench'; the two files list the 1000 classes in the same order), any other name as it is."""
    common = dict(zip(_read_name_list(Path(wnids_file)),
                      (line.split(",")[0].strip() for line in Path(names_file).read_text().splitlines() if line.strip())))
    return [common.get(name, name) for name in names]


def source_fingerprint(dataset: dict) -> str:
    """The source files as the prepare rule's rerun trigger sees them: the name, size and
    modification time of every image file of both splits (an IDX file's for idx; digits ship with
    scikit-learn). A content hash would read the whole dataset at every workflow start; a stat per
    file is one directory walk. A replaced, added or removed image or class changes it."""
    names, _ = resolve_classes(dataset)
    if dataset["kind"] == "imagefolder":
        sources = {split: [[_source(path, _split_dir(dataset, split)) for path in paths]
                           for paths in _imagefolder_files(dataset, names, split)] for split in SPLITS}
    elif dataset["kind"] == "idx":
        sources = {split: [_source(_idx_path(dataset, stem), _root(dataset)) for stem in IDX_FILES[split]]
                   for split in SPLITS}
    else:
        sources = {}
    return shards.fingerprint(sources, {"classes": names})


def split_sizes(dataset: dict) -> dict[str, int]:
    """Images of each split, without decoding any (the disk estimate before any job)."""
    names, _ = resolve_classes(dataset)
    if dataset["kind"] == "imagefolder":
        return {split: sum(map(len, _imagefolder_files(dataset, names, split))) for split in SPLITS}
    if dataset["kind"] == "digits":
        return {split: len(_digits_split(dataset, split)[1]) for split in SPLITS}
    return {split: len(_idx_labels(dataset, names, split)) for split in SPLITS}


def class_image_counts(dataset: dict) -> dict[str, int]:
    """Train images per class, without decoding any image (for checking configs before any job)."""
    ds = dataset
    names, _ = resolve_classes(ds)
    if ds["kind"] == "digits":
        counts = np.bincount(_digits_split(ds, "train")[1], minlength=len(names))
    elif ds["kind"] == "imagefolder":
        _imagefolder_files(ds, names, "test")  # a broken test tree should also fail now, not later
        counts = [len(files) for files in _imagefolder_files(ds, names, "train")]
    else:
        counts = np.bincount(_idx_labels(ds, names, "train"), minlength=len(names))
    return {name: int(n) for name, n in zip(names, counts)}


def load_split(dataset: dict, split: str, per_class: int | None = None, workers: int = 1) -> RealPack:
    """Decode one split ("train" or "test") into an in-memory RealPack; `per_class`: only the first
    that many images of each class (a quick look, e.g. the soft-label teacher's check). The
    workflow's prepare writes shards instead (`prepare_split`)."""
    names, ids = resolve_classes(dataset)
    classes = [images.copy() for _, images, _ in decode_split(dataset, split, per_class=per_class, workers=workers)]
    images = torch.from_numpy(np.concatenate(classes))
    labels = torch.cat([torch.full((len(x),), k, dtype=torch.int64) for k, x in enumerate(classes)])
    order = None if per_class is not None else source_order(dataset, split)
    return RealPack(images, labels, names, ids) if order is None else RealPack(images[order], labels[order], names, ids)


def prepare_split(dataset: dict, split: str, index: str | Path, workers: int, details: dict | None = None) -> None:
    """Decode one split into per-class shards next to `index` (shards.py), with `workers` decoding
    processes; a class whose shard holds its unchanged sources already is not decoded again (a
    killed prepare resumes where it stopped). The index is written last."""
    names, ids = resolve_classes(dataset)
    folder = Path(index).parent
    settings = _decode_settings(dataset, split)
    finished = lambda k, sources: shards.finished_shard(folder, k, shards.fingerprint(sources, settings))
    counts, reused = [], 0
    for k, images, sources in decode_split(dataset, split, workers=workers, finished=finished):
        if images is None:
            reused += 1
            counts.append(len(np.load(folder / shards.shard_name(k), mmap_mode="r")))
            continue
        shards.write_shard(folder, k, images, sources, shards.fingerprint(sources, settings))
        counts.append(len(images))
    if reused:
        print(f"{split}: {reused} of {len(names)} class shards were complete and unchanged: kept")
    order = source_order(dataset, split)
    shards.write_index(index, names, ids, counts, {"resolution": dataset["resolution"], "channels": dataset["channels"],
                                                   "order": None if order is None else order.tolist(),
                                                   **(details or {})})


def source_order(dataset: dict, split: str) -> np.ndarray | None:
    """Where each image of the source's order lies in the class-sorted shards, for sources that
    interleave the classes (digits' stratified split, IDX files); None for an image folder, which
    lists them by class. Readers keep the source's order, so its random draws stay what they were."""
    if dataset["kind"] == "imagefolder":
        return None
    names, _ = resolve_classes(dataset)
    labels = _digits_split(dataset, split)[1] if dataset["kind"] == "digits" else _idx_labels(dataset, names, split)
    stored = np.argsort(labels, kind="stable")  # storage position -> source position
    order = np.empty_like(stored)
    order[stored] = np.arange(len(stored))
    return order


def _decode_settings(ds: dict, split: str) -> dict:
    """What, besides its source files, decides a class shard's pixels."""
    keys = ("kind", "root", "train_dir", "test_dir", "resolution", "channels", "skip_bad_images", "test_fraction",
            "split_seed")
    return {"split": split, **{k: ds.get(k) for k in keys}}


def decode_split(dataset: dict, split: str, *, workers: int = 1, per_class: int | None = None,
                 finished: Callable[[int, list], bool] = lambda k, sources: False) -> Iterator[tuple]:
    """Each class of a split, in class order: (k, its images as n x C x H x W uint8, its sources);
    images None for a class that `finished(k, sources)` says needs no decoding. The images are
    valid until the next class is asked for (their memory is then reused)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    ds = dataset
    names, _ = resolve_classes(ds)
    if ds["kind"] == "imagefolder":
        yield from _imagefolder_classes(ds, names, split, per_class, workers, finished)
        return
    res, channels = ds["resolution"], ds["channels"]
    if ds["kind"] == "digits":
        x, y = _digits_split(ds, split)
        images, sources = _resize_gray(x.reshape(-1, 8, 8) * (255.0 / 16.0), res, channels), []  # digits are 0..16
    else:
        y = _idx_labels(ds, names, split)
        images_path = _idx_path(ds, IDX_FILES[split][0])
        x = _read_idx(images_path, ndim=3)
        if len(x) != len(y):
            raise DatasetError(f"{images_path} holds {len(x)} images but its label file holds {len(y)} labels")
        images = _resize_gray(x, res, channels)
        sources = [_source(images_path, images_path.parent), _source(_idx_path(ds, IDX_FILES[split][1]), images_path.parent)]
    y = torch.as_tensor(y, dtype=torch.int64)
    for k in range(len(names)):
        if finished(k, sources):
            yield k, None, sources
        else:
            yield k, images[y == k][:per_class].numpy(), sources


def _source(path: Path, root: Path) -> list:
    """A source file as its shard's fingerprint sees it: path, size and modification time (none
    for a broken link, which decoding names as a bad image)."""
    try:
        stat = path.stat()
    except OSError:
        return [str(path.relative_to(root)), None, None]
    return [str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns]


# ----------------------------------------------------------------------------------------------
# Classes and folders
# ----------------------------------------------------------------------------------------------

def _class_names(ds: dict) -> list[str]:
    given = _read_class_list(ds["classes"])
    kind = ds["kind"]
    if kind == "imagefolder":
        if given is not None:
            return given
        train = _split_dir(ds, "train")
        broken = sorted(p.name for p in train.iterdir() if p.is_symlink() and not p.exists())
        if broken:
            raise DatasetError(f"dataset.train_dir: class folder {train / broken[0]} is a broken or looping link; "
                               "fix it, or list the classes to use in dataset.classes")
        names = sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not names:
            raise DatasetError(f"dataset.train_dir: no class folders in {train}")
        for name in names:
            if not name.isprintable():  # undecodable bytes are surrogates, not printable; the tables write the name
                raise DatasetError(f"dataset.train_dir: class folder {ascii(name)} under {train} is not a printable "
                                   "UTF-8 name; rename it, or list the classes to use in dataset.classes")
        return names
    if kind in ("digits", "idx"):
        if given is None:
            return [str(i) for i in range(10)]
        if kind == "digits" and len(given) != 10:
            raise DatasetError(f"dataset.classes must name the 10 digit classes, got {len(given)} names")
        return given  # idx: checked against the label range when labels are read
    raise DatasetError(f"dataset.kind: unknown kind {kind!r} (expected digits, imagefolder or idx)")


def _read_name_list(path: Path) -> list[str]:
    """One name per line; '#' comments and blank lines are ignored."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def _read_class_list(classes) -> list[str] | None:
    """`classes` as a list, or a text file with one name per line ('#' comments, blank lines ignored)."""
    if classes is None:
        return None
    if isinstance(classes, (str, Path)):
        path = Path(classes)
        if not path.is_file():
            raise DatasetError(f"dataset.classes: class list file {path} does not exist")
        names = _read_name_list(path)
    else:
        names = [str(c) for c in classes]
    if not names:
        raise DatasetError("dataset.classes is empty")
    for name in names:
        # a class name is one folder name: "a/b", ".." or "" would read (and write) outside its folder
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            raise DatasetError(f"dataset.classes: {name!r} is not a folder name (one name, no '/', not '.' or '..')")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DatasetError(f"dataset.classes lists {duplicates} more than once")
    return names


def _root(ds: dict) -> Path:
    if not ds["root"]:  # None, or "" (which Path would read as the working directory)
        raise DatasetError(f"dataset.root must be set for kind {ds['kind']!r}")
    root = Path(ds["root"])
    if root.exists() and not root.is_dir():
        raise DatasetError(f"dataset.root: {root} is a file; name the folder that holds the dataset")
    if not root.is_dir():
        raise DatasetError(f"dataset.root: folder {root} does not exist")
    return root


def _split_dir(ds: dict, split: str) -> Path:
    key = "train_dir" if split == "train" else "test_dir"
    path = _root(ds) / ds[key]
    if path.is_symlink() and not path.exists():
        raise DatasetError(f"dataset.{key}: folder {path} is a broken or looping link; point it at the images")
    if not path.is_dir():
        raise DatasetError(f"dataset.{key}: folder {path} does not exist")
    if split == "test" and path.resolve() == (_root(ds) / ds["train_dir"]).resolve():  # a link or "./train" too
        raise DatasetError(f"dataset.test_dir: {ds['test_dir']!r} ({path}) is also dataset.train_dir; the test "
                           "split must be other images than the training split")
    return path


def _imagefolder_files(ds: dict, names: list[str], split: str, ignored: list[Path] | None = None) -> list[list[Path]]:
    """Sorted image files of each class, by extension (case-insensitive, IMAGE_EXTENSIONS).

    Hidden files (e.g. macOS '._x.jpg', '.DS_Store'), sub-folders and files without an image
    extension are ignored (appended to `ignored` when given); a file with an image extension that
    cannot be decoded, a broken link included, is a bad image, found when decoding.
    """
    split_dir = _split_dir(ds, split)
    files = []
    for name in names:
        folder = split_dir / name
        if not folder.is_dir():
            source = "of dataset.classes" if ds.get("classes") else "(a folder of dataset.train_dir)"
            raise DatasetError(f"class {name!r} {source} has no folder {folder}")
        images, others = _list_class_folder(folder)
        if not images:
            ignored_entries = "1 other entry" if len(others) == 1 else f"{len(others)} other entries"
            hint = f" ({ignored_entries} ignored, e.g. {others[0].name!r})" if others else ""
            raise DatasetError(f"class folder {folder} holds no images{hint}; "
                               f"image extensions: {' '.join(sorted(IMAGE_EXTENSIONS))}")
        if ignored is not None:
            ignored.extend(others)
        files.append(images)
    return files


_listings: dict[Path, tuple[int, list[Path], list[Path]]] = {}


def _list_class_folder(folder: Path) -> tuple[list[Path], list[Path]]:
    """A class folder's image files and other entries, sorted. The start-of-run checks, the disk
    estimate and the prepare trigger each need the listing: it is read once per process and kept
    while the folder's modification time stands (adding, removing or renaming an entry moves it),
    which at ImageNet-1K size saves two walks of 1.3 M entries at every workflow start. As git does
    with racy entries, a folder modified less than a second before it was listed is not kept: a
    change in the same clock tick as the listing would not move the time."""
    mtime, listed_at = folder.stat().st_mtime_ns, time.time_ns()
    kept = _listings.get(folder)
    if kept is not None and kept[0] == mtime:
        return list(kept[1]), list(kept[2])
    images, others = [], []
    for p in sorted(folder.iterdir()):
        is_image = p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and not p.is_dir()
        (images if is_image else others).append(p)
    if mtime < listed_at - 1_000_000_000:
        _listings[folder] = (mtime, images, others)
    return images, others


# ----------------------------------------------------------------------------------------------
# digits and idx: grayscale arrays resized in torch
# ----------------------------------------------------------------------------------------------

def _digits_split(ds: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=ds["test_fraction"], stratify=y, random_state=ds["split_seed"])
    return (x_train, y_train) if split == "train" else (x_test, y_test)


def _resize_gray(x: np.ndarray, resolution: int, channels: int) -> torch.Tensor:
    """N x H x W gray values in 0..255 -> N x C x res x res uint8 (bilinear, antialiased)."""
    t = torch.from_numpy(np.asarray(x, dtype=np.float32)).unsqueeze(1)  # a writable float copy
    if t.shape[-2:] != (resolution, resolution):
        t = F.interpolate(t, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    t = t.round().clamp(0, 255).to(torch.uint8)
    return t.expand(-1, channels, -1, -1).contiguous()


def _idx_path(ds: dict, stem: str) -> Path:
    root = _root(ds)
    for path in (root / stem, root / f"{stem}.gz"):
        if path.is_file():
            return path
    raise DatasetError(f"dataset.root: neither {root / stem} nor {root / stem}.gz exists")


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file: magic 0x0000 08 <ndim>, ndim big-endian uint32 sizes, data."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except DECODE_ERRORS as e:
        raise DatasetError(f"{path}: cannot read ({e})") from e
    magic = 0x0800 + ndim
    if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
        raise DatasetError(f"{path}: bad IDX magic number {data[:4].hex()} (expected {magic:08x})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    dims = [int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4)]
    if len(data) - header != int(np.prod(dims)):
        raise DatasetError(f"{path}: header says {dims} but holds {len(data) - header} data bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _idx_labels(ds: dict, names: list[str], split: str) -> np.ndarray:
    path = _idx_path(ds, IDX_FILES[split][1])
    labels = _read_idx(path, ndim=1).astype(np.int64)
    if labels.size and labels.max() >= len(names):
        raise DatasetError(f"{path}: label {labels.max()} is out of range for {len(names)} classes (dataset.classes)")
    if split == "train":
        missing = [names[k] for k in np.flatnonzero(np.bincount(labels, minlength=len(names)) == 0)]
        if missing:
            raise DatasetError(f"{path}: no training images of classes {missing} (dataset.classes)")
    return labels


# ----------------------------------------------------------------------------------------------
# imagefolder: PIL decoding
# ----------------------------------------------------------------------------------------------

def _imagefolder_classes(ds: dict, names: list[str], split: str, per_class: int | None, workers: int,
                         finished: Callable[[int, list], bool]) -> Iterator[tuple]:
    """decode_split for an image folder: the images of every class not `finished`, decoded by
    `workers` processes in file order (the pixels do not depend on their number). Printed lines
    (the prepare job's log) list every ignored non-image entry and every skipped unreadable image
    with its reason."""
    mode = "L" if ds["channels"] == 1 else "RGB"
    ignored: list[Path] = []
    files = _imagefolder_files(ds, names, split, ignored)  # every folder problem surfaces before decoding
    files = [paths[:per_class] for paths in files]
    for path in ignored[:SHOWN_IGNORED]:
        print(f"{split}: ignored {path} (hidden, a folder, or no image extension)")
    if len(ignored) > SHOWN_IGNORED:
        print(f"{split}: ignored {len(ignored) - SHOWN_IGNORED} more entries (hidden, folders, or no image extension)")
    split_dir = _split_dir(ds, split)
    sources = [[_source(path, split_dir) for path in paths] for paths in files]
    todo = [k for k in range(len(names)) if not finished(k, sources[k])]
    position = {k: i for i, k in enumerate(todo)}
    bad, counts = [], {}
    total = sum(len(files[k]) for k in todo)
    bar = tqdm(total=total, desc=f"decode {split} ({workers} workers)", unit="img", disable=total < 500)
    largest = max((len(files[k]) for k in todo), default=0)
    with _decoder(workers, (largest, ds["channels"], ds["resolution"], ds["resolution"])) as (decode, slots):
        # a class's images are decoded into one of SLOTS buffers, while the classes before it are
        # collected: the workers never wait, and no more than SLOTS classes are in memory
        submit = lambda k: decode([(position[k] % SLOTS, row, path, mode, ds["resolution"])
                                   for row, path in enumerate(files[k])])
        queued = {k: submit(k) for k in todo[:SLOTS - 1]}
        for k in range(len(names)):
            if k not in queued:
                yield k, None, sources[k]
                continue
            readable = []
            for row, result in enumerate(queued.pop(k)):
                bar.update()
                if isinstance(result, BadImageError):
                    if not ds["skip_bad_images"]:
                        raise result
                    print(f"{split}: skipped {result.path}: {result.reason}")
                    bad.append(result.path)
                else:
                    readable.append(row)
            queued |= {j: submit(j) for j in todo[position[k] + SLOTS - 1:position[k] + SLOTS]}
            if not readable:
                raise DatasetError(f"class folder {files[k][0].parent} holds no readable images "
                                   "(every one was skipped: dataset.skip_bad_images)")
            counts[names[k]] = len(readable)
            slot = slots[position[k] % SLOTS]
            yield k, slot[:len(readable)] if len(readable) == len(files[k]) else slot[readable], sources[k]
    bar.close()
    if bad:
        shown = ", ".join(str(p) for p in bad[:20]) + (f" and {len(bad) - 20} more" if len(bad) > 20 else "")
        warnings.warn(f"skipped {len(bad)} unreadable image(s): {shown}")
        print(f"{split}: {len(bad)} unreadable image(s) skipped; images per class now: "
              + ", ".join(f"{name}={n}" for name, n in counts.items()))


SLOTS = 3  # classes in flight: one collected, two decoding
_slots: list[np.ndarray] = []  # the buffers the decoding processes write into (shared by fork)


@contextlib.contextmanager
def _decoder(workers: int, slot_shape: tuple) -> Iterator[tuple[Callable, list[np.ndarray]]]:
    """(decode, slots): `decode` maps (slot, row, path, mode, resolution) items, in order, to None
    (the image is in slots[slot][row]) or the BadImageError of an unreadable one; in this process,
    or in `workers` forked processes. The slots are shared memory, so no image is sent between
    processes (sending them costs the collecting process a quarter of a core)."""
    global _slots
    _slots = [np.frombuffer(mmap.mmap(-1, max(1, int(np.prod(slot_shape)))), dtype=np.uint8)[:int(np.prod(slot_shape))]
              .reshape(slot_shape) for _ in range(SLOTS)]
    try:
        if workers <= 1:
            yield (lambda items: map(_decode_into_slot, items)), _slots
        else:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                yield (lambda items: pool.imap(_decode_into_slot, items, chunksize=16)), _slots
    finally:
        _slots = []


def _decode_into_slot(item: tuple) -> BadImageError | None:
    """One image, decoded into its row of a slot as C x H x W uint8."""
    slot, row, path, mode, resolution = item
    try:
        pixels = _decode(path, mode, resolution)
    except BadImageError as error:
        return error
    _slots[slot][row] = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return None


def _decode(path: Path, mode: str, resolution: int) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()  # Image.open is lazy: truncation only shows when pixels are read
            img = to_mode(img, mode)
    except DECODE_ERRORS as e:
        raise BadImageError(path, " ".join(str(e).split()) or type(e).__name__) from e
    return np.asarray(center_crop_arr(img, resolution))


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Convert any PIL image to "L" or "RGB".

    16/32-bit gray ("I;16*", "I") is scaled from 0..65535 to 0..255 (PIL would clip it). Transparent
    pixels (RGBA, LA, PA, palette or tRNS transparency) are composited on white, the usual viewer
    background, so a transparent-background logo does not turn into a black square.
    """
    if img.mode.startswith("I"):
        gray = np.asarray(img, dtype=np.float64) / 257.0  # 65535 -> 255
        img = Image.fromarray(np.clip(np.round(gray), 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")  # palette, CMYK, YCbCr, 1-bit, ...
    return img.convert(mode)


def center_crop_arr(pil_image: Image.Image, image_size: int) -> Image.Image:
    """ADM's center crop (as used by DiT): BOX-halve while large, BICUBIC to size, then crop."""
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return Image.fromarray(arr[crop_y: crop_y + image_size, crop_x: crop_x + image_size])
