# wsskit: every target makes its own virtual environment (.venv) first.
#   make serve        set up and run `wsskit serve` (wss://127.0.0.1:8443, echo at /echo)
#   make test         set up and run the whole suite: lint, types, tests, coverage, conformance sample, failover
#   make lint         ruff and mypy --strict
#   make conformance  the full Autobahn Testsuite, both roles (all 517 cases)
#   make bench        side-by-side benchmarks against websockets, aiohttp, picows (own venv: bench/.venv)
#   make fuzz         fuzz the parsers (FUZZ_SECONDS=60; atheris if it installs, else Hypothesis)
#   make failover     HAProxy + 3 nodes + Redis under load; kill things; count every message
#   make storm        5 000 connections dropped at once; reconnect rate, health latency

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: venv serve test unit lint conformance conformance-quick bench fuzz failover failover-if-possible storm clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "wsskit needs Python 3.10 or newer"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 'setuptools>=77'
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: venv
	$(VENV)/bin/wsskit serve $(ARGS)

lint: venv
	$(VENV)/bin/ruff check src tests compliance bench tools fuzz deploy
	$(VENV)/bin/ruff format --check src tests compliance bench tools fuzz deploy
	$(VENV)/bin/mypy

unit: venv
	$(PY) -m pytest --cov=wsskit --cov-branch --cov-report=term --cov-report=xml:.coverage.xml $(ARGS)
	$(PY) tools/check_coverage.py .coverage.xml wsskit/protocol 95

test: lint unit conformance-quick failover-if-possible

# The Autobahn Testsuite needs Python 2.7 (setup.sh exits 3 without one): a
# user's `make test` skips it with a notice; under CI=true its absence fails.
conformance-quick: venv
	@bash compliance/setup.sh; rc=$$?; \
	if [ $$rc -eq 3 ]; then \
		if [ "$$CI" = "true" ]; then echo "conformance: no Python 2.7 under CI=true: failing"; exit 1; fi; \
		echo "conformance: SKIPPED, no Python 2.7 for the Autobahn Testsuite (see compliance/README.md)"; exit 0; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi; \
	$(PY) compliance/run.py both --quick

conformance: venv
	bash compliance/setup.sh
	$(PY) compliance/run.py both

# The benchmark has an environment of its own (bench/.venv): wsskit (editable) and
# the peers of bench/requirements.txt. `make bench ARGS=--quick` for a short run.
BENCH_VENV  ?= bench/.venv
BENCH_PY    := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): pyproject.toml bench/requirements.txt $(wildcard setup.py src/wsskit/*.c src/wsskit/*/*.c)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "wsskit needs Python 3.10 or newer"'
	test -x $(BENCH_PY) || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install --quiet --upgrade pip 'setuptools>=77'
	$(BENCH_PY) -m pip install --quiet -e . -r bench/requirements.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_PY) bench/run.py $(ARGS)

FUZZ_SECONDS ?= 60
fuzz: venv
	$(PY) -m pip install --quiet atheris || echo "fuzz: no atheris here, using Hypothesis"
	$(PY) fuzz/run.py --seconds $(FUZZ_SECONDS) $(ARGS)

# Real processes on loopback (HAProxy, redis-server, wsskit serve): see docs/deployment.md.
failover: venv
	$(PY) -m deploy.failover $(ARGS)

# `make test` runs the failover scenario when HAProxy and redis-server are on the
# machine (.ci/run installs them); without them a user's `make test` says so and
# goes on, and under CI=true their absence fails.
failover-if-possible: venv
	@if ! { command -v haproxy || test -x /usr/sbin/haproxy; } >/dev/null 2>&1 \
		|| ! command -v redis-server >/dev/null 2>&1; then \
		if [ "$$CI" = "true" ]; then echo "failover: haproxy or redis-server missing under CI=true: failing"; exit 1; fi; \
		echo "failover: SKIPPED, needs haproxy and redis-server (see docs/deployment.md)"; exit 0; \
	fi; \
	$(PY) -m deploy.failover

storm: venv
	$(PY) -m deploy.storm $(ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) build dist .coverage .coverage.xml .pytest_cache .mypy_cache .ruff_cache compliance/reports
