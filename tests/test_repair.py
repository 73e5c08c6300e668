"""A damaged artifact of every kind is named at start, dry runs included, before Snakemake deletes
anything; the one repair every message gives (`--config repair=True` added to the command),
followed literally, rebuilds it and the jobs that read it, to tables byte-identical to those of
the undamaged run (issue 33)."""

import re

import pytest

from conftest import TINY_CONFIG, copy_run, snakemake, write_config

pytestmark = pytest.mark.slow  # a rebuild of every stage: `make test-slow`, in CI

# One real, one fine-tuned and the full-data method at one IPC and net: every artifact kind, few jobs.
CONFIG = {**TINY_CONFIG, "methods": ["random", "minimax", "full"], "ipcs": [1],
          "validate": {**TINY_CONFIG["validate"], "archs": ["convnet"]},
          "analysis": {**TINY_CONFIG["analysis"], "enabled": False}, "studies": [], "expansion": {}}
# damaged file -> the output of the job that wrote it, which the repair removes and rebuilds
DAMAGED = {"data/train/3.npy": "data/train/index.json", "data/test/0.npy": "data/test/index.json",
           "base/vae/diffusion_pytorch_model.safetensors": "base/vae", "base/dit/model.safetensors": "base/dit",
           **{name: name for name in ("latents/train/all.pt", "finetune/minimax/phase0/weights.safetensors",
                                      "sets/minimax/ipc1/pack.pt", "validate/random/ipc1/convnet/seed0.json")}}


def files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def undamaged(tmp_path_factory):
    """A run of CONFIG from scratch (this file runs apart from the session's tiny run)."""
    run = tmp_path_factory.mktemp("undamaged")
    write_config(run, CONFIG)
    snakemake(run)
    return run


def test_every_kind_of_damaged_artifact_is_named_and_the_repair_its_message_gives_rebuilds_it(undamaged, tmp_path):
    run = copy_run(undamaged, tmp_path / "run")
    exp = run / "results/tiny"
    for name in DAMAGED:
        whole = (exp / name).read_bytes()
        (exp / name).write_bytes(whole[:-100])  # cut short, as by a full disk or a copy
    before = files(exp)

    for mode in (["--dry-run"], []):
        result = snakemake(run, *mode, check=False)
        said = result.stdout + result.stderr
        assert result.returncode != 0
        assert all(f"results/tiny/{name}" in said for name in DAMAGED), said[-3000:]
        assert files(exp) == before  # nothing deleted, nothing rebuilt
    advice = re.search(r"truncated, corrupt or missing; to rebuild it and rerun the jobs that read it, add (.+?) to the "
                       r"snakemake command", said)
    assert advice, said[-3000:]

    repaired = snakemake(run, *advice.group(1).split())  # exactly what the message says
    said = repaired.stdout + repaired.stderr
    assert all(f"repair: removed results/tiny/{output}; this run rebuilds it" in said for output in DAMAGED.values())
    tables = undamaged / "results/tiny/tables"
    assert files(exp / "tables") == files(tables) and files(tables)
    assert "Nothing to be done" in snakemake(run, "--dry-run").stdout  # complete, without the flag


def test_a_changed_byte_stops_the_job_that_reads_it_and_the_same_repair_rebuilds_it(undamaged, tmp_path):
    """Same size, so no start sees it: the reader checks the content against its checksum, and a
    repair run checks every content (a scrub)."""
    run = copy_run(undamaged, tmp_path)
    exp = run / "results/tiny"
    tables = files(exp / "tables")
    record = exp / "validate/random/ipc1/convnet/seed0.json"
    changed = bytearray(record.read_bytes())
    changed[changed.index(b".") - 1] ^= 0x01  # a digit of the first number: still JSON, another value
    record.write_bytes(bytes(changed))
    (exp / "tables/table1.csv").unlink()  # the job that reads the record

    result = snakemake(run, check=False)
    said = result.stdout + result.stderr
    assert result.returncode != 0
    advice = re.search(rf"{re.escape(str(record.relative_to(run)))}: its content does not match its checksum "
                       r"\(\.seed0\.json\.sha256\); to rebuild it and rerun the jobs that read it, add (.+?) to the "
                       r"snakemake command", said)
    assert advice, said[-3000:]
    snakemake(run, *advice.group(1).split())
    assert files(exp / "tables") == tables
