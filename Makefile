# Transfer-learning course: every command a learner, a template user or CI needs.
# `make` alone lists the targets.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Profile of `make run`: "full" (the course) or "small" (a quick check, as in CI).
PROFILE ?= full
# Grid of `make sweep`, and options for it (e.g. SWEEP_ARGS="--workers 2", --dry-run, --report).
GRID ?= sweeps/example.yaml
SWEEP_ARGS ?=
# The run whose export/ `make app` serves (default: the newest with a metadata.json), its port,
# and the build of the page (npm ci from package-lock.json, then app/build.mjs into app/dist/).
RUN_DIR ?=
APP_PORT ?= 8000
APP_BUILD := cd app && npm ci --no-audit --no-fund --loglevel=error && node build.mjs

.DEFAULT_GOAL := help
.PHONY: help setup test unit nbval solutions run lab data weights lint clean clean-all sweep dashboard bench app browser

## help: list the targets with what each one does
help:
	@echo "Targets:"
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## /  make /' -e 's/: / - /'

## setup: create .venv with the pinned requirements, helpers (editable) and a Jupyter kernel
setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name tl-course --display-name "Python (transfer-learning course)" \
		--env TF_CPP_MIN_LOG_LEVEL 3 --env GRPC_VERBOSITY ERROR
	$(BIN)/python -m helpers.kernelspec
	@if [ -d .git ]; then $(BIN)/pre-commit install >/dev/null && echo "pre-commit hook installed"; fi
	@touch $@

## test: unit tests, then every notebook under nbval with the small profile, then the page in Chromium
test: unit nbval browser solutions

## unit: the unit tests of helpers/ only
unit: $(STAMP)
	$(BIN)/python -m pytest tests --ignore=tests/browser

## nbval: run every notebook (small profile) and fail on any error
nbval: $(STAMP)
	rm -rf runs/nbval
	COURSE_PROFILE=small COURSE_RUN_DIR=runs/nbval $(BIN)/python -m pytest --nbval-lax \
		--nbval-cell-timeout=900 --nbval-kernel-name tl-course -p no:cacheprovider notebooks

## app: build the web page (app/) and serve it with a run's export/ on localhost (RUN_DIR=runs/<run>)
app:
	$(APP_BUILD)
	@run="$(RUN_DIR)"; \
	if [ -z "$$run" ]; then run=$$(ls -td runs/*/export/metadata.json 2>/dev/null | head -n 1); run=$${run%/export/metadata.json}; fi; \
	if [ ! -f "$$run/export/metadata.json" ]; then \
		echo "No export/metadata.json in '$${run:-runs/*}': run the course (make run) or pass RUN_DIR=runs/<run>."; exit 1; fi; \
	ln -sfn "$$(cd "$$run/export" && pwd)" app/dist/export; \
	echo "Serving the page with $$run/export at http://localhost:$(APP_PORT)/ (Ctrl+C stops)"; \
	$(PYTHON) -m http.server --bind 127.0.0.1 --directory app/dist $(APP_PORT)

## browser: the page in headless Chromium vs the Python interpreter (APP_RUN_DIR, default runs/nbval)
browser: $(STAMP)
	$(APP_BUILD)
	APP_REQUIRED=1 $(BIN)/python -m pytest tests/browser

## solutions: run every worked solution (solutions/) on the small run that nbval leaves in runs/nbval
solutions: $(STAMP)
	COURSE_PROFILE=small COURSE_RUN_DIR=runs/nbval $(BIN)/python -m pytest --nbval-lax \
		--nbval-kernel-name tl-course -p no:cacheprovider solutions

## run: execute the whole course with papermill into a new run folder (PROFILE=full|small)
run: $(STAMP)
	$(BIN)/python -m helpers.batch.runner --profile $(PROFILE)

## sweep: run the notebooks once per combination of a grid (GRID=sweeps/example.yaml), then compare
sweep: $(STAMP)
	$(BIN)/python -m helpers.batch.sweep $(GRID) $(SWEEP_ARGS)

## dashboard: Optuna's live view of a sweep's study (GRID's default journal file)
dashboard: $(STAMP)
	$(BIN)/optuna-dashboard runs/sweeps/$(basename $(notdir $(GRID)))/study.journal

## bench: print each phase's time at 3,000 images, then sizes and latencies of every LiteRT variant per backbone
bench: $(STAMP)
	$(BIN)/python -m helpers.batch.bench phases
	$(BIN)/python -m helpers.batch.bench deployment

## lab: open the notebooks in JupyterLab
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

## data: generate the demo anti-spoofing dataset into data/ (no download)
data: $(STAMP)
	$(BIN)/python -m helpers.demo_data

## weights: fetch every backbone's ImageNet weights into the Keras cache (needs internet once)
weights: $(STAMP)
	$(BIN)/python -m helpers.backbones --download

## lint: ruff on helpers, tests, notebooks and solutions
lint: $(STAMP)
	$(BIN)/ruff check helpers tests notebooks solutions

## clean: remove run folders and caches (your data and the venv are kept)
clean:
	rm -rf runs .cache .pytest_cache .ruff_cache
	find helpers tests notebooks -name __pycache__ -type d -prune -exec rm -rf {} +

## clean-all: clean, plus the generated demo datasets and the venv
clean-all: clean
	@for d in data/demo data/demo-*; do \
		if [ -f "$$d/options.json" ]; then rm -rf "$$d" && echo "removed $$d"; fi; \
	done
	rm -rf $(VENV)
