"""Real data: turn the dataset the config describes into cached uint8 "real packs".

A pack holds N x C x H x W uint8 images at the configured resolution and channel count, labels
0..K-1 indexing `class_names`, and `class_ids`, each class's id in the pretrained generator's label
space. Every later stage reads packs, never the raw files. Three kinds of input are supported:

- digits:      scikit-learn's bundled 8x8 digits, with a fixed stratified train/test split.
- imagefolder: root/<train_dir|test_dir>/<class>/<image>, decoded with PIL and ADM's center crop.
- idx:         MNIST-format IDX files (optionally gzipped), parsed here with numpy.

Bad input fails early with a one-line DatasetError naming the config key or the file.
"""

from __future__ import annotations

import gzip
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

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


def load_split(dataset: dict, split: str, per_class: int | None = None) -> RealPack:
    """Decode one split ("train" or "test") into a RealPack; `per_class`: only the first that many
    images of each class (a quick look, e.g. the soft-label teacher's check)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    ds = dataset
    names, ids = resolve_classes(ds)
    res, channels = ds["resolution"], ds["channels"]
    if ds["kind"] == "digits":
        x, y = _digits_split(ds, split)
        images = _resize_gray(x.reshape(-1, 8, 8) * (255.0 / 16.0), res, channels)  # digits are 0..16
    elif ds["kind"] == "imagefolder":
        images, y = _load_imagefolder(ds, names, split, per_class)
    else:
        y = _idx_labels(ds, names, split)
        images_path = _idx_path(ds, IDX_FILES[split][0])
        x = _read_idx(images_path, ndim=3)
        if len(x) != len(y):
            raise DatasetError(f"{images_path} holds {len(x)} images but its label file holds {len(y)} labels")
        images = _resize_gray(x, res, channels)
    y = torch.as_tensor(y, dtype=torch.int64)
    if per_class is not None:
        keep = torch.cat([torch.nonzero(y == k).flatten()[:per_class] for k in range(len(names))])
        images, y = images[keep], y[keep]
    return RealPack(images, y, names, ids)


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
        names = sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not names:
            raise DatasetError(f"dataset.train_dir: no class folders in {train}")
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
    if ds["root"] is None:
        raise DatasetError(f"dataset.root must be set for kind {ds['kind']!r}")
    root = Path(ds["root"])
    if not root.is_dir():
        raise DatasetError(f"dataset.root: folder {root} does not exist")
    return root


def _split_dir(ds: dict, split: str) -> Path:
    key = "train_dir" if split == "train" else "test_dir"
    path = _root(ds) / ds[key]
    if not path.is_dir():
        raise DatasetError(f"dataset.{key}: folder {path} does not exist")
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
            raise DatasetError(f"class {name!r} of dataset.classes has no folder {folder}")
        images, others = [], []
        for p in sorted(folder.iterdir()):
            is_image = p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and not p.is_dir()
            (images if is_image else others).append(p)
        if not images:
            ignored_entries = "1 other entry" if len(others) == 1 else f"{len(others)} other entries"
            hint = f" ({ignored_entries} ignored, e.g. {others[0].name!r})" if others else ""
            raise DatasetError(f"class folder {folder} holds no images{hint}; "
                               f"image extensions: {' '.join(sorted(IMAGE_EXTENSIONS))}")
        if ignored is not None:
            ignored.extend(others)
        files.append(images)
    return files


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

def _load_imagefolder(ds: dict, names: list[str], split: str,
                      per_class: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Decode every image of a split (the first `per_class` of each class, when given). Printed
    lines (the prepare job's log) list every ignored non-image entry and every skipped unreadable
    image with its reason."""
    mode = "L" if ds["channels"] == 1 else "RGB"
    ignored: list[Path] = []
    files = _imagefolder_files(ds, names, split, ignored)  # every folder problem surfaces before decoding
    files = [paths[:per_class] for paths in files]
    for path in ignored[:SHOWN_IGNORED]:
        print(f"{split}: ignored {path} (hidden, a folder, or no image extension)")
    if len(ignored) > SHOWN_IGNORED:
        print(f"{split}: ignored {len(ignored) - SHOWN_IGNORED} more entries (hidden, folders, or no image extension)")
    items = [(path, k) for k, paths in enumerate(files) for path in paths]
    images, labels, bad = [], [], []
    for path, k in tqdm(items, desc=f"decode {split}", unit="img", disable=len(items) < 500):
        try:
            images.append(_decode(path, mode, ds["resolution"]))
            labels.append(k)
        except BadImageError as error:
            if not ds["skip_bad_images"]:
                raise
            print(f"{split}: skipped {error.path}: {error.reason}")
            bad.append(path)
    if bad:
        shown = ", ".join(str(p) for p in bad[:20]) + (f" and {len(bad) - 20} more" if len(bad) > 20 else "")
        warnings.warn(f"skipped {len(bad)} unreadable image(s): {shown}")
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(names))
        empty = [k for k in range(len(names)) if counts[k] == 0]
        if empty:
            raise DatasetError(f"class folder {files[empty[0]][0].parent} holds no readable images "
                               "(every one was skipped: dataset.skip_bad_images)")
        print(f"{split}: {len(bad)} unreadable image(s) skipped; images per class now: "
              + ", ".join(f"{name}={int(n)}" for name, n in zip(names, counts)))
    x = torch.from_numpy(np.stack(images))
    x = x.unsqueeze(1) if mode == "L" else x.permute(0, 3, 1, 2).contiguous()
    return x, np.asarray(labels, dtype=np.int64)


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
