"""Artifacts on disk: damaged .pt files named, byte-identical saves, a full disk inside torch.save, the
temporaries of killed jobs swept, and no guessed head count for an original-format DiT checkpoint."""

import errno
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch

from minimaxdd import io
from minimaxdd.checkpoints import CheckpointError
from minimaxdd.data import RealPack
from minimaxdd.dit import DiT
from minimaxdd.pretrained import inspect_dit, load_pretrained_dit

from conftest import SMALL_DIT, original_state


def pack(n=300):
    g = torch.Generator().manual_seed(0)
    return RealPack(torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g),
                    torch.arange(n) % 3, ["cat", "dog", "fox"], [3, 5, 7])


# -- damaged and missing files ---------------------------------------------------------------------

def test_truncated_artifact_names_the_file(tmp_path):
    whole = tmp_path / "whole.pt"
    pack().save(whole)
    data = whole.read_bytes()
    # torch itself fails with EOFError, an UnpicklingError, its zip reader's RuntimeError and, for a cut
    # file of 4 to 69 kB (its search of the zip directory seeks before the start), OSError EINVAL
    for cut in (0, 1, 100, 10_000, len(data) // 2):
        cut_file = tmp_path / "sets" / f"cut{cut}" / "pack.pt"
        cut_file.parent.mkdir(parents=True)
        cut_file.write_bytes(data[:cut])
        for load in (io.load_torch, RealPack.load):
            with pytest.raises(io.ArtifactError) as error:
                load(cut_file)
            assert str(error.value) == (f"{cut_file} is truncated or corrupt (no complete torch archive); "
                                        "to rebuild it and rerun the jobs that read it, add --config repair=True "
                                        "to the snakemake command")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "absent.pt"))):
        io.load_torch(tmp_path / "absent.pt")
    assert torch.equal(io.load_torch(whole)["images"], pack().images)


def write_each_kind(root):
    """One artifact of each kind a job reads, written as the workflow writes it; -> (file, its reader)."""
    import numpy as np

    from minimaxdd import checkpoints, shards
    from minimaxdd.vae import build_tiny_vae, load_vae, save_vae
    from conftest import tiny_dit

    pack().save(root / "sets/pack.pt")
    io.save_json({"accuracy_best": 42.0}, root / "validate/seed0.json")
    split = root / "data/train"
    images = np.arange(2 * 3 * 8 * 8, dtype=np.uint8).reshape(2, 3, 8, 8)
    for k in range(2):
        shards.write_shard(split, k, images, [], "fingerprint")
    shards.write_index(split / "index.json", ["cat", "dog"], [0, 1], [2, 2], {})
    dit = tiny_dit()
    checkpoints.save_dit(dit, root / "base/dit")
    trained = {n: p.detach() for n, p in dit.named_parameters() if n.endswith("bias")}
    checkpoints.save_difffit(trained, {n: v.clone() for n, v in trained.items()}, root / "finetune/weights.safetensors",
                             {"method": "m"})
    save_vae(build_tiny_vae(channels=1, resolution=8, block_channels=[8, 8], latent_channels=2), root / "base/vae")
    return {
        "sets/pack.pt": lambda: RealPack.load(root / "sets/pack.pt"),
        "validate/seed0.json": lambda: io.load_json(root / "validate/seed0.json"),
        "data/train/index.json": lambda: shards.open_split(split / "index.json"),
        "data/train/1.npy": lambda: shards.open_split(split / "index.json").images[[3]],
        "base/dit/model.safetensors": lambda: checkpoints.load_dit(root / "base/dit"),
        "finetune/weights.safetensors": lambda: checkpoints.apply_difffit(dit, root / "finetune/weights.safetensors"),
        "base/vae/diffusion_pytorch_model.safetensors": lambda: load_vae(root / "base/vae", "cpu"),
    }


def test_a_changed_byte_in_each_kind_of_artifact_is_caught_when_read_and_by_a_scrub(tmp_path):
    """The same size, so the start's look does not see it; the reader (and a repair's scrub) does."""
    readers = write_each_kind(tmp_path)
    for name, read in readers.items():
        read()  # sound
    assert io.damaged_artifacts(tmp_path, content=True) == []
    for name, read in readers.items():
        file = tmp_path / name
        good = file.read_bytes()
        changed = bytearray(good)
        changed[good.index(b"2") if name.endswith(".json") else len(good) // 2 + 1] ^= 0x01  # JSON: a digit, 2 -> 3
        file.write_bytes(bytes(changed))
        with pytest.raises(io.ArtifactError, match=rf"^{re.escape(str(file))}: its content does not match its "
                                                   r"checksum .*add --config repair=True to the snakemake command"):
            read()
        assert io.damaged_artifacts(tmp_path) == []  # sizes and headers: as they were
        assert io.damaged_artifacts(tmp_path, content=True) == [file]
        file.write_bytes(good)


def test_sound_file_failing_to_load_is_not_called_corrupt(tmp_path, monkeypatch):
    io.save_torch({"x": torch.zeros(3)}, tmp_path / "x.pt")

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(torch, "load", out_of_memory)
    with pytest.raises(MemoryError):
        io.load_torch(tmp_path / "x.pt")


# -- saving ----------------------------------------------------------------------------------------

def test_same_content_same_bytes(tmp_path):
    content = {"latents": torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(0)), "labels": [0, 1]}
    io.save_torch(content, tmp_path / "a" / "train.pt")
    io.save_torch(content, tmp_path / "b" / "latents.pt")
    assert (tmp_path / "a" / "train.pt").read_bytes() == (tmp_path / "b" / "latents.pt").read_bytes()
    back = io.load_torch(tmp_path / "b" / "latents.pt")
    assert torch.equal(back["latents"], content["latents"]) and back["labels"] == [0, 1]


