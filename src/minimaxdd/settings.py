"""The settings of the validation protocols as frozen objects, one per config section.

`params.Params` builds each object once from the loaded config (the user's values completed with the
schema's defaults, plan.load_config) and hands its fields to the rule as `params`, so a changed
field reruns exactly the jobs that take it. The stage rebuilds the object from those params and
passes it whole to the library, whose functions keep no defaults of their own. A new setting is
a schema key, its row in docs/configuration.md, a field here and the code that reads it.

No torch here: the plan imports this module in the Snakemake main process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


class _Section:
    """Built from a config section: every field is the section's key of the same name."""

    @classmethod
    def from_config(cls, section: dict, **overrides):
        return cls(**{f.name: section[f.name] for f in fields(cls)} | overrides)

    def params(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Recipe(_Section):
    """How IDC's protocol trains a classifier (validate.*, as validate.RecipeSteps applies it): SGD
    on CutMixed, augmented batches. The feature network and IGD's surrogate train with it, on the
    dataset's images, and take no more: a validation-only key reruns no job of theirs."""

    batch_size: int
    lr: float
    weight_decay: float
    width_factor: float
    augment: str
    normalize: str
    precision: str


@dataclass(frozen=True)
class HardLabel(Recipe):
    """IDC's protocol (validate.*, as validate.py applies it): the recipe, at a resolution, scored
    on the test split `evaluations` times in a run."""

    resolution: int | None  # None: the dataset's resolution
    evaluations: int

    def recipe(self) -> Recipe:
        """The training recipe alone."""
        return Recipe(**{f.name: getattr(self, f.name) for f in fields(Recipe)})


@dataclass(frozen=True)
class SoftLabel(_Section):
    """RDED's protocol (soft_label.*, as softlabel.py applies it): a teacher labels every crop."""

    batch_size: int | None  # None: RDED's rule for the set's IPC and class count
    lr: float
    weight_decay: float
    temperature: float
    resolution: int | None
    width_factor: float
    evaluations: int | None  # None: RDED's cadence
    precision: str


def hard_label_rule(num_classes: int) -> dict:
    """The reference's lr, weight decay and batch size for a dataset of `num_classes` classes: IDC's
    defaults (0.01, 5e-4, 64: MD argument.py L115-119), and for more than 100 classes (ImageNet-1K)
    0.1, 1e-4 and 128 (MD argument.py L294-302: `if args.nclass > 100`, batch max(128, 64))."""
    if num_classes > 100:
        return {"lr": 0.1, "weight_decay": 1e-4, "batch_size": 128}
    return {"lr": 0.01, "weight_decay": 5e-4, "batch_size": 64}
