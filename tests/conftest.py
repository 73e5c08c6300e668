"""Helpers shared by the test files: the workflow run on a tiny config, tiny DiTs, image-folder
trees, toy data and the validation protocols at the schema's defaults. Test files import them
(`from conftest import ...`); pytest puts tests/ on the path."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from filelock import FileLock
from PIL import Image

from minimaxdd import plan
from minimaxdd.dit import DiT, DiTConfig
from minimaxdd.settings import HardLabel, SoftLabel, hard_label_rule


# Tests run on two pytest-xdist workers beside the workflow jobs they start: one torch thread per
# test process, or the tiny nets spend their time in OpenMP oversubscription (tens of times slower
# on 2 cores). Workflow jobs set their own count (io.job_context).
torch.set_num_threads(1)

# ------------------------------------------------------------------ the workflow on a tiny config

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]

TINY_CONFIG = {
    "experiment": "tiny",
    "device": "cpu",
    "dataset": {"kind": "digits", "resolution": 8, "channels": 1},
    "base_models": {
        "tiny_vae": {"block_channels": [8, 8], "latent_channels": 2, "steps": 20, "batch_size": 16},
        "tiny_dit": {"hidden_size": 16, "depth": 2, "num_heads": 2, "patch_size": 2, "steps": 20, "batch_size": 16},
    },
    "finetune": {"batch_size": 128, "epochs": 1, "ema_decay": 0.9, "memory_size": 8},
    "generate": {"steps": 3, "batch_size": 16},
    "methods": ["random", "kcenter", "herding", "dit", "difffit", "rep_minimax", "minimax", "full"],
    "ipcs": [1, 2],
    "validate": {"archs": ["convnet"], "seeds": [0], "epochs": {1: 2, 2: 1}, "full_epochs": 1,
                 "width_factor": 0.125},
    "analysis": {"feature_epochs": 1, "samples_per_class": 2, "tsne_real_points": 200},
    "studies": [{"name": "steps", "parameter": "steps", "values": [2, 3], "ipcs": [1], "archs": ["convnet"]}],
    "expansion": {"methods": ["minimax"], "ipcs": [1]},
}


def snakemake(workdir: Path, *args: str, check: bool = True, cores: str | None = "2",
              timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), *(["--cores", cores] if cores else []), *args],
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The workflow run once on TINY_CONFIG for the whole session, whatever the number of pytest-xdist
    workers (the first to ask runs it under a file lock, the others wait and reuse it). Tests only
    read it; a test that damages, extends or reconfigures a run works on `copy_run(tiny_run, ...)`."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker's basetemp is a folder of the session's
        shared = shared.parent
    workdir, done = shared / "tiny_run", shared / "tiny_run.done"
    with FileLock(shared / "tiny_run.lock"):
        if not done.exists():
            shutil.rmtree(workdir, ignore_errors=True)
            write_config(workdir, TINY_CONFIG)
            snakemake(workdir)
            done.touch()
    return workdir


def pytest_collection_modifyitems(items):
    """The test file that reads the tiny run first, those that copy it last: on pytest-xdist's
    workers (a file each, in this order) one worker builds the run while the other runs the files
    that need no run, instead of waiting on its lock."""
    users = {item.path for item in items if "tiny_run" in getattr(item, "fixturenames", ())}
    first = Path(__file__).with_name("test_workflow.py")
    items.sort(key=lambda item: 0 if item.path == first else 2 if item.path in users else 1)  # stable


def planned_outputs(workdir: Path) -> list[str]:
    """Output paths of the jobs a dry run would execute."""
    out = snakemake(workdir, "--dry-run").stdout
    return re.findall(r"^\s+output: (.+)$", out, flags=re.MULTILINE)


def copy_run(run: Path, to: Path) -> Path:
    """A finished run with Snakemake's records (.snakemake/) and its files' times, so that Snakemake
    sees every output up to date and reruns only what a test changes."""
    shutil.copytree(run, to, symlinks=True, dirs_exist_ok=True)
    return to


def write_config(workdir: Path, config: dict) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))


def make_tree(root: Path, train=3, val=1, classes=("cat", "dog"), width=12, height=12, strays=False) -> Path:
    """root/{train,val}/<class>/<i>.png, `train` and `val` images per class (a count, or one per
    class): image i of class k a solid (30k, 100, 200 - 10i), `width` + 7i by `height` px; `strays`
    adds a text file and a .DS_Store to every folder, which the loader must skip."""
    for split, counts in (("train", train), ("val", val)):
        counts = counts if isinstance(counts, (tuple, list)) else [counts] * len(classes)
        for k, (name, count) in enumerate(zip(classes, counts)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("RGB", (width + 7 * i, height), (30 * k, 100, 200 - 10 * i)).save(folder / f"{i}.png")
            if strays:
                (folder / "notes.txt").write_text("not an image")
                (folder / ".DS_Store").write_bytes(b"\0\1")
    return root


# ------------------------------------------------------------------ tiny DiTs

TINY_DIT = DiTConfig(input_size=4, patch_size=2, in_channels=2, hidden_size=32, depth=4, num_heads=2, num_classes=3)


def tiny_dit(seed=0, config=TINY_DIT):
    torch.manual_seed(seed)
    model = DiT(config)
    # adaLN-Zero makes a fresh DiT output zeros; perturb so that tests see real computation.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


SMALL_DIT = DiTConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=4, num_heads=4, num_classes=10)


def perturbed(module, seed=0, std=0.05):
    # adaLN-Zero would hide errors: randomize every parameter but the Difffit gammas (checkpoints lack them).
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "gamma" not in name:
                p.add_(std * torch.randn_like(p))
    return module.eval()


def original_state(model):
    return {k: v for k, v in model.state_dict().items() if "gamma" not in k}


# ------------------------------------------------------------------ the validation protocols and toy data


def write_records(folder: Path, method: str, accuracies: list[float], ipc: int | None = 10) -> list[str]:
    """One validation record per seed (ConvNet), as the workflow writes them; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed, accuracy in enumerate(accuracies):
        path = folder / f"{method}_{ipc}_{seed}.json"
        path.write_text(json.dumps({"method": method, "ipc": ipc, "arch": "convnet", "seed": seed,
                                    "accuracy_best": accuracy, "accuracy_last": accuracy}))
        paths.append(str(path))
    return paths