class FullDisk:
    """A file that takes `room` bytes, then fails as a full disk does."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            self.f.write(bytes(data[:self.room]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def flush(self):
        self.f.flush()


def test_disk_full_inside_torch_save(tmp_path, monkeypatch):
    out = tmp_path / "latents" / "train.pt"
    io.save_torch({"version": 1}, out)
    before = out.read_bytes()
    real_save = torch.save

    def save_on_full_disk(obj, f, *args, **kwargs):
        real_save(obj, FullDisk(f, room=5000), *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_on_full_disk)
    with pytest.raises(OSError) as error:
        io.save_torch({"version": 2, "latents": torch.zeros(10_000)}, out)
    assert error.value.errno == errno.ENOSPC
    assert str(error.value) == f"[Errno {errno.ENOSPC}] No space left on device while writing {out}"
    assert sorted(os.listdir(out.parent)) == [".train.pt.sha256", "train.pt"] and out.read_bytes() == before
    io.verify(out)  # the checksum is still the old file's


# -- temporaries of killed jobs --------------------------------------------------------------------

KILLED_JOBS = """
import os, shutil, sys
from pathlib import Path
from minimaxdd import io

root = Path(sys.argv[1])
with io.atomic_path(root / "latents" / "train.pt") as tmp:
    tmp.write_bytes(b"half")
    with io.atomic_dir(root / "sets" / "random" / "images") as folder:
        (folder / "0.png").write_bytes(b"half")
        with io.atomic_dir(root / "report") as new:  # replaces the earlier report, kept aside meanwhile
            (new / "table.md").write_text("new")
            shutil.rmtree = lambda *args, **kwargs: os._exit(9)  # killed while removing the earlier version
"""


def test_sweep_removes_only_the_temporaries_of_killed_jobs(tmp_path):
    root = tmp_path / "results"
    (root / "report").mkdir(parents=True)
    (root / "report" / "table.md").write_text("old")
    others = ["latents/train.pt.resume.pt", "latents/.hidden", "latents/x.tmp", "latents/notes.abcd1234.tmp",
              "latents/.x.tmp", "latents/.x.abc.tmp", "latents/.x.ABCD1234.tmp", "latents/.x.abcd1234.old",
              ".cache/y.pt", "sets/random/images/0.png"]
    for name in others:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    before = set(root.rglob("*"))
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_JOBS), str(root)])
    assert killed.returncode == 9
    left = sorted(p for p in set(root.rglob("*")) - before if p.name.startswith("."))
    assert [p.relative_to(root).as_posix().split(".")[:2] for p in left] == [
        ["", "report"], ["latents/", "train"], ["sets/random/", "images"]]

    assert io.sweep_temporaries(root) == left
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == sorted(
        others + ["report/table.md"])
    assert (root / "report" / "table.md").read_text() == "new"
    assert io.sweep_temporaries(root) == []


# -- original-format DiT checkpoints ---------------------------------------------------------------

def test_head_count_not_guessed(tmp_path):
    checkpoint = tmp_path / "DiT-custom.pt"
    torch.save(original_state(DiT(SMALL_DIT)), checkpoint)  # hidden size 64: no model-zoo size
    refusal = (f"^{re.escape(str(checkpoint))}: hidden size 64 is no DiT model-zoo size "
               r"\(\[384, 768, 1024, 1152\]\), so the head count cannot be known from the weights; "
               "set base_models.dit_num_heads in the config$")
    for check in (inspect_dit, load_pretrained_dit):  # at workflow start as in a job
        with pytest.raises(CheckpointError, match=refusal):
            check(checkpoint)
        with pytest.raises(CheckpointError, match="hidden size 64 does not split into 3 heads"):
            check(checkpoint, num_heads=3)
    assert inspect_dit(checkpoint, num_heads=4) == SMALL_DIT
    assert load_pretrained_dit(checkpoint, num_heads=4).config == SMALL_DIT
