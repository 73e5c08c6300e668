"""The experiment plan: the config read and checked, and the job grid derived from it.

`load_config` turns a user's config into the one a run uses: the user's values, checked against
the schema (one line naming the key), completed with the schema's defaults and nothing else.
`check` runs the checks that need the data and the model files and returns the `Grid`: which sets,
fine-tunings, phases, chunks and validation runs exist. Where their files live is paths.Paths;
each rule's settings (its `params`, so Snakemake reruns a job when, and only when, one changes)
are params.Params. Values that change no result (the device, resume-checkpoint intervals) travel
apart, by `runtime`.

No Snakemake here: the rules call into these modules, and tests check them in-process.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import yaml

from . import checks, guidance, methods
from .checks import SCHEMA, ConfigError

RESULTS = "results"
REPORT_ONLY = {"dataset": ("name",)}  # labels of the report: never a reason to rerun a job


@functools.cache
def schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def run_schema() -> dict:
    """The schema with the config section of each guidance plug-in loaded (guidance.load_plugins)."""
    full = copy.deepcopy(schema())
    for method in guidance.plugins():
        full["properties"][method.name] = method.schema
    return full


def load_config(user: dict) -> dict:
    """The config of a run: `user` checked against the schema and completed with its defaults.

    Raises ConfigError (one line, naming the key) for anything the schema or the study ranges reject.
    Keys are sorted (Snakemake compares params with their key order, so reordering a config file
    would otherwise rerun every job), and IPC-keyed maps get integer keys.
    """
    config = copy.deepcopy(dict(user))
    _check_renamed(config)
    _load_plugins(config.get("plugins", []))
    for key, parent, name in _ipc_keyed(config):
        parent[name] = _stringified(key, parent[name])
    full = run_schema()
    checks.validate_schema(config, full)
    _fill_defaults(config, full)
    for _, parent, name in _ipc_keyed(config):
        parent[name] = {int(k): v for k, v in parent[name].items()}
    _check_studies(config)
    _check_expansion(config["expansion"])
    _check_experiment(config["experiment"])
    return _sorted(config)


RENAMED = {("validate", "pack_seeds"): "validate.group_seeds"}  # old key -> its new name


def _load_plugins(files) -> None:
    """The guidance plug-ins first: their sections are part of the schema the config is checked against."""
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ConfigError("plugins: a list of Python files, each defining a guidance method")
    try:
        guidance.load_plugins(files)
    except ValueError as error:
        raise ConfigError(str(error)) from None


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
    seen = set()
    for i, study in enumerate(config["studies"]):
        if study["name"] in seen:  # its table's file name: the later study would replace the first
            raise ConfigError(f"studies[{i}].name: {study['name']!r} names an earlier study too; name each study once")
        seen.add(study["name"])
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


def _check_expansion(expansion: dict) -> None:
    if bool(expansion["methods"]) != bool(expansion["ipcs"]):  # Table 9 would hold the Original column alone
        given, empty = ("methods", "ipcs") if expansion["methods"] else ("ipcs", "methods")
        raise ConfigError(f"expansion.{empty}: empty, but expansion.{given} is not; Table 9 expands the full split "
                          "with each method's set at each IPC, so give both (or neither)")


def _check_experiment(name: str) -> None:
    """The schema's pattern keeps the name one folder name; results/<name> may be a link (to
    another disk, say), but results/ and results/<name> must be folders."""
    for path in (Path(RESULTS), Path(RESULTS) / name):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"experiment: {path} is a file, not a folder: the workflow writes every artifact "
                              f"under {RESULTS}/<experiment>/; move the file away")


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
    for file in configfiles:
        _check_duplicate_keys(Path(file))
    if configfiles:
        return given
    _check_duplicate_keys(Path(default_file))
    merged = yaml.safe_load(Path(default_file).read_text()) or {}
    _update(merged, given)
    return merged


class _UniqueKeys(yaml.SafeLoader):
    """YAML's loader, but a key given twice in one mapping is an error (YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"{key}: given twice in {self.name}, line {key_node.start_mark.line + 1} "
                                  "(YAML would keep the last silently); keep one")
            seen.add(key)
        return super().construct_mapping(node, deep)


