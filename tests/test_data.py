import gzip
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from minimaxdd.data import DatasetError, RealPack, class_image_counts, load_split, resolve_classes
from minimaxdd import data
from minimaxdd.io import load_torch

from conftest import make_tree


def make_config(**overrides):
    ds = {"name": "t", "kind": "digits", "root": None, "train_dir": "train", "test_dir": "val",
          "classes": None, "class_ids": None, "resolution": 16, "channels": 1, "test_fraction": 0.2,
          "split_seed": 0, "skip_bad_images": False}
    ds.update(overrides)
    return ds


# ---------------------------------------------------------------------------------------------- digits

def test_digits_split_shapes_and_counts():
    ds = make_config()
    train, test = load_split(ds, "train"), load_split(ds, "test")
    assert train.images.shape == (1437, 1, 16, 16) and test.images.shape == (360, 1, 16, 16)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert set(train.labels.tolist()) == set(range(10)) and train.class_names == [str(i) for i in range(10)]
    assert train.class_ids == list(range(10))
    assert train.images.max() > 200  # 0..16 was scaled to 0..255
    # Stratified: every class keeps about test_fraction of its images in the test split.
    counts = class_image_counts(ds)
    assert counts == {str(k): int((train.labels == k).sum()) for k in range(10)}
    for k in range(10):
        assert abs(int((test.labels == k).sum()) - 0.2 * (counts[str(k)] + int((test.labels == k).sum()))) <= 1
    assert len(train.by_class(3)) == counts["3"]


def test_digits_reproducible_and_rgb():
    a = load_split(make_config(resolution=12, channels=3, split_seed=1), "test")
    b = load_split(make_config(resolution=12, channels=3, split_seed=1), "test")
    c = load_split(make_config(resolution=12, channels=3, split_seed=2), "test")
    assert a.images.shape == (360, 3, 12, 12)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert torch.equal(a.images[:, 0], a.images[:, 1]) and torch.equal(a.images[:, 0], a.images[:, 2])


# ---------------------------------------------------------------------------------------------- imagefolder

def solid(mode, size, value):
    return Image.new(mode, size, value)


def loader_tree(root):
    """Three classes of 3, 2 and 1 images of several sizes in each split, with stray files."""
    return make_tree(root, train=(3, 2, 1), val=(3, 2, 1), classes=("cat", "dog", "fish"), width=40, height=30,
                     strays=True)


def test_imagefolder_subset_and_class_ids(tmp_path):
    ds = make_config(kind="imagefolder", root=str(loader_tree(tmp_path)), classes=["dog", "cat"],
                     class_ids=[207, 281], resolution=8, channels=3)
    assert resolve_classes(ds) == (["dog", "cat"], [207, 281])
    assert class_image_counts(ds) == {"dog": 2, "cat": 3}
    pack = load_split(ds, "train")
    assert pack.images.shape == (5, 3, 8, 8) and pack.images.dtype == torch.uint8
    assert pack.labels.tolist() == [0, 0, 1, 1, 1]
    # dog is class index 1 in the tree: image i is (30, 100, 200 - 10i).
    assert pack.by_class(0)[:, :, 4, 4].tolist() == [[30, 100, 200], [30, 100, 190]]
    assert pack.by_class(1)[:, :, 4, 4].tolist() == [[0, 100, 200], [0, 100, 190], [0, 100, 180]]


def test_imagefolder_default_classes_and_class_file(tmp_path):
    root = loader_tree(tmp_path / "data")
    assert resolve_classes(make_config(kind="imagefolder", root=str(root)))[0] == ["cat", "dog", "fish"]
    class_file = tmp_path / "classes.txt"
    class_file.write_text("# my classes\nfish\n\ncat  # felines\n")
    ds = make_config(kind="imagefolder", root=str(root), classes=str(class_file))
    assert resolve_classes(ds) == (["fish", "cat"], [0, 1])
    pack = load_split(ds, "test")
    assert pack.images.shape == (4, 1, 16, 16) and pack.labels.tolist() == [0, 1, 1, 1]


def save_image(folder, name, img, **kwargs):
    folder.mkdir(parents=True, exist_ok=True)
    img.save(folder / name, **kwargs)


