# Elmo: `make demo` and `make test` do their own set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
ELMO := $(BIN)/elmo
# pip keeps its cache between runs (~/.cache/pip), so a reinstall on CI is fast.
PIP_FLAGS ?= --disable-pip-version-check

.PHONY: setup system-packages kafka-up kafka-down redis-up redis-down infra-up infra-down topics up down \
        test test-unit test-integration bench demo docs clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -q -e '.[test]'
	touch $@

# Debian packages the local stack needs (redis-server, kcat); installed once, as root.
system-packages:
	@command -v redis-server >/dev/null && command -v kcat >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server kcat >/dev/null; }

kafka-up: setup
	$(ELMO) kafka up

kafka-down: setup
	$(ELMO) kafka down

redis-up: setup system-packages
	$(ELMO) redis up

redis-down: setup
	$(ELMO) redis down

infra-up: kafka-up redis-up topics

infra-down: kafka-down redis-down

topics: setup
	$(ELMO) topics create

up: setup system-packages
	$(ELMO) up

down: setup
	$(ELMO) down

test-unit: setup
	$(BIN)/pytest tests/unit -q

# Integration and end-to-end tests run on the real broker and Redis that this target starts and,
# when it started them, stops again.
test: setup system-packages
	@set -o pipefail; started=$$($(ELMO) kafka status --quiet || echo started); \
	$(MAKE) --no-print-directory infra-up; \
	$(BIN)/pytest tests/unit tests/integration tests/e2e -q -ra; status=$$?; \
	if [ "$$started" = started ]; then $(MAKE) --no-print-directory infra-down; fi; \
	exit $$status

bench: setup system-packages infra-up
	$(BIN)/python tests/load/bench_runtime_chain.py

docs: setup
	$(ELMO) schema export docs/schemas

# `elmo demo` starts what is not running and stops only what it started.
demo: setup system-packages
	$(ELMO) demo

clean:
	rm -rf $(VENV) .local
