# volcache developer commands. Each target creates .venv and installs what it needs.
#   make demo   run the worker locally on the embedded all-MiniLM-L6-v2 (no internet needed)
#   make test   ruff, mypy, volcache audit of our own code, and the whole pytest suite
#   make bench  the benchmark suite (tables on stdout, plots in bench/results/)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build keeps the download small; set TORCH_SPEC=torch for your platform's default build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.volcache-installed

.PHONY: install demo test lint typecheck audit pytest bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[worker,dev,bench]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m volcache.demo

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)

typecheck: $(STAMP)
	$(BIN)/mypy

# The project must keep its own contract: no code path or Dockerfile line duplicates weights.
audit: $(STAMP)
	$(BIN)/volcache audit src $(wildcard Dockerfile Dockerfile.*)

pytest: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test: lint typecheck audit pytest

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) demo-volume .pytest_cache .mypy_cache .ruff_cache