def test_imagefolder_mixed_modes(tmp_path):
    # One class per mode, so a label tells which file an image came from.
    cases = {
        "gray": (solid("L", (20, 20), 100), "png", 100, (100, 100, 100)),
        "red": (solid("RGB", (20, 20), (255, 0, 0)), "png", 76, (255, 0, 0)),
        "clear_rgba": (solid("RGBA", (20, 20), (0, 0, 0, 0)), "png", 255, (255, 255, 255)),
        "white_rgba": (solid("RGBA", (20, 20), (255, 255, 255, 255)), "png", 255, (255, 255, 255)),
        "half_la": (solid("LA", (20, 20), (0, 128)), "png", 127, (127, 127, 127)),
        "palette": (solid("RGB", (20, 20), (0, 0, 255)).convert("P"), "gif", 29, (0, 0, 255)),
        "cmyk": (solid("CMYK", (20, 20), (0, 255, 255, 0)), "jpg", 76, (255, 0, 0)),
        "gray16": (Image.fromarray(np.full((20, 20), 65535, np.uint16)), "png", 255, (255, 255, 255)),
        "gray16_mid": (Image.fromarray(np.full((20, 20), 25700, np.uint16)), "tif", 100, (100, 100, 100)),
        "gray32": (Image.fromarray(np.full((20, 20), 65535, np.int32)), "tif", 255, (255, 255, 255)),
    }
    for name, (img, ext, _, _) in cases.items():
        save_image(tmp_path / "train" / name, f"x.{ext.upper()}", img)  # extensions are case-insensitive
    with Image.open(tmp_path / "train" / "gray16" / "x.PNG") as img:
        assert img.mode.startswith("I")  # really a 16-bit file
    names = list(cases)
    for channels in (1, 3):
        pack = load_split(make_config(kind="imagefolder", root=str(tmp_path), classes=names,
                                      channels=channels, resolution=8), "train")
        assert pack.images.shape == (len(cases), channels, 8, 8)
        for k, (_, _, gray, rgb) in enumerate(cases.values()):
            center = pack.by_class(k)[0, :, 4, 4].tolist()
            expected = [gray] if channels == 1 else list(rgb)
            tol = 6 if names[k] == "cmyk" else 1  # JPEG is lossy
            assert np.allclose(center, expected, atol=tol), (names[k], center, expected)


def test_imagefolder_center_crop_keeps_the_middle(tmp_path):
    # 64x32 image: left quarter black, middle half white, right quarter black -> crop is all white.
    arr = np.zeros((32, 64), np.uint8)
    arr[:, 16:48] = 255
    save_image(tmp_path / "train" / "a", "x.png", Image.fromarray(arr))
    pack = load_split(make_config(kind="imagefolder", root=str(tmp_path), resolution=8), "train")
    assert pack.images.shape == (1, 1, 8, 8) and pack.images.min() >= 250


# ---------------------------------------------------------------------------------------------- idx

def idx_bytes(arr, magic=None):
    magic = (0x0800 + arr.ndim) if magic is None else magic
    dims = np.asarray(arr.shape, dtype=">u4").tobytes()
    return magic.to_bytes(4, "big") + dims + arr.astype(np.uint8).tobytes()


def write_idx(root, n_train=20, n_test=10, gz_test=True, image_magic=None):
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n, gz in (("train", n_train, False), ("t10k", n_test, gz_test)):
        labels = np.arange(n) % 10
        images = np.repeat((labels * 20 + 10)[:, None, None], 28, 1).repeat(28, 2)  # constant per label
        for stem, arr, magic in ((f"{prefix}-images-idx3-ubyte", images, image_magic),
                                 (f"{prefix}-labels-idx1-ubyte", labels, None)):
            data = idx_bytes(arr, magic)
            if gz:
                (root / f"{stem}.gz").write_bytes(gzip.compress(data))
            else:
                (root / stem).write_bytes(data)
    return root


def test_idx_plain_and_gz(tmp_path):
    ds = make_config(kind="idx", root=str(write_idx(tmp_path)), resolution=8, channels=3)
    assert class_image_counts(ds) == {str(k): 2 for k in range(10)}
    train, test = load_split(ds, "train"), load_split(ds, "test")  # train plain, test gzipped
    assert train.images.shape == (20, 3, 8, 8) and test.images.shape == (10, 3, 8, 8)
    assert test.labels.tolist() == list(range(10))
    assert torch.all(test.images == (test.labels * 20 + 10)[:, None, None, None].to(torch.uint8))


def test_idx_class_names(tmp_path):
    root = write_idx(tmp_path)
    names = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
    assert load_split(make_config(kind="idx", root=str(root), classes=names), "test").class_names == names
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.*out of range.*dataset.classes"):
        load_split(make_config(kind="idx", root=str(root), classes=names[:3]), "train")


