# The book's two commands: `make book` and `make test` (see README.md).
# Needs only Python >= 3.11 (as python3, or PYTHON=...) and GNU make on a fresh clone.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements.stamp
TIMER  := $(PY) tests/timings.py
JB_OUT := _build/html _build/jupyter_execute _build/.doctrees

# Tools and Jupyter kernels ("python" in the kernelspec) resolve to the venv.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Keep debugpy's frozen-module notice out of kernel logs.
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help venv book test unit nbval html-check chromium clean sweep mutants

help:
	@echo "make venv   - create .venv from requirements.txt (re-run when it or pyproject.toml change)"
	@echo "make book   - clean build of the book into _build/html (zero warnings, every chapter executed)"
	@echo "make test   - unit tests, nbval (TDCORE_QUICK=1), fresh book build, HTML checks; times in _build/timings.json"
	@echo "make bench  - the quick benchmark suite (results/bench_quick_*); full suite: benchmarks/run_all.py --full"
	@echo "make sweep  - regenerate a stored full-size run on a local Dask cluster (SWEEP=convergence|default_rule)"
	@echo "make mutants - mutation testing of the book: each planted bug must be caught by a chapter (results/mutants.json, mutants.md)"
	@echo "make gpu-check - on a GPU machine: CuPy agreement tests and the GPU benchmark (results/bench_gpu.*)"
	@echo "make clean  - remove _build"

# ---------------------------------------------------------------- environment
venv: $(STAMP)

$(STAMP): requirements.txt $(wildcard pyproject.toml)
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: '$(PYTHON)' not found: install Python >= 3.11 or run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: Python >= 3.11 is required, but '$(PYTHON)' is $$($(PYTHON) --version 2>&1); run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	@test -x $(PY) || { echo "creating $(VENV) with $$($(PYTHON) --version 2>&1)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

# ----------------------------------------------------------------------- book
book: venv
	rm -rf $(JB_OUT)
	@# build matplotlib's font cache first: its one-time notice on stderr would be a build warning
	@$(PY) -c 'import matplotlib.font_manager'
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

# ----------------------------------------------------------------------- test
test: venv chromium
	@$(TIMER) start
	@$(TIMER) run unit-tests -- $(MAKE) --no-print-directory unit
	@$(TIMER) run nbval -- $(MAKE) --no-print-directory nbval
	@$(TIMER) run book-build -- $(MAKE) --no-print-directory book
	@$(TIMER) run html-checks -- $(MAKE) --no-print-directory html-check
	@$(TIMER) finish

unit: venv
	$(PY) -m pytest tests -q
	@# the docstrings' examples (NumPy style) of the library and the book layer
	$(PY) -m pytest --doctest-modules tdcore -q -p no:cacheprovider

nbval: venv
	TDCORE_QUICK=1 $(PY) -m pytest --nbval --nbval-current-env chapters/ -q

html-check: venv chromium
	$(PY) tests/html/check_html.py

# Debian's Chromium drives the HTML checks (Playwright cannot download a browser here).
chromium:
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian's chromium for the HTML checks"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

clean:
	rm -rf _build

# ---------------------------------------------------------------------- bench
# Quick benchmark suite (about a minute on 2 cores; code in tdcore/bench/): results/bench_quick_*.json
# + .md and results/bench_quick_summary.md, or the folder named by $TDCORE_BENCH_OUT.
# Full suite: $(PY) benchmarks/run_all.py --full
.PHONY: bench
bench: venv
	$(PY) benchmarks/run_all.py --quick

# ------------------------------------------------------------------ gpu-check
# On a machine with a CUDA GPU and CuPy (pip install -e ".[gpu]"): the CuPy tests (agreement with
# NumPy, conversion rule, replays) on real CuPy, then the GPU benchmark; writes results/bench_gpu.json
# + .md.  Dry run of the same script on the CPU emulator: make gpu-check GPU_CHECK_ARGS=--emulate
.PHONY: gpu-check
gpu-check: venv
	$(PY) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

# --------------------------------------------------------------------- sweeps
# The stored full-size runs, regenerated on a local Dask cluster (one worker per core; resumable:
# finished cells are kept in runs/sweeps).  SWEEP=convergence or default_rule; see README.md, Sweeps.
SWEEP ?= convergence
sweep: venv
	$(PY) -m tdcore sweep $(SWEEP) --size full

# ----------------------------------------------------------------------- mutants
# Mutation testing of the book: every chapter in quick mode against each mutant of
# tests/mutants/tdcore_mutants.py (tdcore broken on purpose, in memory, one bug at a time).
# Writes results/mutants.json (with provenance) and mutants.md (the book's appendix page);
# fails when a mutant survives or a chapter fails without a mutant.  About 9 min (11 mutants x 12 chapters), run
# one core at a time (JOBS=1: the chapters with timing claims need an idle machine); `make test` runs only the fast subset (tests/mutants/test_mutants_fast.py).
# MUTANT_ARGS, e.g. MUTANT_ARGS="--first" (stop each mutant at its first catching chapter)
# or MUTANT_ARGS="--mutants no_rescale,pm_deflation_sign".
JOBS ?= 1
mutants: venv
	$(PY) tests/mutants/run_mutants.py --jobs $(JOBS) $(MUTANT_ARGS)
