"""Method names: built-in methods, criteria variants, MGD3 and study points.

A method name is `base` or `base@key=value,...`: `minimax@rep_weight=0.004` is the minimax method
with one fine-tuning setting changed, `minimax@steps=100` the same fine-tuned model sampled with 100
denoising steps. Because every artifact path is keyed by the method name, a study point shares
every upstream artifact it can: a generation-only setting reuses the base method's fine-tuning.

A guidance method (guidance/: MGD3, IGD, or a plug-in) `g` gives two kinds of names: `g` samples
the pretrained DiT with its guidance, `g_<fine-tuned method>` (say `mgd3_minimax`) that method's
fine-tuned model, sharing its fine-tuning.
"""

from __future__ import annotations

import difflib

from . import guidance

REAL_METHODS = ("random", "kcenter", "herding")
FINETUNED_BUILTINS = {"difffit": ("off", "off"), "minimax": ("minimax", "minimax")}
FINETUNE_KEYS = ("rep_weight", "div_weight", "memory_size", "epochs")
GENERATE_KEYS = ("steps", "guidance_scale", "sampler", "eta")
STUDY_PARAMETERS = FINETUNE_KEYS + GENERATE_KEYS


class MethodError(ValueError):
    pass


def split(name: str) -> tuple[str, dict[str, str]]:
    """`base@k=v,k2=v2` -> ("base", {"k": "v", "k2": "v2"})."""
    base, _, rest = name.partition("@")
    items = rest.split(",") if rest else []
    if any("=" not in item for item in items):
        raise MethodError(f"method {name!r}: settings after '@' are key=value pairs separated by ','")
    return base, dict(item.split("=", 1) for item in items)


def join(base: str, overrides: dict) -> str:
    return f"{base}@{','.join(f'{k}={v}' for k, v in overrides.items())}" if overrides else base


def sampler_of(base: str) -> str | None:
    """The guidance method a method name samples with (`mgd3`, `igd`, a plug-in's), or None."""
    return next((g for g in guidance.names() if base == g or base.startswith(f"{g}_")), None)


def guidance_of(name: str) -> str | None:
    """The guidance method a method name (with its overrides) samples with, or None."""
    return sampler_of(split(name)[0])


def model_of(base: str) -> str:
    """The method whose model a method samples: `mgd3` -> `dit`, `igd_minimax` -> `minimax`."""
    sampler = sampler_of(base)
    if sampler is None:
        return base
    return "dit" if base == sampler else base.removeprefix(f"{sampler}_")


def study_point(method: str, parameter: str, value, config: dict) -> str:
    """The method name of one study point: the method's own value maps to the method itself (but
    not an epochs value when it trains for `finetune.train_steps` instead); another value replaces
    or adds the setting (a study of `minimax@sampler=ddim` too)."""
    base, overrides = split(method)
    section = "finetune" if parameter in FINETUNE_KEYS else "generate"
    own = config[section][parameter]
    own = _typed(overrides[parameter], own) if parameter in overrides else own
    by_steps = parameter == "epochs" and config["finetune"]["train_steps"] is not None
    if own == value and not by_steps:
        return method
    return join(base, overrides | {parameter: value})


def criteria(base: str, config: dict) -> tuple[str, str] | None:
    """(representativeness form, diversity form) of a fine-tuned method; None if not fine-tuned."""
    if base in FINETUNED_BUILTINS:
        return FINETUNED_BUILTINS[base]
    variant = config["variants"].get(base)
    return (variant["representativeness"], variant["diversity"]) if variant else None


def is_generated(name: str, config: dict) -> bool:
    model = model_of(split(name)[0])
    return model == "dit" or criteria(model, config) is not None


def finetune_name(name: str) -> str:
    """The fine-tuning job a generated method uses: its model's name without generation-only overrides."""
    base, overrides = split(name)
    return join(model_of(base), {k: v for k, v in overrides.items() if k in FINETUNE_KEYS})


def _typed(value: str, like):
    """A setting from a method name, as the type of the config value it overrides."""
    if not isinstance(like, (int, float)) or isinstance(like, bool):
        return value
    try:
        number = float(value)
    except ValueError:
        raise MethodError(f"{value!r} is not a number") from None
    if isinstance(like, int) and not number.is_integer():
        raise MethodError(f"{value!r} is not an integer")
    return type(like)(number)


