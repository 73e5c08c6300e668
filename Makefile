# The two set-up commands of the README. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
# Pinned so that pip takes a local CPU wheel where one is offered; override on a GPU box, e.g. TORCH=torch.
TORCH ?= torch==2.13.0

.PHONY: run test test-slurm report clean

$(BIN)/snakemake: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first: the range in pyproject.toml is then already met and pulls nothing else.
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

run: $(BIN)/snakemake
	$(BIN)/snakemake --cores $(CORES)

test: $(BIN)/snakemake
	$(BIN)/python -m pytest

# The workflow on a real single-node SLURM (needs root and Debian's slurm-wlm + munge: .ci/slurm.sh install).
test-slurm: $(BIN)/snakemake
	$(BIN)/python -m pytest -m slurm tests/test_slurm.py

report: $(BIN)/snakemake
	$(BIN)/snakemake --cores $(CORES) --report report.html

clean:
	rm -rf results .snakemake report.html
