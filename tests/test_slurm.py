"""The workflow on a real single-node SLURM cluster with profiles/slurm, compared with a local run.

.ci/slurm.sh starts munged, slurmctld and slurmd (Debian's slurm-wlm and munge) as plain processes
with their config and state in a temporary folder, and stops exactly those processes afterwards,
also when the test fails or times out. The test is skipped when SLURM is not installed (or this is
not root), unless MINIMAXDD_REQUIRE_SLURM=1, as on CI (.ci/run), where it fails instead.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import SNAKEMAKE, TINY_CONFIG, write_config

REPO = Path(__file__).resolve().parents[1]
SLURM_SH = REPO / ".ci/slurm.sh"
PROFILES = REPO / "profiles"
REQUIRED = os.environ.get("MINIMAXDD_REQUIRE_SLURM") == "1"
MODEL_RULES = {"base_vae", "base_dit", "encode", "finetune", "generate", "generate_chunk", "feature_net", "analyze",
               "tsne", "validate", "validate_full", "validate_soft_label", "validate_group", "validate_no_augment",
               "igd_surrogate", "igd_gradients"}

# Three kinds of method (a real subset, a fine-tuned generator, the full data) at two IPCs, one
# architecture: 26 jobs. Each SLURM job starts snakemake twice (the job script and its srun step),
# both importing torch, so even a tiny job costs ~10 s of CPU: 2 cores run ~6 jobs a minute.
SLURM_TINY = dict(
    TINY_CONFIG,
    methods=["random", "minimax", "full"],
    ipcs=[1, 2],
    # more epochs than TINY_CONFIG's: accuracies off chance level, so that equal tables mean something
    validate=dict(TINY_CONFIG["validate"], archs=["convnet"], epochs={1: 100, 2: 60}, full_epochs=2),
    studies=[],
    expansion={"methods": [], "ipcs": []},
)
# Status checks for jobs of ~15 s (the profile's 20 s suit long jobs). The plugin checks i seconds
# after a round in which a job ended, then adds 10 s per round without one: with i = 4 the checks
# come 4, 18, 42 s after a submission, so a 12-18 s job is seen ending within a few seconds.
FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "4", "--seconds-between-status-checks", "4"]
LOCAL_TIMEOUT_S = 360  # measured 65 s on 2 idle cores, 124 s on 2 busy ones
SLURM_TIMEOUT_S = 600  # measured 259 s on 2 idle cores, 305 s on 2 busy ones


def profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


def workflow_rules() -> set[str]:
    rules = set()
    for path in (REPO / "workflow/rules").glob("*.smk"):
        rules |= set(re.findall(r"^\s*rule (\w+):", path.read_text(), flags=re.MULTILINE))
    return rules


def test_profiles_cover_every_rule_and_request_gpus_for_models():
    slurm, cpu, local = profile("slurm"), profile("slurm-cpu"), profile("local")
    assert slurm["executor"] == "slurm" and slurm["slurm-status-command"] == "squeue"
    assert set(slurm["set-resources"]) == workflow_rules(), "every rule needs its line in profiles/slurm"
    assert {rule for rule, res in slurm["set-resources"].items() if res.get("gpu")} == MODEL_RULES
    assert {rule for rule, res in local["set-resources"].items() if res.get("gpu")} == MODEL_RULES
    assert local["resources"] == {"gpu": 1} and local["cores"] == "all"
    # the CPU overlay is the SLURM profile's set-resources without the GPU requests
    without_gpus = {rule: {k: v for k, v in res.items() if k != "gpu"} for rule, res in slurm["set-resources"].items()}
    assert cpu == {"set-resources": without_gpus}
    assert slurm["set-threads"] == local["set-threads"]


def unavailable() -> str | None:
    missing = [tool for tool in ("slurmctld", "slurmd", "munged", "mungekey", "sbatch", "srun", "squeue", "sinfo",
                                 "scancel") if shutil.which(tool) is None]
    if missing:
        return f"SLURM is not installed (no {', '.join(missing)}): `.ci/slurm.sh install` installs it"
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed"
    return None


def run_bounded(cmd: list[str], timeout: float, env: dict | None = None, log: Path | None = None) -> float:
    """Run cmd in its own process group; kill the whole group when it overruns. Returns the wall time."""
    start = time.monotonic()
    with open(log or os.devnull, "w") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise AssertionError(f"{cmd[:6]}... did not finish in {timeout} s; log: {log}") from None
        finally:
            if process.poll() is None:  # interrupted (e.g. Ctrl-C): leave nothing behind
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    wall = time.monotonic() - start
    if returncode != 0:
        tail = log.read_text()[-4000:] if log else ""
        raise AssertionError(f"{cmd[:6]}... exited {returncode} after {wall:.0f} s:\n{tail}")
    return wall


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running single-node cluster; yields the environment its clients need."""
    reason = unavailable()
    if reason:
        if REQUIRED:
            pytest.fail(f"{reason} (MINIMAXDD_REQUIRE_SLURM=1)")
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm")
    start = time.monotonic()
    try:
        subprocess.run(["bash", str(SLURM_SH), "start", str(state)], check=True, capture_output=True, text=True,
                       timeout=120)
        setup_s = time.monotonic() - start
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
        env["SLURM_CONF"] = str(state / "slurm.conf")
        env["PATH"] = f"{state / 'bin'}{os.pathsep}{env['PATH']}"
        yield {"env": env, "setup_s": setup_s, "state": state}
    except subprocess.CalledProcessError as err:
        pytest.fail(f"starting SLURM failed:\n{err.stdout}\n{err.stderr}")
    finally:
        subprocess.run(["bash", str(SLURM_SH), "stop", str(state)], timeout=120)


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory):
    """The same config run locally and under SLURM; both with one thread per job, so the numbers match."""
    local = tmp_path_factory.mktemp("local")
    slurm = tmp_path_factory.mktemp("on_slurm")
    for workdir in (local, slurm):
        write_config(workdir, SLURM_TINY)
    local_s = run_bounded([*SNAKEMAKE, "--directory", str(local), "--cores", "2", "--max-threads", "1"],
                          LOCAL_TIMEOUT_S, log=local / "snakemake.log")
    slurm_s = run_bounded(
        [*SNAKEMAKE, "--directory", str(slurm),
         "--profile", str(PROFILES / "slurm"), "--profile", str(PROFILES / "slurm-cpu"),
         "--default-resources", "slurm_account=minimaxdd", "slurm_partition=debug",
         "--max-threads", "1", *FAST_STATUS],
        SLURM_TIMEOUT_S, env=slurm_cluster["env"], log=slurm / "snakemake.log")
    print(f"\nSLURM set-up {slurm_cluster['setup_s']:.1f} s; workflow on SLURM {slurm_s:.0f} s, "
          f"locally (--cores 2) {local_s:.0f} s")
    return local, slurm


