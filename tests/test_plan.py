"""The plan (issue 11): which config a run uses, how it is checked, and each job's settings, tested
in-process; a few Snakemake runs check the wiring."""

import dataclasses
import inspect
import json
import re
from pathlib import Path
from types import SimpleNamespace as Wildcards

import pytest
import yaml

from minimaxdd import plan, stages
from minimaxdd.checks import ConfigError

from conftest import REPO, TINY_CONFIG, copy_run, snakemake, write_config

from minimaxdd.params import Params
from minimaxdd.paths import Paths
from minimaxdd.settings import HardLabel, Recipe, SoftLabel

DEMO = yaml.safe_load((REPO / "config.yaml").read_text())
MINIMAL = {"experiment": "mine", "dataset": {"kind": "digits"}}


def load(**changes) -> dict:
    return plan.load_config({**MINIMAL, **changes})


def rule_params(config: dict) -> Params:
    grid = plan.Grid(config)
    return Params(grid, Paths(grid))


def every_settings(config: dict) -> dict:
    """Each rule's settings for one job of the grid (the first method, IPC, arch and seed)."""
    p = rule_params(config)
    grid = p.grid
    method, ipc, arch, seed = grid.validated[0], grid.ipcs[0], grid.archs[0], grid.seeds[0]
    generated = grid.generated[0] if grid.generated else "dit"
    return {
        "prepare": p.prepare(), "base_vae": p.base_vae(), "encode": p.encode(Wildcards(chunk=grid.latent_chunks[0])),
        "base_dit": p.base_dit(),
        "finetune": p.finetune(Wildcards(method="minimax", phase="0")),
        "generate": p.generate(Wildcards(method=generated, ipc=str(ipc))),
        "select_random": p.select_random(Wildcards(ipc=str(ipc))),
        "feature_net": p.feature_net(), "igd_surrogate": p.igd_surrogate(),
        "validate": p.validate(Wildcards(method=method, ipc=str(ipc), arch=arch, seed=str(seed))),
        "validate_full": p.validate(Wildcards(arch=arch, seed=str(seed))),
        "validate_no_augment": p.validate_no_augment(Wildcards(method=method, ipc=str(ipc), arch=arch, seed=str(seed))),
        "table1": p.table1(), "analysis_tables": p.analysis_tables(),
    }


# ------------------------------------------------------------------ 1. no hidden defaults of the demo

def test_a_config_file_is_the_whole_config_and_the_demo_only_applies_without_one(tmp_path):
    given = {"experiment": "mine", "ipcs": [5]}  # what Snakemake hands over for --configfile m.yaml
    assert plan.read_config(given, configfiles=[tmp_path / "m.yaml"], default_file=REPO / "config.yaml") == given
    demo = plan.read_config({"ipcs": [5]}, configfiles=[], default_file=REPO / "config.yaml")
    assert demo["ipcs"] == [5] and demo["validate"] == DEMO["validate"]  # --config on top of the demo

    # the workflow itself: a user file without `experiment`, next to the demo's config.yaml, stops
    write_config(tmp_path, DEMO)
    (tmp_path / "m.yaml").write_text("dataset: {kind: digits}\nipcs: [5]\nmethods: [random]\n")
    result = snakemake(tmp_path, "--dry-run", "--configfile", str(tmp_path / "m.yaml"), check=False)
    assert result.returncode != 0
    assert "experiment: required key is missing" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_experiment_and_dataset_alone_run_with_the_schema_defaults(tmp_path):
    p = rule_params(load())
    validate = p.validate(Wildcards(method="minimax", ipc="10", arch="convnet", seed="0"))
    assert validate["epochs"] == 2000 and validate["width_factor"] == 1.0  # not the demo's 60 and 0.125
    assert p.validate(Wildcards(arch="convnet", seed="0"))["epochs"] == 100
    assert p.grid.exp == "results/mine" and p.grid.ipcs == [10, 20] and p.grid.seeds == [0, 1, 2]
    write_config(tmp_path, MINIMAL)
    planned = snakemake(tmp_path, "--dry-run").stdout
    outputs = re.findall(r"^\s+output: (.+)$", planned, flags=re.MULTILINE)
    assert outputs and all(o.startswith("results/mine/") for o in outputs)
    assert "validate" in planned and "results/mine/tables/table1.csv" in planned


