"""The experiment plan: the config read, checked and sliced into each job's settings, in one place.

`load_config` turns a user's config into the one a run uses: the user's values, checked against
the schema (one line naming the key), completed with the schema's defaults and nothing else.
`Plan` derives the job grid from it (which sets, fine-tunings and validation runs exist, and where
their artifacts live) and gives each rule exactly the settings its stage takes: these are the
rule's `params`, so Snakemake reruns a job when, and only when, one of them changes. Values that
change no result (the device, resume-checkpoint intervals) travel apart, by `runtime`.

No Snakemake here: the rules call into this module, and tests check the plan in-process.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from pathlib import Path

import yaml

from . import checks, methods
from .checks import SCHEMA, ConfigError
from .settings import HardLabel, SoftLabel, hard_label_rule

RESULTS = "results"
REPORT_ONLY = {"dataset": ("name",)}  # labels of the report: never a reason to rerun a job


@functools.cache
def schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def load_config(user: dict) -> dict:
    """The config of a run: `user` checked against the schema and completed with its defaults.

    Raises ConfigError (one line, naming the key) for anything the schema or the study ranges reject.
    Keys are sorted (Snakemake compares params with their key order, so reordering a config file
    would otherwise rerun every job), and IPC-keyed maps get integer keys.
    """
    config = copy.deepcopy(dict(user))
    _check_renamed(config)
    for key, parent, name in _ipc_keyed(config):
        parent[name] = _stringified(key, parent[name])
    checks.validate_schema(config)
    _fill_defaults(config, schema())
    for _, parent, name in _ipc_keyed(config):
        parent[name] = {int(k): v for k, v in parent[name].items()}
    _check_studies(config)
    _check_experiment(config["experiment"])
    return _sorted(config)


RENAMED = {("validate", "pack_seeds"): "validate.group_seeds"}  # old key -> its new name


def _check_renamed(config: dict) -> None:
    for (section, key), new in RENAMED.items():
        if isinstance(config.get(section), dict) and key in config[section]:
            raise ConfigError(f"{section}.{key}: renamed {new} (same meaning); see docs/configuration.md")


def _ipc_keyed(config: dict) -> list[tuple[str, dict, str]]:
    """(key, parent, name) of each map keyed by IPC, `validate.epochs` and `external.<set>`: YAML
    gives their keys as integers, JSON as strings."""
    maps = []
    if isinstance(config.get("validate"), dict):
        maps.append(("validate.epochs", config["validate"], "epochs"))
    if isinstance(config.get("external"), dict):
        maps += [(f"external.{name}", config["external"], name) for name in config["external"]]
    return [(key, parent, name) for key, parent, name in maps if isinstance(parent.get(name), dict)]


def _stringified(key: str, mapping: dict) -> dict:
    """Integer keys (YAML) and their decimal text (JSON) as text, for the schema; anything else named."""
    for k in mapping:
        if isinstance(k, bool) or not (isinstance(k, int) or (isinstance(k, str) and re.fullmatch(r"\d+", k))):
            raise ConfigError(f"{key}: key {k!r} is not an IPC; keys must be integers such as 10 "
                              "(see docs/configuration.md)")
    return {str(int(k)): v for k, v in mapping.items()}


def _fill_defaults(value, schema_part: dict) -> None:
    """Fill in the schema's defaults, recursively (sections, their keys, and items of lists)."""
    if isinstance(value, dict):
        properties = schema_part.get("properties", {})
        for key, sub in properties.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        extra = schema_part.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub:
                _fill_defaults(item, sub)
    elif isinstance(value, list) and isinstance(schema_part.get("items"), dict):
        for item in value:
            _fill_defaults(item, schema_part["items"])


def _check_studies(config: dict) -> None:
    """A study's values must be valid values of the key it sweeps (same type, same range)."""
    import jsonschema

    properties = schema()["properties"]
    for i, study in enumerate(config["studies"]):
        parameter = study["parameter"]
        section = "finetune" if parameter in methods.FINETUNE_KEYS else "generate"
        rule = properties[section]["properties"][parameter]
        for j, value in enumerate(study["values"]):
            try:
                jsonschema.validate(value, rule)
            except jsonschema.ValidationError as error:
                raise ConfigError(f"studies[{i}].values[{j}]: {error.message} (a value of {section}.{parameter}; "
                                  "see docs/configuration.md)") from None
        if rule.get("type") == "integer":
            study["values"] = [int(v) for v in study["values"]]


