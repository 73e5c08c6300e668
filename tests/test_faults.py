"""Faults (issue 6): each bad input ends in a one-line error naming the config key or the file, with a
non-zero exit before expensive work, and earlier results untouched. docs/troubleshooting.md lists
every message tested here."""

import errno
import json
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from minimaxdd import checks, data, io, plan, stages
from minimaxdd.checkpoints import CheckpointError, save_dit
from minimaxdd.data import IMAGE_EXTENSIONS, DatasetError, class_image_counts, load_split
from minimaxdd.dit import DiT, DiTConfig
from minimaxdd.pretrained import inspect_dit, load_pretrained_dit
from minimaxdd.vae import build_tiny_vae, save_vae

from conftest import REPO, make_tree, snakemake, write_config

SCHEMA = checks.SCHEMA

TINY_MODELS = {
    "tiny_vae": {"block_channels": [8, 8], "latent_channels": 2, "steps": 10, "batch_size": 8},
    "tiny_dit": {"hidden_size": 16, "depth": 2, "num_heads": 2, "patch_size": 2, "steps": 10, "batch_size": 8},
}


def one_line(message: str) -> str:
    assert message and "\n" not in message, message
    return message


def dataset(root, **overrides) -> dict:
    """An imagefolder dataset section with the schema's defaults filled in."""
    section = {"kind": "imagefolder", "root": None if root is None else str(root), "resolution": 8, "channels": 1,
               **overrides}
    return plan.load_config({"experiment": "faults", "dataset": section})["dataset"]


def full_config(**sections) -> dict:
    """A config as the Snakefile sees it: schema-checked, defaults filled in; analysis.k 1, as the
    trees here hold sets of 2 images."""
    return plan.load_config({"experiment": "faults", "device": "cpu", "methods": ["random"], "ipcs": [1],
                             "base_models": json.loads(json.dumps(TINY_MODELS)), "analysis": {"k": 1}, **sections})


def check_fails(match: str, **sections) -> str:
    with pytest.raises(checks.ConfigError) as error:
        checks.check(full_config(**sections))
    message = one_line(str(error.value))
    assert re.search(match, message), message
    return message


# ---------------------------------------------------------------------------------------------- the data tree

def test_missing_root_and_folders(tmp_path):
    check_fails(r"^dataset\.root: folder .*nowhere does not exist$", dataset=dataset(tmp_path / "nowhere"))
    check_fails(r"^dataset\.root must be set for kind 'imagefolder'$", dataset=dataset(None))
    root = make_tree(tmp_path / "data")
    check_fails(r"^dataset\.train_dir: folder .*data/training does not exist$",
                dataset=dataset(root, train_dir="training"))
    check_fails(r"^class 'bird' of dataset\.classes has no folder .*data/val/bird$",  # the test split is checked too
                dataset=dataset(root, classes=["cat", "bird"]))
    (root / "train" / "cow").mkdir()  # a class of the training folder, with no test folder and no dataset.classes
    check_fails(r"^class 'cow' \(a folder of dataset\.train_dir\) has no folder .*data/val/cow$", dataset=dataset(root))
    check_fails(r"^dataset\.classes: '\.\./data' is not a folder name",
                dataset=dataset(root, classes=["cat", "../data"]))


def test_class_with_no_images(tmp_path):
    root = make_tree(tmp_path)
    for f in (root / "train" / "dog").iterdir():
        f.unlink()
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    check_fails(r"^class folder .*train/dog holds no images \(1 other entry ignored, e\.g\. 'notes\.txt'\); "
                r"image extensions: .*\.png", dataset=dataset(root))


def test_class_with_fewer_images_than_the_ipc(tmp_path):
    root = make_tree(tmp_path, train=3)
    (root / "train" / "dog" / "2.png").unlink()  # dog keeps 2 images
    check_fails(r"^ipcs: IPC 3 exceeds the 2 training images of class 'dog', so methods random, herding cannot "
                r"pick that many real images", dataset=dataset(root), methods=["random", "herding", "dit"], ipcs=[1, 3])
    # a generated method makes as many images as asked: no real image count limits it
    checks.check(full_config(dataset=dataset(root), methods=["dit"], ipcs=[1, 3]))