@pytest.mark.slurm
def test_every_run_record_names_its_slurm_job(runs):
    local, slurm = runs
    records = sorted((slurm / "results/tiny/validate").rglob("*.json"))
    assert len(records) == 2 * 2 + 1  # random and minimax x 2 IPCs x convnet x seed 0, and full
    job_ids = [json.loads(path.read_text())["slurm_job_id"] for path in records]
    assert all(job_id is not None and job_id.isdigit() for job_id in job_ids), job_ids
    assert len(set(job_ids)) == len(job_ids)  # one SLURM job per validation run
    local_record = json.loads(next((local / "results/tiny/validate").rglob("*.json")).read_text())
    assert local_record["slurm_job_id"] is None


@pytest.mark.slurm
def test_tables_equal_those_of_a_local_run(runs):
    local, slurm = runs
    names = sorted(path.name for path in (local / "results/tiny/tables").glob("*.csv"))
    assert {"table1.csv", "table2.csv", "table10.csv"} <= set(names)
    assert pd.read_csv(local / "results/tiny/tables/table1.csv")["mean"].nunique() > 1  # not all at chance
    assert names == sorted(path.name for path in (slurm / "results/tiny/tables").glob("*.csv"))
    for name in names:
        pd.testing.assert_frame_equal(pd.read_csv(slurm / "results/tiny/tables" / name),
                                      pd.read_csv(local / "results/tiny/tables" / name), obj=name)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v", "-s"]))
