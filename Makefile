# Two commands for a new user:
#   make run    set up everything and serve the demo on http://127.0.0.1:8000 (embedded mode)
#   make test   set up everything and run the checks and the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Install torch first, pinned, so pip never resolves a newer (multi-GB CUDA) build.
# On a GPU machine: make run TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'
TORCH_SPEC ?= torch==2.13.0
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: install install-dev run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
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
	$(BIN)/ruff check app workers unlearning models_store migrations tests
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/lethe bench --dataset mnist1d --scenario random:0.1 \
		--methods retrain,finetune,neggrad,lau,lau-calibrated --seeds 5 --device cpu

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
