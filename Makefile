# `make demo` and `make test` work on a fresh machine with Python 3.11+ and pip.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test lint typecheck pytest bench browser clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,otel,web]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) -m actors._demo ./demo-data

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

# The browser tests run in a process of their own: Chromium's driver has hung
# in the full suite's process (never alone); coverage adds up both runs.
pytest: setup
	$(PY) -m pytest --cov --cov-report= --cov-fail-under=0 \
		--ignore=tests/test_dashboard_browser.py
	$(PY) -m pytest --cov --cov-append --cov-report=term \
		tests/test_dashboard_browser.py

test: lint typecheck pytest

# Debian's Chromium for the dashboard's browser tests (they skip without it).
# Never `playwright install`: it downloads a browser build of its own.
browser:
	command -v chromium >/dev/null || { apt-get update && apt-get install -y --no-install-recommends chromium; }

bench: setup
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) demo-data .pytest_cache .mypy_cache .ruff_cache .coverage
