"""Checks of a config: the schema, with a one-line message naming the key, then what needs more
than the schema: data on disk, model files and shapes, method names.

They run when the workflow is parsed, before any job, so a bad config costs seconds, not hours.
Every failure is a ConfigError whose one-line message names the config key and, where a file is at
fault, the file; docs/troubleshooting.md lists them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from . import guidance, methods

# The schema the Snakefile validates against: package data, installed with the package (pyproject.toml).
SCHEMA = Path(__file__).resolve().parent / "config.schema.yaml"


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def validate_schema(config: dict, schema: dict) -> None:
    """Raise ConfigError for the most relevant schema violation, as `key.path[i]: what is wrong`.

    Snakemake's own validation (which also fills in the defaults) would report the same error over
    several lines, the key buried in `instance['validate']['archs'][0]`.
    """
    import jsonschema
    from jsonschema.exceptions import best_match

    check_numbers(config, schema)
    error = best_match(jsonschema.validators.validator_for(schema)(schema).iter_errors(config))
    if error is None:
        return
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path).lstrip(".")
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        unknown = [k for k in error.instance if k not in known]
        where = f" under {key}" if key else ""
        message = (f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}{where}; "
                   f"known: {', '.join(known)}")
        key = ".".join(filter(None, [key, str(unknown[0]) if unknown else ""]))
    elif error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        key = ".".join(filter(None, [key, missing[0] if missing else ""]))
        message = "required key is missing"
    else:
        message = " ".join(error.message.split())
    message = message if len(message) <= 300 else message[:297] + "..."
    raise ConfigError(f"{key or 'config'}: {message} (see docs/configuration.md)")


def data_disk_bytes(config: dict, sizes: dict[str, int], encoded: bool) -> dict[str, int]:
    """Bytes the data stages write: the uint8 shards of both splits, (`encoded`: a generator
    is fine-tuned or trained here) the fp16 latent mean and std of every training image and its
    flip, and what the stages of each guidance method a method uses write (under its name: IGD's
    class gradients). Latents: an SD-VAE (base_models.vae) is 4 x res/8 x res/8; the tiny VAE
    halves the side once per block after the first."""
    dataset, models = config["dataset"], config["base_models"]
    res = dataset["resolution"]
    if models["vae"]:
        channels, side = 4, res // 8
    else:
        tiny = models["tiny_vae"]
        channels, side = tiny["latent_channels"], res // 2 ** (len(tiny["block_channels"]) - 1)
    latents = sizes["train"] * 2 * 2 * 2 * channels * side * side if encoded else 0
    guided = guided_methods(config)
    if guided:
        from . import data

        classes = len(data.resolve_classes(dataset)[0])
    return {"shards": (sizes["train"] + sizes["test"]) * dataset["channels"] * res * res, "latents": latents,
            **{guide: guidance.method(guide).disk_bytes(config, classes) for guide in guided}}


def guided_methods(config: dict) -> dict[str, list[str]]:
    """The guidance methods a config's method names use, each with those names."""
    guided = {}
    for name in (*config["methods"], *config["expansion"]["methods"]):
        guide = methods.guidance_of(name)
        if guide:
            guided.setdefault(guide, []).append(name)
    return guided


def check_disk(config: dict, exp: str | Path, encoded: bool) -> None:
    """Stop before the first job when the results folder cannot be written, or when the data stages
    would not fit on its disk; the shards and latents already written (a resumed run) count as done."""
    import shutil
    import tempfile

    from . import data

    needed = data_disk_bytes(config, data.split_sizes(config["dataset"]), encoded)
    exp = Path(exp)
    guided = guided_methods(config)
    written = sum(p.stat().st_size for folder in ("data", "latents", *guided)
                  for p in (exp / folder).rglob("*") if p.is_file())
    existing = next(p for p in (exp, *exp.parents) if p.exists())
    try:  # a write, not os.access: root passes that whatever the folder's modes or attributes
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=".tmp", dir=existing)
    except OSError as error:
        raise ConfigError(f"experiment: cannot write in {existing} ({error.strerror}), where {exp} goes; make it "
                          "writable, or run from a working directory you can write in") from None
    os.close(fd)
    os.unlink(probe)
    free = shutil.disk_usage(existing).free
    gb = lambda n: f"{n / 1e9:.1f} GB"
    if sum(needed.values()) - written > free:
        guides = "".join(f", {guidance.method(g).label}'s artifacts ({gb(needed[g])})" for g in guided)
        raise ConfigError(f"experiment: {exp} needs about {gb(sum(needed.values()) - written)} more for the data "
                          f"shards ({gb(needed['shards'])} at dataset.resolution {config['dataset']['resolution']}), "
                          f"latents ({gb(needed['latents'])}){guides}, but {existing} has {gb(free)} free; free "
                          "space, or run from a working directory on a larger disk")


