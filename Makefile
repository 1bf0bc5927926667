# iis-portscan: `make demo` and `make test` are the two commands a new user needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Every dependency, the test extras included, pinned with hashes for Python 3.11 on Linux x86_64: the
# versions the tests ran. `make lock` writes it again from pyproject.toml.
LOCK := requirements.lock
# The native extension (native/, built by `pip install -e .`) is part of the stamp: a changed crate is
# built again by the next `make setup`, never left stale in the editable install.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml setup.py $(LOCK) native/Cargo.toml native/Cargo.lock \
	$(wildcard native/src/*.rs) | sha256sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: help lock setup services-up services-down services-status test test-unit test-no-rust chaos lint demo bench clean

help:
	@echo "make demo           set up and run the main job on the embedded defaults"
	@echo "make test           set up, start Kafka and Redis, run every test tier, stop what it started"
	@echo "make setup          virtualenv in .venv: the locked dependencies (requirements.lock), the package editable"
	@echo "make lock           write requirements.lock again from pyproject.toml (LOCK_ARGS=--upgrade: newest)"
	@echo "make test-no-rust   a fresh clone installed without a Rust toolchain: the pure-Python tiers pass"
	@echo "make services-up    Kafka (KRaft, 127.0.0.1:9092) and Redis (127.0.0.1:6379); reuses running ones"
	@echo "make services-down  stop what services-up started"
	@echo "make chaos          randomized whole-system scenarios: SEED=N[,M] replays those, RUNS=200 fresh seeds"
	@echo "make lint           ruff and mypy"
	@echo "make bench          throughput, latency and memory through the real broker (BENCH_ARGS=--help)"

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py $(LOCK) native/Cargo.toml native/Cargo.lock $(wildcard native/src/*.rs)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 is required ($(PYTHON))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

LOCK_ARGS ?=
lock: setup
	$(BIN)/python -m pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --extra test --generate-hashes --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu --no-header $(LOCK_ARGS) --output-file $(LOCK)

services-up:
	deploy/services.sh up

services-down:
	deploy/services.sh down

services-status:
	deploy/services.sh status

# Every tier (unit, contract, integration) in one pytest run; services started here are stopped here.
# TEST_WORKERS parallel pytest processes (pytest-xdist) share the broker and Redis: the integration tests
# mostly wait (start-up, rebalances, idle timeouts), so 4 of them fit 2 cores. TEST_WORKERS=0: one process.
# --maxschedchunk 1: a free process takes the next test, so the slow ones (ordered first) spread out.
TEST_WORKERS ?= 4
test: setup
	deploy/services.sh jars
	deploy/services.sh with -- $(BIN)/python -m pytest -n $(TEST_WORKERS) --maxschedchunk 1 $(PYTEST_ARGS)

# Unit and contract tiers without services (the Redis backend of the store contract is integration).
test-unit: setup
	$(BIN)/python -m pytest tests/unit tests/contract -m "not integration" $(PYTEST_ARGS)

# A fresh clone of HEAD installed with no Rust toolchain on PATH (the native extension is not built): the
# pure-Python core passes the unit and contract tiers; the native engine's tests skip, saying why.
NO_RUST_DIR ?= $(CURDIR)/.run/no-rust
test-no-rust:
	rm -rf $(NO_RUST_DIR) && git clone -q $(CURDIR) $(NO_RUST_DIR)
	cd $(NO_RUST_DIR) && PATH="$$(printf '%s' "$$PATH" | tr ':' '\n' | while read -r d; do [ -x "$$d/cargo" ] || printf '%s:' "$$d"; done)" \
		$(MAKE) test-unit PYTHON=$(PYTHON) PYTEST_ARGS="-q -n 2 -rs"
	cd $(NO_RUST_DIR) && .venv/bin/python -c 'import streams.core.native as n; e = n.choose("auto"); print("engine:", e.name, "(" + e.why + ")"); assert e.name == "python"'

# The randomized tier (tests/chaos): `make test` runs its fixed seeds; here SEED=N[,M,...] replays exactly
# those scenarios, RUNS=N runs N fresh seeds from CHAOS_BASE (the clock unless given; printed, so that a
# run can be repeated). CHAOS_WORKERS scenarios run in parallel; a failed scenario's job log is kept in
# CHAOS_LOG_DIR.
SEED ?=
RUNS ?=
CHAOS_BASE ?= $(shell date +%s)
CHAOS_WORKERS ?= 2
CHAOS_LOG_DIR ?= $(CURDIR)/.run/chaos
chaos: setup
	deploy/services.sh jars
	@echo "chaos: SEED=$(SEED) RUNS=$(RUNS) CHAOS_BASE=$(CHAOS_BASE)"
	CHAOS_SEED="$(SEED)" CHAOS_RUNS="$(RUNS)" CHAOS_BASE="$(CHAOS_BASE)" CHAOS_LOG_DIR="$(CHAOS_LOG_DIR)" deploy/services.sh with -- \
		$(BIN)/python -m pytest tests/chaos -n $(CHAOS_WORKERS) --maxschedchunk 1 -k scenario $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check streams tests benchmarks
	$(BIN)/mypy

demo: setup
	deploy/demo.sh

# Prints a table and writes benchmarks/results/latest.json; uses (and starts if needed) the services.
BENCH_ARGS ?=
bench: setup services-up
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf .venv .cache .run build *.egg-info
