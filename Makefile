# stockgate — the two README commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
WHEELHOUSE := $(VENV)/wheelhouse
DEMO_ARGS ?=

.PHONY: demo test lint typecheck pytest bench system-deps clean lock

## Every dependency comes from the lock, at the pinned version and checked against its hashes,
## so each install (CI's, a developer's, a server's) gets the same bytes; `make lock` renews it
## after pyproject.toml changes (tests/stockgate/test_lock.py says when it must).
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@# Wheels of every runtime dependency (and the build backend), so the packaging tests
	@# install `stockgate[edge]` / `[server]` into fresh venvs offline (tests/packaging).
	rm -rf $(WHEELHOUSE)
	$(BIN)/python -m pip wheel --quiet -w $(WHEELHOUSE) '.[edge,server]' 'setuptools>=68' wheel
	rm -rf $(WHEELHOUSE)/stockgate-*.whl build
	touch $(STAMP)

## Mosquitto and PostgreSQL are real parts of the tests; install what is missing when we may.
## (openssl makes the TLS certificates of the deploy test; mosquitto_passwd comes with mosquitto;
## victoria-metrics takes the InfluxDB v2 writes of the history sink's tests.)
## (A PostgreSQL that is installed but not running is fine: the tests start a private one.)
APT_PACKAGES = $(strip \
  $(if $(or $(wildcard /usr/sbin/mosquitto),$(shell command -v mosquitto)),,mosquitto) \
  $(if $(or $(wildcard /usr/bin/mosquitto_pub),$(shell command -v mosquitto_pub)),,mosquitto-clients) \
  $(if $(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql) \
  $(if $(or $(wildcard /usr/bin/systemd-analyze),$(shell command -v systemd-analyze)),,systemd) \
  $(if $(or $(wildcard /usr/bin/openssl),$(shell command -v openssl)),,openssl) \
  $(if $(wildcard /usr/lib/chromium/chromium),,chromium) \
  $(if $(wildcard /usr/bin/chromedriver),,chromium-driver) \
  $(if $(or $(wildcard /usr/bin/victoria-metrics),$(shell command -v victoria-metrics)),,victoria-metrics))
system-deps:
	@if [ -n "$(APT_PACKAGES)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing through apt: $(APT_PACKAGES)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      $(APT_PACKAGES) >/dev/null; \
	  else \
	    echo "missing system packages: $(APT_PACKAGES) (apt-get install them)" >&2; exit 1; \
	  fi; \
	fi

demo: $(STAMP)
	$(BIN)/stockgate demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy -p wire -p plumbing -p edge -p server -p stockgate -p bench -p firmware_sim

## Two workers: most tests wait on sockets, brokers and databases rather than the CPU, and
## every test isolates itself (free ports, temp dirs, a database of its own). Tests marked
## xdist_group share one worker (e.g. the installers' venvs, built once per module).
pytest: $(STAMP) system-deps
	$(BIN)/pytest -n 2 --dist loadgroup

test: lint typecheck pytest

bench: $(STAMP) system-deps
	$(BIN)/python -m bench

## uv resolves for every platform (a Pi's aarch64 wheels too) and writes each file's hash.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	$(BIN)/uv pip compile pyproject.toml --all-extras --generate-hashes --universal \
	  --python-version 3.11 --quiet -o $(LOCK)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
