"""Every preset runs for real at toy size (issue 22): its protocol untouched, only its sizes shrunk
(minimaxdd.toy), on a tree of ImageNet-sized JPEGs under ImageNet wnids, with models in the
formats users bring: an original facebookresearch DiT `.pt`, a DiT training checkpoint, a diffusers
DiT folder, an SD-VAE-layout AutoencoderKL and a torchvision-format ResNet-18 teacher. Minutes
each: marked `presets`, run by `make test-presets` (called by .ci/run), not by `make test`."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from minimaxdd import data, plan, toy
from minimaxdd.checks import ConfigError

from conftest import REPO, snakemake, write_config

pytestmark = pytest.mark.presets

# preset -> the DiT format it is given (each format once at least)
PRESETS = {"imagewoof": "original", "imagenette": "training", "imageidc": "diffusers",
           "imagenet100": "original", "imagenet1k": "training"}
# Every preset but ImageNette runs at one toy IPC (`python -m minimaxdd.toy --ipcs 1`), which halves
# its jobs (imagewoof: 251 at two IPCs, 19 of CI's 22 minutes here); ImageNette and `make test`'s
# tiny run take two.
ONE_IPC = set(PRESETS) - {"imagenette"}
WNIDS = REPO / "data/imagenet/imagenet1k-wnids.txt"


def preset_file(preset: str):
    return REPO / "configs" / f"{preset}.yaml"


def classes_file(preset: str):
    return REPO / yaml.safe_load(preset_file(preset).read_text())["dataset"]["classes"]


def first_classes(preset: str, n: int = 2) -> list[str]:
    return data._read_name_list(classes_file(preset))[:n]


@pytest.fixture(scope="module")
def brought(tmp_path_factory):
    """The user's side: data and weights, in the formats they come in."""
    root = tmp_path_factory.mktemp("brought")
    # the first two classes of each preset, and every class of ImageNette (the preflight checks them all)
    wnids = sorted({w for preset in PRESETS for w in first_classes(preset)} | set(first_classes("imagenette", 10)))
    # 8 training images a class: a phase of one class fills the presets' fine-tuning batch of 8
    toy.write_imagenet_like(root / "imagenet", wnids, per_class=8, val_per_class=2)
    dits = {form: toy.write_dit(root / f"dit-{form}{'' if form == 'diffusers' else '.pt'}", form)
            for form in toy.DIT_FORMATS}
    teacher_data = {"kind": "imagefolder", "root": str(root / "imagenet"), "train_dir": "train", "test_dir": "val",
                    "classes": first_classes("imagenet1k"), "class_ids": str(WNIDS), "resolution": 256,
                    "channels": 3, "skip_bad_images": False}
    teacher = toy.write_teacher(root / "resnet18.pt", teacher_data, resolution=224)
    return {"root": root / "imagenet", "vae": toy.write_vae(root / "sd-vae"), "dits": dits, "teacher": teacher}


def user_settings(brought, preset: str) -> list[str]:
    """What a user sets on the command line: where their data and weights are (absolute paths:
    the run's working directory is elsewhere)."""
    return [f"dataset.root={brought['root']}", f"dataset.classes={classes_file(preset)}",
            f"dataset.class_ids={WNIDS}", f"base_models.vae={brought['vae']}",
            f"base_models.dit={brought['dits'][PRESETS[preset]]}",
            f"base_models.dit_num_heads={toy.TOY_DIT['num_heads']}", f"soft_label.teacher={brought['teacher']}"]


