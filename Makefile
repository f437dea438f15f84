# `make help` lists the targets. Every target that needs the project creates .venv and
# installs it first, so on a fresh machine `make tune` and `make test` are the whole set-up.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RAY_VENV ?= .venv-ray
RAY_STAMP := $(RAY_VENV)/.installed
STUDY ?= studies/default.yaml
STORAGE ?= sqlite:///runs/optuna.db
NAME ?=
HOST ?= 127.0.0.1
PORT ?= 8080
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install tune worker storage-proxy compare validate best evaluate replay report export dashboard tensorboard test test-fast lint bench bench-ray-env clean

help: ## Show the targets and the variables they read
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "Variables: STUDY=$(STUDY) (a study file) NAME= (a study's name instead, for best/evaluate/report/export)"
	@echo "           STORAGE= (default: the study file's, else $(STORAGE)) OUT= HOST=$(HOST) PORT=$(PORT) ARGS=\"...\""

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev,tracking,s3,wandb,lightning,transformers]'
	@touch $@

install: $(STAMP) ## Create .venv and install the project with its dev tools

tune: $(STAMP) ## Run or resume a study: make tune [STUDY=studies/x.yaml] [STORAGE=url] [ARGS="--n-trials 5 --set k=v"]
	$(BIN)/pipeline tune $(STUDY) $(STORAGE_FLAG) $(ARGS)

# Pass --storage only when STORAGE is given on the command line; else the study file's.
STORAGE_FLAG = $(if $(filter command line environment,$(origin STORAGE)),--storage '$(STORAGE)')
# Result commands read the study NAME= names, else the one STUDY= (a file) defines; a
# STUDY= given with NAME= is passed too, and the command refuses the pair in one line.
GIVEN_STUDY = $(filter command line environment,$(origin STUDY))
STUDY_FLAGS = $(if $(NAME),--study-name '$(NAME)') $(if $(or $(GIVEN_STUDY),$(if $(NAME),,no name)),--study-file '$(STUDY)') $(STORAGE_FLAG)
OUT_FLAG = $(if $(OUT),--out '$(OUT)')

worker: $(STAMP) ## Join a study from this machine: make worker STUDY=... STORAGE=postgresql+psycopg://... [ARGS="--cpus-per-trial 2"]
	$(BIN)/pipeline worker $(STUDY) $(STORAGE_FLAG) $(ARGS)

storage-proxy: $(STAMP) ## Optuna's gRPC proxy in front of STORAGE: make storage-proxy STORAGE=... [PROXY_PORT=13000]
	$(BIN)/pipeline storage-proxy --storage '$(STORAGE)' --host $(HOST) --port $(or $(PROXY_PORT),13000)

validate: $(STAMP) ## Check a study file and print it resolved: make validate STUDY=...
	$(BIN)/pipeline validate $(STUDY) $(ARGS)

best: $(STAMP) ## Print a study's best trial: make best [STUDY=studies/x.yaml | NAME=digits-tpe-median [STORAGE=...]]
	$(BIN)/pipeline best $(STUDY_FLAGS) $(ARGS)

evaluate: $(STAMP) ## Score the best checkpoint on the test split: make evaluate [STUDY=... | NAME=...] [ARGS="--retrain-seeds 3"]
	$(BIN)/pipeline evaluate $(STUDY_FLAGS) $(ARGS)

replay: $(STAMP) ## PBT: retrain the winner's schedule from scratch, print its test score: make replay [STUDY=... | NAME=...]
	$(BIN)/pipeline replay $(STUDY_FLAGS) $(ARGS)

COMPARE_ARGS ?= --samplers grid,random,tpe,gp --pruners none,asha --seeds 2 --budget trials:10 --target 0.2

compare: $(STAMP) ## Grid vs random vs TPE vs GP, same budget, report in reports/compare [COMPARE_ARGS="..."]
	$(BIN)/pipeline compare $(or $(COMPARE_STUDY),studies/compare_mnist1d.yaml) $(COMPARE_ARGS) $(ARGS)

report: $(STAMP) ## HTML + PNG + Markdown report: make report [STUDY=... | NAME=...] [OUT=reports/<study name>]
	$(BIN)/pipeline report $(STUDY_FLAGS) $(OUT_FLAG) $(ARGS)

export: $(STAMP) ## One row per trial: make export [STUDY=... | NAME=...] [OUT=reports/<study name>.csv|.parquet]
	$(BIN)/pipeline export $(STUDY_FLAGS) $(OUT_FLAG) --curves $(ARGS)

dashboard: $(STAMP) ## optuna-dashboard (with checkpoints) on http://127.0.0.1:8080: make dashboard [STUDY=... | STORAGE=...]
	$(BIN)/pipeline dashboard $(if $(GIVEN_STUDY),--study-file '$(STUDY)') $(STORAGE_FLAG) --host $(HOST) --port $(PORT) $(ARGS)

# A study file's tracking.tensorboard directory; one subdirectory per study, one per trial.
TB_DIR ?= runs/tensorboard
# TensorBoard's own port unless PORT= is given (8080 is the dashboard's).
TB_PORT = $(if $(filter command line environment,$(origin PORT)),$(PORT),6006)

tensorboard: $(STAMP) ## TensorBoard (HParams tab: every trial) on http://127.0.0.1:6006: make tensorboard [TB_DIR=runs/tensorboard]
	$(BIN)/tensorboard --logdir '$(TB_DIR)' --host $(HOST) --port $(TB_PORT) $(ARGS)

test: $(STAMP) ## Run the whole test suite (what CI runs)
	$(BIN)/python -m pytest $(ARGS)

test-fast: $(STAMP) ## Run the tests not marked slow
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

lint: $(STAMP) ## ruff check, ruff format --check and mypy (the package, tests and benchmarks)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP) $(RAY_STAMP) ## Benchmarks vs Ray Tune and a bare Optuna script, loop cost, storage (the Ray comparison alone takes 40 min here); writes benchmarks/RESULTS.md
	$(BIN)/python benchmarks/tutorial_bench.py --repeats $(or $(REPEATS),3) --markdown benchmarks/RESULTS.md
	$(BIN)/python benchmarks/loop.py --markdown benchmarks/RESULTS.md
	$(BIN)/python benchmarks/storage_throughput.py

# Ray Tune lives in its own venv: the project never depends on it, only the benchmark
# that runs it side by side does.
$(RAY_STAMP): benchmarks/ray-requirements.txt pyproject.toml
	@test -x $(RAY_VENV)/bin/python || $(PYTHON) -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/python -m pip install -r benchmarks/ray-requirements.txt
	$(RAY_VENV)/bin/python -m pip install --no-deps -e .
	@touch $@

bench-ray-env: $(RAY_STAMP) ## Create .venv-ray with ray[tune] for the Ray Tune side of `make bench`

clean: ## Remove caches (keeps .venv and runs/)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info
