"""The paper presets plan the expected jobs against a fake ImageNet tree (dry runs only)."""

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file

from minimaxdd import methods, plan
from minimaxdd.dit import DiT, DiTConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fake_imagenet(tmp_path_factory):
    """ImageNet's layout with tiny JPEGs (a dry run counts them but never decodes them)."""
    root = tmp_path_factory.mktemp("imagenet")
    tiny = root / "tiny.JPEG"
    Image.new("RGB", (8, 8), (120, 60, 30)).save(tiny, format="JPEG")
    wnids = set()
    for name in ("imagewoof", "imagenette", "imageidc", "imagenet100-idc"):
        wnids |= set((REPO / f"data/imagenet/{name}.txt").read_text().split())
    every = (REPO / "data/imagenet/imagenet1k-wnids.txt").read_text().split()
    for wnid in every:  # the subsets' classes hold enough images for their real-subset methods
        for split, count in (("train", 100 if wnid in wnids else 2), ("val", 2)):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{wnid}_{i}.JPEG").hardlink_to(tiny)
    # Stand-ins with DiT-XL/2's and SD-VAE's interfaces: the workflow-start checks read their headers.
    stand_in = DiT(DiTConfig(hidden_size=16, depth=1, num_heads=1))
    torch.save({k: v for k, v in stand_in.state_dict().items() if "gamma" not in k}, root / "DiT-XL-2-256x256.pt")
    vae = root / "sd-vae-ft-mse"
    vae.mkdir()
    (vae / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3,
                                                 "latent_channels": 4, "block_out_channels": [128, 256, 512, 512]}))
    save_file({"encoder.conv_in.weight": torch.zeros(128, 3, 3, 3), "encoder.conv_out.weight": torch.zeros(8, 512, 3, 3),
               "decoder.conv_in.weight": torch.zeros(512, 4, 3, 3), "decoder.conv_out.weight": torch.zeros(3, 128, 3, 3)},
              vae / "diffusion_pytorch_model.safetensors")
    return root


