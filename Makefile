# Two entry points (see README): `make demo` and `make test`. Each sets itself up.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flexlab-installed
export NODE_EXTRA_CA_CERTS ?= /etc/ssl/certs/ca-certificates.crt

.PHONY: setup demo test lint bench-openb clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

## The main job: a mixed AI workload on the embedded mock pool, sliced vs whole devices.
demo: $(STAMP)
	$(VENV)/bin/flexlab demo

## The placement benchmark on the public openb trace (../shared/traces/openb or TRACE=...).
TRACE ?= ../shared/traces/openb
bench-openb: $(STAMP)
	$(VENV)/bin/flexlab bench openb --trace-dir $(TRACE) --workload default \
		--policies firstfit,bestfit,fgd,flexlab --seeds 42-51

## The whole test suite, slow tests and lint (ruff, mypy, import-linter) included.
test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m pytest -q tests/test_quality.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