def test_docs_and_schema_agree_on_every_default():
    rows = dict(re.findall(r"^\| `([^`]+)` \| ([^|]+?) \|", (REPO / "docs/configuration.md").read_text(),
                           flags=re.MULTILINE))

    def leaves(schema, prefix=""):
        for key, sub in schema.get("properties", {}).items():
            name = prefix + key
            if "properties" in sub:
                yield from leaves(sub, name + ".")
                continue
            required = key in schema.get("required", [])
            yield name, ("(required)" if required else sub.get("default", "(none)"))
            if isinstance(sub.get("items"), dict) and "properties" in sub["items"]:
                yield from leaves(sub["items"], name + "[].")

    documented = {}
    for key, cell in rows.items():
        documented[key] = cell if cell.startswith("(") else yaml.safe_load(cell.strip("`"))
    schema = {key: default for key, default in leaves(plan.schema())}
    schema["validate.epochs"] = {int(k): v for k, v in schema["validate.epochs"].items()}
    assert documented == schema


# ------------------------------------------------------------------ 2. integer-keyed maps

def test_a_renamed_key_names_its_new_name():
    with pytest.raises(ConfigError, match=r"^validate\.pack_seeds: renamed validate\.group_seeds"):
        load(validate={"pack_seeds": True})


def test_epochs_per_ipc_take_integer_keys_in_yaml_and_json():
    from_yaml = load(validate={"epochs": {10: 20}})
    from_json = plan.load_config(json.loads(json.dumps({**MINIMAL, "validate": {"epochs": {10: 20}}})))
    assert from_yaml["validate"]["epochs"] == from_json["validate"]["epochs"] == {10: 20}
    assert plan.Grid(from_json).validation_epochs("minimax", 10) == 20
    for key in (10.0, "ten", "10.0", True):
        with pytest.raises(ConfigError, match=r"^validate\.epochs: key .* is not an IPC; keys must be integers"):
            load(validate={"epochs": {key: 20}})


# ------------------------------------------------------------------ 3. study values within the key's range

@pytest.mark.parametrize("parameter, value, message", [
    ("guidance_scale", -3, r"-3 is less than the minimum of 1 \(a value of generate\.guidance_scale"),
    ("epochs", 0.5, r"0\.5 is not of type 'integer' \(a value of finetune\.epochs"),
    ("steps", 1, r"1 is less than the minimum of 2 \(a value of generate\.steps"),
    ("memory_size", 0, r"0 is less than the minimum of 1 \(a value of finetune\.memory_size"),
])
def test_study_values_are_checked_like_the_key_they_sweep(parameter, value, message):
    with pytest.raises(ConfigError, match=r"^studies\[0\]\.values\[1\]: " + message):
        load(studies=[{"name": "s", "parameter": parameter, "values": [4, value]}])


def test_integer_study_values_name_their_points_as_integers():
    config = load(studies=[{"name": "s", "parameter": "epochs", "values": [2.0, 8]}])
    assert plan.Grid(config).study_points(config["studies"][0]) == ["minimax@epochs=2", "minimax"]


# ------------------------------------------------------------------ 4. report labels are no rerun triggers

def test_generation_batch_is_a_number_or_auto():
    assert load(generate={"batch_size": "auto"})["generate"]["batch_size"] == "auto"
    for wrong in ("big", 0):
        with pytest.raises(ConfigError, match=r"^generate\.batch_size: "):
            load(generate={"batch_size": wrong})


def test_the_dataset_name_changes_no_job_settings():
    named = every_settings(load(dataset={"kind": "digits", "name": "Digits, renamed"}))
    assert named == every_settings(load())


def test_key_order_and_settings_that_change_no_result_leave_every_job_alone():
    base = every_settings(load(validate={"epochs": {20: 5, 10: 7}, "seeds": [0]}))
    again = every_settings(load(validate={"seeds": [0], "epochs": {10: 7, 20: 5}},
                                checkpoint={"every_steps": 7}, device="cpu",
                                speed={"compile": True, "channels_last": True}))
    assert json.dumps(base) == json.dumps(again)  # Snakemake compares params with their key order
    fast = load(speed={"compile": True, "channels_last": True})
    assert plan.runtime(fast, "finetune")["compile"] and plan.runtime(fast, "generate")["compile"]
    assert plan.runtime(fast, "validate_group")["channels_last"] and "compile" not in plan.runtime(fast, "validate")


