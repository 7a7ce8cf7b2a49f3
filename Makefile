# Two commands for a new user:
#   make run    set up everything and serve the demo on http://127.0.0.1:8000 (embedded mode);
#               `make run PORT=8080 HOST=0.0.0.0` serves elsewhere
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
# Where `make run` serves: `make run PORT=8080 HOST=0.0.0.0`, else LETHE_PORT / LETHE_HOST
# from the environment. A HOST or PORT merely in the environment (some shells export
# HOST=<hostname>) is ignored.
ifneq ($(origin HOST),command line)
HOST := $(or $(LETHE_HOST),127.0.0.1)
endif
ifneq ($(origin PORT),command line)
PORT := $(or $(LETHE_PORT),8000)
endif
# $(call say,message) announces a step (no commas in a message: make splits arguments on them)
say = @printf '\n==> %s\n' $(1)

.PHONY: install install-dev run test lint bench clean chromium

$(BIN)/python:
	$(call say,"creating the virtual environment $(VENV)")
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml Makefile | $(BIN)/python
	$(call say,"installing $(TORCH_SPEC) (pinned as a pair: the first time downloads several hundred MB)")
	$(PIP) install $(TORCH_SPEC)
	$(call say,"installing Lethe with its worker extra (editable)")
	$(PIP) install -e '.[worker]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-run pyproject.toml
	$(call say,"installing the development tools (ruff; mypy; pytest; ...)")
	$(PIP) install -e '.[worker,dev]'
	touch $@

install: $(VENV)/.installed-run
install-dev: $(VENV)/.installed-dev

run: install
	$(call say,"installed. Next: migrate the database; seed the demo model; print the demo key; serve http://$(HOST):$(PORT)")
	LETHE_HOST=$(HOST) LETHE_PORT=$(PORT) $(BIN)/lethe demo

lint: install-dev
	$(BIN)/ruff check app workers lethe unlearning models_store migrations tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

# The console's browser tests drive Debian's Chromium through Playwright (never a browser
# download). Installed from Debian's packages when missing; a no-op when it is there.
chromium:
	@test -x /usr/bin/chromium || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	  || echo "chromium could not be installed: the console browser tests will skip (fail under CI=true)"

test: lint chromium
	$(BIN)/python -m pytest

bench: install
	$(BIN)/lethe bench --dataset mnist1d --scenario random:0.1 \
		--methods retrain,finetune,neggrad,lau,lau-calibrated --seeds 5 --device cpu

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
