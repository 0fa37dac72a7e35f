# acmeflow: `make demo` runs the main job end to end on the local sandbox, `make test` the tests.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck imports unit faults venv system-packages bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

system-packages:
	@missing=""; \
	for bin in pebble named nginx strace; do command -v $$bin >/dev/null || [ -x /usr/sbin/$$bin ] || missing="$$missing $$bin"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble bind9 bind9-utils dnsutils nginx postgresql strace >/dev/null; \
	  else echo "missing:$$missing -- run: sudo apt-get install pebble bind9 bind9-utils dnsutils nginx postgresql strace" >&2; exit 1; fi; \
	fi

demo: venv system-packages
	$(BIN)/python scripts/demo.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

imports: venv
	$(BIN)/lint-imports

unit: venv
	$(BIN)/pytest -q --durations=15

faults: venv system-packages
	$(BIN)/pytest -q tests/faults

test: venv system-packages lint typecheck imports unit

bench: venv system-packages
	$(BIN)/python -m bench.issue_latency

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
