# Two commands do all the set-up on a fresh machine:
#   make demo   the main job: the built-in demo study, generated, compared and summarised
#   make test   the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch; on a GPU machine use e.g. TORCH='torch>=2.4,<2.14'.
TORCH ?= torch==2.13.0
# Pty-Chi, Phase F's reconstruction library. Its declared dependencies pull an unpinned torchvision,
# which pulls a CUDA torch 2.14 past our pin, and no torchvision for torch 2.13 imports on a CPU
# torch; so it is installed without them (the ones it imports are in the science extra) and
# ptychokit stands in for the one torchvision name it imports and never calls during a
# reconstruction. On a GPU machine `make setup TORCH='torch>=2.4,<2.14' PTYCHI_PIP=` installs it
# with its dependencies, the real torchvision included, resolved together with the torch pin.
PTYCHI ?= ptychi==2.2.0
PTYCHI_PIP ?= --no-deps

.PHONY: setup test run demo example-ledger schema

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q '$(TORCH)'
	$(BIN)/python -m pip install -q -e '.[test,science]'
	$(BIN)/python -m pip install -q $(PTYCHI_PIP) '$(PTYCHI)' '$(TORCH)'
	touch $@

setup: $(VENV)/.installed

test: setup
	$(BIN)/python -m pytest

example-ledger: setup
	$(BIN)/python scripts/make_example_ledger.py

# schema.sql: the current schema, generated from migrations/ (a test keeps the two equal).
schema:
	$(PYTHON) scripts/make_schema.py

# The main job until the demo study lands: run every comparison of the study in STUDY.
run: setup
	@test -n "$(STUDY)" || { echo "make run: give STUDY=/path/to/study (a hub: data/phase_c ... phase_f, or a folder holding phase_c ... phase_f)"; exit 2; }
	$(BIN)/python -m runner run --study-root '$(STUDY)' $(ARGS)

# The main job: generate the demo study's data (Phases C and D, or reuse them), then run its
# trainings, Pty-Chi reconstructions and comparisons as one graph of jobs (Phases E, F, G: what a
# run finished is kept, so an interrupted `make demo` resumes), then write the report and show its
# headline. The report is written even when a job failed; make then exits non-zero.
DEMO ?= demo_study
demo: setup
	@if [ -f '$(DEMO)/runner.toml' ]; then echo "reusing the demo data in $(DEMO)"; \
	else $(BIN)/python scripts/make_synthetic_study.py --out '$(DEMO)' --preset demo --phases C,D --overwrite; fi
	@rc=0; $(BIN)/python -m runner run --config '$(DEMO)/runner.toml' --max-parallel 2 $(ARGS) || rc=$$?; \
	$(BIN)/python -m runner report --artifact-root '$(DEMO)/analysis' || rc=$$?; exit $$rc
