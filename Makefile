# One command per job; each sets up .venv on a fresh machine first (python3 >= 3.10 needed).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test demo cluster-demo fuzz bench bench-smoke typecheck lint clean

$(VENV)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed-dev
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

## Run the whole test suite (unit, end-to-end over loopback, and the bounded fuzz profile).
test: $(VENV)/.installed-dev
	$(PY) -m pytest -q $(PYTEST_ARGS)

## Start a host, the reverse and upper workers, and the orchestrator of the seed's example.
demo: $(VENV)/.installed-dev
	$(PY) samples/demo.py

## nats-server, two hosts joined over it, a call from a worker on one to an agent on the other, and a shared type across both.
cluster-demo: $(VENV)/.installed-dev
	$(PY) samples/cluster_demo.py

## Long Hypothesis profile over the engines and byte streams, then a bounded atheris run.
fuzz: $(VENV)/.installed-dev
	HYPOTHESIS_PROFILE=long $(PY) -m pytest -q fuzz
	$(PY) -m pip install -q atheris
	$(PY) fuzz/atheris_host.py -atheris_runs=20000

## Full benchmark against every peer (creates a separate venv for the 0.1.0 package).
bench: $(VENV)/.installed-bench
	$(PY) benchmarks/throughput.py

## A few seconds' smoke of the benchmarks (our runtime, in-process and raw sockets; shared-type placement; a cluster of host processes over nats-server; no extra installs).
bench-smoke: $(VENV)/.installed-dev
	$(PY) benchmarks/throughput.py --quick --only ours,inprocess,rawsocket --no-progress
	$(PY) benchmarks/placement.py --quick
	$(PY) benchmarks/cluster.py --quick

typecheck: $(VENV)/.installed-dev
	$(PY) -m mypy

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check sansio_runtime io_backends tests fuzz benchmarks samples .ci conftest.py

clean:
	rm -rf $(VENV) .bench-venvs .pytest_cache .hypothesis .mypy_cache
