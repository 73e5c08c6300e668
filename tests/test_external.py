"""Distilled sets from elsewhere, read as ImageFolders of the dataset's class names."""

import pytest
import torch
from PIL import Image

from minimaxdd.data import DatasetError
from minimaxdd.external import external_ipc, load_external_set

CLASSES = ["n01440764", "n02102040"]


def write_set(root):
    """Class 0 red, class 1 blue, two images each in mixed sizes, modes and formats, plus entries to ignore."""
    images = [("a.png", Image.new("RGB", (30, 20), (255, 0, 0))),
              ("b.jpg", Image.new("RGB", (64, 48), (255, 0, 0))),
              ("c.png", Image.new("RGBA", (17, 17), (0, 0, 255, 255))),
              ("d.JPEG", Image.new("CMYK", (40, 70), (255, 255, 0, 0)))]  # blue in CMYK
    for k, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        for file, img in images[2 * k:2 * k + 2]:
            img.save(folder / file)
        (folder / ".DS_Store").write_bytes(b"junk")
        (folder / "notes.txt").write_text("ignored")
    (root / "README.md").write_text("a loose file in the root is ignored")
    return root


def test_a_mixed_tree_loads_in_class_order(tmp_path):
    root = write_set(tmp_path / "set")
    pack = load_external_set(root, CLASSES, resolution=8, channels=3, class_ids=[0, 222])
    assert pack.images.shape == (4, 3, 8, 8) and pack.images.dtype == torch.uint8
    assert pack.labels.tolist() == [0, 0, 1, 1]
    assert pack.class_names == CLASSES and pack.class_ids == [0, 222]
    red, blue = pack.images[:2].float().mean((0, 2, 3)), pack.images[2:].float().mean((0, 2, 3))
    assert red[0] > 240 and red[1:].max() < 15 and blue[2] > 240 and blue[:2].max() < 15
    gray = load_external_set(root, CLASSES, resolution=5, channels=1)
    assert gray.images.shape == (4, 1, 5, 5) and gray.class_ids == [0, 1]
    assert external_ipc(root, CLASSES) == 2
    assert load_external_set(root, CLASSES[::-1], resolution=8, channels=3, ipc=2).images[0, 2, 0, 0] > 240  # blue


def test_folder_errors_name_the_root_and_classes(tmp_path):
    with pytest.raises(DatasetError, match=r"external set: folder .*absent does not exist"):
        external_ipc(tmp_path / "absent", CLASSES)
    root = write_set(tmp_path / "set")
    with pytest.raises(DatasetError, match=r"external set .*set: no folder for class\(es\) 'n09999999'$"):
        load_external_set(root, CLASSES + ["n09999999"], resolution=8, channels=3)
    (root / "n03000134").mkdir()
    with pytest.raises(DatasetError, match=r"set: folder\(s\) 'n03000134' are no class of the dataset"):
        external_ipc(root, CLASSES)
    (root / "n03000134").rmdir()
    assert external_ipc(root, CLASSES) == 2


def test_numbered_folders_get_a_hint(tmp_path):
    for name in ("00000", "00001"):
        (tmp_path / name).mkdir()
    with pytest.raises(DatasetError, match=r"no folder for class\(es\) 'n01440764', 'n02102040' \(its folders are "
                                           r"numbered: rename them to the dataset's class names\)"):
        external_ipc(tmp_path, CLASSES)


def test_count_errors_name_the_class(tmp_path):
    root = write_set(tmp_path / "set")
    Image.new("RGB", (8, 8)).save(root / CLASSES[1] / "e.png")
    with pytest.raises(DatasetError, match=r"set: class 'n01440764' has 2 images, the others 3$"):
        external_ipc(root, CLASSES)
    with pytest.raises(DatasetError, match=r"class 'n02102040' has 3 images, ipc is 2$"):
        load_external_set(root, CLASSES, resolution=8, channels=3, ipc=2)
    for file in (root / CLASSES[0]).glob("*.*"):
        file.unlink()
    with pytest.raises(DatasetError, match=r"class folder\(s\) 'n01440764' hold no images"):
        external_ipc(root, CLASSES)


def test_an_unreadable_image_is_named(tmp_path):
    root = write_set(tmp_path / "set")
    (root / CLASSES[1] / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert external_ipc(root, CLASSES) == 2  # counting does not decode
    with pytest.raises(DatasetError, match=r"external set: unreadable image .*n02102040/c\.png \("):
        load_external_set(root, CLASSES, resolution=8, channels=3)
