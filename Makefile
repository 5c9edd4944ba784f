# supportmem: `make run` serves the demo on http://127.0.0.1:8000; `make test` runs lint, types and tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test install lint typecheck pytest chromium clean-data lock

LOCK := requirements.lock
LOCK_VENV := .data/lock-venv

# Exactly the locked set (nothing is resolved at install time), then the project itself without dependencies.
$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --no-deps -r $(LOCK)
	$(PIP) install --quiet --no-deps -e .
	touch $@

# Refresh requirements.lock after changing a dependency in pyproject.toml (docs/operations.md).
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || \
		($(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install --quiet pip-tools==7.6.2)
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --strip-extras --allow-unsafe \
		--extra local --extra dev --extra embedded --no-emit-find-links --no-emit-index-url --no-emit-trusted-host \
		-o $(LOCK) pyproject.toml

install: $(VENV)/.installed

# Debian's Chromium for browser tests (never `playwright install`: it downloads a browser).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

# gunicorn and the Celery worker write their Prometheus samples to one folder, so /metrics counts both.
run: install
	@# Prometheus samples of a previous run's dead processes are dropped (in SUPPORTMEM_DATA_DIR when it is set).
	METRICS="$${SUPPORTMEM_DATA_DIR:-$(CURDIR)/.data}/metrics"; rm -rf "$$METRICS" && mkdir -p "$$METRICS"
	@# serve: migrate, load the demo, collect static, then gunicorn (+ Celery with REDIS_URL) as its children;
	@# it owns the embedded PostgreSQL, so Ctrl-C (once: graceful, twice: kill) always stops the database too.
	@# The demo (and its /widget/demo/ page) is on by default only with the embedded database.
	export SUPPORTMEM_DEMO=$${SUPPORTMEM_DEMO:-$$([ -n "$$DATABASE_URL" ] && echo false || echo true)}; \
	PROMETHEUS_MULTIPROC_DIR="$${SUPPORTMEM_DATA_DIR:-$(CURDIR)/.data}/metrics" $(PY) manage.py serve --host $(HOST) --port $(PORT)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# django-stubs imports the settings, which only declare: no database starts.
typecheck: install
	$(VENV)/bin/mypy .

pytest: install chromium
	$(VENV)/bin/pytest

test: lint typecheck pytest

clean-data:
	rm -rf .data
