# repricer: `make demo` and `make test` work on a fresh machine (Debian/Ubuntu, Python >= 3.11).
# Everything is installed from this repository's own files: a virtualenv in .venv with the
# project and its dev tools, torch (CPU, only for training/exporting the LSTM and its parity
# test) and, for the integration tests, Debian's clickhouse-server and chromium packages.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
TORCH_VERSION ?= 2.13.0
CLICKHOUSE_SERVER ?= /usr/sbin/clickhouse-server
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: chaos help install deps clickhouse-server chromium demo test lint typecheck unit integration bench clean schemas

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	touch $@

$(VENV)/.torch: $(VENV)/.installed
	$(PIP) install --quiet torch==$(TORCH_VERSION)
	touch $@

install: $(VENV)/.installed  ## virtualenv with the project and dev tools

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

typecheck: install
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
	$(PY) -m schemas.export
	$(PY) -m streams.settings --update-readme

clean:
	rm -rf $(VENV) .repricer .pytest_cache .mypy_cache .ruff_cache
