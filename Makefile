# The two set-up commands of the README. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
# Pinned so that pip takes a local CPU wheel where one is offered; override on a GPU box, e.g. TORCH=torch.
TORCH ?= torch==2.13.0

.PHONY: run test test-slow test-slurm test-presets test-benchmarks preflight report base-models clean

$(BIN)/snakemake: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first: the range in pyproject.toml is then already met and pulls nothing else.
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

run: $(BIN)/snakemake
	$(BIN)/snakemake --cores $(CORES)

# Two pytest-xdist workers, a test file each at a time (module fixtures run once) in the order of
# tests/conftest.py (the shared tiny run built first); the 25 slowest listed.
test: $(BIN)/snakemake
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=25

# The end-to-end runs of a minute or more each (marker `slow`: the literal repairs, the kill of
# Snakemake itself, the base models' rebuild command), on two workers, a file each.
test-slow: $(BIN)/snakemake
	$(BIN)/python -m pytest -m slow -n 2 --dist loadfile --durations=10

# The workflow on a real single-node SLURM (needs root and Debian's slurm-wlm + munge: .ci/slurm.sh install).
test-slurm: $(BIN)/snakemake
	$(BIN)/python -m pytest -m slurm tests/test_slurm.py

# Every preset end to end at toy size, on stand-ins for a user's data and weights (tens of minutes).
# Two pytest-xdist workers, a test each: 14 min 40 s on 2 cores (2026-12-08), imagewoof alone 11 of them.
test-presets: $(BIN)/snakemake
	$(BIN)/python -m pytest -m presets tests/test_presets_run.py -n 2 --dist load --durations=10

# Every script under benchmarks/ at its smoke size, each writing its record (minutes).
test-benchmarks: $(BIN)/snakemake
	$(BIN)/python -m pytest -m benchmarks tests/test_benchmarks.py

# Your data and weights through the whole path at toy size, in minutes, e.g.
#   make preflight PRESET=configs/imagewoof.yaml SET="dataset.root=/data/imagenet base_models.dit=/w/DiT-XL-2-256x256.pt"
PRESET ?= configs/imagewoof.yaml
SET ?=
preflight: $(BIN)/snakemake
	$(BIN)/python -m minimaxdd.preflight $(PRESET) $(foreach s,$(SET),--set $(s)) --cores $(CORES)

# Rebuild the pretrained tiny VAE and DiT the default starts from (models/digits/), trained by the
# workflow's own rules from config.yaml's tiny_* settings (minutes; tests/test_base_models.py).
base-models: $(BIN)/snakemake
	$(BIN)/python -m minimaxdd.base_models --cores $(CORES)

report: $(BIN)/snakemake
	$(BIN)/snakemake --cores $(CORES) --report report.html

clean:
	rm -rf results .snakemake report.html
