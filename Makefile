# repricer: `make demo` and `make test` work on a fresh machine (Debian/Ubuntu, Python >= 3.11).
# Everything is installed from this repository's own files: a virtualenv in .venv with the
# project and its dev tools, torch (CPU, only for training/exporting the LSTM and its parity
# test) and, for the integration tests, Debian's clickhouse-server and chromium packages.
# Every install step is constrained by constraints.txt, the lock of every distribution the dev
# install resolves (torch excepted: TORCH_VERSION pins it); `make lock` regenerates it.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
LOCK   := constraints.txt
LOCK_VENV ?= .venv-lock
TORCH_VERSION ?= 2.13.0
CLICKHOUSE_SERVER ?= /usr/sbin/clickhouse-server
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: chaos help install typecheck-links lock deps clickhouse-server chromium demo test lint typecheck unit integration bench clean schemas

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade -c $(LOCK) pip
	$(PIP) install --quiet -c $(LOCK) -e '.[dev,local]'
	$(MAKE) --no-print-directory typecheck-links
	touch $@

$(VENV)/.torch: $(VENV)/.installed
	$(PIP) install --quiet -c $(LOCK) torch==$(TORCH_VERSION)
	touch $@

install: $(VENV)/.installed  ## virtualenv with the project and dev tools, at the locked versions

# The lock is regenerated only on purpose: a fresh virtualenv resolves the newest releases that
# pyproject.toml allows (with torch, so torch's own dependencies are pinned consistently), and
# pip freeze writes them out. Commit the new constraints.txt on its own, after `make test` passes.
lock:  ## re-resolve every dependency from scratch and rewrite constraints.txt (then test, commit)
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/pip install --quiet -e '.[dev,local]' torch==$(TORCH_VERSION)
	{ echo "# Exact versions of every distribution the dev install resolves (Python $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_version() + ", " + platform.machine())'));"; \
	  echo "# the Makefile installs with -c constraints.txt. Written by \`make lock\` from a fresh virtualenv"; \
	  echo "# with the project, its dev extra and torch (torch itself is pinned by TORCH_VERSION in the"; \
	  echo "# Makefile). Do not edit by hand: run \`make lock\`, then \`make test\`, and commit it on its own."; \
	  $(LOCK_VENV)/bin/pip freeze --all --exclude-editable | grep -v -E -i '^(torch|setuptools|wheel)=='; \
	} > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf $(LOCK_VENV)
	@echo "wrote $(LOCK) ($$(grep -c '==' $(LOCK)) pins): review the diff, run make test, commit it"

clickhouse-server:  ## Debian's clickhouse-server (for integration tests), if missing
	@if [ ! -x "$(CLICKHOUSE_SERVER)" ] && ! command -v clickhouse-server >/dev/null; then \
		echo "installing clickhouse-server from Debian's packages"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends clickhouse-server >/dev/null; \
	fi
	@# the package starts nothing we use; tests run their own server in a temp dir

chromium:  ## Debian's headless-capable Chromium (for the dashboard browser test), if missing
	@if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then \
		echo "installing chromium from Debian's packages"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; \
	fi

deps: install $(VENV)/.torch clickhouse-server chromium  ## everything `make test` needs

demo: install  ## local broker + embedded ClickHouse + simulator + worker, then a report
	$(VENV)/bin/repricer demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy reads the folders under their installed names (repricer.streams, ...) through links
typecheck-links:
	@mkdir -p .typecheck/repricer
	@for d in streams agents models schemas infra; do ln -sfn ../../$$d .typecheck/repricer/$$d; done

typecheck: install typecheck-links
	$(VENV)/bin/mypy

unit: install
	$(VENV)/bin/pytest -q tests/unit tests/property

integration: deps
	$(VENV)/bin/pytest -q tests/integration

test: deps lint typecheck  ## lint, type-check and the whole test suite (real broker + ClickHouse)
	$(VENV)/bin/pytest

chaos: deps  ## the fault-injection suite alone, printing each run's figures
	$(VENV)/bin/pytest -q -s tests/chaos

schemas: install  ## re-export schemas/json and the README settings table after a change
	$(PY) -m repricer.schemas.export
	$(PY) -m repricer.streams.settings --update-readme

clean:
	rm -rf $(VENV) .repricer .pytest_cache .mypy_cache .ruff_cache .typecheck