def finetune_settings(name: str, config: dict) -> dict:
    """config["finetune"] with the name's overrides, plus the two criteria forms (the class phases
    are the job's own setting)."""
    base, overrides = split(name)
    forms = criteria(model_of(base), config)
    settings = {k: v for k, v in config["finetune"].items() if k != "classes_per_phase"}
    settings |= {k: _typed(v, settings[k]) for k, v in overrides.items() if k in FINETUNE_KEYS}
    if "epochs" in overrides:  # a point of an epochs study trains for its epochs, not for train_steps
        settings["train_steps"] = None
    if settings["train_steps"] is not None:  # then the epochs change nothing: no rerun for them
        settings.pop("epochs")
    settings |= {"representativeness": forms[0], "diversity": forms[1]}
    if forms == ("off", "off"):  # no criteria: their settings must not trigger reruns
        for key in ("memory_size", "rep_weight", "div_weight"):
            settings.pop(key)
    return settings


def generate_settings(name: str, config: dict) -> dict:
    """config["generate"] with the name's overrides, and for a guided method its guidance method's
    name and settings (`guidance`)."""
    _, overrides = split(name)
    settings = dict(config["generate"])
    settings.pop("classes_per_job", None)  # how the classes are split over jobs changes no image
    settings |= {k: _typed(v, settings[k]) for k, v in overrides.items() if k in GENERATE_KEYS}
    if settings["sampler"] != "ddim":  # eta is DDIM's alone: no rerun of the DDPM sets for it
        settings.pop("eta")
    guide = guidance_of(name)
    if guide:
        finetuned = model_of(split(name)[0]) != "dit"
        settings["guidance"] = {"method": guide, **guidance.method(guide).settings(config[guide], finetuned)}
    return settings


def check(name: str, config: dict) -> None:
    """Raise MethodError for a method name that cannot run, naming what is wrong."""
    base, overrides = split(name)
    if base in (*REAL_METHODS, "full", *config["external"]):
        if overrides:
            raise MethodError(f"method {name!r}: real-data methods and sets from elsewhere take no settings")
        return
    if not is_generated(base, config):
        known = ["dit", *FINETUNED_BUILTINS, *guidance.names(), *config["variants"], *REAL_METHODS, "full"]
        close = difflib.get_close_matches(base, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        guided = ", ".join(f"{g}_<fine-tuned method>" for g in guidance.names())
        raise MethodError(f"unknown method {base!r}; {hint}known: {', '.join(known)}, or {guided} (add others "
                          "under `variants`, sets from elsewhere under `external`, guidance methods under `plugins`)")
    for key in overrides:
        allowed = GENERATE_KEYS if model_of(base) == "dit" else STUDY_PARAMETERS
        if key not in allowed:
            raise MethodError(f"method {name!r}: {key!r} is not one of {', '.join(allowed)}")
    settings = generate_settings(name, config)
    if model_of(base) != "dit":
        finetune_settings(name, config)  # its typed overrides
    if "guidance" in settings:
        guide = settings["guidance"]["method"]
        if settings["sampler"] != "ddpm":
            raise MethodError(f"method {name!r}: {guide} guidance moves the ancestral sampler's mean (MGD3's and "
                              "IGD's code have no DDIM form of it); set generate.sampler: ddpm")
        try:
            guidance.method(guide).check({k: v for k, v in settings["guidance"].items() if k != "method"},
                                         settings["steps"])
        except ValueError as error:
            raise MethodError(f"method {name!r}: {error}") from None
    if settings["sampler"] == "ddim":
        from .diffusion import ddim_timesteps  # torch: only the start-of-workflow checks get here

        try:
            ddim_timesteps(settings["steps"])
        except ValueError as error:
            raise MethodError(f"method {name!r}: {error} (DDIM takes an even stride of the 1000 steps: any count "
                              "up to 36, then 38, 39, 40, 42, 44, ..., 50, 100, 125, 200, 250, 500, 1000)") from None
