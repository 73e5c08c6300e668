"""Each rule's settings: its `params`, so Snakemake reruns a job when, and only when, one changes.

A rule's method of the same name returns exactly what its stage takes (the validation protocols as
settings objects' fields, settings.HardLabel and SoftLabel; the training recipe alone,
settings.Recipe, for the classifiers that are not validations). Values that change no result travel
apart (plan.runtime). No torch, no Snakemake here.
"""

from __future__ import annotations

import dataclasses
import functools

from . import methods
from .paths import Paths
from .plan import REPORT_ONLY, Grid, chunk_classes
from .settings import HardLabel, SoftLabel, hard_label_rule


class Params:
    """The settings of every rule of one job grid, by rule name."""

    def __init__(self, grid: Grid, paths: Paths):
        self.grid, self.paths = grid, paths

    def prepare(self, wildcards=None) -> dict:
        """The dataset's settings and its source files' fingerprint: a changed image, class or
        split reruns prepare, and with it everything built from the data."""
        from . import data  # torch: only the prepare job and the workflow's start need it

        dataset = {k: v for k, v in self.grid.config["dataset"].items() if k not in REPORT_ONLY["dataset"]}
        return {"dataset": dataset, "sources": data.source_fingerprint(self.grid.config["dataset"])}

    def base_vae(self, wildcards=None) -> dict:
        models = self.grid.config["base_models"]
        return {"tiny_vae": models["tiny_vae"], "seed": models["seed"]}

    def encode(self, wildcards) -> dict:
        return {"batch_size": self.grid.config["encode"]["batch_size"], "classes": chunk_classes(wildcards.chunk)}

    def base_dit(self, wildcards=None) -> dict:
        models = self.grid.config["base_models"]
        return {"tiny_dit": models["tiny_dit"], "seed": models["seed"]}

    def finetune(self, wildcards) -> dict:
        return {"method": wildcards.method, "classes": self.grid.phases[int(wildcards.phase)],
                "finetune": methods.finetune_settings(wildcards.method, self.grid.config), **self._dit_heads()}

    def generate(self, wildcards) -> dict:
        settings = {"ipc": int(wildcards.ipc), "generate": methods.generate_settings(wildcards.method, self.grid.config),
                    **self._dit_heads()}
        chunk = getattr(wildcards, "chunk", None)  # rule generate_chunk: one chunk of classes
        if not self.paths.finetuned_weights(wildcards.method):  # the base DiT: one model, whatever the phases
            return settings | {"phases": [None]} | ({"classes": chunk_classes(chunk)} if chunk else {})
        if not chunk:
            return settings | {"phases": self.grid.phases}
        return settings | {"phases": [self.grid.phases[i] for i in self.grid.chunk_phases(chunk)],
                           "classes": chunk_classes(chunk)}

    def modes(self, wildcards) -> dict:
        return {"ipc": int(wildcards.ipc), "seed": self.grid.config["mgd3"]["seed"]}

    def igd_surrogate(self, wildcards=None) -> dict:
        """IGD's surrogate: the hard-label recipe's optimiser and augmentation (igd.SurrogateSteps
        drops CutMix) at igd.width_factor, with igd's architecture, epochs, kept checkpoints and seed
        (at the dataset's resolution: the guidance decodes images at that side)."""
        igd = self.grid.config["igd"]
        recipe = dataclasses.replace(self.hard_label.recipe(), width_factor=igd["width_factor"])
        return {"arch": igd["surrogate_arch"], "epochs": igd["surrogate_epochs"], "checkpoints": igd["checkpoints"],
                "seed": igd["seed"], **recipe.params()}

    def igd_gradients(self, wildcards=None) -> dict:
        return {"images_per_class": self.grid.config["igd"]["gradient_memory"]}

    def select_random(self, wildcards) -> dict:
        select = self.grid.config["select"]
        seed = select["seed"] if select["random_order"] == "seeded" else None  # no rerun for an unused seed
        return {"ipc": int(wildcards.ipc), "order": select["random_order"], "seed": seed}

    def select_coreset(self, wildcards) -> dict:
        return {"ipc": int(wildcards.ipc), "method": wildcards.method}

    def feature_net(self, wildcards=None) -> dict:
        analysis = self.grid.config["analysis"]
        return {"epochs": analysis["feature_epochs"], "seed": analysis["seed"], **self.hard_label.recipe().params()}

    def analyze(self, wildcards) -> dict:
        return {"method": wildcards.method, "ipc": int(wildcards.ipc), "k": self.grid.config["analysis"]["k"]}

    def tsne(self, wildcards) -> dict:
        analysis = self.grid.config["analysis"]
        return {"methods": self.grid.methods_at(wildcards.ipc), "ipc": int(wildcards.ipc),
                "seed": analysis["seed"], "real_points": analysis["tsne_real_points"]}

    def sample_grid(self, wildcards) -> dict:
        return {"methods": self.grid.methods_at(wildcards.ipc),
                "per_class": min(self.grid.config["analysis"]["samples_per_class"], int(wildcards.ipc))}

    def validation_curves(self, wildcards) -> dict:
        return {"methods": self.grid.methods_at(wildcards.ipc), "archs": self.grid.archs, "ipc": int(wildcards.ipc),
                "resolution": self._labels()["resolution"]}

    def loss_curves(self, wildcards=None) -> dict:
        return {"methods": self.grid.finetuned}

    @functools.cached_property
    def hard_label(self) -> HardLabel:
        """The hard-label protocol of validate.*; lr, weight decay and batch size left null take the
        reference's values for the dataset's class count (settings.hard_label_rule)."""
        validate = self.grid.config["validate"]
        unset = [key for key in ("lr", "weight_decay", "batch_size") if validate[key] is None]
        rule = hard_label_rule(self.grid.class_count) if unset else {}
        return HardLabel.from_config(validate, **{key: rule[key] for key in unset})

    @functools.cached_property
    def soft_label(self) -> SoftLabel:
        return SoftLabel.from_config(self.grid.config["soft_label"])

    def validate(self, wildcards) -> dict:
        """One validation run (rule validate) or every seed's (rule validate_group) of a set; the
        whole training split (rule validate_full) is scored after every epoch, as the reference
        scores it (epoch_print_freq 1 for ipc <= 0: MD argument.py L426-437)."""
        method = getattr(wildcards, "method", "full")
        ipc = int(wildcards.ipc) if hasattr(wildcards, "ipc") else None
        epochs = self.grid.validation_epochs(method, ipc)
        protocol = self.hard_label
        if method == "full" or method.startswith("full+"):
            protocol = dataclasses.replace(protocol, evaluations=epochs)
        run = {"seed": int(wildcards.seed)} if hasattr(wildcards, "seed") else {"seeds": self.grid.seeds}
        return {"method": method, "ipc": ipc, "arch": wildcards.arch, **run, "epochs": epochs, **protocol.params()}

    def validate_no_augment(self, wildcards) -> dict:
        """The hard-label protocol without augmentation or CutMix (validate.protocols no_augment),
        for the seed of the job or every seed (validate.group_seeds)."""
        settings = self.validate(wildcards) | {"augment": "none"}
        seeds = [settings.pop("seed")] if "seed" in settings else settings.pop("seeds")
        return settings | {"seeds": seeds}

    def validate_soft_label(self, wildcards) -> dict:
        """RDED's soft-label protocol for the seed of the job, or every seed (validate.group_seeds);
        the teacher is a file, or the feature network."""
        soft = self.grid.config["soft_label"]
        teacher_classes = soft["teacher_classes"] if soft["teacher"] else None  # None: the dataset's classes
        return {"method": wildcards.method, "ipc": int(wildcards.ipc), "arch": wildcards.arch,
                "seeds": [int(wildcards.seed)] if hasattr(wildcards, "seed") else self.grid.seeds,
                "epochs": soft["epochs"], "teacher_classes": teacher_classes, **self.soft_label.params()}

    def import_external(self, wildcards) -> dict:
        dataset = self.grid.config["dataset"]
        return {"ipc": int(wildcards.ipc), "resolution": dataset["resolution"], "channels": dataset["channels"]}

    def table1(self, wildcards=None) -> dict:
        return {"methods": self.grid.methods, "ipcs": self.grid.ipcs, "archs": self.grid.archs, **self._labels()}

    def table4(self, wildcards=None) -> dict:
        resolution = self.grid.config["soft_label"]["resolution"] or self.grid.config["dataset"]["resolution"]
        return {"methods": self.grid.subset_methods, "ipcs": self.grid.ipcs, "archs": self.grid.soft_archs,
                **self._labels(resolution)}

    def scores(self, wildcards=None) -> dict:
        return self.table1()

    def analysis_tables(self, wildcards=None) -> dict:
        return {"methods": self.grid.subset_methods, "ipcs": self.grid.ipcs}

    def study(self, wildcards) -> dict:
        study = self.grid.studies[wildcards.study]
        return {"study": study, "points": self.grid.study_points(study), **self._labels()}

    def table5(self, wildcards=None) -> dict:
        forms = {m: methods.criteria(m, self.grid.config) for m in self.grid.table5_methods}
        return {"methods": self.grid.table5_methods, "forms": forms, "ipcs": self.grid.ipcs, "archs": self.grid.archs,
                **self._labels()}

    def table9(self, wildcards=None) -> dict:
        return self._labels()

    def _dit_heads(self) -> dict:
        return {"dit_num_heads": self.grid.config["base_models"]["dit_num_heads"]}

    def _labels(self, resolution: int | None = None) -> dict:
        """What the tables need: the accuracy they show (best or last), and the resolution the nets
        are named by (ConvNet-3 ... ConvNet-6)."""
        validate = self.grid.config["validate"]
        resolution = resolution or validate["resolution"] or self.grid.config["dataset"]["resolution"]
        return {"resolution": resolution, "report": validate["report"]}
