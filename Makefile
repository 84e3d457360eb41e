# Two commands on a fresh clone: `make demo` and `make test`.
# Each creates (or refreshes, when pyproject.toml changed) the virtualenv in .venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# DEMO_ARGS passes options, e.g. make demo DEMO_ARGS="--orders 100 --headless"
demo: $(STAMP)
	$(BIN)/tidings demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site

# Three workers, each taking whole test files (their module fixtures start emulators and
# brokers once per file): most tests wait on services, so three beat two on two cores.
test: lint
	$(BIN)/pytest -n 3 --dist loadfile

# The long chaos run (5 minutes by default); CHAOS_ARGS passes options, e.g.
# make chaos CHAOS_ARGS="--seconds 300 --seed 7 --delivery exactly_once"
.PHONY: chaos
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