def _check_duplicate_keys(path: Path) -> None:
    if not path.is_file():
        return  # Snakemake names a missing --configfile itself
    loader = _UniqueKeys(path.read_text())
    loader.name = str(path)  # for the message
    try:
        loader.get_single_data()
    finally:
        loader.dispose()


def _update(base: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _update(base[key], value)
        else:
            base[key] = value


def _unique(names):
    return list(dict.fromkeys(names))


class Grid:
    """The job grid of one loaded config: which sets, fine-tunings, phases, chunks and validation
    runs exist. Their files are paths.Paths(grid); each rule's settings params.Params(grid, paths)."""

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
        per_job = config["encode"]["classes_per_job"]  # the encode jobs' class chunks; "all": one job
        self.latent_chunks = ["all"] if per_job is None else self.class_chunks(per_job)

    def study_points(self, study: dict) -> list[str]:
        """The method name of every value of a study, in order."""
        return [methods.study_point(study["method"], study["parameter"], v, self.config) for v in study["values"]]

    @functools.cached_property
    def class_count(self) -> int:
        from . import data  # torch: only plans with class phases or chunks need it (not each job's parse)

        return len(data.resolve_classes(self.config["dataset"])[0])

    def class_phases(self) -> list[list[int] | None]:
        """Class indices of each fine-tuning phase; [None] (all classes, one model) by default."""
        per_phase = self.config["finetune"]["classes_per_phase"]
        if per_phase is None:
            return [None]
        return [list(range(s, min(s + per_phase, self.class_count))) for s in range(0, self.class_count, per_phase)]

    def generation_chunks(self) -> list[str]:
        """The class chunks of the jobs that generate one set, from `generate.classes_per_job`; []
        when one job generates every class (the default)."""
        per_job = self.config["generate"]["classes_per_job"]
        return [] if per_job is None else self.class_chunks(per_job)

    def class_chunks(self, per_job: int) -> list[str]:
        """Class-index ranges `first-last` (inclusive) of `per_job` classes (the last may be shorter)."""
        count = self.class_count
        return [f"{s}-{min(s + per_job, count) - 1}" for s in range(0, count, per_job)]

    def validation_epochs(self, method: str, ipc: int | None) -> int:
        """Epochs per IPC; the whole training split, alone or expanded by a generated set, trains
        like `full`."""
        settings = self.config["validate"]
        if method == "full" or method.startswith("full+"):
            return settings["full_epochs"]
        return settings["epochs"].get(int(ipc), settings["default_epochs"])

    def methods_at(self, ipc) -> list[str]:
        """The set methods with a set at this IPC (a set from elsewhere has only its own IPCs)."""
        return [m for m in self.subset_methods if m not in self.external or int(ipc) in self.external[m]]

    def chunk_phases(self, chunk: str) -> list[int]:
        """Indices of the fine-tuning phases holding a class of the chunk: only their deltas are needed."""
        classes = set(chunk_classes(chunk))
        return [i for i, phase in enumerate(self.phases) if phase is None or classes & set(phase)]

    def owner(self) -> dict:
        """What makes results/<experiment> one experiment's: the data it was built from."""
        dataset = self.config["dataset"]
        return {k: dataset[k] for k in ("kind", "root", "train_dir", "test_dir", "classes")}


# Settings that change no result, so they are not params (not rerun triggers): by stage.
RUNTIME = {
    "prepare": ("workers",),
    "base_vae": ("device",), "encode": ("device",), "feature_net": ("device",), "analyze": ("device",),
    "tsne": ("device",),
    "base_dit": ("device", "checkpoint_every_steps", "compile"),
    "finetune": ("device", "checkpoint_every_steps", "compile"),
    "generate": ("device", "compile"),
    "validate": ("device", "checkpoint_every_epochs", "channels_last"),
    "validate_group": ("device", "checkpoint_every_epochs", "channels_last"),
    "validate_soft_label": ("device", "checkpoint_every_epochs"),
    "igd_surrogate": ("device", "checkpoint_every_epochs", "channels_last"),
    "igd_gradients": ("device",),
}


def runtime(config: dict, stage: str, threads: int = 1) -> dict:
    """The stage's settings that are not rerun triggers, from the loaded config and the job's
    `threads` (prepare's decoding processes)."""
    values = {"workers": threads, "device": config["device"],
              "checkpoint_every_steps": config["checkpoint"]["every_steps"],
              "checkpoint_every_epochs": config["checkpoint"]["every_epochs"], **config["speed"]}
    return {key: values[key] for key in RUNTIME.get(stage, ())}


def chunk_classes(chunk: str) -> list[int] | None:
    """The class indices of a chunk `first-last`; None (every class) for "all"."""
    if chunk == "all":
        return None
    first, last = map(int, chunk.split("-"))
    return list(range(first, last + 1))


def check(config: dict) -> Grid:
    """Everything that needs more than the schema (data on disk, model files, method names, the
    results folder), then the plan. Raises ConfigError naming the key."""
    checks.check(config)  # the data's own errors first: they say more than "another dataset"
    grid = Grid(config)
    recorded = owner_file(grid)
    if recorded.is_file() and yaml.safe_load(recorded.read_text()) != grid.owner():
        raise ConfigError(f"experiment: {grid.exp} holds the results of another dataset ({recorded} says "
                          f"{yaml.safe_load(recorded.read_text())}); name another experiment, or delete that folder")
    checks.check_disk(config, grid.exp, encoded=bool(grid.generated))
    return grid


def owner_file(grid: Grid) -> Path:
    return Path(grid.exp) / "experiment.yaml"


def repair(grid: Grid, paths) -> list[str]:
    """At every start, dry runs included, before any job (so that Snakemake deletes no good output
    of a job that would read a damaged one): the experiment's damaged artifacts (io.damaged_artifacts:
    cut, or of another size than their checksums say; a changed byte is found by the job that reads
    it), and the files gone from a base model's folder (a folder output: Snakemake sees it whole).
    Without `repair: true` they stop the run, named, with the one way to rebuild them; with it,
    every artifact's content is checked too (a scrub), and each damaged file and the output of the
    job that wrote it (Paths.rebuilt_output) are removed, and those outputs returned: the run's
    extra targets, rebuilt with every job that reads them."""
    import shutil

    from .io import REPAIR, ArtifactError, damaged_artifacts, missing_members

    damaged = damaged_artifacts(grid.exp, content=grid.config["repair"])
    damaged += [file for name in ("vae", "dit") for file in missing_members(paths.base_model(name))]
    if not damaged:
        return []
    if not grid.config["repair"]:
        raise ArtifactError(f"{', '.join(map(str, damaged))}: truncated, corrupt or missing; {REPAIR}")
    outputs = sorted({output for output in map(paths.rebuilt_output, damaged) if output})
    for path in damaged:
        path.unlink(missing_ok=True)
    for output in map(Path, outputs):
        if output.is_dir():
            shutil.rmtree(output)
        else:
            output.unlink(missing_ok=True)
        print(f"repair: removed {output}; this run rebuilds it and reruns the jobs that read it")
    return outputs


def start_run(grid: Grid) -> None:
    """Before the first job: sweep the temporaries of killed jobs, and record whose results these are."""
    from .io import save_text, sweep_temporaries

    for path in sweep_temporaries(grid.exp):
        print(f"removed {path}, left by a killed job")
    save_text(yaml.safe_dump(grid.owner()), owner_file(grid))
