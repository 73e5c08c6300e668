"""Distilled sets made elsewhere (SRe2L, RDED, IDC, MGD3's published sets ...), read as ImageFolders.

A set is root/<class name>/<images>, one folder per class of the dataset, named as the dataset's
class names (e.g. ImageNet wnids), each holding the same number of images (the set's IPC).
Images of any size, mode and format are decoded as the prepare stage decodes real images
(data._decode: to L or RGB, then ADM's centre crop and resize to `resolution`), so validation
treats them as it treats our own sets.

Decisions: a dataset class without a folder, and a folder that is no dataset class, are errors
(listing them): a set named in another scheme, e.g. RDED's class indices str(c).zfill(5)
(validation/utils.py:95 of LINs-lab/RDED), or a set of other classes, must not validate quietly on
a subset or shifted labels. Hidden entries ('.DS_Store', '._x.png'), loose files in the root and
files without an image extension are ignored, as in data.py. Errors are one-line DatasetErrors
naming the root, class or file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from minimaxdd.data import IMAGE_EXTENSIONS, BadImageError, DatasetError, RealPack, _decode

SHOWN = 5  # names listed in an error


def _names(items) -> str:
    items = list(items)
    shown = ", ".join(repr(str(i)) for i in items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and not path.is_dir()


def external_files(root, class_names: list[str], ipc: int | None = None) -> list[list[Path]]:
    """The sorted image files of each class, in `class_names` order, after every check that needs
    no decoding: the root exists, one folder per class and no other, the same image count in every
    class (and equal to `ipc` when given)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"external set: folder {root} does not exist")
    folders = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    missing = [name for name in class_names if name not in folders]
    if missing:
        hint = ""
        if folders and all(f.isdigit() for f in folders) and not all(n.isdigit() for n in class_names):
            hint = " (its folders are numbered: rename them to the dataset's class names)"
        raise DatasetError(f"external set {root}: no folder for class(es) {_names(missing)}{hint}")
    extra = sorted(folders - set(class_names))
    if extra:
        raise DatasetError(f"external set {root}: folder(s) {_names(extra)} are no class of the dataset")
    files = [sorted(p for p in (root / name).iterdir() if _is_image(p)) for name in class_names]
    counts = [len(f) for f in files]
    empty = [name for name, n in zip(class_names, counts) if n == 0]
    if empty:
        raise DatasetError(f"external set {root}: class folder(s) {_names(empty)} hold no images; "
                           f"image extensions: {' '.join(sorted(IMAGE_EXTENSIONS))}")
    # the most common count (of equally common ones the largest: a class short of images is the usual fault)
    expected = ipc if ipc is not None else max(counts, key=lambda n: (counts.count(n), n))
    odd = [(name, n) for name, n in zip(class_names, counts) if n != expected]
    if odd:
        name, n = odd[0]
        others = f"ipc is {ipc}" if ipc is not None else f"the others {expected}"
        more = f" (and {len(odd) - 1} more class(es) differ)" if len(odd) > 1 else ""
        raise DatasetError(f"external set {root}: class {name!r} has {n} images, {others}{more}")
    return files


def external_ipc(root, class_names: list[str]) -> int:
    """Images per class of the set at `root`, counting files without decoding (for checks at the
    start of the workflow); raises the errors of `external_files`."""
    return len(external_files(root, class_names)[0])


def load_external_set(root, class_names: list[str], *, resolution: int, channels: int, ipc: int | None = None,
                      class_ids: list[int] | None = None) -> RealPack:
    """Decode the set at `root` into a RealPack: uint8 N x channels x resolution x resolution,
    labels 0..K-1 in `class_names` order (class by class, files sorted by name), `class_ids`
    passed through (default 0..K-1)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if class_ids is not None and len(class_ids) != len(class_names):
        raise ValueError(f"class_ids has {len(class_ids)} entries but there are {len(class_names)} classes")
    files = external_files(root, class_names, ipc)
    mode = "L" if channels == 1 else "RGB"
    images = []
    for paths in files:
        for path in paths:
            try:
                images.append(_decode(path, mode, resolution))
            except BadImageError as error:
                raise DatasetError(f"external set: unreadable image {path} ({error.reason})") from None
    x = torch.from_numpy(np.stack(images))
    x = x.unsqueeze(1) if mode == "L" else x.permute(0, 3, 1, 2).contiguous()
    labels = torch.arange(len(files)).repeat_interleave(len(files[0]))
    ids = list(range(len(class_names))) if class_ids is None else [int(i) for i in class_ids]
    return RealPack(x, labels, list(class_names), ids)