# ------------------------------------------------------------------ 5. experiments stay under results/

@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b", "../digits", ""])
def test_experiment_names_cannot_leave_results(name):
    with pytest.raises(ConfigError, match=r"^experiment: "):
        plan.load_config({"experiment": name})


def test_an_experiment_folder_belongs_to_one_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load()
    plan.start_run(plan.check(config))
    assert yaml.safe_load(Path("results/mine/experiment.yaml").read_text())["kind"] == "digits"
    plan.check(config)  # the same data: fine
    other = load(dataset={"kind": "idx", "root": str(tmp_path)})
    other["dataset"] |= {"kind": "digits"}  # passes the data checks, but the root differs
    with pytest.raises(ConfigError, match=r"^experiment: results/mine holds the results of another dataset"):
        plan.check(other)


# ------------------------------------------------------------------ 6. maintenance commands need no --cores

def test_maintenance_commands_run_without_cores(tmp_path):
    write_config(tmp_path, TINY_CONFIG)
    for args in (["--unlock"], ["--summary"], ["--list-changes", "params"], ["--dag"]):
        result = snakemake(tmp_path, *args, check=False, cores=None)
        assert result.returncode == 0, (args, result.stderr[-2000:])


# ------------------------------------------------------------------ the stages take exactly their settings

# the stages that take a protocol's fields as **protocol and rebuild its settings object from them
PROTOCOL_OF = {"validate": HardLabel, "validate_group": HardLabel, "feature_net": Recipe, "igd_surrogate": Recipe,
               "validate_soft_label": SoftLabel}


def assert_stage_takes(stage, given: set) -> None:
    """`given` names the stage's keyword parameters, and the fields of its protocol object, if any."""
    parameters = inspect.signature(stage).parameters
    named = {name for name, p in parameters.items() if p.kind is not p.VAR_KEYWORD}
    protocol = {f.name for f in dataclasses.fields(PROTOCOL_OF[stage.__name__])} if stage.__name__ in PROTOCOL_OF else set()
    assert given - protocol <= named, (stage.__name__, given - protocol - named)
    assert protocol <= given, (stage.__name__, protocol - given)


def test_every_settings_key_is_a_parameter_of_its_stage():
    for rule, settings in every_settings(load(methods=["random", "dit", "minimax"])).items():
        stage = getattr(stages, {"validate_full": "validate", "validate_no_augment": "validate_group"}.get(rule, rule))
        assert_stage_takes(stage, set(settings) | set(plan.runtime(load(), stage.__name__)))


# ------------------------------------------------------------------ environment and lint

def test_the_conda_environment_takes_its_packages_from_pyproject():
    env = yaml.safe_load((REPO / "envs/minimaxdd.yaml").read_text())
    pip = [d for d in env["dependencies"] if isinstance(d, dict)][0]["pip"]
    assert pip == ["--editable ..[test]"]  # relative to the file: the repository root
    assert [d for d in env["dependencies"] if isinstance(d, str)] == ["python=3.11", "pip"]


def test_the_only_lint_is_the_one_the_readme_explains(tmp_path):
    write_config(tmp_path, TINY_CONFIG)
    out = snakemake(tmp_path, "--lint", check=False, cores=None)
    lints = set(re.findall(r"^\s+\* (.+?):?$", out.stdout + out.stderr, flags=re.MULTILINE))
    assert lints == {"Specify a conda environment or container for each rule."}
    assert "Specify a conda environment or container for each rule" in (REPO / "README.md").read_text()


# ------------------------------------------------------------------ a run starts clean, or not at all

def test_a_run_sweeps_the_temporaries_of_killed_jobs(tiny_run, tmp_path):
    """(A damaged artifact at start: tests/test_repair.py.)"""
    copy_run(tiny_run, tmp_path)
    write_config(tmp_path, TINY_CONFIG)
    exp = tmp_path / "results/tiny"
    leftovers = [exp / "sets/.pack.pt.abcd1234.tmp", exp / "sets/random/.images.x1y2z3_4.tmp"]
    leftovers[0].write_bytes(b"half")
    leftovers[1].mkdir()
    (exp / "tables/table1.md").unlink()  # a job to run
    result = snakemake(tmp_path)
    assert f"removed {leftovers[0].relative_to(tmp_path)}, left by a killed job" in result.stdout + result.stderr
    assert not any(p.exists() for p in leftovers)


