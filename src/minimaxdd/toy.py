"""A preset at toy size: the paper's path, only smaller.

`shrink` takes a preset (or any config) and changes only its sizes: the number of classes (the
first ones of its class list), the IPCs (the first two become 1 and 2, or the first 1 alone), seeds, epochs, steps,
widths, the values of each study, and the sizes that must follow them (phases and scattered jobs of
one class each, MGD3's stop step scaled with the steps, analysis.k below the smallest set). Every
other key, the protocol (256 px data, /8 latents, the 1000-class label space through
dataset.class_ids, 224 px validation with the IDC augmentation, soft labels, phases, the learning
rates and weights), stays as the preset has it. TOY_KEYS lists the keys it may change; a test
checks that nothing else moves.

    python -m minimaxdd.toy configs/imagewoof.yaml --set dataset.root=/data/imagenet -o toy.yaml
    snakemake --cores all --configfile toy.yaml

For tests and benchmarks it also writes stand-ins for what a user brings, in the user's formats:
an ImageNet-like folder of JPEGs under wnids (`write_imagenet_like`), a DiT in the 1000-class
label space as an original facebookresearch `.pt`, a DiT training checkpoint or a diffusers folder
(`write_dit`), a VAE in the SD-VAE layout at reduced width (`write_vae`) and a torchvision-format
ResNet-18 teacher whose class order the start-of-run check accepts (`write_teacher`). Their
weights are random (the teacher's last layer excepted): they test paths and shapes, not quality.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import yaml

from . import checks, data, guidance, plan
from .checks import ConfigError

# Every key `shrink` may change; "studies[].x" is that key of every study.
TOY_KEYS = (
    "experiment", "dataset.classes", "ipcs", "expansion.ipcs", "external",
    "finetune.epochs", "finetune.train_steps", "finetune.classes_per_phase", "encode.classes_per_job",
    "generate.steps", "generate.classes_per_job", "mgd3.stop_step",
    "igd.interval", "igd.surrogate_epochs", "igd.checkpoints", "igd.gradient_memory", "igd.width_factor",
    "validate.seeds", "validate.epochs", "validate.default_epochs", "validate.full_epochs", "validate.width_factor",
    "soft_label.epochs", "soft_label.width_factor", "soft_label.check_images",
    "analysis.feature_epochs", "analysis.k", "analysis.samples_per_class", "analysis.tsne_real_points",
    "studies[].values", "studies[].ipcs",
)
TOY_IPCS = (1, 2)


def shrink(config: dict, classes: int = 2, ipcs: int = 2, steps: int = 4, epochs: int = 2) -> dict:
    """The config (schema-completed by plan.load_config) at toy size, with its first `ipcs` IPCs
    (1 or 2; one halves the run); see the module docstring."""
    if ipcs not in (1, 2):
        raise ConfigError(f"--ipcs: the toy run takes 1 or 2 IPCs, not {ipcs}")
    toy_ipc_values = TOY_IPCS[:ipcs]
    toy = copy.deepcopy(config)
    toy["experiment"] = f"{config['experiment']}-toy"
    if config["dataset"]["kind"] == "imagefolder":
        names, _ = data.resolve_classes(config["dataset"])
        if classes > len(names):
            raise ConfigError(f"dataset.classes: the toy run takes {classes} classes, the config has {len(names)}")
        toy["dataset"]["classes"] = names[:classes]

    ipc_of = dict(zip(config["ipcs"], toy_ipc_values))  # preset IPC -> toy IPC
    toy["ipcs"] = list(ipc_of.values())
    toy_ipcs = lambda ipcs: sorted({ipc_of.get(i, toy_ipc_values[-1]) for i in ipcs})  # noqa: E731
    toy["expansion"]["ipcs"] = toy_ipcs(config["expansion"]["ipcs"]) if config["expansion"]["ipcs"] else []
    toy["external"] = {name: {ipc_of[i]: folder for i, folder in sets.items() if i in ipc_of}
                       for name, sets in config["external"].items()}
    for study in toy["studies"]:
        study["values"] = study["values"][:2]
        if study.get("ipcs"):
            study["ipcs"] = toy_ipcs(study["ipcs"])

    finetune = toy["finetune"]
    finetune["epochs"] = 1
    finetune["train_steps"] = steps if config["finetune"]["train_steps"] else None
    for key, section in (("classes_per_phase", finetune), ("classes_per_job", toy["encode"]),
                         ("classes_per_job", toy["generate"])):
        if section[key] is not None:
            section[key] = 1  # one class each: the phases and scattered jobs still exist
    generate = toy["generate"]
    for name in guidance.names():
        guidance.method(name).shrink(toy[name], config, steps, epochs)
    generate["steps"] = steps

    validate = toy["validate"]
    validate["seeds"] = validate["seeds"][:1]
    validate["epochs"] = {ipc: epochs for ipc in toy["ipcs"]}
    validate["default_epochs"] = epochs
    validate["full_epochs"] = 1
    validate["width_factor"] = min(validate["width_factor"], 0.25)
    soft = toy["soft_label"]
    soft["epochs"] = epochs
    soft["width_factor"] = min(soft["width_factor"], 0.25)
    soft["check_images"] = min(soft["check_images"], 2)
    analysis = toy["analysis"]
    analysis["feature_epochs"] = 1
    analysis["samples_per_class"] = min(analysis["samples_per_class"], 2)
    analysis["tsne_real_points"] = min(analysis["tsne_real_points"], 200)
    analysis["k"] = max(1, min(analysis["k"], TOY_IPCS[0] * classes - 1))
    return toy


# ---------------------------------------------------------------------------------------------
# Stand-ins for a user's data and weights
# ---------------------------------------------------------------------------------------------

DIT_FORMATS = ("original", "training", "diffusers")
TOY_DIT = {"input_size": 32, "patch_size": 8, "in_channels": 4, "hidden_size": 32, "depth": 2, "num_heads": 2}


def write_imagenet_like(root: Path, wnids: list[str], per_class: int, val_per_class: int, seed: int = 0) -> None:
    """root/{train,val}/<wnid>/<i>.JPEG: a smooth gradient around a colour of the class plus noise
    (JPEGs of realistic size, ~120 KB; the class shows in the colour), sides drawn in ImageNet's
    333-1024 px."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 8, (1024, 1024, 3)).astype(np.float32)  # one tile, cropped at random offsets
    colours = rng.integers(48, 208, (len(wnids), 3))
    for split, count in (("train", per_class), ("val", val_per_class)):
        for wnid, colour in zip(wnids, colours):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                w, h = (int(v) for v in rng.integers(333, 1025, 2))
                corners = np.clip(colour + rng.integers(-48, 49, (3, 3, 3)), 0, 255).astype(np.uint8)
                base = np.asarray(Image.fromarray(corners).resize((w, h), Image.BILINEAR), dtype=np.float32)
                y, x = rng.integers(0, 1025 - h), rng.integers(0, 1025 - w)
                pixels = np.clip(base + noise[y:y + h, x:x + w], 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.JPEG", quality=90)


def write_vae(folder: Path) -> Path:
    """A diffusers AutoencoderKL in the SD-VAE layout (four blocks: 256 px -> 32x32x4 latents, the
    SD scaling factor) at reduced width."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                  up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[16, 16, 32, 32],
                  layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=256,
                  scaling_factor=0.18215).save_pretrained(folder)
    return folder


def write_dit(path: Path, form: str, num_classes: int = 1000, seed: int = 0) -> Path:
    """A small DiT (TOY_DIT: 32x32x4 latents, learned variance) with `num_classes` labels, as an
    original facebookresearch state dict (`original`, a .pt), a checkpoint of DiT's train.py with
    `model`, `ema`, `opt` and `args` (`training`), or a diffusers DiTTransformer2DModel folder
    (`diffusers`). Every weight is random, the adaLN-Zero ones too (zeros would hide mistakes)."""
    import argparse

    import torch

    torch.manual_seed(seed)
    if form == "diffusers":
        from diffusers import DiTTransformer2DModel

        heads = TOY_DIT["num_heads"]
        model = DiTTransformer2DModel(num_attention_heads=heads, attention_head_dim=TOY_DIT["hidden_size"] // heads,
                                      in_channels=4, out_channels=8, num_layers=TOY_DIT["depth"],
                                      sample_size=TOY_DIT["input_size"], patch_size=TOY_DIT["patch_size"],
                                      num_embeds_ada_norm=num_classes)
        _randomize(model)
        for block in model.transformer_blocks[1:]:  # as converted DiT weights: one embedder, copied
            block.norm1.emb.load_state_dict(model.transformer_blocks[0].norm1.emb.state_dict())
        model.save_pretrained(path)
        return path
    from .dit import DiT, DiTConfig

    model = _randomize(DiT(DiTConfig(**TOY_DIT, num_classes=num_classes)))
    state = {k: v for k, v in model.state_dict().items() if "gamma" not in k}  # Difffit's scales are ours
    path.parent.mkdir(parents=True, exist_ok=True)
    if form == "original":
        torch.save(state, path)
    elif form == "training":
        torch.save({"model": state, "ema": state, "opt": {}, "args": argparse.Namespace(model="DiT-toy")}, path)
    else:
        raise ValueError(f"form must be one of {DIT_FORMATS}, got {form!r}")
    return path


def _randomize(module):
    import torch

    with torch.no_grad():
        for name, p in module.named_parameters():
            if "gamma" not in name:
                p.add_(0.05 * torch.randn_like(p))
    return module


def write_teacher(path: Path, dataset: dict, resolution: int, num_classes: int = 1000) -> Path:
    """A torchvision-format ResNet-18 state dict (width 16) with `num_classes` outputs whose
    outputs at the dataset's class ids are a nearest-class-mean readout of its random features on
    the training images: random, but in the dataset's class order, so the check accepts it."""
    import torch

    from .nets import ResNet18BN
    from .softlabel import NORMALIZE, normalize_images, rded_test_images, to_unit

    torch.manual_seed(0)
    teacher = ResNet18BN(3, num_classes, width=16).eval()
    split = data.load_split(dataset, "train")
    names, ids = data.resolve_classes(dataset)
    x = normalize_images(to_unit(rded_test_images(split.images, resolution), "cpu"), NORMALIZE)
    head, teacher.fc = teacher.fc, torch.nn.Identity()
    with torch.no_grad():
        features = teacher(x)
        means = torch.stack([features[split.labels == k].mean(0) for k in range(len(names))])
        head.weight.zero_()
        head.bias.fill_(-1e3)
        head.weight[ids] = 2 * means
        head.bias[ids] = -(means ** 2).sum(1)  # -|f - m|^2 up to the class-independent |f|^2
    teacher.fc = head
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(teacher.state_dict(), path)
    return path


def apply_sets(config: dict, sets: list[str]) -> dict:
    """`key.path=value` overrides (YAML values), as Snakemake's --config takes them."""
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: write key.path=value")
        node = config
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return config


def user_config(preset: Path, sets: list[str]) -> dict:
    """The preset file with the user's overrides, checked by the schema and completed."""
    if not preset.is_file():
        raise ConfigError(f"preset: {preset} does not exist")
    return plan.load_config(apply_sets(yaml.safe_load(preset.read_text()) or {}, sets))


def toy_config(preset: Path, sets: list[str], classes: int = 2, ipcs: int = 2) -> dict:
    """The preset with the user's overrides, at toy size."""
    return shrink(user_config(preset, sets), classes, ipcs)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The preset, the user's overrides and the toy run's class and IPC counts (this command and the
    preflight)."""
    parser.add_argument("preset", type=Path, help="a preset or config file, e.g. configs/imagewoof.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config value, e.g. dataset.root=/data/imagenet (repeatable)")
    parser.add_argument("--classes", type=int, default=2, help="classes of the toy run: the first ones of the list")
    parser.add_argument("--ipcs", type=int, default=2, choices=(1, 2),
                        help="IPCs of the toy run: the preset's first two as 1 and 2, or its first as 1 (half the jobs)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write a preset at toy size (only its sizes shrunk).")
    add_config_arguments(parser)
    parser.add_argument("-o", "--out", type=Path, required=True, help="the toy config file to write")
    args = parser.parse_args(argv)
    try:
        toy = toy_config(args.preset, args.set, args.classes, args.ipcs)
        checks.check(toy)  # the data and weights it names, as the workflow's start would check them
    except (ConfigError, data.DatasetError) as error:
        sys.exit(f"error: {error}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"# {args.preset} at toy size (python -m minimaxdd.toy); only sizes differ\n"
                        + yaml.safe_dump(toy, sort_keys=False, allow_unicode=True))
    print(f"wrote {args.out}: run it with snakemake --cores all --configfile {args.out}")


if __name__ == "__main__":
    main()
