# Two commands for a new user:
#   make run    set up everything and serve the demo on http://127.0.0.1:8000 (embedded mode)
#   make test   set up everything and run the checks and the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Install torch and torchvision first, pinned as a pair, so pip never resolves another build.
# torchvision 0.29.1 requires exactly torch 2.14.1. (PyPI's torchvision 0.28.0 does not import
# beside the CPU-only torch 2.13.0 wheel: its operators link against the CUDA libraries.)
# On a GPU machine the same pins take the CUDA build from PyPI.
TORCH_VERSION ?= 2.14.1
TORCHVISION_VERSION ?= 0.29.1
TORCH_SPEC ?= torch==$(TORCH_VERSION) torchvision==$(TORCHVISION_VERSION)
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: install install-dev run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml Makefile | $(BIN)/python
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e '.[worker]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-run pyproject.toml
	$(PIP) install -q -e '.[worker,dev]'
	touch $@

install: $(VENV)/.installed-run
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/lethe demo

lint: install-dev
	$(BIN)/ruff check app workers lethe unlearning models_store migrations tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/lethe bench --dataset mnist1d --scenario random:0.1 \
		--methods retrain,finetune,neggrad,lau,lau-calibrated --seeds 5 --device cpu

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