def test_a_group_validation_job_takes_every_seed_and_the_stage_takes_its_settings():
    p = rule_params(load(validate={"group_seeds": True, "seeds": [3, 4]}))
    w = Wildcards(method="random", ipc="10", arch="convnet")
    assert p.paths.group_records(w) == [p.paths.record("random", "10", "convnet", s) for s in (3, 4)]
    settings = p.validate(w)
    assert settings["seeds"] == [3, 4] and "seed" not in settings
    protocol = {k: v for k, v in settings.items() if k in HardLabel.__dataclass_fields__}
    assert HardLabel(**protocol) == p.hard_label  # the stage rebuilds the plan's object from the params
    assert_stage_takes(stages.validate_group, set(settings) | set(plan.runtime(p.grid.config, "validate_group")))


def test_the_reference_rule_sets_lr_weight_decay_and_batch_by_class_count():
    # MD argument.py L294-302: more than 100 classes -> lr 0.1, weight decay 1e-4, batch max(128, 64)
    def protocol(classes, **validate):
        p = rule_params(load(validate=validate))
        p.grid.__dict__["class_count"] = classes  # the dataset's class count, as read from disk
        return p.hard_label

    assert (protocol(10).lr, protocol(10).weight_decay, protocol(10).batch_size) == (0.01, 5e-4, 64)
    assert (protocol(100).lr, protocol(100).weight_decay, protocol(100).batch_size) == (0.01, 5e-4, 64)
    assert (protocol(1000).lr, protocol(1000).weight_decay, protocol(1000).batch_size) == (0.1, 1e-4, 128)
    given = protocol(1000, lr=0.05, batch_size=32)  # a value the user gives is the value used
    assert (given.lr, given.weight_decay, given.batch_size) == (0.05, 1e-4, 32)


def test_the_full_split_is_scored_every_epoch():
    # MD argument.py L426-437: epoch_print_freq = 1 when training on the full split (ipc <= 0)
    from minimaxdd.validate import HardLabelSteps

    p = rule_params(load(validate={"full_epochs": 30, "evaluations": 10}))
    full = p.validate(Wildcards(arch="convnet", seed="0"))
    subset = p.validate(Wildcards(method="random", ipc="10", arch="convnet", seed="0"))
    steps = lambda settings: HardLabelSteps("convnet", HardLabel(**{k: settings[k] for k in HardLabel.__dataclass_fields__}))
    assert steps(full).scored_epochs(full["epochs"]) == list(range(1, 31))
    assert len(steps(subset).scored_epochs(subset["epochs"])) == 10


# ------------------------------------------------------------------ settings objects: one place for each default

GRID_KEYS = {"validate": {"protocols", "archs", "seeds", "epochs", "default_epochs", "full_epochs", "group_seeds",
                          "report"},
             "soft_label": {"archs", "teacher", "teacher_classes", "check_images", "epochs"}}


@pytest.mark.parametrize("section,settings", [("validate", HardLabel), ("soft_label", SoftLabel)])
def test_every_protocol_key_of_the_schema_is_a_field_of_its_settings_object(section, settings):
    """A new validate / soft_label key is either a field of the protocol's settings object (what every
    run takes) or a key of the job grid: this test names the place it was forgotten."""
    keys = set(plan.schema()["properties"][section]["properties"])
    assert keys == {f.name for f in dataclasses.fields(settings)} | GRID_KEYS[section]


