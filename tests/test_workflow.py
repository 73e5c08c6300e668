"""End-to-end runs of the Snakemake workflow on a tiny config, its rerun plans and its config errors."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]

TINY = {
    "experiment": "tiny",
    "device": "cpu",
    "dataset": {"kind": "digits", "resolution": 8, "channels": 1},
    "base_models": {
        "tiny_vae": {"block_channels": [8, 8], "latent_channels": 2, "steps": 20, "batch_size": 16},
        "tiny_dit": {"hidden_size": 16, "depth": 2, "num_heads": 2, "patch_size": 2, "steps": 20, "batch_size": 16},
    },
    "finetune": {"batch_size": 128, "epochs": 1, "ema_decay": 0.9, "memory_size": 8},
    "generate": {"steps": 3, "batch_size": 16},
    "methods": ["random", "dit", "difffit", "minimax", "full"],
    "ipcs": [1, 2],
    "validate": {"archs": ["convnet", "resnetap10"], "seeds": [0], "epochs": {1: 2, 2: 1}, "full_epochs": 1,
                 "width_factor": 0.125},
}


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--cores", "2", *args],
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def write_config(workdir: Path, config: dict) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def planned_outputs(workdir: Path) -> list[str]:
    """Output paths of the jobs a dry run would execute."""
    out = snakemake(workdir, "--dry-run").stdout
    return re.findall(r"^\s+output: (.+)$", out, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    write_config(workdir, TINY)
    snakemake(workdir)
    return workdir


def test_tiny_workflow_produces_table1(tiny_run):
    tables = tiny_run / "results/tiny/tables"
    summary = pd.read_csv(tables / "table1.csv")
    assert set(summary.method) == set(TINY["methods"])
    assert set(summary.ipc) == {1, 2} and set(summary.arch) == {"convnet", "resnetap10"}
    assert summary["mean"].between(0, 100).all()
    markdown = (tables / "table1.md").read_text()
    assert "| IPC | Test Model | Random | DiT | Difffit | Minimax | Full |" in markdown
    assert "ConvNet-3" in markdown and "ResNetAP-10" in markdown
    assert (tables / "accuracy_vs_ipc.png").stat().st_size > 1000

    record = json.loads((tiny_run / "results/tiny/validate/minimax/ipc2/convnet/seed0.json").read_text())
    assert {"accuracy", "epochs", "wall_s", "device", "method", "ipc", "arch", "seed"} <= set(record)
    assert record["epochs"] == 1 and record["device"] == "cpu"


def test_tiny_workflow_artifacts(tiny_run):
    exp = tiny_run / "results/tiny"
    losses = pd.read_csv(exp / "finetune/minimax/losses.csv")
    assert {"diffusion", "representativeness", "diversity"} <= set(losses.columns)
    assert losses[["diffusion", "representativeness", "diversity"]].notna().all().all()
    for method in ("dit", "difffit", "minimax", "random"):
        images = sorted((exp / f"sets/{method}/ipc2/images").glob("*/*.png"))
        assert len(images) == 10 * 2  # ten digit classes, IPC 2
    latents = exp / "latents/train.pt"
    assert latents.stat().st_size > 0


def test_nothing_to_do_after_a_complete_run(tiny_run):
    assert planned_outputs(tiny_run) == []


def test_adding_an_ipc_plans_only_that_ipc_and_the_tables(tiny_run, tmp_path):
    config = dict(TINY, ipcs=[1, 2, 3])
    write_config(tiny_run, config)
    try:
        outputs = planned_outputs(tiny_run)
    finally:
        write_config(tiny_run, TINY)
    assert outputs, "the new IPC must be planned"
    for output in outputs:
        assert "ipc3" in output or "/tables/" in output, output
    assert not any("finetune" in o or "/base/" in o or "latents" in o for o in outputs)


def test_changing_one_ipc_epochs_reruns_only_its_validation(tiny_run):
    config = json.loads(json.dumps(TINY))
    config["validate"]["epochs"] = {1: 2, 2: 3}
    write_config(tiny_run, config)
    try:
        outputs = planned_outputs(tiny_run)
    finally:
        write_config(tiny_run, TINY)
    validations = [o for o in outputs if "/validate/" in o]
    assert len(validations) == 4 * 2  # 4 methods x 2 archs x 1 seed at IPC 2
    assert all("ipc2" in o for o in validations)
    assert all("/validate/" in o or "/tables/" in o for o in outputs)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"methods": ["random", "magic"]}, r"magic"),
        ({"validate": {"archs": ["vgg"]}}, r"vgg"),
        ({"ipcs": [200]}, r"ipcs: IPC 200 exceeds the \d+ training images"),
        ({"dataset": {"kind": "imagefolder", "root": "/no/such/folder"}}, r"dataset\.root"),
        ({"finetune": {"epochs": "eight"}}, r"eight"),
        ({"unknown_key": 1}, r"unknown_key"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, change, message):
    config = dict(TINY, **change)  # a changed section replaces the whole section
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0
    assert re.search(message, result.stdout + result.stderr)
    assert not (tmp_path / "results").exists()


def test_empty_class_folder_is_named(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "val"):
        (root / split / "cats").mkdir(parents=True)
        (root / split / "dogs").mkdir(parents=True)
    config = dict(TINY, dataset={"kind": "imagefolder", "root": str(root), "resolution": 8, "channels": 1})
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0
    assert "cats" in result.stdout + result.stderr
