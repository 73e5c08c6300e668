"""The evaluation protocols side by side (hard labels with and without augmentation, soft labels), a
set distilled elsewhere and MGD3 in one small workflow run (issues 13, 14 and 24), and the
start-of-workflow checks of the teacher and the external sets."""

import json

import pandas as pd
import pytest
import torch
from PIL import Image

from minimaxdd import checks, plan
from minimaxdd.nets import ResNet18BN
from minimaxdd.paths import Paths

from conftest import TINY_CONFIG, copy_run, snakemake, write_config, write_records


def external_tree(root, ipc=1, classes=10):
    """An ImageFolder of digit-sized images named by the digits dataset's classes ('0' ... '9')."""
    for c in range(classes):
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for i in range(ipc):
            Image.new("L", (12, 12), 20 * c + i).save(root / str(c) / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def two_protocols(tiny_run, tmp_path_factory):
    """The tiny run extended: its upstream artifacts (data, base models, latents) are kept."""
    workdir = copy_run(tiny_run, tmp_path_factory.mktemp("protocols"))
    external = external_tree(workdir / "elsewhere")
    config = {**TINY_CONFIG, "methods": ["random", "mgd3", "elsewhere"], "ipcs": [1], "studies": [], "expansion": {},
              "external": {"elsewhere": {1: str(external)}},
              "validate": {**TINY_CONFIG["validate"], "archs": ["convnet"], "protocols": ["hard_label", "soft_label",
                                                                                   "no_augment"],
                           "seeds": [0, 1], "group_seeds": True},
              "soft_label": {"archs": ["convnet"], "epochs": 2, "width_factor": 0.125, "evaluations": 1},
              "mgd3": {"stop_step": 0}}  # guided at chain indices 2 and 1 of the tiny run's 3 steps
    write_config(workdir, config)
    snakemake(workdir)
    return workdir / "results/tiny"


def test_each_protocol_has_its_table_and_the_external_set_its_column(two_protocols):
    tables = two_protocols / "tables"
    for name in ("table1", "table4"):
        frame = pd.read_csv(tables / f"{name}.csv")
        assert set(frame.method) >= {"random", "mgd3", "elsewhere"}, name
    assert "under RDED's soft-label protocol" in (tables / "table4.md").read_text()
    assert "| MGD3 | elsewhere |" in (tables / "table1.md").read_text()
    record = json.loads((two_protocols / "validate_soft/elsewhere/ipc1/convnet/seed0.json").read_text())
    assert record["protocol"] == "soft_label" and record["temperature"] == 20 and record["curve"]
    plain = json.loads((two_protocols / "validate_noaug/elsewhere/ipc1/convnet/seed1.json").read_text())
    assert plain["protocol"] == "hard_label" and plain["augment"] == "none" and plain["seed"] == 1
    scores = pd.read_csv(tables / "scores.csv")
    assert set(scores.method) == {"mgd3", "elsewhere"}  # gains over random
    assert scores.ior_no_augment.notna().all() and scores.ars.notna().all()
    assert (tables / "leaderboard.md").read_text().count("|") > 10


def test_grouped_seeds_write_each_seeds_record_as_its_own_run(two_protocols):
    records = [json.loads((two_protocols / f"validate/mgd3/ipc1/convnet/seed{s}.json").read_text()) for s in (0, 1)]
    assert [r["seed"] for r in records] == [0, 1] and all(r["group_size"] == 2 for r in records)
    assert records[0]["curve"] != records[1]["curve"] or records[0]["final_loss"] != records[1]["final_loss"]


def test_mgd3_samples_from_its_modes(two_protocols):
    modes = torch.load(two_protocols / "modes/ipc1.pt", weights_only=False)
    assert modes["modes"].shape[:2] == (10, 1) and modes["ipc"] == 1
    timing = json.loads((two_protocols / "sets/mgd3/ipc1/generation.json").read_text())
    assert timing["guidance"] == {"method": "mgd3", "scale": 0.1, "stop_step": 0}


def test_an_external_set_is_checked_at_workflow_start(tmp_path):
    base = {"experiment": "x", "methods": ["random", "ours"], "ipcs": [1]}
    with pytest.raises(checks.ConfigError, match=r"^external\.ours: list 'ours' in `methods` too"):
        checks.check(plan.load_config({**base, "methods": ["random"], "external": {"ours": {1: str(tmp_path)}}}))
    with pytest.raises(checks.ConfigError, match=r"^external\.ours\.1: .* holds 2 images per class, not 1"):
        checks.check(plan.load_config({**base, "external": {"ours": {1: str(external_tree(tmp_path / "a", 2))}}}))
    with pytest.raises(checks.ConfigError, match=r"^external\.ours\.1: external set .*b: no folder for class\(es\) '9'$"):
        checks.check(plan.load_config({**base, "external": {"ours": {1: str(external_tree(tmp_path / "b", 1, 9))}}}))
    checks.check(plan.load_config({**base, "external": {"ours": {1: str(external_tree(tmp_path / "c"))}}}))


def test_a_teacher_file_of_the_wrong_size_stops_the_workflow_at_start(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save(ResNet18BN(3, 10).state_dict(), tmp_path / "teacher.pt")
    config = plan.load_config({"experiment": "x", "methods": ["random"], "ipcs": [1],
                               "validate": {"protocols": ["soft_label"]},
                               "soft_label": {"teacher": str(tmp_path / "teacher.pt")}})
    with pytest.raises(checks.ConfigError, match=r"^soft_label\.teacher: teacher checkpoint .* has 10 output classes"):
        checks.check(config)


def test_table4_names_the_soft_label_student(tmp_path):
    from minimaxdd import tables

    records = []
    for method in ("random", "minimax"):
        for seed in (0, 1):
            path = tmp_path / f"{method}{seed}.json"
            path.write_text(json.dumps({"method": method, "ipc": 10, "arch": "resnet18_bn", "seed": seed,
                                        "accuracy_best": 50.0 + seed, "accuracy_last": 40.0}))
            records.append(str(path))
    tables.write_accuracy_table(records, tmp_path / "t4.csv", tmp_path / "t4.md", None, ["random", "minimax"],
                                [10], ["resnet18_bn"], 224, "best", "soft_label")
    assert "| 10 | ResNet-18 (BN) | 50.5 ± 0.5 | 50.5 ± 0.5 |" in (tmp_path / "t4.md").read_text()


def test_every_std_over_seeds_is_the_population_std_of_the_reference(tmp_path):
    """MM train.py L97 prints np.std (ddof 0) of its repeats' best accuracies: seeds at 10, 20, 30
    give 8.16, not the sample std 10.0, in Table 1 (and 4), the studies, Tables 5 and 9 (the plots'
    error bars are drawn from the same summaries); one seed gives 0. The scores' interval takes the
    sample variance (ddof 1) that Welch's t needs from the same std."""
    from minimaxdd import tables

    def records(method, accuracies, ipc=10):
        return write_records(tmp_path, method, accuracies, ipc)

    spread, minimax, single = records("random", [10, 20, 30]), records("minimax", [40, 40, 40]), records("dit", [25])
    full = records("full", [60, 80], ipc=None)
    tables.write_accuracy_table(spread + minimax + single, tmp_path / "t1.csv", tmp_path / "t1.md", tmp_path / "t1.png",
                                ["random", "dit", "minimax"], [10], ["convnet"], 32, "best")
    table1 = pd.read_csv(tmp_path / "t1.csv").set_index("method")
    assert table1.loc["random", "std"] == 8.16 and table1.loc["dit", "std"] == 0.0  # CSV at 2 decimals
    markdown = (tmp_path / "t1.md").read_text()
    assert "| 20.0 ± 8.2 | 25.0 ± 0.0 | 40.0 ± 0.0 |" in markdown
    assert "mean ± std over seeds (population std, ddof 0, as the reference's np.std)" in markdown.splitlines()[0]
    summary = tables.summarize(tables.load_accuracies(spread, "best"), [10])
    assert summary["std"].item() == pytest.approx(8.1650, abs=1e-4)

    tables.write_scores(spread + minimax, [], [], tmp_path / "s.csv", tmp_path / "s.md", tmp_path / "l.csv", tmp_path / "l.md",
                        ["random", "minimax"], [10], ["convnet"], 32, "best")
    assert pd.read_csv(tmp_path / "s.csv").gain_high.item() == 44.84  # 20 + t(0.975, 2) sqrt(100/3), ddof 1
    assert "population std, ddof 0" in (tmp_path / "s.md").read_text()

    study = {"name": "steps", "parameter": "steps", "values": [1]}
    tables.write_study(spread, [], tmp_path / "st.csv", tmp_path / "st.md", tmp_path / "st.png", study, ["random"],
                       32, "best")
    assert "| 20.0 ± 8.2 |" in (tmp_path / "st.md").read_text()

    tables.write_table5(spread, tmp_path / "t5.csv", tmp_path / "t5.md", ["random"], {"random": ("off", "off")}, [10],
                        ["convnet"], 32, "best")
    assert "| 20.0 ± 8.2 |" in (tmp_path / "t5.md").read_text()

    expanded = records("full+minimax", [10, 20, 30])
    tables.write_table9(full + expanded, tmp_path / "t9.csv", tmp_path / "t9.md", 32, "best")
    assert "| 70.0 ± 10.0 | 20.0 ± 8.2 |" in (tmp_path / "t9.md").read_text()  # two seeds: 10.0 (ddof 1: 14.1)

    assert "full-data accuracy is below" not in (tmp_path / "s.md").read_text()
    weak_full = records("full", [5], ipc=None)  # replaces the full run: undertrained, below random's 20
    tables.write_scores(spread + minimax + weak_full, [], [], tmp_path / "s.csv", tmp_path / "s.md", tmp_path / "l.csv",
                        tmp_path / "l.md", ["random", "minimax", "full"], [10], ["convnet"], 32, "best")
    assert pd.read_csv(tmp_path / "s.csv").recovered.item() == 800.0
    assert "Note: the full-data accuracy is below Random's at IPC 10 ConvNet-3" in (tmp_path / "s.md").read_text()
    tables.write_accuracy_table(spread + weak_full, tmp_path / "t1.csv", tmp_path / "t1.md", None,
                                ["random", "full"], [10], ["convnet"], 32, "best")
    assert set(pd.read_csv(tmp_path / "t1.csv", dtype=str).ipc) == {"10"}  # not 10.00


def test_a_soft_label_only_experiment_runs_no_hard_label_training():
    config = plan.load_config({"experiment": "x", "methods": ["random", "minimax", "rep_mean"], "ipcs": [1],
                               "validate": {"protocols": ["soft_label"]}, "expansion": {"methods": ["minimax"], "ipcs": [1]},
                               "studies": [{"name": "s", "parameter": "steps", "values": [3, 4]}]})
    outputs = Paths(plan.Grid(config)).final_outputs()
    assert any(o.endswith("table4.csv") for o in outputs)
    assert not [o for o in outputs if any(t in o for t in ("table1.", "table5", "table9", "study_", "scores"))]


def test_the_no_augment_protocol_alone_stops_at_start_naming_the_key():
    config = plan.load_config({"experiment": "x", "validate": {"protocols": ["no_augment"]}})
    with pytest.raises(checks.ConfigError, match=r"^validate\.protocols: no_augment is scored against hard_label"):
        checks.check(config)
    both = plan.load_config({"experiment": "x", "methods": ["random", "minimax"],
                             "validate": {"protocols": ["hard_label", "no_augment"]}})
    checks.check(both)
    paths = Paths(plan.Grid(both))
    # every hard-label run of a set, once more without augmentation
    assert paths.no_augment_records() == [r.replace("/validate/", "/validate_noaug/") for r in paths.validation_records()]
