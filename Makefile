# ledgerlink developer entry points. `make demo` and `make test` are all a fresh clone needs:
# they bootstrap uv into .tools/ when it is not on PATH, then build .venv from uv.lock.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

.PHONY: help setup demo test lint typecheck pytest bench lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

setup: $(UV)  ## create .venv with ledgerlink, the connectors and the dev tools, from uv.lock
	$(UV) sync --all-packages --locked

demo: setup  ## run the demo on the embedded SQLite store and the sandbox fakes
	$(UV) run --no-sync ledgerlink demo

lint: setup  ## ruff lint and format check
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .

typecheck: setup  ## mypy --strict on src/ and connectors/
	$(UV) run --no-sync mypy src connectors/salesforce/src connectors/stripe/src connectors/quickbooks/src

pytest: setup  ## the test suite, on SQLite and on PostgreSQL (LEDGERLINK_TEST_DATABASE_URL)
	$(UV) run --no-sync pytest $(PYTEST_ARGS)

test: lint typecheck pytest  ## everything CI runs

bench: setup  ## run the benchmarks and print their figures
	$(UV) run --no-sync python benchmarks/store_ingest.py

lock: $(UV)  ## refresh uv.lock after a dependency change
	$(UV) lock

clean:  ## remove the virtual environments
	rm -rf .venv .tools
