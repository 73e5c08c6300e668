"""Benchmarks that do not rot: every script under benchmarks/ runs at its smallest size (its smoke
mode, about a minute or less on 2 cores) and writes its record; the numbers are not checked.
gpu.sh needs CUDA: its python commands are checked to parse their arguments. Minutes in all:
marked `benchmarks`, run by `make test-benchmarks` (called by .ci/run), not by `make test`."""

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minimaxdd import plan
from minimaxdd.checkpoints import save_dit
from minimaxdd.dit import DiT, DiTConfig
from minimaxdd.paths import Paths
from minimaxdd.vae import build_tiny_vae, save_vae

from conftest import REPO, TINY_CONFIG, snakemake, write_config

pytestmark = pytest.mark.benchmarks

# script: (its smoke arguments, the records it writes under OUT)
SMOKE = {
    "benchmark.py": ("--smoke --out OUT", "benchmark-*.json benchmark-*.md"),
    "checksums.py": ("--smoke --out OUT", "checksums-cpu-smoke.json checksums-cpu-smoke.md"),
    "data_stage.py": ("--smoke --out OUT", "data-stage-*-smoke.json data-stage-*-smoke.md"),
    "default_study.py": ("--smoke --out OUT", "results.jsonl"),
    "estimate.py": ("--smoke --benchmark REPO/docs/benchmarks/benchmark-cpu.json --out OUT/estimate.md", "estimate.md"),
    "finetune_step.py": ("--smoke --out OUT/finetune-step.json", "finetune-step.json"),
    "group_validation.py": ("--smoke --json OUT/group.json", "group.json"),
    "igd_scales.py": ("--smoke --results results/bench --out OUT", "igd-scales-digits.json igd-scales-digits.md"),
    "stage_times.py": ("--out OUT", "stage-times.md"),
    "start_checks.py": ("--smoke --out OUT", "start-checks-*.json"),
    "sync_check.py": ("--smoke --out OUT/sync-check.json", "sync-check.json"),
}
IN_RUN = {"igd_scales.py", "stage_times.py"}  # they read a finished workflow run: run in its folder

# a tiny run of IGD on the pretrained and on the minimax model, IPC 1, from base models in the run's folder
RUN_CONFIG = {**TINY_CONFIG, "experiment": "bench", "methods": ["igd", "igd_minimax"], "ipcs": [1],
              "base_models": {**TINY_CONFIG["base_models"], "vae": "vae", "dit": "dit"},
              "validate": {**TINY_CONFIG["validate"], "archs": ["convnet"], "epochs": {1: 1}},
              "studies": [], "expansion": {"methods": []},
              "igd": {"surrogate_epochs": 1, "checkpoints": [0, 1], "interval": {"low": 1, "high": 2},
                      "gradient_memory": 4, "memory_size": 4}}


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory) -> Path:
    """A real tiny workflow run up to what igd_scales.py reads (IGD's surrogate and class gradients, a
    minimax fine-tuning), whose Snakemake log stage_times.py reads. Its base models are pretrained
    (random weights), outside the experiment as the default's: two jobs fewer."""
    workdir = tmp_path_factory.mktemp("run")
    save_vae(build_tiny_vae(channels=1, resolution=8, block_channels=[8, 8], latent_channels=2), workdir / "vae")
    save_dit(DiT(DiTConfig(input_size=4, patch_size=2, in_channels=2, hidden_size=16, depth=2, num_heads=2,
                           num_classes=10)), workdir / "dit")
    write_config(workdir, RUN_CONFIG)
    paths = Paths(plan.Grid(plan.load_config(RUN_CONFIG)))
    snakemake(workdir, paths.igd_gradients, *paths.finetuned_weights("igd_minimax"), timeout=300)
    return workdir


def check_record(path: Path) -> None:
    text = path.read_text()
    assert text.strip(), f"{path.name} is empty"
    if path.suffix == ".json":
        json.loads(text)
    elif path.suffix == ".jsonl":
        for line in text.splitlines():
            json.loads(line)


@pytest.mark.parametrize("script", SMOKE)
def test_smoke(script, tmp_path, request):
    arguments, records = SMOKE[script]
    out = tmp_path / "out"
    cwd = request.getfixturevalue("workflow_run") if script in IN_RUN else tmp_path  # never the checkout
    argv = [a.replace("OUT", str(out)).replace("REPO", str(REPO)) for a in arguments.split()]
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *argv], cwd=cwd,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    for pattern in records.split():
        files = list(out.glob(pattern))
        assert files, f"{script} wrote no {pattern} in {out}: {sorted(p.name for p in out.iterdir())}"
        for path in files:
            check_record(path)


def test_gpu_sh_arguments(tmp_path, monkeypatch):
    """gpu.sh needs CUDA: it runs with a stand-in python that records each command (and names the
    device `cpu`), then each command's arguments go through its script's own parse_args."""
    gpu_sh = REPO / "benchmarks" / "gpu.sh"
    calls = tmp_path / "calls.jsonl"
    stand_in = tmp_path / "python.py"
    stand_in.write_text(f"import json, sys\nif sys.argv[1] == '-c':\n    print('cpu')\nelse:\n"
                        f"    open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    env = {**os.environ, "PYTHON": f"{sys.executable} {stand_in}", "OUT": str(tmp_path / "out")}
    result = subprocess.run(["bash", str(gpu_sh)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"gpu.sh failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    commands = [json.loads(line) for line in calls.read_text().splitlines()]
    assert len(commands) == len(re.findall(r"^\$PY benchmarks/", gpu_sh.read_text(), re.M))
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    for script, *arguments in commands:
        importlib.import_module(Path(script).stem).parse_args(arguments)
