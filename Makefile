# threatroute: `make demo` sets up and runs the pipeline locally; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TR := $(BIN)/threatroute

.PHONY: demo test crash-test unit integration lint bench deps venv stop clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

deps:
	bash deploy/install-system-deps.sh

demo: deps venv
	bash deploy/demo.sh

test: deps venv lint
	$(BIN)/pytest -q --durations=10 tests

# the kill -9 crash test alone (50k indicators, 1k recipients; also part of `test`); README "Tests"
crash-test: deps venv
	$(BIN)/pytest -q -m crash tests/integration/test_crash.py

unit: venv
	$(BIN)/pytest -q tests/unit

integration: deps venv
	$(BIN)/pytest -q tests/integration

lint: venv
	$(BIN)/ruff check threatroute streams enrichers matchers tests benchmarks
	$(BIN)/mypy -p threatroute

BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS ?=

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# the pipeline end to end on a realistic world (its own broker on port 9192, removed after);
# BENCH_ARGS="--count 200000 --port 19165" to change it; then IntelMQ's experts next to ours
bench: deps $(BENCH_STAMP)
	$(TR) bench $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_intelmq.py

stop: venv
	$(TR) broker stop

clean:
	rm -rf $(VENV) .threatroute .pytest_cache .ruff_cache .mypy_cache