def test_the_toy_config_changes_only_sizes():
    """Every key outside toy.TOY_KEYS keeps the preset's value, for every preset, at one or two IPCs."""
    def flat(value, key=""):
        if isinstance(value, dict):
            return {k: v for name, item in value.items() for k, v in flat(item, f"{key}.{name}" if key else name).items()}
        if key == "studies":
            return {f"studies[].{k}": v for study in value for k, v in flat(study).items()} | {"studies": len(value)}
        return {key: value}

    for preset in PRESETS:
        preset_config = yaml.safe_load(preset_file(preset).read_text())
        for key in ("classes", "class_ids"):
            preset_config["dataset"][key] = str(REPO / preset_config["dataset"][key])
        full = plan.load_config(preset_config)
        for ipcs in (1, 2):
            shrunk = toy.shrink(full, ipcs=ipcs)
            before, after = flat(full), flat(shrunk)
            moved = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
            unlisted = {k for k in moved if not any(k == t or k.startswith(f"{t}.") for t in toy.TOY_KEYS)}
            assert not unlisted, (preset, unlisted)  # validate.epochs.10 is validate.epochs
            assert after["dataset.resolution"] == 256 and after["dataset.class_ids"].endswith("imagenet1k-wnids.txt")
            assert shrunk["dataset"]["classes"] == first_classes(preset)
            assert shrunk["ipcs"] == [1, 2][:ipcs]
            assert all(set(study.get("ipcs") or [1]) <= {1, 2}.intersection(shrunk["ipcs"]) for study in shrunk["studies"])
    with pytest.raises(ConfigError, match="--ipcs"):
        toy.shrink(full, ipcs=3)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_runs_end_to_end_at_toy_size(preset, brought, tmp_path):
    config = toy.toy_config(preset_file(preset), user_settings(brought, preset), ipcs=1 if preset in ONE_IPC else 2)
    write_config(tmp_path, config)
    snakemake(tmp_path, timeout=1500)
    exp = tmp_path / "results" / config["experiment"]
    grid = plan.Grid(plan.load_config(config))
    wnids = data._read_name_list(WNIDS)

    # every set: 256 px RGB images of the preset's first classes, in the 1000-class label space
    for ipc in grid.ipcs:
        for method in grid.methods_at(ipc):
            if method == "full":
                continue
            pack = data.RealPack.load(exp / "sets" / method / f"ipc{ipc}" / "pack.pt")
            assert pack.images.shape[1:] == (3, 256, 256) and pack.images.dtype.is_floating_point is False
            assert pack.class_names == config["dataset"]["classes"]
            assert pack.class_ids == [wnids.index(w) for w in pack.class_names]
            assert np.bincount(pack.labels.numpy()).tolist() == [ipc] * len(pack.class_names)
    pngs = sorted((exp / "sets").glob("*/ipc1/images/*/*.png"))
    assert pngs and all(Image.open(p).size == (256, 256) and Image.open(p).mode == "RGB" for p in pngs[:20])

    # the records say which protocol ran: 224 px, the IDC augmentation, or RDED's soft labels
    records = [json.loads(p.read_text()) for p in exp.glob("validate*/**/seed*.json")]  # validate_soft too
    assert records
    for record in records:
        if record["protocol"] == "hard_label":
            assert record["resolution"] == 224 and record["augment"] == "idc" and record["normalize"] == "imagenet"
        else:
            assert record["augment"] == "rded" and preset == "imagenet1k"

    # the tables: a caption, every IPC and net, integer IPCs in the CSV
    table = "table4" if preset == "imagenet1k" else "table1"
    md = (exp / "tables" / f"{table}.md").read_text().splitlines()
    assert md[0].startswith("Top-1 accuracy (%) on the real test split")
    archs = config["soft_label"]["archs"] if preset == "imagenet1k" else config["validate"]["archs"]
    assert len([line for line in md if line.startswith("| ") and not line.startswith("| IPC")]) == \
        len(grid.ipcs) * len(archs)
    csv = pd.read_csv(exp / "tables" / f"{table}.csv", dtype=str)
    assert set(csv.ipc) == {str(ipc) for ipc in grid.ipcs}
    for md_file in (exp / "tables").glob("*.md"):
        assert not md_file.read_text().startswith("|"), f"{md_file.name} has no caption"
    if config["finetune"]["classes_per_phase"]:
        assert len(list((exp / "finetune" / "minimax").glob("phase*/weights.safetensors"))) == 2


def test_preflight_checks_the_users_data_and_weights_and_summarizes(brought, tmp_path):
    """`make preflight`'s command on the stand-ins: every check on the full config, the toy run,
    then one screen naming the data, the weights, the images, the validation runs and the
    projection."""
    import subprocess
    import sys

    # IPCs the stand-in tree's 8 images a class allow (the real ImageNette's 1,300 allow the preset's)
    settings = [*user_settings(brought, "imagenette"), "ipcs=[1, 2]"]
    sets = [arg for setting in settings for arg in ("--set", setting)]
    done = subprocess.run([sys.executable, "-m", "minimaxdd.preflight", str(preset_file("imagenette")), *sets,
                           "--snakefile", str(REPO / "Snakefile"), "--cores", "2",
                           "--benchmark", str(REPO / "docs/benchmarks/benchmark-cpu.json")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "preflight of imagenette (ImageNette): all checks passed" in out
    assert "data  10 classes under" in out and "training images" in out  # the full preset: ImageNette's 10
    assert "DiT   " in out and "1000 classes" in out and "VAE   " in out and "/8" in out
    assert "validation runs" in out and "hours of the measured stages" in out and "GB of data shards" in out
    assert (tmp_path / "results/imagenette-toy/tables/table1.md").is_file()


def test_preflight_names_a_missing_dataset_root_before_running_anything(brought, tmp_path):
    import subprocess
    import sys

    sets = [arg for setting in user_settings(brought, "imagenette") for arg in ("--set", setting)]
    done = subprocess.run([sys.executable, "-m", "minimaxdd.preflight", str(preset_file("imagenette")), *sets,
                           "--set", f"dataset.root={tmp_path / 'nowhere'}"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0 and "preflight: dataset.root: folder" in done.stderr
    assert not (tmp_path / "results/imagenette-toy").exists()
