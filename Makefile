# Two commands do all the set-up on a fresh machine:
#   make demo   the main job: the built-in demo study, generated, compared and summarised
#   make test   the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch; on a GPU machine use e.g. TORCH='torch>=2.4,<2.14'.
TORCH ?= torch==2.13.0

.PHONY: setup test run demo example-ledger schema

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q '$(TORCH)'
	$(BIN)/python -m pip install -q -e '.[test,science]'
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
	@test -n "$(STUDY)" || { echo "make run: give STUDY=/path/to/study (the folder holding phase_c ... phase_f)"; exit 2; }
	$(BIN)/python -m runner run --study-root '$(STUDY)' $(ARGS)

# The main job: generate the demo study (or reuse it), run every comparison, write the report and
# show its headline. The report is written even when a comparison failed; make then exits non-zero.
DEMO ?= demo_study
demo: setup
	@if [ -f '$(DEMO)/study.json' ]; then echo "reusing the demo study in $(DEMO)"; \
	else $(BIN)/python scripts/make_synthetic_study.py --out '$(DEMO)' --preset demo; fi
	@rc=0; $(BIN)/python -m runner run --study-root '$(DEMO)' --max-parallel 2 $(ARGS) || rc=$$?; \
	$(BIN)/python -m runner report --artifact-root '$(DEMO)/analysis' || rc=$$?; exit $$rc
