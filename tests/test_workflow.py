"""End-to-end runs of the Snakemake workflow on a tiny config, its rerun plans and its config errors."""

import json
from pathlib import Path

import pandas as pd
import pytest

from minimaxdd import plan

from conftest import TINY_CONFIG, planned_outputs, snakemake, write_config


def test_tiny_workflow_produces_table1(tiny_run):
    tables = tiny_run / "results/tiny/tables"
    summary = pd.read_csv(tables / "table1.csv")
    assert set(summary.method) == set(TINY_CONFIG["methods"])
    assert set(summary.ipc) == {1, 2} and set(summary.arch) == {"convnet"}
    assert summary["mean"].between(0, 100).all()
    markdown = (tables / "table1.md").read_text()
    assert "| IPC | Test Model | Random | K-Center | Herding | DiT | Difffit | rep_minimax | Minimax | Full |" in markdown
    assert "ConvNet-3" in markdown
    assert (tables / "accuracy_vs_ipc.png").stat().st_size > 1000

    record = json.loads((tiny_run / "results/tiny/validate/minimax/ipc2/convnet/seed0.json").read_text())
    assert {"accuracy_best", "accuracy_last", "best_epoch", "curve", "epochs", "wall_s", "device", "method", "ipc",
            "arch", "seed"} <= set(record)
    assert record["epochs"] == 1 and record["device"] == "cpu"
    assert record["curve"] == [[1, record["accuracy_last"]]] and record["accuracy_best"] == record["accuracy_last"]
    assert markdown.startswith("Top-1 accuracy (%) on the real test split: best top-1 of the periodic test")
    assert (tiny_run / "results/tiny/figures/validation_curves_ipc2.png").stat().st_size > 1000


def test_tiny_workflow_artifacts(tiny_run):
    exp = tiny_run / "results/tiny"
    losses = pd.read_csv(exp / "finetune/minimax/phase0/losses.csv")
    assert {"diffusion", "representativeness", "diversity"} <= set(losses.columns)
    assert losses[["diffusion", "representativeness", "diversity"]].notna().all().all()
    for method in ("dit", "difffit", "minimax", "random", "herding", "kcenter"):
        images = sorted((exp / f"sets/{method}/ipc2/images").glob("*/*.png"))
        assert len(images) == 10 * 2  # ten digit classes, IPC 2
    latents = exp / "latents/train/all.pt"
    assert latents.stat().st_size > 0
    split = exp / "data/train"  # one shard per class, and their index
    assert sorted(p.name for p in split.glob("*.npy")) == sorted(f"{k}.npy" for k in range(10))
    assert (split / "index.json").is_file()


def test_tiny_workflow_analyses_and_figures(tiny_run):
    exp = tiny_run / "results/tiny"
    mmd = pd.read_csv(exp / "tables/table2.csv")
    assert list(mmd.columns) == ["IPC", "Random", "K-Center", "Herding", "DiT", "Difffit", "rep_minimax", "Minimax"]
    assert (mmd.drop(columns="IPC") >= 0).all().all()
    quality = pd.read_csv(exp / "tables/table10.csv")
    assert {"Precision", "Recall", "Density", "Coverage"} <= set(quality.columns) and len(quality) == 7 * 2
    assert quality[["Precision", "Recall", "Coverage"]].stack().between(0, 1).all()
    for name in ("tsne_ipc1", "tsne_ipc2", "samples_ipc2", "finetune_losses"):
        assert (exp / f"figures/{name}.png").stat().st_size > 1000


def test_every_table_has_a_caption_and_whole_ipcs(tiny_run):
    tables = tiny_run / "results/tiny/tables"
    for md in sorted(tables.glob("*.md")):
        assert not md.read_text().startswith("|"), f"{md.name} has no caption"
    for csv in sorted(tables.glob("*.csv")):
        frame = pd.read_csv(csv, dtype=str)
        for column in {"ipc", "IPC"} & set(frame.columns):
            assert frame[column].str.fullmatch(r"\d+").all(), f"{csv.name}: IPCs {sorted(set(frame[column]))}"


def test_tiny_ablation_and_expansion_tables(tiny_run):
    tables = tiny_run / "results/tiny/tables"
    ablation = pd.read_csv(tables / "table5.csv")
    assert list(ablation.Method) == ["Difffit", "rep_minimax", "Minimax"]
    assert list(ablation.Representativeness) == ["off", "minimax", "minimax"]
    assert list(ablation.Diversity) == ["off", "off", "minimax"]
    expansion = pd.read_csv(tables / "table9.csv")
    assert list(expansion.columns) == ["Test Model", "Original", "Original + Minimax IPC 1"]
    record = json.loads((tiny_run / "results/tiny/validate/full+minimax/ipc1/convnet/seed0.json").read_text())
    assert record["train_images"] == 1437 + 10 and record["epochs"] == TINY_CONFIG["validate"]["full_epochs"]