def check_numbers(value, schema: dict, key: str = "") -> None:
    """What JSON Schema lets through: NaN and infinities (every bound compares false with NaN), and
    whole-number floats where the schema says integer (`1.0` is an integer to JSON Schema, not to
    range() or a path). Walks the config with the schema, so every key gets the check."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{key or 'config'}: {value} is not a finite number (see docs/configuration.md)")
        if "integer" in _types(schema) and "number" not in _types(schema):
            raise ConfigError(f"{key or 'config'}: {value!r} is not an integer; write it without a decimal point "
                              "(see docs/configuration.md)")
    elif isinstance(value, dict):
        properties, others = schema.get("properties", {}), schema.get("additionalProperties")
        for name, item in value.items():
            part = properties.get(name, others if isinstance(others, dict) else {})
            check_numbers(item, part, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        for i, item in enumerate(value):
            check_numbers(item, items, f"{key}[{i}]")


def _types(schema: dict) -> set[str]:
    types = schema.get("type", [])
    return {types} if isinstance(types, str) else set(types)


def check(config: dict) -> None:
    """Raise ConfigError for a config that would fail later."""
    from . import data  # torch: imported here, not when a job's Snakefile parse imports the plan

    finetune = config["finetune"]
    if finetune["batch_size"] % finetune["gpus"]:
        raise ConfigError(f"finetune.batch_size ({finetune['batch_size']}) must divide evenly over finetune.gpus "
                          f"({finetune['gpus']} processes)")
    dataset = config["dataset"]
    if config["device"] == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device: cuda, but this torch ({torch.__version__}) sees no CUDA device; "
                              "use device: auto or cpu, or install a CUDA build of torch")
    try:
        counts = data.class_image_counts(dataset)
    except data.DatasetError as error:
        raise ConfigError(str(error)) from None
    if len(counts) < 2:  # every accuracy would be 100 and every score nan
        key = "dataset.classes" if dataset.get("classes") else "dataset.root"
        raise ConfigError(f"{key}: the dataset has one class ({next(iter(counts))!r}); a classifier needs at least two")

    protocols = config["validate"]["protocols"]
    if "no_augment" in protocols and "hard_label" not in protocols:
        raise ConfigError("validate.protocols: no_augment is scored against hard_label (DD-Ranking's ARS compares "
                          "the two), so list hard_label too")
    for name in config["variants"]:
        if name in (*methods.REAL_METHODS, "full", "dit", *methods.FINETUNED_BUILTINS, *config["external"]) \
                or methods.sampler_of(name):
            raise ConfigError(f"variants.{name}: {name!r} is the name of a built-in method or a set from elsewhere; "
                              "name the variant otherwise")
    key = "methods"
    try:
        for name in config["methods"]:
            methods.check(name, config)
        for i, study in enumerate(config["studies"]):
            key = f"studies[{i}].method"
            methods.check(study["method"], config)
            if not methods.is_generated(study["method"], config):
                raise methods.MethodError(f"method {study['method']!r} must be a generated one")
            for value in study["values"]:
                point = methods.study_point(study["method"], study["parameter"], value, config)
                methods.check(point, config)
                check_study_point(point, study["parameter"], config)
        key = "expansion.methods"
        for name in config["expansion"]["methods"]:
            methods.check(name, config)
            if not methods.is_generated(name, config):
                raise methods.MethodError(f"{name!r} is not a generated method")
    except methods.MethodError as error:
        raise ConfigError(f"{key}: {error}") from None

    name, fewest = min(counts.items(), key=lambda item: item[1])
    ipc = max(config["ipcs"])
    if ipc > fewest:
        real = [m for m in config["methods"] if m in methods.REAL_METHODS]
        if real:
            raise ConfigError(f"ipcs: IPC {ipc} exceeds the {fewest} training images of class '{name}', "
                              f"so methods {', '.join(real)} cannot pick that many real images "
                              "(lower the IPC, add images, or drop the class from dataset.classes)")
    for guide, names in guided_methods(config).items():
        try:
            guidance.method(guide).check_data(config, counts, names)
        except ValueError as error:
            raise ConfigError(str(error)) from None

    analysis = config["analysis"]
    smallest = min(config["ipcs"]) * len(counts)  # the fewest images an analysed set holds
    if analysis["enabled"] and any(m != "full" for m in config["methods"]) and analysis["k"] >= smallest:
        raise ConfigError(f"analysis.k: {analysis['k']} nearest neighbours need more than {analysis['k']} images in "
                          f"a set, and the IPC {min(config['ipcs'])} sets of {len(counts)} classes hold {smallest}; "
                          "lower analysis.k, or set analysis.enabled: false")

    latent_numbers = check_models(config)
    check_external(config)
    if "soft_label" in config["validate"]["protocols"] and config["soft_label"]["teacher"]:
        check_teacher(config)

    if any(methods.criteria(m, config) for m in config["methods"]):
        per_phase = config["finetune"]["classes_per_phase"] or len(counts)
        sizes = list(counts.values())
        phase_images = [sum(sizes[s:s + per_phase]) for s in range(0, len(sizes), per_phase)]
        smallest = min(range(len(phase_images)), key=phase_images.__getitem__)
        if config["finetune"]["batch_size"] > phase_images[smallest]:
            where = (f"of fine-tuning phase {smallest} (finetune.classes_per_phase {per_phase})"
                     if len(phase_images) > 1 else "")
            raise ConfigError(f"finetune.batch_size {config['finetune']['batch_size']} exceeds the "
                              f"{phase_images[smallest]} training images {where}".rstrip())
        check_minimax_memory(config, min(per_phase, len(counts)), latent_numbers)


def check_minimax_memory(config: dict, classes: int, latent_numbers: int) -> None:
    """The minimax criteria's two class memories (training.Trainer: real and predicted latents,
    `memory_size` of each class of a phase, float32, minimax.ClassMemory) must fit in this machine's
    memory: else fine-tuning fails with an allocation error that names no key."""
    sizes = {"finetune.memory_size": config["finetune"]["memory_size"]}
    sizes |= {f"studies[{i}].values": max(study["values"]) for i, study in enumerate(config["studies"])
              if study["parameter"] == "memory_size"}
    key, size = max(sizes.items(), key=lambda item: item[1])
    need = 2 * (classes + 1) * size * latent_numbers * 4
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise ConfigError(f"{key}: memories of {size} latents a class take {need / 1e9:.3g} GB for the {classes} "
                          f"classes of a fine-tuning phase, more than this machine's {have / 1e9:.3g} GB; lower it "
                          "(the paper keeps 64), or fine-tune fewer classes a phase (finetune.classes_per_phase)")


def check_study_point(point: str, parameter: str, config: dict) -> None:
    """A study must sweep a setting its method uses: `eta` only moves DDIM, and the criteria's
    weights and memory only a method with criteria."""
    if parameter == "eta" and methods.generate_settings(point, config)["sampler"] != "ddim":
        raise methods.MethodError(f"point {point!r} samples with ddpm, which has no eta (sweep eta of a "
                                  "method@sampler=ddim)")
    model = methods.model_of(methods.split(point)[0])
    if parameter in ("rep_weight", "div_weight", "memory_size") and methods.criteria(model, config) == ("off", "off"):
        raise methods.MethodError(f"point {point!r}: {model!r} fine-tunes without the criteria, so {parameter} "
                                  "changes nothing")


def check_external(config: dict) -> None:
    """Each set from elsewhere: a column in `methods`, one folder per dataset class, as many images
    in each as its IPC (files are counted, not decoded)."""
    from . import data
    from .external import external_ipc

    names, _ = data.resolve_classes(config["dataset"])
    for name, folders in config["external"].items():
        if name not in config["methods"]:
            raise ConfigError(f"external.{name}: list {name!r} in `methods` too (its column in the tables)")
        if name in (*methods.REAL_METHODS, "full") or methods.is_generated(name, config):
            raise ConfigError(f"external.{name}: {name!r} is the name of a built-in method; name the set otherwise")
        for ipc, folder in folders.items():
            if ipc not in config["ipcs"]:
                raise ConfigError(f"external.{name}.{ipc}: IPC {ipc} is not one of `ipcs` {config['ipcs']}, so "
                                  "no table would show the set")
            try:
                found = external_ipc(folder, names)
            except data.DatasetError as error:
                raise ConfigError(f"external.{name}.{ipc}: {error}") from None
            if found != ipc:
                raise ConfigError(f"external.{name}.{ipc}: {folder} holds {found} images per class, not {ipc}")


def check_teacher(config: dict) -> None:
    """The soft-label teacher file: a torchvision ResNet-18 of `soft_label.teacher_classes` outputs
    whose class order fits dataset.class_ids: on a few real test images per class it must beat
    chance clearly (a shifted or foreign class order scores near chance). Checked once per teacher
    file, class order and setting (the result is kept next to the experiment's results)."""
    import json

    from . import data
    from .softlabel import check_teacher_class_order, load_teacher

    soft, dataset = config["soft_label"], config["dataset"]
    path = Path(soft["teacher"])
    names, ids = data.resolve_classes(dataset)
    stat = path.stat() if path.is_file() else None
    key = {"teacher": str(path.resolve()), "size": stat and stat.st_size, "mtime": stat and stat.st_mtime_ns,
           "class_ids": ids, "classes": soft["teacher_classes"], "resolution": soft["resolution"],
           "images": soft["check_images"]}
    done = Path("results", config["experiment"], "teacher_check.json")
    if done.is_file() and json.loads(done.read_text()).get("key") == key:
        return
    from .io import save_json
    try:
        teacher = load_teacher(path, soft["teacher_classes"])
        test = data.load_split(dataset, "test", per_class=soft["check_images"])
        subset = soft["teacher_classes"] == len(names)  # a teacher of exactly the dataset's classes
        accuracy = check_teacher_class_order(teacher, test.images, test.labels, None if subset else ids,
                                             resolution=soft["resolution"], per_class=soft["check_images"])
    except (ValueError, FileNotFoundError) as error:
        raise ConfigError(f"soft_label.teacher: {error}") from None
    save_json({"key": key, "accuracy": accuracy}, done)


def check_models(config: dict) -> int:
    """The base models: pretrained files are read (by header or memory-mapped, not loaded) and their
    keys and shapes checked, and the VAE, the DiT and the dataset must fit one another. Returns the
    numbers in one image's latent."""
    from . import data, pretrained

    dataset, models = config["dataset"], config["base_models"]
    resolution = dataset["resolution"]
    if models["vae"] is not None:
        try:
            vae = pretrained.inspect_vae(models["vae"])
        except pretrained.CheckpointError as error:
            raise ConfigError(f"base_models.vae: {error}") from None
        if vae.in_channels != dataset["channels"]:
            raise ConfigError(f"base_models.vae: {vae.folder} encodes {vae.in_channels}-channel images but "
                              f"dataset.channels is {dataset['channels']}")
        if resolution % vae.downsample:
            raise ConfigError(f"dataset.resolution {resolution} is not divisible by the downsampling factor "
                              f"{vae.downsample} of base_models.vae {vae.folder}")
        vae_name = f"base_models.vae {vae.folder}"
    else:
        tiny_vae = models["tiny_vae"]
        groups = pretrained.vae_norm_groups(tiny_vae["block_channels"])
        if any(width % groups for width in tiny_vae["block_channels"]):
            raise ConfigError(f"base_models.tiny_vae.block_channels {tiny_vae['block_channels']}: every width must be "
                              f"divisible by {groups}, the group count of the VAE's group norms (the first width, "
                              "at most 16)")
        vae = pretrained.VaeInfo(None, dataset["channels"], tiny_vae["latent_channels"],
                                 2 ** (len(tiny_vae["block_channels"]) - 1))
        if resolution % vae.downsample:
            raise ConfigError(f"dataset.resolution {resolution} is not divisible by the tiny VAE's "
                              f"downsampling factor {vae.downsample} (base_models.tiny_vae.block_channels)")
        vae_name = "the tiny VAE (base_models.tiny_vae)"
    latent_size = resolution // vae.downsample

    if models["dit"] is None:
        tiny = models["tiny_dit"]
        if latent_size % tiny["patch_size"]:
            raise ConfigError(f"base_models.tiny_dit.patch_size {tiny['patch_size']} does not divide the "
                              f"latent size {latent_size}")
        if tiny["hidden_size"] % tiny["num_heads"]:
            raise ConfigError("base_models.tiny_dit.hidden_size must be divisible by num_heads")
        return vae.latent_channels * latent_size ** 2
    path = models["dit"]
    try:
        dit = pretrained.inspect_dit(path, models["dit_num_heads"])
    except pretrained.CheckpointError as error:
        raise ConfigError(f"base_models.dit: {error}") from None
    if dit.in_channels != vae.latent_channels:
        raise ConfigError(f"base_models.dit: {path} takes {dit.in_channels}-channel latents but {vae_name} "
                          f"makes {vae.latent_channels}-channel ones")
    if dit.input_size != latent_size:
        raise ConfigError(f"base_models.dit: {path} takes {dit.input_size}x{dit.input_size} latents "
                          f"({dit.input_size * vae.downsample} px images with {vae_name}) but dataset.resolution "
                          f"{resolution} gives {latent_size}x{latent_size}")
    if not dit.learn_sigma:
        raise ConfigError(f"base_models.dit: {path} predicts no variance (learn_sigma); sampling and the "
                          "fine-tuning loss need a DiT with learned variance")
    names, ids = data.resolve_classes(dataset)
    top = max(range(len(ids)), key=ids.__getitem__)
    if ids[top] >= dit.num_classes:
        raise ConfigError(f"dataset.class_ids: class {names[top]!r} has id {ids[top]}, out of range for the "
                          f"{dit.num_classes} classes of base_models.dit {path}")
    return dit.in_channels * dit.input_size ** 2