def _check_experiment(name: str) -> None:
    results = Path(RESULTS).resolve()
    if (results / name).resolve().parent != results:
        raise ConfigError(f"experiment: {name!r} must name a folder directly under {RESULTS}/")


def _sorted(value):
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def read_config(given: dict, configfiles: list, default_file: str | Path = "config.yaml") -> dict:
    """The user's config as Snakemake hands it over: `--configfile` files (already merged into
    `given`, with `--config` values) or, without any, the embedded default file under `--config`.
    The default file is never merged under a user's config file."""
    if configfiles:
        return given
    merged = yaml.safe_load(Path(default_file).read_text()) or {}
    _update(merged, given)
    return merged


def _update(base: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _update(base[key], value)
        else:
            base[key] = value


def _unique(names):
    return list(dict.fromkeys(names))


class Plan:
    """The job grid of one loaded config, and each rule's settings."""

    def __init__(self, config: dict):
        self.config = config
        self.exp = f"{RESULTS}/{config['experiment']}"
        self.methods, self.ipcs = config["methods"], config["ipcs"]
        self.archs, self.seeds = config["validate"]["archs"], config["validate"]["seeds"]
        self.studies = {study["name"]: study for study in config["studies"]}
        self.subset_methods = [m for m in self.methods if m != "full"]
        self.external = config["external"]
        self.protocols = config["validate"]["protocols"]
        self.soft_archs = config["soft_label"]["archs"]
        self.expanded = [f"full+{m}" for m in config["expansion"]["methods"]]
        study_methods = _unique(p for s in config["studies"] for p in self.study_points(s))
        self.validated = _unique(self.subset_methods + study_methods + self.expanded)
        self.generated = [m for m in _unique(self.validated + config["expansion"]["methods"])
                          if methods.is_generated(m, config)]
        self.finetune_jobs = _unique(methods.finetune_name(m) for m in self.generated
                                     if methods.model_of(methods.split(m)[0]) != "dit")
        self.finetuned = [m for m in self.methods if methods.criteria(m, config)]
        self.table5_methods = [m for m in ["difffit", *config["variants"], "minimax"] if m in self.methods]
        self.phases = self.class_phases()
        self.chunks = self.generation_chunks()

    # ------------------------------------------------------------------------------ the grid

    def study_points(self, study: dict) -> list[str]:
        """The method name of every value of a study, in order."""
        return [methods.study_point(study["method"], study["parameter"], v, self.config) for v in study["values"]]

    @functools.cached_property
    def class_count(self) -> int:
        from . import data  # torch: only plans with class phases or chunks need it

        return len(data.resolve_classes(self.config["dataset"])[0])

    def class_phases(self) -> list[list[int] | None]:
        """Class indices of each fine-tuning phase; [None] (all classes, one model) by default."""
        per_phase = self.config["finetune"]["classes_per_phase"]
        if per_phase is None:
            return [None]
        return [list(range(s, min(s + per_phase, self.class_count))) for s in range(0, self.class_count, per_phase)]

    def generation_chunks(self) -> list[str]:
        """Class-index ranges `first-last` (inclusive) of the jobs that generate one set, from
        `generate.classes_per_job`; [] when one job generates every class (the default)."""
        per_job = self.config["generate"]["classes_per_job"]
        if per_job is None:
            return []
        count = self.class_count
        return [f"{s}-{min(s + per_job, count) - 1}" for s in range(0, count, per_job)]

    def validation_epochs(self, method: str, ipc: int | None) -> int:
        """Epochs per IPC; the whole training split, alone or expanded by a generated set, trains
        like `full`."""
        settings = self.config["validate"]
        if method == "full" or method.startswith("full+"):
            return settings["full_epochs"]
        return settings["epochs"].get(int(ipc), settings["default_epochs"])

    # ---------------------------------------------------------------------------- the paths

    def vae_path(self) -> str:
        return self.config["base_models"]["vae"] or f"{self.exp}/base/vae"

    def dit_path(self) -> str:
        return self.config["base_models"]["dit"] or f"{self.exp}/base/dit"

    def set_pack(self, method: str, ipc) -> str:
        return f"{self.exp}/sets/{method}/ipc{ipc}/pack.pt"

    def record(self, method: str, ipc, arch: str, seed) -> str:
        return f"{self.exp}/validate/{method}/ipc{ipc}/{arch}/seed{seed}.json"

    def full_records(self) -> list[str]:
        return [f"{self.exp}/validate/full/{arch}/seed{seed}.json" for arch in self.archs for seed in self.seeds]

    def methods_at(self, ipc) -> list[str]:
        """The set methods with a set at this IPC (a set from elsewhere has only its own IPCs)."""
        return [m for m in self.subset_methods if m not in self.external or int(ipc) in self.external[m]]

    def validation_records(self) -> list[str]:
        records = [self.record(m, ipc, a, s) for ipc in self.ipcs for m in self.methods_at(ipc)
                   for a in self.archs for s in self.seeds]
        return records + (self.full_records() if "full" in self.methods else [])

    def soft_label_records(self) -> list[str]:
        return [f"{self.exp}/validate_soft/{m}/ipc{ipc}/{a}/seed{s}.json" for ipc in self.ipcs
                for m in self.methods_at(ipc) for a in self.soft_archs for s in self.seeds]

    def analysis_records(self) -> list[str]:
        return [f"{self.exp}/analysis/{m}/ipc{ipc}.json" for ipc in self.ipcs for m in self.methods_at(ipc)]

    def teacher(self) -> str:
        """The soft-label teacher: a weights file, or the feature network trained here."""
        return self.config["soft_label"]["teacher"] or f"{self.exp}/features/resnetap10.pt"

    def study_records(self, study: dict) -> list[str]:
        return [self.record(point, ipc, arch, seed) for point in self.study_points(study)
                for ipc in study.get("ipcs", self.ipcs) for arch in study.get("archs", self.archs)
                for seed in self.seeds]

    def study_timings(self, study: dict) -> list[str]:
        """Generation time per image of every study point (Table 8 reports it for denoising steps)."""
        return [f"{self.exp}/sets/{point}/ipc{ipc}/generation.json" for point in self.study_points(study)
                for ipc in study.get("ipcs", self.ipcs)]

    def table5_records(self) -> list[str]:
        return [self.record(m, ipc, a, s) for m in self.table5_methods for ipc in self.ipcs
                for a in self.archs for s in self.seeds]

    def table9_records(self) -> list[str]:
        return self.full_records() + [self.record(m, ipc, a, s) for m in self.expanded
                                      for ipc in self.config["expansion"]["ipcs"] for a in self.archs
                                      for s in self.seeds]

    def finetuned_weights(self, method: str) -> list[str]:
        """The Difffit deltas (one per class phase) a generated method samples with; none for `dit`."""
        if methods.model_of(methods.split(method)[0]) == "dit":
            return []
        name = methods.finetune_name(method)
        return [f"{self.exp}/finetune/{name}/phase{phase}/weights.safetensors" for phase in range(len(self.phases))]

    def generation_modes(self, wildcards) -> list[str]:
        """The class modes a mode-guided method's set needs (MGD3); none for the others."""
        return [self.modes_file(wildcards.ipc)] if methods.is_mode_guided(wildcards.method) else []

    def modes_file(self, ipc) -> str:
        return f"{self.exp}/modes/ipc{ipc}.pt"

    def generation_weights(self, wildcards) -> list[str]:
        """The deltas one generation job needs: a class chunk needs only its phases'."""
        weights = self.finetuned_weights(wildcards.method)
        if weights and hasattr(wildcards, "chunk"):
            return [weights[i] for i in self.chunk_phases(wildcards.chunk)]
        return weights

    def chunk_phases(self, chunk: str) -> list[int]:
        """Indices of the fine-tuning phases holding a class of the chunk: only their deltas are needed."""
        classes = set(chunk_classes(chunk))
        return [i for i, phase in enumerate(self.phases) if phase is None or classes & set(phase)]

    def final_outputs(self) -> list[str]:
        """Everything `snakemake` builds by default: the tables, the analyses and the figures."""
        tables, figures = f"{self.exp}/tables", f"{self.exp}/figures"
        hard = "hard_label" in self.protocols
        outputs = [f"{tables}/{name}" for name in ("table1.csv", "table1.md", "accuracy_vs_ipc.png")] if hard else []
        if "soft_label" in self.protocols and self.subset_methods:
            outputs += [f"{tables}/table4.csv", f"{tables}/table4.md"]
        if self.subset_methods:
            analyses = self.config["analysis"]["enabled"]
            outputs += [f"{tables}/table2.csv", f"{tables}/table10.csv"] if analyses else []
            kinds = [kind for kind, on in (("tsne", analyses), ("samples", True), ("validation_curves", hard)) if on]
            outputs += [f"{figures}/{kind}_ipc{ipc}.png" for kind in kinds for ipc in self.ipcs if self.methods_at(ipc)]
        if self.finetuned:
            outputs.append(f"{figures}/finetune_losses.png")
        if not hard:  # the scores, the ablations, the expansion and the studies are hard-label tables
            return outputs
        if "random" in self.methods and len(self.subset_methods) > 1:
            outputs += [f"{tables}/scores.csv", f"{tables}/leaderboard.csv"]
        if any(m in self.config["variants"] for m in self.methods):
            outputs.append(f"{tables}/table5.csv")
        if self.expanded:
            outputs.append(f"{tables}/table9.csv")
        return outputs + [f"{tables}/study_{name}.csv" for name in self.studies]

    def owner(self) -> dict:
        """What makes results/<experiment> one experiment's: the data it was built from."""
        dataset = self.config["dataset"]
        return {k: dataset[k] for k in ("kind", "root", "train_dir", "test_dir", "classes")}

    def owner_file(self) -> Path:
        return Path(self.exp) / "experiment.yaml"

    # ------------------------------------------------------- each rule's settings (its params)

    def prepare(self, wildcards=None) -> dict:
        dataset = {k: v for k, v in self.config["dataset"].items() if k not in REPORT_ONLY["dataset"]}
        return {"dataset": dataset}

    def base_vae(self, wildcards=None) -> dict:
        models = self.config["base_models"]
        return {"tiny_vae": models["tiny_vae"], "seed": models["seed"]}

    def encode(self, wildcards=None) -> dict:
        return {"batch_size": self.config["encode"]["batch_size"]}

    def base_dit(self, wildcards=None) -> dict:
        models = self.config["base_models"]
        return {"tiny_dit": models["tiny_dit"], "seed": models["seed"]}

    def finetune(self, wildcards) -> dict:
        return {"method": wildcards.method, "classes": self.phases[int(wildcards.phase)],
                "finetune": methods.finetune_settings(wildcards.method, self.config), **self._dit_heads()}

    def generate(self, wildcards) -> dict:
        settings = {"ipc": int(wildcards.ipc), "generate": methods.generate_settings(wildcards.method, self.config),
                    **self._dit_heads()}
        if not self.finetuned_weights(wildcards.method):  # the base DiT: one model, whatever the phases
            return settings | {"phases": [None]} | ({"classes": chunk_classes(wildcards.chunk)} if self.chunks else {})
        if not self.chunks:
            return settings | {"phases": self.phases}
        chunk = wildcards.chunk
        return settings | {"phases": [self.phases[i] for i in self.chunk_phases(chunk)],
                           "classes": chunk_classes(chunk)}

    def modes(self, wildcards) -> dict:
        return {"ipc": int(wildcards.ipc), "seed": self.config["mgd3"]["seed"]}

    def select_random(self, wildcards) -> dict:
        select = self.config["select"]
        seed = select["seed"] if select["random_order"] == "seeded" else None  # no rerun for an unused seed
        return {"ipc": int(wildcards.ipc), "order": select["random_order"], "seed": seed}

    def select_coreset(self, wildcards) -> dict:
        return {"ipc": int(wildcards.ipc), "method": wildcards.method}

    def feature_net(self, wildcards=None) -> dict:
        analysis = self.config["analysis"]
        return {"epochs": analysis["feature_epochs"], "seed": analysis["seed"], **self.hard_label.params()}

    def analyze(self, wildcards) -> dict:
        return {"method": wildcards.method, "ipc": int(wildcards.ipc), "k": self.config["analysis"]["k"]}

    def tsne(self, wildcards) -> dict:
        return {"methods": self.methods_at(wildcards.ipc), "ipc": int(wildcards.ipc),
                "seed": self.config["analysis"]["seed"]}

    def sample_grid(self, wildcards) -> dict:
        return {"methods": self.methods_at(wildcards.ipc),
                "per_class": min(self.config["analysis"]["samples_per_class"], int(wildcards.ipc))}

    def validation_curves(self, wildcards) -> dict:
        return {"methods": self.methods_at(wildcards.ipc), "archs": self.archs, "ipc": int(wildcards.ipc),
                "resolution": self._labels()["resolution"]}

    def validation_curves_records(self, wildcards) -> list[str]:
        return [self.record(m, wildcards.ipc, a, s) for m in self.methods_at(wildcards.ipc) for a in self.archs
                for s in self.seeds]

    def loss_curves(self, wildcards=None) -> dict:
        return {"methods": self.finetuned}

    @functools.cached_property
    def hard_label(self) -> HardLabel:
        """The hard-label protocol of validate.*; lr, weight decay and batch size left null take the
        reference's values for the dataset's class count (settings.hard_label_rule)."""
        validate = self.config["validate"]
        unset = [key for key in ("lr", "weight_decay", "batch_size") if validate[key] is None]
        rule = hard_label_rule(self.class_count) if unset else {}
        return HardLabel.from_config(validate, **{key: rule[key] for key in unset})

    @functools.cached_property
    def soft_label(self) -> SoftLabel:
        return SoftLabel.from_config(self.config["soft_label"])

    def validate(self, wildcards) -> dict:
        """One validation run (rule validate) or every seed's (rule validate_group) of a set; the
        whole training split (rule validate_full) is scored after every epoch, as the reference
        scores it (epoch_print_freq 1 for ipc <= 0: MD argument.py L426-437)."""
        method = getattr(wildcards, "method", "full")
        ipc = int(wildcards.ipc) if hasattr(wildcards, "ipc") else None
        epochs = self.validation_epochs(method, ipc)
        protocol = self.hard_label
        if method == "full" or method.startswith("full+"):
            protocol = dataclasses.replace(protocol, evaluations=epochs)
        run = {"seed": int(wildcards.seed)} if hasattr(wildcards, "seed") else {"seeds": self.seeds}
        return {"method": method, "ipc": ipc, "arch": wildcards.arch, **run, "epochs": epochs, **protocol.params()}

    def group_records(self, wildcards) -> list[str]:
        """The records one validate_group job writes: every seed of a (method, IPC, net)."""
        return [self.record(wildcards.method, wildcards.ipc, wildcards.arch, seed) for seed in self.seeds]

    def validate_soft_label(self, wildcards) -> dict:
        """RDED's soft-label protocol for the seed of the job, or every seed (validate.group_seeds);
        the teacher is a file, or the feature network."""
        soft = self.config["soft_label"]
        teacher_classes = soft["teacher_classes"] if soft["teacher"] else None  # None: the dataset's classes
        return {"method": wildcards.method, "ipc": int(wildcards.ipc), "arch": wildcards.arch,
                "seeds": [int(wildcards.seed)] if hasattr(wildcards, "seed") else self.seeds,
                "epochs": soft["epochs"], "teacher_classes": teacher_classes, **self.soft_label.params()}

    def external_folder(self, wildcards) -> str:
        return self.external[wildcards.method][int(wildcards.ipc)]

    def import_external(self, wildcards) -> dict:
        dataset = self.config["dataset"]
        return {"ipc": int(wildcards.ipc), "resolution": dataset["resolution"], "channels": dataset["channels"]}

    def table1(self, wildcards=None) -> dict:
        return {"methods": self.methods, "ipcs": self.ipcs, "archs": self.archs, **self._labels()}

    def table4(self, wildcards=None) -> dict:
        resolution = self.config["soft_label"]["resolution"] or self.config["dataset"]["resolution"]
        return {"methods": self.subset_methods, "ipcs": self.ipcs, "archs": self.soft_archs,
                **self._labels(resolution)}

    def scores(self, wildcards=None) -> dict:
        return self.table1()

    def analysis_tables(self, wildcards=None) -> dict:
        return {"methods": self.subset_methods, "ipcs": self.ipcs}

    def study(self, wildcards) -> dict:
        study = self.studies[wildcards.study]
        return {"study": study, "points": self.study_points(study), **self._labels()}

    def table5(self, wildcards=None) -> dict:
        forms = {m: methods.criteria(m, self.config) for m in self.table5_methods}
        return {"methods": self.table5_methods, "forms": forms, "ipcs": self.ipcs, "archs": self.archs,
                **self._labels()}

    def table9(self, wildcards=None) -> dict:
        return self._labels()

    def _dit_heads(self) -> dict:
        return {"dit_num_heads": self.config["base_models"]["dit_num_heads"]}

    def _labels(self, resolution: int | None = None) -> dict:
        """What the tables need: the accuracy they show (best or last), and the resolution the nets
        are named by (ConvNet-3 ... ConvNet-6)."""
        validate = self.config["validate"]
        resolution = resolution or validate["resolution"] or self.config["dataset"]["resolution"]
        return {"resolution": resolution, "report": validate["report"]}


# Settings that change no result, so they are not params (not rerun triggers): by stage.
RUNTIME = {
    "base_vae": ("device",), "encode": ("device",), "feature_net": ("device",), "analyze": ("device",),
    "tsne": ("device",),
    "base_dit": ("device", "checkpoint_every_steps", "compile"),
    "finetune": ("device", "checkpoint_every_steps", "compile"),
    "generate": ("device", "compile"),
    "validate": ("device", "checkpoint_every_epochs", "channels_last"),
    "validate_group": ("device", "checkpoint_every_epochs", "channels_last"),
    "validate_soft_label": ("device", "checkpoint_every_epochs"),
}


def runtime(config: dict, stage: str) -> dict:
    """The stage's settings that are not rerun triggers, from the loaded config."""
    values = {"device": config["device"], "checkpoint_every_steps": config["checkpoint"]["every_steps"],
              "checkpoint_every_epochs": config["checkpoint"]["every_epochs"], **config["speed"]}
    return {key: values[key] for key in RUNTIME.get(stage, ())}


def chunk_classes(chunk: str) -> list[int]:
    first, last = map(int, chunk.split("-"))
    return list(range(first, last + 1))


def check(config: dict) -> Plan:
    """Everything that needs more than the schema (data on disk, model files, method names, the
    results folder), then the plan. Raises ConfigError naming the key."""
    checks.check(config)  # the data's own errors first: they say more than "another dataset"
    plan = Plan(config)
    recorded = plan.owner_file()
    if recorded.is_file() and yaml.safe_load(recorded.read_text()) != plan.owner():
        raise ConfigError(f"experiment: {plan.exp} holds the results of another dataset ({recorded} says "
                          f"{yaml.safe_load(recorded.read_text())}); name another experiment, or delete that folder")
    return plan


def start_run(plan: Plan) -> None:
    """Before the first job: sweep the temporaries of killed jobs, stop on a damaged artifact (before
    Snakemake deletes the good outputs of the jobs that would read it), and record whose results
    these are."""
    from .io import ArtifactError, damaged_artifacts, save_text, sweep_temporaries

    for path in sweep_temporaries(plan.exp):
        print(f"removed {path}, left by a killed job")
    damaged = damaged_artifacts(plan.exp)
    if damaged:
        raise ArtifactError(f"{', '.join(map(str, damaged))}: truncated or corrupt (no complete torch archive); "
                            "delete, and the next workflow run rebuilds it")
    save_text(yaml.safe_dump(plan.owner()), plan.owner_file())
