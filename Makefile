# Drama Studio: `make run` serves the studio, `make test` lints and runs the whole suite.
# Both create .venv with a Python >= 3.12 the first time.

SHELL := /bin/bash
.DEFAULT_GOAL := run

VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check --quiet
# Exit status 0 when the interpreter running it is new enough.
IS_NEW_ENOUGH := import sys; sys.exit(sys.version_info < (3, 12))

.PHONY: run test test-packages lint format clean

run: $(VENV)/.installed-run
	$(PY) manage.py studio

# The suite runs on every core (pytest-xdist, one file per worker at a time), in two passes:
# Playwright's sync API leaves an event loop running in its worker, after which async tests
# cannot run there, so the browser tests get workers of their own. Status 5 is "no tests
# selected" (PYTEST_ARGS chose tests of one kind only).
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
PYTEST_RUN := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test: $(VENV)/.installed-dev test-packages
	$(VENV)/bin/ruff check .
	@status=0; \
	for selection in "not browser" "browser"; do \
	  echo "pytest -m '$$selection' $(PYTEST_ARGS)"; \
	  $(PYTEST_RUN) -m "$$selection" $(PYTEST_ARGS); code=$$?; \
	  if [ $$code -ne 0 ] && [ $$code -ne 5 ]; then status=$$code; fi; \
	done; \
	exit $$status

# Debian packages the suite drives: chromium (browser tests), postgresql and redis-server (the
# scale-out tests start their own throwaway servers on loopback; see tests/services.py).
TEST_PACKAGES := chromium:chromium postgresql:/usr/lib/postgresql/*/bin/postgres redis-server:redis-server

test-packages:
	@need=""; \
	for entry in $(TEST_PACKAGES); do \
	  package=$${entry%%:*}; probe=$${entry#*:}; \
	  if command -v $$probe >/dev/null 2>&1 || compgen -G "$$probe" >/dev/null; then :; else need="$$need $$package"; fi; \
	done; \
	if [ -z "$$need" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing Debian packages for the tests:$$need"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need; \
	elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	  echo "Installing Debian packages for the tests (sudo):$$need"; \
	  sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need; \
	else \
	  echo "note: missing$$need; the browser and scale-out tests need them (as root: apt-get install$$need)."; \
	fi

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	@echo "Removing $(VENV) and var/ (the local database and uploaded media)"
	rm -rf $(VENV) var

# The virtualenv, made with the first Python >= 3.12 found: on PATH first (a pyenv shim that
# refuses to run does not count), then pyenv's installed versions, oldest first (prebuilt
# wheels appear for the older ones first).
$(PY):
	@py=""; \
	for candidate in python3.13 python3.12 python3 python; do \
	  if command -v $$candidate >/dev/null 2>&1 \
	     && $$candidate -c '$(IS_NEW_ENOUGH)' >/dev/null 2>&1; then \
	    py=$$(command -v $$candidate); break; \
	  fi; \
	done; \
	if [ -z "$$py" ] && command -v pyenv >/dev/null 2>&1; then \
	  for candidate in $$(ls -d "$$(pyenv root)"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V); do \
	    if "$$candidate" -c '$(IS_NEW_ENOUGH)' >/dev/null 2>&1; then py=$$candidate; break; fi; \
	  done; \
	fi; \
	if [ -z "$$py" ]; then \
	  echo "error: Drama Studio needs Python 3.12 or newer, and none was found." >&2; \
	  echo "Install python3.12 (Debian/Ubuntu: apt-get install python3.12 python3.12-venv;" >&2; \
	  echo "or pyenv install 3.12) and run make again." >&2; \
	  exit 1; \
	fi; \
	echo "Creating $(VENV) with $$py ($$("$$py" --version 2>&1))"; \
	"$$py" -m venv $(VENV)

# A .venv left by an older Python is refused rather than half-used.
$(VENV)/.installed-run: pyproject.toml | $(PY)
	@$(PY) -c '$(IS_NEW_ENOUGH)' || { echo "error: $(VENV) uses Python < 3.12; run 'make clean' first." >&2; exit 1; }
	$(PIP) -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	@$(PY) -c '$(IS_NEW_ENOUGH)' || { echo "error: $(VENV) uses Python < 3.12; run 'make clean' first." >&2; exit 1; }
	$(PIP) -e '.[dev]'
	@touch $@ $(VENV)/.installed-run
