"""Checks of a config: the schema, with a one-line message naming the key, then what needs more
than the schema: data on disk, model files and shapes.

They run when the workflow is parsed, before any job, so a bad config costs seconds, not hours.
Every failure is a ConfigError whose one-line message names the config key and, where a file is at
fault, the file; docs/troubleshooting.md lists them.
"""

from __future__ import annotations

from pathlib import Path

from . import data, methods, pretrained

# The schema the Snakefile validates against (present in a source checkout, the way the workflow runs).
SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"



class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def normalize(config: dict) -> dict:
    """YAML reads `10: 2000` with an integer key; JSON Schema wants strings. Then the schema check
    (validate_schema), so that a wrong key, type or value stops with one line naming the key."""
    validate = config.get("validate")
    epochs = validate.get("epochs") if isinstance(validate, dict) else None
    if isinstance(epochs, dict):
        config["validate"]["epochs"] = {str(k): v for k, v in epochs.items()}
    if SCHEMA.is_file():
        validate_schema(config, SCHEMA)
    return config


def validate_schema(config: dict, schema_file: str | Path = SCHEMA) -> None:
    """Raise ConfigError for the most relevant schema violation, as `key.path[i]: what is wrong`.

    Snakemake's own validation (which also fills in the defaults) would report the same error over
    several lines, the key buried in `instance['validate']['archs'][0]`.
    """
    import jsonschema
    import yaml
    from jsonschema.exceptions import best_match

    schema = yaml.safe_load(Path(schema_file).read_text())
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


def canonicalize(config: dict) -> None:
    """Sort mapping keys recursively, in place. Snakemake compares params with their key order, so
    without this, reordering the keys of a config file would rerun every job."""

    def ordered(value):
        if isinstance(value, dict):
            return {key: ordered(value[key]) for key in sorted(value, key=str)}
        if isinstance(value, list):
            return [ordered(item) for item in value]
        return value

    canonical = ordered(config)
    config.clear()
    config.update(canonical)


def validation_epochs(config: dict, method: str, ipc: int) -> int:
    """Epochs per IPC; an expanded set (full training split + a generated set) trains like `full`."""
    settings = config["validate"]
    if method.startswith("full+"):
        return settings["full_epochs"]
    return settings["epochs"].get(str(ipc), settings["default_epochs"])


def study_points(config: dict, study: dict) -> list[str]:
    """The method name of every value of a study, in order."""
    method = study.get("method", "minimax")
    return [methods.study_point(method, study["parameter"], value, config) for value in study["values"]]


def class_phases(config: dict) -> list[list[int] | None]:
    """Class indices of each fine-tuning phase; [None] (all classes, one model) by default."""
    per_phase = config["finetune"]["classes_per_phase"]
    if per_phase is None:
        return [None]
    count = len(data.resolve_classes(config["dataset"])[0])
    return [list(range(start, min(start + per_phase, count))) for start in range(0, count, per_phase)]


def check(config: dict) -> None:
    """Raise ConfigError for a config that would fail later."""
    finetune = config["finetune"]
    if finetune["batch_size"] % finetune["gpus"]:
        raise ConfigError(f"finetune.batch_size ({finetune['batch_size']}) must divide evenly over finetune.gpus "
                          f"({finetune['gpus']} processes)")
    dataset = config["dataset"]
    try:
        counts = data.class_image_counts(dataset)
    except data.DatasetError as error:
        raise ConfigError(str(error)) from None

    key = "methods"
    try:
        for name in config["methods"]:
            methods.check(name, config)
        for study in config["studies"]:
            key = f"studies: {study['name']}"
            for point in study_points(config, study):
                methods.check(point, config)
            if not methods.is_generated(study.get("method", "minimax"), config):
                raise methods.MethodError(f"method {study.get('method', 'minimax')!r} must be a generated one")
        key = "expansion.methods"
        for name in config["expansion"]["methods"]:
            if not methods.is_generated(name, config):
                raise methods.MethodError(f"{name!r} is not a generated method")
    except methods.MethodError as error:
        raise ConfigError(f"{key}: {error}") from None

    real = [m for m in config["methods"] if m in methods.REAL_METHODS]
    if real:
        ipc = max(config["ipcs"])
        name, fewest = min(counts.items(), key=lambda item: item[1])
        if ipc > fewest:
            raise ConfigError(f"ipcs: IPC {ipc} exceeds the {fewest} training images of class '{name}', "
                              f"so methods {', '.join(real)} cannot pick that many real images "
                              "(lower the IPC, add images, or drop the class from dataset.classes)")

    check_models(config)

    if any(methods.criteria(m, config) for m in config["methods"]):
        total = sum(counts.values())
        if config["finetune"]["batch_size"] > total:
            raise ConfigError(f"finetune.batch_size {config['finetune']['batch_size']} exceeds the "
                              f"{total} training images")


def check_models(config: dict) -> None:
    """The base models: pretrained files are read (by header or memory-mapped, not loaded) and their
    keys and shapes checked, and the VAE, the DiT and the dataset must fit one another."""
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
        return
    path = models["dit"]
    try:
        dit = pretrained.inspect_dit(path)
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
