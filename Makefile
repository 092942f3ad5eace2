# refranges: `make demo` runs the pipeline on demo data, `make test` runs the test suite.
# The environment comes from uv.lock (uv sync --frozen). When uv is not on PATH, it is installed with pip
# into .tools/ inside this folder, never into the system.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/uv-venv/bin/uv)
export UV_PYTHON_DOWNLOADS := never
export UV_COMPILE_BYTECODE := 1
export UV_PYTHON := $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
RUN := $(UV) run --frozen --no-sync

.PHONY: help demo test test-fast check lint format bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(CURDIR)/.tools/uv-venv/bin/uv:
	$(PYTHON) -m venv $(CURDIR)/.tools/uv-venv
	$(CURDIR)/.tools/uv-venv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

demo: .venv/.synced ## generate demo data into ./data/landing and run the pipeline once
	$(RUN) refranges demo
	@echo 'The command is .venv/bin/refranges here (or run `source .venv/bin/activate` once, then refranges ...):'
	@echo '  .venv/bin/refranges status    .venv/bin/refranges releases list    .venv/bin/refranges --help'

test: .venv/.synced ## run the whole test suite (what CI runs)
	$(RUN) pytest -n auto --dist worksteal

test-fast: .venv/.synced ## tests without the slow end-to-end runs
	$(RUN) pytest -n auto --dist worksteal -m "not slow"

lint: .venv/.synced ## ruff + mypy
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy flows transforms expectations warehouse benchmarks

check: lint test ## lint and test

format: .venv/.synced ## format the code
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

clean: ## remove the environment and the demo data
	rm -rf .venv .tools data