def schema_defaults(section: str) -> dict:
    """A config section as the schema's defaults fill it in."""
    return plan.load_config({"experiment": "defaults"})[section]


def hard_label(num_classes: int = 3, **overrides) -> HardLabel:
    """The hard-label protocol at the schema's defaults (the reference's rule for `num_classes`)."""
    section = schema_defaults("validate")
    rule = {k: v for k, v in hard_label_rule(num_classes).items() if section[k] is None}
    return dataclasses.replace(HardLabel.from_config(section, **rule), **overrides)


def soft_label(**overrides) -> SoftLabel:
    return dataclasses.replace(SoftLabel.from_config(schema_defaults("soft_label")), **overrides)


def toy_split(per_class, seed):
    """Three classes of 16x16 gray images: horizontal stripes, vertical stripes, checkerboard.

    Period-4 patterns survive flips and the 0.5-1 area crops; noise makes every image differ.
    """
    g = torch.Generator().manual_seed(seed)
    rows = (torch.arange(16) // 2 % 2).float()
    patterns = torch.stack([rows[:, None].expand(16, 16), rows[None, :].expand(16, 16),
                            (rows[:, None] + rows[None, :]) % 2])
    y = torch.arange(3).repeat_interleave(per_class)
    x = 0.2 + 0.6 * patterns[y] + 0.1 * torch.randn(len(y), 16, 16, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).unsqueeze(1), y


def train_hard(train_x, train_y, *, seeds=(0,), arch="convnet", epochs=3, test=None, mode="loop",
               checkpointer=None, channels_last=False, num_classes=3, **protocol):
    """classifier.train_classifiers under the hard-label protocol (defaults but for `protocol`) on
    the CPU: [(model, record)] per seed."""
    from minimaxdd.classifier import train_classifiers
    from minimaxdd.validate import HardLabelSteps

    test_x, test_y = test if test is not None else (None, None)
    return train_classifiers(HardLabelSteps(arch, hard_label(**protocol)), train_x, train_y, seeds=list(seeds),
                             num_classes=num_classes, epochs=epochs, device="cpu", mode=mode, channels_last=channels_last,
                             test_x=test_x, test_y=test_y, progress=False, checkpointer=checkpointer)


def assert_resumes_bit_for_bit(train, optimizer, stop_after: int, tmp_path, monkeypatch) -> None:
    """`train(checkpointer)` -> (model, record), killed after `stop_after` optimizer steps, then
    resumed from its checkpoint (every 2 epochs): the same curve, scores and weights as one run."""
    from minimaxdd.resume import Checkpointer

    expected_model, expected = train(None)
    checkpointer = Checkpointer(tmp_path / "resume.pt", every=2, fingerprint="job")
    real_step, count = optimizer.step, {"n": 0}

    def step(self, *args, **kwargs):
        count["n"] += 1
        if count["n"] > stop_after:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(optimizer, "step", step)
        with pytest.raises(KeyboardInterrupt):
            train(checkpointer)
    assert torch.load(tmp_path / "resume.pt", weights_only=False)["curves"][0] == expected["curve"][:2]
    model, resumed = train(checkpointer)
    for key in ("curve", "accuracy_last", "accuracy_best", "best_epoch", "final_loss"):
        assert resumed[key] == expected[key]
    assert all(torch.equal(v, expected_model.state_dict()[k]) for k, v in model.state_dict().items())