def test_tiny_study_table(tiny_run):
    study = pd.read_csv(tiny_run / "results/tiny/tables/study_steps.csv")
    assert sorted(study.value) == [2, 3] and set(study.arch) == {"convnet"}
    assert (study.seconds_per_image > 0).all()
    assert "time per image (s)" in (tiny_run / "results/tiny/tables/study_steps.md").read_text()
    # the study's default value (3 steps) is the main run's minimax set, not a copy
    assert not (tiny_run / "results/tiny/sets/minimax@steps=3").exists()
    assert (tiny_run / "results/tiny/sets/minimax@steps=2/ipc1/pack.pt").exists()


def plan_with(workdir: Path, **changes) -> list[str]:
    write_config(workdir, dict(TINY_CONFIG, **changes))
    try:
        return planned_outputs(workdir)
    finally:
        write_config(workdir, TINY_CONFIG)


def test_denoising_steps_sweep_plans_no_finetuning(tiny_run):
    study = {"name": "more_steps", "parameter": "steps", "values": [2, 4, 5], "ipcs": [1], "archs": ["convnet"]}
    outputs = plan_with(tiny_run, studies=[*TINY_CONFIG["studies"], study])
    assert any("minimax@steps=5/ipc1" in o for o in outputs)
    assert not any("/finetune/" in o or "/base/" in o for o in outputs)


def test_weight_sweep_plans_one_finetuning_per_value(tiny_run):
    study = {"name": "rep", "parameter": "rep_weight", "values": [0.002, 0.01, 0.02], "ipcs": [1], "archs": ["convnet"]}
    outputs = plan_with(tiny_run, studies=[*TINY_CONFIG["studies"], study])
    finetuned = sorted(o.split("/finetune/")[1].split("/")[0] for o in outputs if "weights.safetensors" in o)
    # 0.002 is the main run's own setting: its fine-tuning already exists and is shared
    assert finetuned == ["minimax@rep_weight=0.01", "minimax@rep_weight=0.02"]


def test_report_holds_every_table_and_figure(tiny_run):
    snakemake(tiny_run, "--report", "report.html")
    html = (tiny_run / "report.html").read_text(errors="replace")
    for name in ("table1.csv", "table2.csv", "table10.csv", "accuracy_vs_ipc.png", "tsne_ipc1.png",
                 "samples_ipc2.png", "finetune_losses.png"):
        assert name in html, name
    assert "maximum mean discrepancy" in html


def test_nothing_to_do_after_a_complete_run(tiny_run):
    assert planned_outputs(tiny_run) == []


def test_adding_an_ipc_plans_only_that_ipc_and_the_tables(tiny_run):
    outputs = plan_with(tiny_run, ipcs=[1, 2, 3])
    assert outputs, "the new IPC must be planned"
    for output in outputs:
        assert "ipc3" in output or "/tables/" in output, output
    assert not any(part in o for o in outputs for part in ("finetune", "/base/", "latents", "/features/"))


def test_changing_one_ipc_epochs_reruns_only_its_validation(tiny_run):
    outputs = plan_with(tiny_run, validate=dict(TINY_CONFIG["validate"], epochs={1: 2, 2: 3}))
    validations = [o for o in outputs if "/validate/" in o]
    assert len(validations) == 7  # 7 methods x 1 arch x 1 seed at IPC 2
    assert all("ipc2" in o for o in validations)
    assert all("/validate/" in o or "/tables/" in o or o.endswith("/validation_curves_ipc2.png") for o in outputs)


def test_changing_validate_evaluations_reruns_only_validations_and_tables(tiny_run):
    """How often a validation scores the test split is no setting of the feature network (nor of
    IGD's surrogate): it trains with the recipe alone (settings.Recipe)."""
    outputs = plan_with(tiny_run, validate=dict(TINY_CONFIG["validate"], evaluations=11))
    assert any("/validate/" in o for o in outputs)
    assert all("/validate/" in o or "/tables/" in o or "/validation_curves_" in o for o in outputs), outputs


def start(config: dict):
    """What the Snakefile does before any job: load and check the config (in-process: the
    mechanism through Snakemake itself is test_a_bad_config_stops_the_workflow_before_any_job)."""
    return plan.check(plan.load_config(config))


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
def test_bad_config_stops_before_any_job(tmp_path, monkeypatch, change, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message):  # ConfigError, DatasetError, MethodError: all ValueErrors
        start(dict(TINY_CONFIG, **change))  # a changed section replaces the whole section
    assert not (tmp_path / "results").exists()


def test_a_bad_config_stops_the_workflow_before_any_job(tmp_path):
    write_config(tmp_path, dict(TINY_CONFIG, methods=["random", "magic"]))
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0
    assert "magic" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_empty_class_folder_is_named(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for split in ("train", "val"):
        (root / split / "cats").mkdir(parents=True)
        (root / split / "dogs").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="cats"):
        start(dict(TINY_CONFIG, dataset={"kind": "imagefolder", "root": str(root), "resolution": 8, "channels": 1}))
