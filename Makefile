# The two front-door commands are `make dev` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install whenever the dependency list or its pinned versions change.
STAMP := $(VENV)/.installed

.PHONY: dev test lint clean bench fuzz

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $(STAMP)

dev: $(STAMP)
	$(BIN)/cariosan dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

# Property-based fuzzing with a large budget (not part of `make test`, which runs the same tests
# with a small one): schemathesis over every operation with both credential kinds, and
# hypothesis over WebSocket frames. 500 examples per operation and credential: over 30,000 cases.
FUZZ_EXAMPLES ?= 500
fuzz: $(STAMP)
	CARIOS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -s --timeout 0 \
		tests/integration/test_api_schema.py tests/integration/test_ws_fuzz.py

# Load figures (not part of `make test`): WebSocket send-to-receive latency with 1,000 clients.
bench: $(STAMP)
	$(BIN)/python -m bench.ws_latency

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
