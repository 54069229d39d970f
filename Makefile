# recfusion: `make run` sets up and runs the whole pipeline; `make test` sets up and tests.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
# the stamp changes when the lock or the project metadata changes, so setup re-syncs only then
STAMP := $(VENV)/.installed-pyc-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)
# the reports' browser assets (npm), installed into the venv; see their rules below
NPM_SPEC := src/recfusion/validation/npm
ASSETS := $(VENV)/share/recfusion
PLOTS_TEMPLATE := $(ASSETS)/dvc-plots.html
export PATH := $(CURDIR)/$(BIN):$(PATH)
export TF_CPP_MIN_LOG_LEVEL ?= 2
# no usage telemetry from MLflow or Prefect (and none attempted on an offline machine)
export DO_NOT_TRACK ?= true
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: setup run test test-fast lint lock ui serve serve-mlflow redis-server clean help

# the UIs and the model server listen on loopback only
HOST ?= 127.0.0.1
MLFLOW_PORT ?= 5000
PREFECT_PORT ?= 4200
SERVE_PORT ?= 5001
WORKERS ?= 1
TRACKING_URI ?= sqlite:///mlflow.db

help:
	@echo "make setup      create .venv and install the pinned dependencies (idempotent)"
	@echo "make run        setup, then 'dvc repro' on params.yaml (the whole pipeline)"
	@echo "make test       setup, then the whole test suite (unit, data, e2e)"
	@echo "make test-fast  the suite without the slow end-to-end tests"
	@echo "make lint       ruff and mypy"
	@echo "make ui         Prefect UI + deployments (http://127.0.0.1:4200) and MLflow UI (:5000)"
	@echo "make serve      serve models:/recfusion@production on http://127.0.0.1:5001 (WORKERS=4: four processes)"
	@echo "make serve-mlflow  the same model by mlflow models serve (no /events)"
	@echo "make lock       re-resolve requirements.lock from pyproject.toml"

setup: $(STAMP) $(VENV)/.path-hook $(PLOTS_TEMPLATE)
	@grep -qs '^ *html_template' .dvc/config.local || $(BIN)/dvc config --local plots.html_template ../$(PLOTS_TEMPLATE)

# dvc.yaml's stage commands run `python -m recfusion.stages.X`; this .pth line puts the venv's
# bin first on PATH in every process the venv's Python starts, so `.venv/bin/dvc repro` works
# without activating the venv (as `source .venv/bin/activate` would do)
PATH_HOOK := import os, sys; b = os.path.dirname(sys.executable); p = os.environ.get("PATH", ""); os.environ["PATH"] = p if p.split(os.pathsep)[0] == b else b + os.pathsep + p
$(VENV)/.path-hook: $(STAMP) Makefile
	@printf '%s\n' '$(PATH_HOOK)' > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/recfusion-venv-path.pth"
	@touch $@

# --compile-bytecode: the .pyc files are written once here, so that no process compiles
# TensorFlow, MLflow and pandas from source again when the environment sets
# PYTHONDONTWRITEBYTECODE (as this machine's environment does): about 9 s saved per process,
# and every stage, CLI call and probe is one (35 s once, on 2 cores)
$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; recfusion needs Python 3.11 (set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync -q --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "setup: $(VENV) is ready"

# The browser assets the reports load (GX Data Docs, `dvc plots show`) at the versions GX's
# templates name, from npm into the venv, so every page opens offline: the validate stages point
# the Data Docs at copies of them, and `setup` names the plots page written from them as this
# checkout's plots.html_template (in .dvc/config.local: the path is this machine's venv) (see
# src/recfusion/validation/offline.py). npm ci re-installs only when the lock changes;
# --legacy-peer-deps because GX pairs Bootstrap 4.3.1 with popper.js 1.12.9.
$(ASSETS)/.installed: $(NPM_SPEC)/package.json $(NPM_SPEC)/package-lock.json | $(STAMP)
	@command -v npm >/dev/null || { echo "error: npm not found; recfusion installs its reports' browser assets with it (apt-get install npm)"; exit 1; }
	@mkdir -p $(ASSETS) && cp $(NPM_SPEC)/package.json $(NPM_SPEC)/package-lock.json $(ASSETS)/
	cd $(ASSETS) && npm ci --ignore-scripts --legacy-peer-deps --no-audit --no-fund --loglevel=error
	@touch $@

$(PLOTS_TEMPLATE): $(ASSETS)/.installed src/recfusion/validation/offline.py | $(STAMP)
	$(BIN)/python -m recfusion.validation.offline $@

run: setup $(STORE_NEEDS)
	$(BIN)/dvc repro

# Debian's redis-server: the online store's Redis backend, which the tests run against for real
# (and `make serve`/`make ui` need when serving.store names Redis); installed once with apt-get
redis-server:
	@command -v redis-server >/dev/null || { \
	  [ "$$(id -u)" = 0 ] || { echo "error: redis-server is missing; install it: sudo apt-get install redis-server"; exit 1; }; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q redis-server >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null; }; \
	  command -v redis-server >/dev/null || { echo "error: apt-get could not install redis-server"; exit 1; }; \
	  echo "setup: redis-server installed"; }

# the online store's backend, when params.yaml names a Redis (serving.store: redis://...)
STORE_NEEDS := $(if $(shell grep -Eqs '^ +store: *"?rediss?://' params.yaml && echo y),redis-server)

test: setup redis-server
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=25

test-fast: setup redis-server
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not slow"

lint: setup
	$(BIN)/ruff check src tests flows benchmarks
	$(BIN)/ruff format --check src tests flows benchmarks
	$(BIN)/mypy

ui: setup $(STORE_NEEDS)
	HOST=$(HOST) MLFLOW_PORT=$(MLFLOW_PORT) PREFECT_PORT=$(PREFECT_PORT) $(BIN)/python -m recfusion.orchestration.ui

serve: setup $(STORE_NEEDS)
	@echo "recfusion@production on http://$(HOST):$(SERVE_PORT) (/invocations, /events, /health; Ctrl-C stops it)"
	MLFLOW_TRACKING_URI=$(TRACKING_URI) $(BIN)/recfusion serve --model models:/recfusion@production --workers $(WORKERS) --host $(HOST) --port $(SERVE_PORT)

serve-mlflow: setup $(STORE_NEEDS)
	@echo "recfusion@production by MLflow's scoring server on http://$(HOST):$(SERVE_PORT)/invocations"
	MLFLOW_TRACKING_URI=$(TRACKING_URI) $(BIN)/mlflow models serve -m models:/recfusion@production --env-manager local --host $(HOST) --port $(SERVE_PORT)

lock: setup
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
