# The two front-door commands are `make dev` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install whenever the dependency list or its pinned versions change.
STAMP := $(VENV)/.installed

.PHONY: dev test lint clean bench bench-scale fuzz

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $(STAMP)

# The demo chat app at / of `cariosan dev` is built from sdk/js (TypeScript) into the Python
# package, which ships the built file: rebuilt here when its sources changed and Node is present.
DEMO_BUNDLE := src/cariosan/http/demo/app.js
DEMO_SOURCES := $(wildcard sdk/js/demo/*.ts sdk/js/demo/build.mjs sdk/js/src/*.ts)

$(DEMO_BUNDLE): $(DEMO_SOURCES) sdk/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd sdk/js && { test -f node_modules/.package-lock.json || npm ci --no-audit --no-fund; } \
	  && npm run --silent build:demo; \
	else echo "Node.js not found: serving the demo app as committed ($(DEMO_BUNDLE))"; fi
	@touch $(DEMO_BUNDLE)

dev: $(STAMP) $(DEMO_BUNDLE)
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

# Read paths at data scale: fills a database with 1,000,000 messages (a few minutes), then prints
# p50/p99 of catch-up, history, /v1/me, the channel list and search.
bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