def test_idx_errors(tmp_path):
    root = write_idx(tmp_path / "bad", image_magic=0x0801)
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte: bad IDX magic"):
        load_split(make_config(kind="idx", root=str(root)), "train")
    root = write_idx(tmp_path / "mismatch")
    (root / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(19) % 10))
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte holds 20 images but its label file holds 19"):
        load_split(make_config(kind="idx", root=str(root)), "train")
    root = write_idx(tmp_path / "short")
    (root / "train-images-idx3-ubyte").write_bytes((root / "train-images-idx3-ubyte").read_bytes()[:-5])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte: header says"):
        load_split(make_config(kind="idx", root=str(root)), "train")
    (root / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match="dataset.root: neither .*train-labels-idx1-ubyte"):
        class_image_counts(make_config(kind="idx", root=str(root)))


# ---------------------------------------------------------------------------------------------- failures

def test_config_errors(tmp_path):
    root = loader_tree(tmp_path / "data")
    with pytest.raises(DatasetError, match="dataset.root: folder .*nowhere"):
        load_split(make_config(kind="imagefolder", root=str(tmp_path / "nowhere")), "train")
    with pytest.raises(DatasetError, match="dataset.test_dir: folder .*test"):
        load_split(make_config(kind="imagefolder", root=str(root), test_dir="test"), "test")
    with pytest.raises(DatasetError, match="class 'bird' of dataset.classes has no folder .*bird"):
        class_image_counts(make_config(kind="imagefolder", root=str(root), classes=["cat", "bird"]))
    with pytest.raises(DatasetError, match="dataset.classes: class list file"):
        resolve_classes(make_config(kind="imagefolder", root=str(root), classes=str(tmp_path / "none.txt")))
    with pytest.raises(DatasetError, match="dataset.class_ids has 2 entries but there are 3 classes"):
        resolve_classes(make_config(kind="imagefolder", root=str(root), class_ids=[1, 2]))
    with pytest.raises(DatasetError, match="dataset.kind"):
        resolve_classes(make_config(kind="parquet"))


def test_missing_test_class_fails_at_count_time(tmp_path):
    root = loader_tree(tmp_path)
    for f in (root / "val" / "fish").iterdir():
        f.unlink()
    (root / "val" / "fish").rmdir()
    # no dataset.classes in this config: the class is a folder of the training split
    with pytest.raises(DatasetError, match=r"'fish' \(a folder of dataset\.train_dir\) has no folder .*val/fish"):
        class_image_counts(make_config(kind="imagefolder", root=str(root)))


def test_empty_class_folder(tmp_path):
    root = loader_tree(tmp_path)
    for f in (root / "train" / "fish").glob("*.png"):
        f.unlink()
    with pytest.raises(DatasetError, match="class folder .*train/fish holds no images"):
        load_split(make_config(kind="imagefolder", root=str(root)), "train")


def test_skip_leaving_a_class_empty_fails(tmp_path):
    root = loader_tree(tmp_path)
    (root / "train" / "fish" / "0.png").write_bytes(b"junk")
    with warnings.catch_warnings(), pytest.raises(DatasetError, match="train/fish holds no readable images"):
        warnings.simplefilter("ignore")
        load_split(make_config(kind="imagefolder", root=str(root), skip_bad_images=True), "train")


# ---------------------------------------------------------------------------------------------- save/load

def test_save_load_round_trip(tmp_path):
    pack = load_split(make_config(kind="idx", root=str(write_idx(tmp_path / "idx")), resolution=6), "train")
    pack.save(tmp_path / "packs" / "train.pt")
    raw = load_torch(tmp_path / "packs" / "train.pt")
    assert isinstance(raw, dict) and set(raw) == {"images", "labels", "class_names", "class_ids"}
    back = RealPack.load(tmp_path / "packs" / "train.pt")
    assert torch.equal(back.images, pack.images) and torch.equal(back.labels, pack.labels)
    assert back.class_names == pack.class_names and back.class_ids == pack.class_ids
    assert not list((tmp_path / "packs").glob(".*.tmp"))  # atomic write left no temp file


def test_figures_label_an_imagenet_wnid_by_its_common_name():
    from conftest import REPO

    lists = REPO / "data/imagenet/imagenet1k-wnids.txt", REPO / "data/imagenet/imagenet1k-names.txt"
    assert data.readable_class_names(["n01440764", "n02096294", "cat"], *lists) == ["tench", "Australian terrier", "cat"]