def test_the_validation_entry_points_keep_no_default_of_the_schema():
    from minimaxdd import classifier, features, softlabel, validate
    from minimaxdd.guidance import igd

    schema = plan.schema()["properties"]
    keys = set(schema["validate"]["properties"]) | set(schema["soft_label"]["properties"])
    for function in (classifier.train_classifiers, classifier.build_group, validate.train_and_evaluate,
                     validate.RecipeSteps, validate.HardLabelSteps, validate.evaluation_epochs, softlabel.train_soft_label,
                     softlabel.SoftLabelSteps, softlabel.check_teacher_class_order, softlabel.build_student,
                     features.train_feature_net, stages.validate, stages.validate_group,
                     stages.validate_soft_label, stages.feature_net, stages.igd_surrogate, igd.train_surrogate):
        defaults = {name for name, p in inspect.signature(function).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        assert not defaults & keys, (function.__qualname__, defaults & keys)


# ------------------------------------------------------------------ paths: one source

def test_the_rules_spell_no_path_and_records_read_back_with_their_patterns():
    rules = Path(__file__).parent.parent / "workflow" / "rules"
    for rule_file in rules.glob("*.smk"):
        text = rule_file.read_text()
        for literal in ("/sets/", "/validate/", "/validate_soft/", "/validate_noaug/", "/logs/", "/tables/",
                        "/figures/", "/finetune/", "/latents/", "ipc{"):
            assert not any(literal in line and "PATHS." not in line for line in text.splitlines()), (rule_file, literal)
    paths = Paths(plan.Grid(load(methods=["random", "minimax", "full"])))
    assert paths.run_of(paths.record("minimax@steps=3", 10, "convnet", 2)) == ("minimax@steps=3", 10, "convnet")
    assert paths.run_of(paths.run_record("validate_soft", "random", 1, "resnet18", 0)) == ("random", 1, "resnet18")
    assert paths.run_of(paths.full_record("convnet", 0)) == ("full", 0, "convnet")
    with pytest.raises(ValueError, match="no validation record"):
        paths.run_of(paths.set_pack("random", 1))


def test_settings_that_would_be_silently_dropped_or_never_end_stop_at_load():
    study = {"name": "s", "parameter": "steps", "values": [2, 3]}
    with pytest.raises(ConfigError, match=r"^studies\[1\]\.name: 's' names an earlier study too"):
        load(studies=[study, {**study, "values": [4]}])
    with pytest.raises(ConfigError, match=r"^expansion\.ipcs: empty, but expansion\.methods is not"):
        load(expansion={"methods": ["minimax"]})
    with pytest.raises(ConfigError, match=r"^expansion\.methods: empty, but expansion\.ipcs is not"):
        load(expansion={"ipcs": [10]})
    with pytest.raises(ConfigError, match=r"^base_models\.tiny_dit\.steps: .* is greater than the maximum"):
        load(base_models={"tiny_dit": {"steps": 10**12}})


def test_a_damaged_file_is_rebuilt_by_the_output_of_the_job_that_wrote_it():
    paths = rule_params(load()).paths
    exp = paths.grid.exp
    for damaged, output in (("base/dit/model.safetensors", "base/dit"), ("base/vae/config.json", "base/vae"),
                            ("sets/minimax/ipc10/images/cat/0.png", "sets/minimax/ipc10/images"),
                            ("data/train/3.npy", "data/train/index.json"), ("data/train/3.json", "data/train/index.json"),
                            ("data/test/index.json", "data/test/index.json"),
                            ("igd/class_gradients/class0.pt", "igd/class_gradients"),
                            ("latents/train/all.pt", "latents/train/all.pt"),
                            ("validate/random/ipc10/convnet/seed0.json", "validate/random/ipc10/convnet/seed0.json")):
        assert paths.rebuilt_output(f"{exp}/{damaged}") == f"{exp}/{output}", damaged
    for scratch in ("finetune/minimax/phase0/weights.safetensors.resume.pt", "igd/class_gradients.partial/class0.pt",
                    "igd/surrogate.pt.trajectory/epoch3.pt"):
        assert paths.rebuilt_output(f"{exp}/{scratch}") is None  # removed: its job starts over


def test_a_file_gone_from_a_base_models_folder_is_named_and_repaired(tmp_path, monkeypatch):
    """Snakemake sees a folder output whole: with its weights deleted, nothing rebuilt them, and a
    later job failed on the folder ("config.json describes a None")."""
    from minimaxdd import checkpoints
    from minimaxdd.io import ArtifactError

    from conftest import tiny_dit

    monkeypatch.chdir(tmp_path)
    p = rule_params(load())
    folder = Path(p.paths.base_model("dit"))
    checkpoints.save_dit(tiny_dit(), folder)
    assert plan.repair(p.grid, p.paths) == []
    (folder / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match=rf"^{re.escape(str(folder))}/model\.safetensors: truncated, corrupt or "
                                            r"missing; to rebuild it .* add --config repair=True"):
        plan.repair(p.grid, p.paths)
    repairing = rule_params(load(repair=True))
    assert plan.repair(repairing.grid, repairing.paths) == [str(folder)] and not folder.exists()
