"""A guidance method written as a plug-in outside the package (tests/plugins/mean_latent.py) runs end
to end through the workflow: its section checked and filled in, its sets generated with its guide,
validated, and its columns in Table 1."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from minimaxdd import plan
from minimaxdd.checks import ConfigError

from conftest import TINY_CONFIG, copy_run, planned_outputs, snakemake, write_config

PLUGIN = str(Path(__file__).parent / "plugins" / "mean_latent.py")
CONFIG = {**TINY_CONFIG, "plugins": [PLUGIN], "ipcs": [2],
          "methods": [*TINY_CONFIG["methods"], "mean_latent_minimax"],
          "validate": {**TINY_CONFIG["validate"], "archs": ["convnet"]},
          "analysis": {**TINY_CONFIG["analysis"], "enabled": False}, "studies": [], "expansion": {}}


@pytest.fixture(scope="module")
def with_plugin(tiny_run, tmp_path_factory):
    workdir = copy_run(tiny_run, tmp_path_factory.mktemp("plugin"))
    write_config(workdir, CONFIG)
    snakemake(workdir)
    return workdir / "results" / "tiny"


def test_a_plugin_method_gets_its_sets_and_its_columns_in_table1(with_plugin):
    table = pd.read_csv(with_plugin / "tables" / "table1.csv")
    assert "mean_latent_minimax" in set(table.method)
    assert "Mean latent (Minimax)" in (with_plugin / "tables" / "table1.md").read_text()
    timing = json.loads((with_plugin / "sets/mean_latent_minimax/ipc2/generation.json").read_text())
    assert timing["guidance"] == {"method": "mean_latent", "scale": 0.5}  # the schema's default, filled in
    guided = torch.load(with_plugin / "sets/mean_latent_minimax/ipc2/pack.pt", weights_only=False)
    plain = torch.load(with_plugin / "sets/minimax/ipc2/pack.pt", weights_only=False)
    assert not torch.equal(guided["images"], plain["images"])  # the same model and seeds, moved by its guide


def test_a_plugin_setting_reruns_its_sets_alone(with_plugin):
    workdir = with_plugin.parent.parent
    write_config(workdir, {**CONFIG, "mean_latent": {"scale": 0.25}})
    try:
        outputs = planned_outputs(workdir)
    finally:
        write_config(workdir, CONFIG)
    sets = {o.split("/sets/")[1].split("/")[0] for o in outputs if "/sets/" in o}
    assert sets == {"mean_latent_minimax"}
    assert not any(part in o for o in outputs for part in ("/finetune/", "/base/", "/latents/", "/minimax/", "/random/"))


def test_a_plugin_section_is_checked_like_the_package_s_own(tmp_path):
    with pytest.raises(ConfigError, match=r"^mean_latent\.scale: -1 is less than the minimum of 0"):
        plan.load_config({**CONFIG, "mean_latent": {"scale": -1}})
    with pytest.raises(ConfigError, match=r"^plugins: .*nowhere\.py is not a file"):
        plan.load_config({**CONFIG, "plugins": [str(tmp_path / "nowhere.py")]})
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match=r"^plugins: .*empty\.py defines no METHOD"):
        plan.load_config({**CONFIG, "plugins": [str(tmp_path / "empty.py")]})
    (tmp_path / "clash.py").write_text(Path(PLUGIN).read_text().replace('"mean_latent", "Mean', '"mgd3", "Mean'))
    with pytest.raises(ConfigError, match=r"^plugins: .*clash\.py names its method 'mgd3', which is taken"):
        plan.load_config({**CONFIG, "plugins": [str(tmp_path / "clash.py")]})