def test_ipc_zero_negative_and_unknown_names():
    for ipcs, key in (([0], r"ipcs\[0\]: 0 is less than the minimum of 1"),
                      ([1, -2], r"ipcs\[1\]: -2 is less than the minimum of 1")):
        with pytest.raises(checks.ConfigError, match=f"^{key}"):
            full_config(ipcs=ipcs)
    with pytest.raises(checks.ConfigError, match=r"^validate\.archs\[0\]: 'vgg' is not one of \['convnet'"):
        full_config(validate={"archs": ["vgg"]})
    with pytest.raises(checks.ConfigError, match=r"^studies\[0\]\.archs\[0\]: 'vit' is not one of"):
        full_config(studies=[{"name": "s", "parameter": "steps", "values": [2], "archs": ["vit"]}])
    with pytest.raises(checks.ConfigError, match=r"^dataset\.skip_bad_image: unknown key 'skip_bad_image' under "
                                                 r"dataset; known: .*skip_bad_images"):
        full_config(dataset={"skip_bad_image": True})
    with pytest.raises(checks.ConfigError, match=r"^experiment: required key is missing"):
        plan.load_config({"methods": ["random"]})
    message = check_fails(r"^methods: unknown method 'minmax'; did you mean 'minimax'\? known: dit, difffit, minimax",
                          methods=["random", "minmax"])
    assert "variants" in message
    check_fails(r"^studies\[0\]\.method: unknown method 'magic'",
                studies=[{"name": "s", "parameter": "steps", "values": [2], "method": "magic"}])
    check_fails(r"^expansion\.methods: 'random' is not a generated method", expansion={"methods": ["random"], "ipcs": [1]})


# ---------------------------------------------------------------------------------------------- image contents

