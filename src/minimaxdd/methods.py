"""Method names: built-in methods, criteria variants and study points.

A method name is `base` or `base@key=value,...`: `minimax@rep_weight=0.004` is the minimax method
with one fine-tuning setting changed, `minimax@steps=100` the same fine-tuned model sampled with 100
denoising steps. Because every artifact path is keyed by the method name, a study point shares
every upstream artifact it can: a generation-only setting reuses the base method's fine-tuning.
"""

from __future__ import annotations

import difflib

REAL_METHODS = ("random", "kcenter", "herding")
FINETUNED_BUILTINS = {"difffit": ("off", "off"), "minimax": ("minimax", "minimax")}
FINETUNE_KEYS = ("rep_weight", "div_weight", "memory_size", "epochs")
GENERATE_KEYS = ("steps", "guidance_scale")
STUDY_PARAMETERS = FINETUNE_KEYS + GENERATE_KEYS


class MethodError(ValueError):
    pass


def split(name: str) -> tuple[str, dict[str, str]]:
    """`base@k=v,k2=v2` -> ("base", {"k": "v", "k2": "v2"})."""
    base, _, rest = name.partition("@")
    overrides = dict(item.split("=", 1) for item in rest.split(",")) if rest else {}
    return base, overrides


def study_point(base: str, parameter: str, value, config: dict) -> str:
    """The method name of one study point; the config's own value maps to the base method (but not
    an epochs value when the base method trains for `finetune.train_steps` instead)."""
    section = "finetune" if parameter in FINETUNE_KEYS else "generate"
    by_steps = parameter == "epochs" and config["finetune"]["train_steps"] is not None
    if config[section][parameter] == value and not by_steps:
        return base
    return f"{base}@{parameter}={value}"


def criteria(base: str, config: dict) -> tuple[str, str] | None:
    """(representativeness form, diversity form) of a fine-tuned method; None if not fine-tuned."""
    if base in FINETUNED_BUILTINS:
        return FINETUNED_BUILTINS[base]
    variant = config["variants"].get(base)
    return (variant["representativeness"], variant["diversity"]) if variant else None


def is_generated(name: str, config: dict) -> bool:
    base, _ = split(name)
    return base == "dit" or criteria(base, config) is not None


def finetune_name(name: str) -> str:
    """The fine-tuning job a generated method uses: its name without generation-only overrides."""
    base, overrides = split(name)
    kept = [f"{k}={v}" for k, v in overrides.items() if k in FINETUNE_KEYS]
    return f"{base}@{','.join(kept)}" if kept else base


def _typed(value: str, like):
    return type(like)(float(value)) if isinstance(like, (int, float)) and not isinstance(like, bool) else value


def finetune_settings(name: str, config: dict) -> dict:
    """config["finetune"] with the name's overrides, plus the two criteria forms (the class phases
    are the job's own setting)."""
    base, overrides = split(name)
    forms = criteria(base, config)
    settings = {k: v for k, v in config["finetune"].items() if k != "classes_per_phase"}
    settings |= {k: _typed(v, settings[k]) for k, v in overrides.items() if k in FINETUNE_KEYS}
    if "epochs" in overrides:  # a point of an epochs study trains for its epochs, not for train_steps
        settings["train_steps"] = None
    settings |= {"representativeness": forms[0], "diversity": forms[1]}
    if forms == ("off", "off"):  # no criteria: their settings must not trigger reruns
        for key in ("memory_size", "rep_weight", "div_weight"):
            settings.pop(key)
    return settings


def generate_settings(name: str, config: dict) -> dict:
    _, overrides = split(name)
    settings = dict(config["generate"])
    settings.pop("classes_per_job", None)  # how the classes are split over jobs changes no image
    return settings | {k: _typed(v, settings[k]) for k, v in overrides.items() if k in GENERATE_KEYS}


def check(name: str, config: dict) -> None:
    """Raise MethodError for a method name that cannot run, naming what is wrong."""
    base, overrides = split(name)
    if base in (*REAL_METHODS, "full"):
        if overrides:
            raise MethodError(f"method {name!r}: real-data methods take no settings")
        return
    if base != "dit" and criteria(base, config) is None:
        known = ["dit", *FINETUNED_BUILTINS, *config["variants"], *REAL_METHODS, "full"]
        close = difflib.get_close_matches(base, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise MethodError(f"unknown method {base!r}; {hint}known: {', '.join(known)} (add others under `variants`)")
    for key in overrides:
        allowed = GENERATE_KEYS if base == "dit" else STUDY_PARAMETERS
        if key not in allowed:
            raise MethodError(f"method {name!r}: {key!r} is not one of {', '.join(allowed)}")