def dry_run(preset: str, imagenet: Path, workdir: Path) -> Counter:
    config = yaml.safe_load((REPO / f"configs/{preset}.yaml").read_text())
    config["dataset"]["root"] = str(imagenet)
    for key in ("classes", "class_ids"):
        config["dataset"][key] = str(REPO / config["dataset"][key])
    config["base_models"] = {"dit": str(imagenet / "DiT-XL-2-256x256.pt"), "vae": str(imagenet / "sd-vae-ft-mse"),
                             "dit_num_heads": 1}  # the stand-in's hidden size is no model-zoo size
    if "soft_label" in config:  # a random stand-in teacher would fail the class-order check: the feature network
        config["soft_label"]["teacher"] = None
    if "igd" in config:  # the stand-in tree holds 2 images in most classes (the gradient memory changes no job count)
        config["igd"]["gradient_memory"] = 2
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--cores", "8", "--dry-run", "--quiet", "rules"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stats = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\n\s*total", result.stdout + result.stderr, re.DOTALL)
    return Counter({rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", stats.group(1), re.MULTILINE)})


def validations(config: dict, methods: list[str]) -> int:
    return len(methods) * len(config["ipcs"]) * len(config["validate"]["archs"]) * len(config["validate"]["seeds"])


def extra_study_runs(config: dict) -> int:
    """Validation runs the studies add: a point that is a method of the main grid adds none (the
    presets' study IPCs and archs are inside the main grid)."""
    full = plan.load_config({**config, "dataset": {}})  # the schema's defaults; the dataset plays no part
    runs = set()  # two studies may share a point (sampler ddim = ddim_steps 50)
    for study in full["studies"]:
        points = [methods.study_point(study["method"], study["parameter"], v, full) for v in study["values"]]
        runs |= {(p, ipc, arch, seed) for p in points if p not in config["methods"]
                 for ipc in study.get("ipcs", config["ipcs"]) for arch in study.get("archs", config["validate"]["archs"])
                 for seed in config["validate"]["seeds"]}
    return len(runs)


@pytest.fixture(scope="module")
def planned(fake_imagenet, tmp_path_factory):
    """The planned job counts of a preset; each preset is dry-run once for all tests."""
    plans = {}

    def jobs(preset: str) -> Counter:
        if preset not in plans:
            plans[preset] = dry_run(preset, fake_imagenet, tmp_path_factory.mktemp(preset) / "run")
        return plans[preset]

    return jobs


@pytest.mark.parametrize("preset", ["imagewoof", "imagenette", "imageidc", "imagenet100"])
def test_preset_plans_the_paper_grid(preset, planned):
    config = yaml.safe_load((REPO / f"configs/{preset}.yaml").read_text())
    jobs = planned(preset)
    assert config["dataset"]["resolution"] == 256 and config["generate"]["steps"] == 50
    assert config["generate"]["guidance_scale"] == 4.0 and config["finetune"]["batch_size"] == 8
    assert "base_vae" not in jobs and "base_dit" not in jobs  # pretrained weights, nothing trained from scratch
    assert jobs["prepare"] == 1
    assert jobs["encode"] == (10 if preset == "imagenet100" else 1)  # scattered like the phases
    per_ipc = [m for m in config["methods"] if m != "full"]
    expanded = config.get("expansion", {"methods": [], "ipcs": []})
    expansion = len(expanded["methods"]) * len(expanded["ipcs"])
    expansion_runs = expansion * len(config["validate"]["archs"]) * len(config["validate"]["seeds"])
    assert jobs["validate"] == validations(config, per_ipc) + extra_study_runs(config) + expansion_runs
    assert jobs["validate_full"] == len(config["validate"]["archs"]) * len(config["validate"]["seeds"])


def test_imagenet1k_plans_table4_under_the_soft_label_protocol(planned):
    jobs = planned("imagenet1k")
    assert jobs["finetune"] == 100  # minimax, one model per phase of 10 classes
    assert jobs["encode"] == 100  # one job per 10 classes: a phase reads only its latents
    assert jobs["generate"] == 8  # dit, minimax, igd and igd_minimax at IPC 10 and 50
    assert jobs["igd_surrogate"] == 1 and jobs["igd_gradients"] == 1  # shared by both IGD methods and IPCs
    assert jobs["validate_soft_label"] == 4 * 2 * 3 and jobs["table4"] == 1
    assert "validate" not in jobs and "table1" not in jobs and "analyze" not in jobs  # no hard-label tables, no MMD


def test_imagenet100_finetunes_one_model_per_phase_of_ten_classes(planned):
    jobs = planned("imagenet100")
    assert jobs["finetune"] == 10  # one method (minimax) x 10 phases
    assert jobs["generate"] == 2  # per IPC; each job samples every class with its phase's model


def test_imagewoof_studies_share_the_main_finetuning(planned):
    jobs = planned("imagewoof")
    # 7 fine-tuned table methods, plus one fine-tuning per non-default value of the 3 weight and memory
    # sweeps, and one per epochs value: the main model trains for 12,000 steps, not 8 epochs (mgd3_minimax,
    # igd_minimax and the sampler studies sample the minimax model)
    assert jobs["finetune"] == 7 + 4 + 4 + 3 + 6
    assert jobs["igd_surrogate"] == 1 and jobs["igd_gradients"] == 1


def reference_epochs(ipc: int, classes: int) -> int:
    """IDC's `ipc_epoch` as MinimaxDiffusion's copy defines it (argument.py L18-43, factor 1)."""
    epochs = 3000 if ipc == 1 else 2000 if ipc <= 10 else 1500 if ipc <= 50 else 1000 if ipc <= 200 else 500
    if classes == 100:
        epochs = int(2 / 3 * epochs)
        epochs -= epochs % 100
    return epochs


@pytest.mark.parametrize("preset", ["imagewoof", "imagenette", "imageidc", "imagenet100"])
def test_presets_follow_the_reference_protocol(preset):
    """Each value of docs/protocol.md, from the reference's code (MM = vimar-gu/MinimaxDiffusion)."""
    config = yaml.safe_load((REPO / f"configs/{preset}.yaml").read_text())
    classes = len((REPO / config["dataset"]["classes"]).read_text().split())
    validate, finetune, generate = config["validate"], config["finetune"], config["generate"]
    assert validate["epochs"] == {ipc: reference_epochs(ipc, classes) for ipc in (10, 20, 50, 70, 100)}
    assert validate["full_epochs"] == 300  # MM argument.py: --epochs 300 for the full set
    assert (validate["batch_size"], validate["lr"], validate["weight_decay"]) == (64, 0.01, 0.0005)  # MM: nclass > 100 only
    assert (validate["resolution"], validate["augment"], validate["normalize"]) == (224, "idc", "imagenet")
    assert (validate["evaluations"], validate["report"], validate["precision"]) == (100, "best", "fp32")
    assert validate["archs"] == ["convnet", "resnetap10", "resnet18"] and validate["width_factor"] == 1.0
    assert (finetune["train_steps"], finetune["precision"], finetune["lr"], finetune["ema_decay"]) == \
        (12000, "fp32", 0.001, 0.9999)
    assert (finetune["memory_size"], finetune["rep_weight"], finetune["div_weight"]) == (64, 0.002, 0.008)
    assert (generate["guidance_scale"], generate["guidance_channels"], generate["precision"]) == (4.0, 3, "fp32")
    assert generate["steps"] == 50


@pytest.mark.parametrize("preset", ["imagewoof", "imagenet1k"])
def test_igd_presets_take_dd_igd_settings(preset):
    """DD_IGD's scripts (mchen725/DD_IGD sample_mp.sh, sample_mp_minimax.sh, train_ckpt.sh, sample.py)."""
    config = yaml.safe_load((REPO / f"configs/{preset}.yaml").read_text())
    igd = config["igd"]
    assert {"igd", "igd_minimax"} <= set(config["methods"])
    assert igd["influence_scale"] == {"dit": 5.0, "finetuned": 10.0}  # --gm-scale 5 / 10
    assert igd["deviation_scale"] == {"dit": 120.0, "finetuned": 100.0}  # --dev-scale 120 / 100
    assert (igd["interval"], igd["gradient_memory"], igd["memory_size"]) == ({"low": 30, "high": 45}, 200, 64)
    assert (igd["surrogate_arch"], igd["width_factor"]) == ("convnet", 1.0)  # ConvNet-6 at 256 px, width 128
    assert igd["checkpoints"] == ([0, 5, 16, 40] if preset == "imagewoof" else [0, 5, 18, 52])  # rand_ckpts
    assert igd["surrogate_epochs"] == (50 if preset == "imagewoof" else 52)


def test_imagenet1k_follows_rded_soft_label_protocol():
    """RDED's validation (LINs-lab/RDED argument.py, validation/main.py; docs/protocol.md)."""
    soft = yaml.safe_load((REPO / "configs/imagenet1k.yaml").read_text())["soft_label"]
    assert (soft["epochs"], soft["lr"], soft["weight_decay"], soft["temperature"]) == (300, 0.001, 0.01, 20)
    assert (soft["resolution"], soft["archs"], soft["batch_size"]) == (224, ["resnet18_bn"], None)


def test_the_toy_command_checks_the_data_and_weights_it_names(tmp_path):
    """`python -m minimaxdd.toy` wrote a config and exited 0 for a dataset root or weights file that
    does not exist; the error came only when Snakemake started."""
    from minimaxdd import toy

    preset = Path(__file__).resolve().parents[1] / "configs" / "imagenette.yaml"
    toy.write_imagenet_like(tmp_path / "data", ["n01440764", "n02102040"], per_class=2, val_per_class=1)
    out = tmp_path / "toy.yaml"
    for setting, message in ((f"dataset.root={tmp_path / 'nowhere'}", r"^error: dataset\.root: .*nowhere"),
                             (f"base_models.vae={tmp_path / 'vae'}", r"^error: base_models\.vae: .*vae")):
        with pytest.raises(SystemExit) as stop:
            toy.main([str(preset), "--set", f"dataset.root={tmp_path / 'data'}", "--set", setting, "-o", str(out)])
        assert re.match(message, str(stop.value)) and not out.exists(), stop.value
