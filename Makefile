# The two commands of the README: `make up` starts the local platform, `make test` runs
# every test. Both create or reuse the Python environment (.venv) and install what they need.
SHELL := bash
.SHELLFLAGS := -o errexit -o nounset -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
# Ray cannot start from a Python environment whose path has a space in it: a clone in
# such a folder keeps its environment under ~/.cache instead.
ifeq ($(words $(CURDIR)),1)
VENV ?= .venv
else
VENV ?= $(HOME)/.cache/mlops-platform/venv-$(shell printf '%s' '$(CURDIR)' | cksum | cut -d' ' -f1)
endif
UV_VERSION := 0.13.9
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help up down test test-fast dashboard system-deps bench-inference bench-models bench-core bench-loop bench-rollouts bench-training screenshots docs lint format lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): fastapi/pyproject.toml fastapi/requirements-dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11+ is required (found $$($(PYTHON) --version)); set PYTHON=python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	# --compile-bytecode: uv leaves it out by default, and a process that cannot write
	# __pycache__ (PYTHONDONTWRITEBYTECODE) would compile Ray, pandas and scikit-learn
	# again every time it starts: each test worker, Ray job and replica.
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -r fastapi/requirements-dev.lock
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e ./fastapi
	touch $@

# checkov lives in its own environment: its pins conflict with Ray's.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(CHECKOV_STAMP): tests/infra/checkov.lock $(STAMP)
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(BIN)/uv pip install --python $(CHECKOV_VENV)/bin/python --quiet --compile-bytecode \
		-r tests/infra/checkov.lock
	touch $@

DASHBOARD_ASSETS := frontend/vendor/chart.umd.min.js

# Chart.js, pinned with its integrity hash in frontend/package-lock.json.
$(DASHBOARD_ASSETS): frontend/package-lock.json
	npm ci --prefix frontend --ignore-scripts --no-audit --no-fund --loglevel=error
	mkdir -p frontend/vendor
	cp frontend/node_modules/chart.js/dist/chart.umd.min.js $@

dashboard: $(DASHBOARD_ASSETS) ## Build the dashboard's assets (needs Node.js and npm)

up: $(STAMP) ## Start the local platform (Ctrl-C stops it)
	@command -v npm >/dev/null && $(MAKE) --no-print-directory dashboard \
		|| echo "dashboard assets not built (no npm, or npm ci failed): starting without the dashboard"
	$(BIN)/mlops up

down: $(STAMP) ## Stop a platform started by `make up` in another shell
	$(BIN)/mlops down

# What the browser tests need: Debian's Chromium, nginx as in the dashboard image, and
# npm to build the dashboard's assets.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "The browser tests need:$$missing. Install them (Debian/Ubuntu: sudo apt-get install$$missing;"; \
			echo "macOS: brew install --cask chromium; brew install nginx node)"; exit 1; \
		fi; \
	fi

# The tests start hundreds of Python processes (workers, stand-ins, jobs, replicas):
# they keep the project's bytecode and pytest's rewritten tests in __pycache__ (ignored
# by git) even where the environment says not to, or each process compiles them again.
test test-fast: export PYTHONDONTWRITEBYTECODE :=

test: $(STAMP) $(CHECKOV_STAMP) system-deps $(DASHBOARD_ASSETS) ## Lint, the fast tier, then every test against real Ray, MLflow, Valkey and Chromium
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory test-fast
	$(BIN)/python -m pytest -m platform

test-fast: $(STAMP) $(CHECKOV_STAMP) system-deps ## The tests that need no running platform (no Ray, MLflow or browser), on every core
	$(BIN)/python -m pytest -m "not platform" -n auto --dist loadgroup

screenshots: $(STAMP) system-deps $(DASHBOARD_ASSETS) ## Refresh images/ (the README's pictures of the dashboard) from a real browser
	MLOPS_SCREENSHOT_DIR="$(CURDIR)/images" $(BIN)/python -m pytest tests/browser/test_dashboard.py \
		-k "charts_render_with_data or phone_width_fits"

bench-inference: $(STAMP) ## Benchmark /inference against `mlflow models serve` (needs wrk)
	@command -v wrk >/dev/null || { echo "wrk is needed: sudo apt-get install wrk (or brew install wrk)"; exit 1; }
	$(BIN)/python bench/inference.py

bench-models: $(STAMP) ## Benchmark 20 models in one Serve application against one `mlflow models serve` each (needs wrk, nginx)
	@command -v wrk >/dev/null || { echo "wrk is needed: sudo apt-get install wrk (or brew install wrk)"; exit 1; }
	$(BIN)/python bench/models.py

bench-core: $(STAMP) ## Benchmark alert fan-out to 1,000 SSE clients (direct, through nginx, naive peer)
	$(BIN)/python bench/core.py

bench-loop: $(STAMP) ## Benchmark the closed loop: recording predictions on/off, a shadow at 100%, feedback ingestion (needs wrk)
	@command -v wrk >/dev/null || { echo "wrk is needed: sudo apt-get install wrk (or brew install wrk)"; exit 1; }
	$(BIN)/python bench/loop.py

bench-rollouts: $(STAMP) ## Simulate rollouts decided by the sequential test: error rate, power, labels needed
	$(BIN)/python bench/rollouts.py

bench-training: $(STAMP) ## Benchmark training as users wait for it (serving on), and parallel fit, search, two nodes
	$(BIN)/python bench/training.py

docs: $(STAMP) ## Regenerate docs/configuration.md from the settings object
	$(BIN)/python -m mlops.settings.reference > docs/configuration.md

lint: $(STAMP) ## Ruff, the type checker (mypy), the package's import contracts and the workflows
	$(BIN)/ruff check fastapi tests bench
	$(BIN)/ruff format --check fastapi tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

format: $(STAMP) ## Format the Python code
	$(BIN)/ruff format fastapi tests bench
	$(BIN)/ruff check --fix fastapi tests bench

lock: $(STAMP) ## Re-resolve the lock files after changing fastapi/pyproject.toml
	$(BIN)/uv pip compile fastapi/pyproject.toml --universal --python-version 3.11 \
		--generate-hashes -o fastapi/requirements.lock
	$(BIN)/uv pip compile fastapi/pyproject.toml --extra dev --universal --python-version 3.11 \
		--generate-hashes -o fastapi/requirements-dev.lock
	$(BIN)/uv pip compile tests/infra/checkov.in --universal --python-version 3.11 \
		-o tests/infra/checkov.lock
	echo "uv==$(UV_VERSION)" | $(BIN)/uv pip compile - --universal --python-version 3.11 \
		--generate-hashes --no-header -o fastapi/requirements-uv.lock

clean: ## Remove the virtual environment and local platform state
	rm -rf $(VENV) $(CHECKOV_VENV) .data
