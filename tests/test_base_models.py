"""The pretrained tiny models the embedded default starts from (models/digits/) and the command that
rebuilds them (`make base-models`: python -m minimaxdd.base_models)."""

import subprocess
import sys

import pytest
import yaml

from minimaxdd import plan, pretrained

from conftest import REPO, TINY_CONFIG, snakemake, write_config


def test_the_shipped_models_are_the_architecture_config_yaml_describes():
    """Editing config.yaml's tiny_* settings without `make base-models` would leave the default
    running on models those settings do not describe."""
    config = plan.load_config(yaml.safe_load((REPO / "config.yaml").read_text()))
    models = config["base_models"]
    vae = pretrained.inspect_vae(REPO / models["vae"])
    assert vae.latent_channels == models["tiny_vae"]["latent_channels"]
    assert vae.in_channels == config["dataset"]["channels"]
    assert vae.downsample == 2 ** (len(models["tiny_vae"]["block_channels"]) - 1)
    dit = pretrained.inspect_dit(REPO / models["dit"])
    for key in ("hidden_size", "depth", "num_heads", "patch_size"):
        assert getattr(dit, key) == models["tiny_dit"][key], key
    assert (dit.in_channels, dit.num_classes) == (vae.latent_channels, 10)


@pytest.mark.slow
def test_the_rebuild_command_builds_models_a_run_starts_from(tmp_path, monkeypatch):
    config = {**TINY_CONFIG, "base_models": {**TINY_CONFIG["base_models"], "vae": "models/tiny/vae",
                                             "dit": "models/tiny/dit"},
              "methods": ["dit"], "ipcs": [1], "studies": [], "expansion": {}, "analysis": {"enabled": False}}
    write_config(tmp_path, config)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="base_models.vae: models/tiny/vae does not exist"):
        plan.check(plan.load_config(config))  # what the Snakefile runs before any job

    done = subprocess.run([sys.executable, "-m", "minimaxdd.base_models", "--directory", str(tmp_path), "--cores", "2",
                           "--snakefile", str(REPO / "Snakefile")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rebuilt" in done.stdout
    dit = pretrained.load_pretrained_dit(tmp_path / "models/tiny/dit")
    assert dit.config.hidden_size == TINY_CONFIG["base_models"]["tiny_dit"]["hidden_size"]

    # A run from the rebuilt models: they encode, sample and decode (the tiny sampler, 3 steps).
    snakemake(tmp_path, "results/tiny/sets/dit/ipc1/pack.pt")
    assert len(list((tmp_path / "results/tiny/sets/dit/ipc1/images").glob("*/*.png"))) == 10
