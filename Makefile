# The two front-door commands are `make dev` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install whenever the dependency list or its pinned versions change.
STAMP := $(VENV)/.installed

.PHONY: dev test lint clean bench bench-scale

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

# Load figures (not part of `make test`): WebSocket send-to-receive latency with 1,000 clients.
bench: $(STAMP)
	$(BIN)/python -m bench.ws_latency

# Read paths at data scale: fills a database with 1,000,000 messages (a few minutes), then prints
# p50/p99 of catch-up, history, /v1/me, the channel list and search.
bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