def png48(rgb16, size=4) -> bytes:
    """A 16-bit-per-channel RGB PNG (PIL cannot write one)."""
    raw = b"".join(b"\0" + struct.pack(">HHH", *rgb16) * size for _ in range(size))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_corrupt_and_truncated_images_name_the_file(tmp_path, capsys):
    root = make_tree(tmp_path, train=4)
    png = (root / "train" / "cat" / "0.png").read_bytes()
    (root / "train" / "cat" / "1.png").write_bytes(png[: len(png) // 2])  # truncated PNG
    Image.new("RGB", (64, 64), (1, 2, 3)).save(root / "train" / "dog" / "big.jpg", quality=90)
    jpeg = (root / "train" / "dog" / "big.jpg").read_bytes()
    (root / "train" / "dog" / "big.jpg").write_bytes(jpeg[: len(jpeg) * 2 // 3])  # truncated JPEG
    (root / "train" / "dog" / "fake.jpeg").write_text("<html>404 Not Found</html>")  # a failed download
    (root / "train" / "dog" / "gone.png").symlink_to(root / "nowhere.png")  # a broken link
    ds = dataset(root)
    assert class_image_counts(ds) == {"cat": 4, "dog": 7}  # counting decodes nothing
    with pytest.raises(DatasetError) as error:
        load_split(ds, "train")
    assert re.fullmatch(r".*train/cat/1\.png: unreadable image \(.+\); set dataset\.skip_bad_images: true to skip "
                        r"such files", one_line(str(error.value)))
    for bad in ("big.jpg", "fake.jpeg", "gone.png"):  # each alone also stops the load, naming itself
        ds_one = dataset(root, classes=["dog"])
        with pytest.raises(DatasetError, match=rf"train/dog/{bad}: unreadable image"):
            load_split(ds_one, "train")
        (root / "train" / "dog" / bad).rename(root / f"aside-{bad}")
    for bad in ("big.jpg", "fake.jpeg", "gone.png"):
        (root / f"aside-{bad}").rename(root / "train" / "dog" / bad)

    capsys.readouterr()
    with pytest.warns(UserWarning, match=r"skipped 4 unreadable image\(s\): .*cat/1\.png"):
        pack = load_split({**ds, "skip_bad_images": True}, "train")
    assert pack.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    log = capsys.readouterr().out  # what the prepare job's log holds
    for bad in ("cat/1.png", "dog/big.jpg", "dog/fake.jpeg", "dog/gone.png"):
        assert re.search(rf"^train: skipped .*{re.escape(bad)}: .+$", log, re.MULTILINE), (bad, log)
    assert "train: 4 unreadable image(s) skipped; images per class now: cat=3, dog=4" in log


def test_non_image_files_are_ignored_and_listed(tmp_path, capsys):
    root = make_tree(tmp_path, train=2)
    folder = root / "train" / "cat"
    (folder / "notes.txt").write_text("not an image")
    (folder / "README").write_text("no extension")
    (folder / ".DS_Store").write_bytes(b"\0\1")
    (folder / "._0.png").write_bytes(b"\0\5\0\7")  # macOS resource fork: hidden, never decoded
    (folder / "thumbs").mkdir()
    Image.new("RGB", (8, 8)).save(folder / "thumbs" / "t.png")  # sub-folders are not searched
    Image.new("RGB", (8, 8), (255, 255, 255)).save(folder / "UPPER.PNG")  # extensions are case-insensitive
    assert ".png" in IMAGE_EXTENSIONS
    ds = dataset(root)
    assert class_image_counts(ds) == {"cat": 3, "dog": 2}
    capsys.readouterr()
    pack = load_split(ds, "train")
    assert pack.labels.tolist() == [0, 0, 0, 1, 1]
    log = capsys.readouterr().out
    for name in ("notes.txt", "README", ".DS_Store", "._0.png", "thumbs"):
        assert re.search(rf"^train: ignored .*cat/{re.escape(name)} ", log, re.MULTILINE), (name, log)


def test_mixed_modes_convert_to_the_configured_channels(tmp_path):
    white, red = (255, 255, 255), (255, 0, 0)
    cases = {  # class: (image, file name, expected gray, expected RGB)
        "gray16_white": (Image.fromarray(np.full((12, 12), 65535, np.uint16)), "x.png", 255, white),
        "gray16_mid": (Image.fromarray(np.full((12, 12), 32896, np.uint16)), "x.png", 128, (128, 128, 128)),
        "rgb48": (None, "x.png", 151, (255, 128, 0)),
        "rgba_clear": (Image.new("RGBA", (12, 12), (0, 0, 0, 0)), "x.png", 255, white),  # composited on white
        "rgba_half_red": (Image.new("RGBA", (12, 12), (255, 0, 0, 128)), "x.png", 166, (255, 127, 127)),
        "rgba_opaque_red": (Image.new("RGBA", (12, 12), (255, 0, 0, 255)), "x.png", 76, red),
        "cmyk_red": (Image.new("CMYK", (12, 12), (0, 255, 255, 0)), "x.jpg", 76, red),
        "cmyk_tiff_black": (Image.new("CMYK", (12, 12), (0, 0, 0, 255)), "x.tif", 0, (0, 0, 0)),
        "gray": (Image.new("L", (12, 12), 100), "x.png", 100, (100, 100, 100)),
        "bilevel": (Image.new("1", (12, 12), 1), "x.bmp", 255, white),
        "palette_transparent": (Image.new("P", (12, 12), 0), "x.gif", 255, white),
    }
    for name, (img, file, _, _) in cases.items():
        folder = tmp_path / "train" / name
        folder.mkdir(parents=True)
        if name == "rgb48":
            (folder / file).write_bytes(png48((65535, 32896, 0)))
        elif name == "palette_transparent":
            img.save(folder / file, transparency=0)
        else:
            img.save(folder / file)
    with Image.open(tmp_path / "train" / "gray16_white" / "x.png") as img:
        assert img.mode.startswith("I;16")  # really 16-bit files
    with Image.open(tmp_path / "train" / "cmyk_tiff_black" / "x.tif") as img:
        assert img.mode == "CMYK"
    names = list(cases)
    for channels in (1, 3):
        pack = load_split(dataset(tmp_path, classes=names, channels=channels), "train")
        assert pack.images.shape == (len(names), channels, 8, 8) and pack.images.dtype == torch.uint8
        for k, (name, (_, _, gray, rgb)) in enumerate(cases.items()):
            got = pack.by_class(k)[0, :, 4, 4].tolist()
            expected = [gray] if channels == 1 else list(rgb)
            assert np.allclose(got, expected, atol=6 if "jpg" in cases[name][1] else 1), (name, got, expected)


# ---------------------------------------------------------------------------------------------- pretrained models

TEN_CLASS_DIT = DiTConfig(input_size=4, patch_size=2, in_channels=2, hidden_size=16, depth=2, num_heads=2, num_classes=10)


def dit_state(config=TEN_CLASS_DIT):
    return {k: v for k, v in DiT(config).state_dict().items() if "gamma" not in k}


def test_pretrained_dit_faults(tmp_path):
    data = make_tree(tmp_path / "data")
    ds = dataset(data)  # 8 px, 1 channel; the tiny VAE (8, 8) makes 2-channel 4x4 latents
    good = tmp_path / "good.pt"
    torch.save(dit_state(), good)
    for methods in (["dit"], ["random", "minimax"]):  # a fitting DiT passes
        checks.check(full_config(dataset=ds, base_models={**TINY_MODELS, "dit": str(good), "dit_num_heads": 2},
                                 methods=methods, finetune={"batch_size": 2}))

    def fails(path, match, **dataset_changes):
        return check_fails(match, dataset={**ds, **dataset_changes}, methods=["dit"],
                           base_models={**TINY_MODELS, "dit": str(path), "dit_num_heads": 2})

    text = tmp_path / "DiT-XL-2-256x256.pt"
    text.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\n")  # an LFS pointer, say
    fails(text, r"^base_models\.dit: .*DiT-XL-2-256x256\.pt is not a readable torch checkpoint "
                r"\(it is a text file starting 'version https://git-lfs")
    (tmp_path / "empty.pt").touch()
    fails(tmp_path / "empty.pt",
          r"^base_models\.dit: .*empty\.pt is not a readable torch checkpoint \(it is an empty file\)$")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:5000])
    fails(truncated, r"^base_models\.dit: .*truncated\.pt is not a readable torch checkpoint \(it is a truncated zip "
                     r"archive of 5000 bytes: a download or copy cut short\?\)$")
    torch.save(torch.nn.Conv2d(3, 8, 3).state_dict(), tmp_path / "resnet.pt")
    fails(tmp_path / "resnet.pt", r"^base_models\.dit: .*resnet\.pt is not a DiT checkpoint: it lacks \['x_embedder")
    state = dit_state()
    state["blocks.1.mlp.fc2.weight"] = torch.zeros(16, 32)
    del state["blocks.0.attn.qkv.bias"]
    torch.save(state, tmp_path / "edited.pt")
    fails(tmp_path / "edited.pt", r"^base_models\.dit: .*edited\.pt does not fit a DiT with hidden size 16, depth 2.*: "
                                  r"missing \['blocks\.0\.attn\.qkv\.bias'\], shape mismatch "
                                  r"\['blocks\.1\.mlp\.fc2\.weight: \(16, 32\) != \(16, 64\)'\]$")
    # weights of another architecture than the data and the VAE call for
    torch.save(dit_state(DiTConfig(**{**TEN_CLASS_DIT.to_dict(), "input_size": 8})), tmp_path / "256px.pt")
    fails(tmp_path / "256px.pt", r"^base_models\.dit: .*256px\.pt takes 8x8 latents \(16 px images with the tiny VAE "
                                 r"\(base_models\.tiny_vae\)\) but dataset\.resolution 8 gives 4x4$")
    torch.save(dit_state(DiTConfig(**{**TEN_CLASS_DIT.to_dict(), "in_channels": 4})), tmp_path / "sd.pt")
    fails(tmp_path / "sd.pt", r"^base_models\.dit: .*sd\.pt takes 4-channel latents but the tiny VAE "
                              r"\(base_models\.tiny_vae\) makes 2-channel ones$")
    fails(good, r"^dataset\.class_ids: class 'dog' has id 12, out of range for the 10 classes of base_models\.dit",
          class_ids=[3, 12])
    # the same file fails the same way when a job loads it (a later config change, or no workflow)
    with pytest.raises(CheckpointError, match=r"DiT-XL-2-256x256\.pt is not a readable torch checkpoint"):
        load_pretrained_dit(text)
    # another experiment's base DiT (our own folder format) is a valid base model
    save_dit(DiT(TEN_CLASS_DIT), tmp_path / "other_experiment" / "base" / "dit")
    assert inspect_dit(tmp_path / "other_experiment" / "base" / "dit") == TEN_CLASS_DIT


def test_pretrained_vae_faults(tmp_path):
    data = make_tree(tmp_path / "data")
    ds = dataset(data)
    vae_dir = tmp_path / "vae"
    save_vae(build_tiny_vae(channels=1, resolution=8, block_channels=[8, 8], latent_channels=2), vae_dir)
    checks.check(full_config(dataset=ds, base_models={**TINY_MODELS, "vae": str(vae_dir)}))

    def fails(path, match, **dataset_changes):
        return check_fails(match, dataset={**ds, **dataset_changes}, base_models={**TINY_MODELS, "vae": str(path)})

    (tmp_path / "vae.txt").write_text("sd-vae-ft-mse\n")
    fails(tmp_path / "vae.txt", r"^base_models\.vae: .*vae\.txt is a file; expected a diffusers AutoencoderKL folder")
    fails(tmp_path / "absent", r"^base_models\.vae: .*absent does not exist$")
    fails(vae_dir, r"^base_models\.vae: .*vae encodes 1-channel images but dataset\.channels is 3$", channels=3)
    config = json.loads((vae_dir / "config.json").read_text())
    (vae_dir / "config.json").write_text(json.dumps(config | {"latent_channels": 4}))
    fails(vae_dir, r"^base_models\.vae: .*diffusion_pytorch_model\.safetensors does not fit .*config\.json: "
                   r"shape mismatch \['encoder\.conv_out\.weight: \(4, 8, 3, 3\) != \(8, 8, 3, 3\)'")
    (vae_dir / "config.json").write_text(json.dumps(config | {"_class_name": "UNet2DModel"}))
    fails(vae_dir, r"^base_models\.vae: .*config\.json has _class_name 'UNet2DModel', not 'AutoencoderKL'")
    (vae_dir / "config.json").write_text("{not json")
    fails(vae_dir, r"^base_models\.vae: .*config\.json is not valid JSON")
    (vae_dir / "config.json").write_text(json.dumps(config))
    weights = vae_dir / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    fails(vae_dir, r"^base_models\.vae: .*diffusion_pytorch_model\.safetensors is not a readable safetensors file")
    weights.unlink()
    fails(vae_dir, r"^base_models\.vae: .*vae: no weights file")


# ---------------------------------------------------------------------------------------------- a full disk

def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def state_of(folder: Path) -> dict:
    """Every entry under a folder (hidden temp files included) with its bytes and mtime."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def test_disk_full_leaves_the_earlier_file_and_no_temp(tmp_path, monkeypatch):
    out = tmp_path / "results"
    io.save_torch({"version": 1}, out / "pack.pt")
    io.save_json({"version": 1}, out / "record.json")
    io.save_text("version 1\n", out / "table.md")
    with io.atomic_dir(out / "images") as tmp:
        (tmp / "a.png").write_bytes(b"first")
    os.utime(out / "pack.pt", ns=(1, 1))  # mtimes an accidental rewrite could not keep
    before = state_of(out)

    def save_half_then_fail(obj, f, *args, **kwargs):  # half a file on disk, then the disk is full
        f.write(b"half")
        enospc()

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError) as error:
        io.save_torch({"version": 2, "big": torch.zeros(1000)}, out / "pack.pt")
    assert error.value.errno == errno.ENOSPC
    monkeypatch.undo()

    real_write = Path.write_text

    def write_half_then_fail(self, text, *args, **kwargs):
        real_write(self, text[: len(text) // 2], *args, **kwargs)
        enospc()

    monkeypatch.setattr(Path, "write_text", write_half_then_fail)
    for save, path in ((io.save_json, "record.json"), (io.save_text, "table.md")):
        with pytest.raises(OSError, match="No space left"):
            save({"version": 2} if path.endswith(".json") else "version 2\n", out / path)
    monkeypatch.undo()

    with pytest.raises(OSError, match="No space left"), io.atomic_dir(out / "images") as tmp:
        (tmp / "a.png").write_bytes(b"second")
        (tmp / "b.png").write_bytes(b"half")
        enospc()
    with pytest.raises(OSError, match="No space left"), io.atomic_dir(out / "new_set") as tmp:
        (tmp / "a.png").write_bytes(b"half")
        enospc()
    assert state_of(out) == before  # nothing partial, no temp file or folder, earlier versions intact


# ---------------------------------------------------------------------------------------------- the workflow

def test_no_rule_runs_a_shell_command():
    """Config values reach jobs as Python objects (script:), never through a shell command line."""
    rules = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    offenders = [f"{path.name}:{n}" for path in rules for n, line in enumerate(path.read_text().splitlines(), 1)
                 if re.match(r"\s*(shell|run)\s*:", line)]
    assert not offenders, offenders
    assert any("script:" in path.read_text() for path in rules)


CLASSES = ["chien de berger", "chat d'Égypte", "oiseau-mouche 蜂鸟"]


@pytest.fixture(scope="module")
def unicode_run(tmp_path_factory):
    """A tiny imagefolder dataset and a workdir whose paths hold spaces, quotes and non-ASCII, run end to end."""
    base = tmp_path_factory.mktemp("faults")
    root = base / "données d'entrée"
    for split, count in (("train", 3), ("val", 2)):
        for k, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                image = Image.new("RGB", (10, 12), (80 * k, 40 * i, 255 - 80 * k))
                image.save(folder / (f"{i} é.png" if i % 2 else f"{i}.JPEG"), quality=95)
    workdir = base / "l'espace de travail ü"
    workdir.mkdir()
    config = {
        "experiment": "e2e", "device": "cpu",
        "dataset": {"kind": "imagefolder", "root": str(root), "resolution": 8, "channels": 3},
        "base_models": TINY_MODELS,
        "generate": {"steps": 2, "batch_size": 8},
        "methods": ["random", "dit"], "ipcs": [1],
        "validate": {"archs": ["convnet"], "seeds": [0], "epochs": {1: 1}, "full_epochs": 1, "width_factor": 0.125},
        "analysis": {"feature_epochs": 1, "samples_per_class": 1, "k": 1},
    }
    write_config(workdir, config)
    # Table 1 and the sets (not the analyses and figures), to keep the run short
    result = snakemake(workdir, "results/e2e/tables/table1.csv", check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir, config


def test_spaces_and_non_ascii_end_to_end(unicode_run):
    workdir, _ = unicode_run
    exp = workdir / "results" / "e2e"
    table = pd.read_csv(exp / "tables" / "table1.csv")
    assert set(table.method) == {"random", "dit"} and table["mean"].between(0, 100).all()
    for method in ("random", "dit"):
        folders = sorted(p.name for p in (exp / "sets" / method / "ipc1" / "images").iterdir() if p.is_dir())
        assert folders == sorted(CLASSES), folders
        for name in CLASSES:
            assert len(list((exp / "sets" / method / "ipc1" / "images" / name).glob("*.png"))) == 1


@pytest.mark.parametrize("fault, message", [
    pytest.param("missing class", r"class 'poisson rouge' of dataset\.classes has no folder "
                                  r".*données d'entrée/val/poisson rouge", id="missing_class"),
    pytest.param("ipc too large", r"ipcs: IPC 4 exceeds the 3 training images of class '.+', so methods random "
                                  r"cannot pick", id="ipc_too_large"),
])
def test_bad_config_stops_the_workflow_and_keeps_earlier_results(unicode_run, fault, message):
    workdir, config = unicode_run
    broken = json.loads(json.dumps(config))
    if fault == "missing class":
        broken["dataset"]["classes"] = [*CLASSES, "poisson rouge"]
    else:
        broken["ipcs"] = [1, 4]
    before = state_of(workdir / "results")
    try:
        write_config(workdir, broken)
        for args in (["--dry-run"], []):
            result = snakemake(workdir, *args, check=False)
            assert result.returncode != 0, (args, result.stdout[-2000:])
            # a real run reports on stderr; Snakemake prints a dry run's report, errors included, on stdout
            output = result.stderr if not args else result.stdout + result.stderr
            lines = [line for line in output.splitlines() if re.search(message, line)]
            assert len(lines) == 1, (args, output[-3000:])  # the whole message on one line
            assert state_of(workdir / "results") == before
    finally:
        write_config(workdir, config)


def test_corrupt_image_stops_prepare_and_keeps_earlier_results(unicode_run, tmp_path):
    workdir, config = unicode_run
    root = make_tree(tmp_path / "broken data")
    (root / "train" / "dog" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    broken = json.loads(json.dumps(config)) | {"experiment": "broken", "methods": ["random"]}
    broken["dataset"] = {**config["dataset"], "root": str(root)}
    before = state_of(workdir / "results" / "e2e")
    try:
        write_config(workdir, broken)
        result = snakemake(workdir, check=False)
    finally:
        write_config(workdir, config)
    assert result.returncode != 0
    line = r"BadImageError: .*broken data/train/dog/1\.png: unreadable image \(.+\); set dataset\.skip_bad_images"
    assert re.search(line, result.stderr), result.stderr[-3000:]
    assert re.search(line, (workdir / "results" / "broken" / "logs" / "prepare.log").read_text())
    # the class decoded before the bad image is kept for the rerun (its shard and sources); no
    # index (the split is unfinished), no temporary file
    written = (workdir / "results" / "broken" / "data")
    assert sorted(str(p.relative_to(written)) for p in written.rglob("*")) == \
        ["train", "train/.0.json.sha256", "train/.0.npy.sha256", "train/0.json", "train/0.npy"]
    assert state_of(workdir / "results" / "e2e") == before


def test_ipc_above_the_readable_images_names_the_class(tmp_path):
    """After dataset.skip_bad_images, a class may hold fewer readable images than the file count."""
    pack = data.RealPack(torch.zeros(5, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 0, 0, 1, 1]),
                         ["chien", "chat"], [0, 1])
    pack.save(tmp_path / "train.pt")
    with pytest.raises(ValueError, match=r"ipcs: IPC 3 exceeds the readable training images of class 'chat' \(2\)"):
        stages.select_random(train=str(tmp_path / "train.pt"), pack=str(tmp_path / "out.pt"),
                             images=str(tmp_path / "images"), ipc=3, order="sorted", seed=None)
    assert not (tmp_path / "out.pt").exists()


def test_a_batch_that_does_not_split_over_the_fine_tuning_processes(tmp_path):
    make_tree(tmp_path)
    check_fails(r"^finetune.batch_size \(8\) must divide evenly over finetune.gpus \(3 processes\)$",
                dataset=dataset(tmp_path), finetune={"gpus": 3})
