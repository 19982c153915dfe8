# Two entry points (see README): `make demo` and `make test`. Each sets itself up.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flexlab-installed
export NODE_EXTRA_CA_CERTS ?= /etc/ssl/certs/ca-certificates.crt
# CI never re-resolves the npm lock file (toolchain P19).
ifeq ($(CI),true)
export YARN_ENABLE_IMMUTABLE_INSTALLS := true
endif
LAB_OVERRIDES := {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}

.PHONY: setup demo test test-browser lint chromium tmux prometheus bench-openb clean

EXT_SOURCES := $(wildcard extension/src/*.ts extension/style/*.css extension/schema/*.json) \
	extension/package.json extension/yarn.lock

$(STAMP): pyproject.toml $(EXT_SOURCES)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	# builds the JupyterLab extension with jlpm through hatch-jupyter-builder
	$(PY) -m pip install -q -e '.[all,test]'
	mkdir -p $(VENV)/share/jupyter/lab/settings
	echo '$(LAB_OVERRIDES)' > $(VENV)/share/jupyter/lab/settings/overrides.json
	$(VENV)/bin/jupyter labextension list 2>&1 | grep -q 'flexlab-jupyter.*enabled.*OK'
	$(VENV)/bin/jupyter server extension list 2>&1 | grep -q 'flexlab_jupyter.*OK'
	touch $(STAMP)

## configurable-http-proxy (npm) for the JupyterHub test deployment (tests/hub), project-local:
## the committed package.json and lock file, installed with `npm ci` into .venv/chp.
CHP_DIR := $(VENV)/chp
CHP := $(CHP_DIR)/node_modules/.bin/configurable-http-proxy
$(CHP): tests/hub/proxy/package.json tests/hub/proxy/package-lock.json
	mkdir -p $(CHP_DIR)
	cp tests/hub/proxy/package.json tests/hub/proxy/package-lock.json $(CHP_DIR)/
	npm ci --prefix $(CHP_DIR) --no-audit --no-fund --loglevel=error
	$(CHP) --version
	touch $(CHP)

setup: $(STAMP) $(CHP)

## The main job: a mixed AI workload on the embedded mock pool, sliced vs whole devices.
demo: $(STAMP)
	$(VENV)/bin/flexlab demo

## Debian's Chromium for the browser tests (never a browser download).
chromium:
	command -v chromium >/dev/null || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

## Debian's Prometheus and promtool for the metrics tests (they start their own server on a
## free loopback port). The package would start a server on :9090: a container's policy-rc.d
## forbids that; where systemd runs, it is stopped and disabled again.
prometheus:
	command -v prometheus >/dev/null && command -v promtool >/dev/null || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus && \
		if [ -d /run/systemd/system ]; then systemctl disable --now prometheus || true; fi; }

## Debian's tmux: flexlab status --watch is tested in a real terminal (tests/test_watch.py).
tmux:
	command -v tmux >/dev/null || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends tmux; }

## Everything CI runs: tests (slow ones included), ruff, mypy, import-linter, then the
## browser tests and the JupyterHub deployment (tests/hub: root only, it makes two system users)
## in their own pytest run (Playwright and pytest-jupyter cannot share one).
test: $(STAMP) $(CHP) chromium prometheus tmux
	$(PY) -m pytest -q
	FLEXLAB_BROWSER_TESTS=1 $(PY) -m pytest -q -p no:warnings tests/browser tests/hub \
		--screenshot=only-on-failure --output=test-artifacts/playwright

test-browser: $(STAMP) $(CHP) chromium
	FLEXLAB_BROWSER_TESTS=1 $(PY) -m pytest -q -p no:warnings tests/browser tests/hub

lint: $(STAMP)
	$(PY) -m pytest -q tests/test_quality.py

## The placement benchmark on the public openb trace (../shared/traces/openb or TRACE=...).
TRACE ?= ../shared/traces/openb
bench-openb: $(STAMP)
	$(VENV)/bin/flexlab bench openb --trace-dir $(TRACE) --workload default \
		--policies firstfit,bestfit,fgd,flexlab --seeds 42-51

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
