"""Checks of a schema-validated config that need more than the schema: data on disk, model shapes.

They run when the workflow is parsed, before any job, so a bad config costs seconds, not hours.
"""

from __future__ import annotations


from . import data, methods, pretrained

REAL_SUBSET_METHODS = ("random", "kcenter", "herding")


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def normalize(config: dict) -> dict:
    """YAML reads `10: 2000` with an integer key; JSON Schema wants strings."""
    epochs = config.get("validate", {}).get("epochs")
    if isinstance(epochs, dict):
        config["validate"]["epochs"] = {str(k): v for k, v in epochs.items()}
    return config


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
    dataset = config["dataset"]
    try:
        counts = data.class_image_counts(dataset)
    except data.DatasetError as error:
        raise ConfigError(str(error)) from None

    try:
        for name in config["methods"]:
            methods.check(name, config)
        for study in config["studies"]:
            for point in study_points(config, study):
                methods.check(point, config)
            if not methods.is_generated(study.get("method", "minimax"), config):
                raise methods.MethodError(f"studies: {study['name']}: method must be a generated one")
        for name in config["expansion"]["methods"]:
            if not methods.is_generated(name, config):
                raise methods.MethodError(f"expansion.methods: {name!r} is not a generated method")
    except methods.MethodError as error:
        raise ConfigError(str(error)) from None

    if any(m in REAL_SUBSET_METHODS for m in config["methods"]):
        ipc = max(config["ipcs"])
        name, fewest = min(counts.items(), key=lambda item: item[1])
        if ipc > fewest:
            raise ConfigError(f"ipcs: IPC {ipc} exceeds the {fewest} training images of class '{name}', "
                              f"so methods {REAL_SUBSET_METHODS} cannot pick that many real images")

    models = config["base_models"]
    for key, resolve in (("vae", pretrained.resolve_vae_folder), ("dit", pretrained.resolve_dit_source)):
        if models[key] is not None:
            try:
                resolve(models[key])
            except pretrained.CheckpointError as error:
                raise ConfigError(f"base_models.{key}: {error}") from None
    if models["vae"] is None:
        downsample = 2 ** (len(models["tiny_vae"]["block_channels"]) - 1)
        if dataset["resolution"] % downsample:
            raise ConfigError(f"dataset.resolution {dataset['resolution']} is not divisible by the tiny VAE's "
                              f"downsampling factor {downsample} (base_models.tiny_vae.block_channels)")
        latent_size = dataset["resolution"] // downsample
        tiny = models["tiny_dit"]
        if latent_size % tiny["patch_size"]:
            raise ConfigError(f"base_models.tiny_dit.patch_size {tiny['patch_size']} does not divide the "
                              f"latent size {latent_size}")
        if tiny["hidden_size"] % tiny["num_heads"]:
            raise ConfigError("base_models.tiny_dit.hidden_size must be divisible by num_heads")

    if any(methods.criteria(m, config) for m in config["methods"]):
        total = sum(counts.values())
        if config["finetune"]["batch_size"] > total:
            raise ConfigError(f"finetune.batch_size {config['finetune']['batch_size']} exceeds the "
                              f"{total} training images")
