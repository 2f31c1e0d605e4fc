# The two commands: `make run` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every package .venv holds, pinned with its hashes, for CPython 3.11 and 3.12 on any platform:
# requirements.lock the project's (runtime and test), requirements-tools.lock the tools that build
# durable-rules and the project (setuptools) and write the locks (uv). `make lock` writes both.
LOCK := requirements.lock
TOOLS_LOCK := requirements-tools.lock
TOOLS := 'setuptools>=68' uv==0.13.9

.PHONY: run test test-long lint check format bench screenshots clean lock
CHROMIUM := /usr/bin/chromium

# A fresh venv with exactly the locks: pip refuses a file whose hash differs, and builds with the
# locked setuptools rather than fetching one. pip stays the one `venv` brings from the Python install
# (upgrading it would fetch a file no lock checks).
$(STAMP): $(LOCK) $(TOOLS_LOCK) pyproject.toml
	$(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info[:2] < (3, 13), "durable-rules needs CPython 3.11 or 3.12, found " + sys.version'
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(TOOLS_LOCK)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps --no-build-isolation -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The upgrade command: every package to the newest release that pyproject.toml (or TOOLS) allows.
# `make lock ONLY="flask jinja2"` upgrades only those and keeps the other pins (run it after adding
# a dependency). Then `make test` rebuilds .venv from the new locks.
UPGRADE = $(if $(ONLY),$(foreach p,$(ONLY),--upgrade-package $(p)),--upgrade)
LOCK_WITH = $(BIN)/uv pip compile --quiet --universal --generate-hashes --custom-compile-command 'make lock' $(UPGRADE)
lock: $(STAMP)
	$(LOCK_WITH) pyproject.toml --extra test -o $(LOCK)
	printf '%s\n' $(TOOLS) | $(LOCK_WITH) -c $(LOCK) - -o $(TOOLS_LOCK)

run: $(STAMP)
	$(BIN)/formulary serve --host 127.0.0.1 --port 8000 --workers 2

lint: $(STAMP)
	$(BIN)/formulary lint rules/

# The code's own checks: lint, format, types, and the layer contracts (pyproject.toml).
check: $(STAMP)
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo --no-cache

# Rewrite the code as `make check` wants it: formatted, imports sorted, safe fixes applied.
format: $(STAMP)
	$(BIN)/ruff format service tests bench
	$(BIN)/ruff check --fix service tests bench

# The console's browser tests drive Debian's Chromium (Playwright's own download is not reachable).
$(CHROMIUM):
	apt-get install -y -qq chromium || (apt-get update -qq && apt-get install -y -qq chromium)

test: lint check $(CHROMIUM)
	$(BIN)/python -m pytest

# Retake the console screenshots that the README shows.
screenshots: $(STAMP) $(CHROMIUM)
	FORMULARY_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q -k journey tests/test_console_browser.py \
		tests/test_console_administrations_browser.py tests/test_supply_browser.py tests/test_console_rulebook_browser.py \
		tests/test_console_reports_browser.py

test-long: $(STAMP)
	$(BIN)/python -m pytest -m long

# Every figure in docs/PERFORMANCE.md. Takes about 15 minutes; wrk comes from Debian.
bench: $(STAMP)
	command -v wrk >/dev/null || apt-get install -y -qq wrk
	$(BIN)/python bench/decisions.py
	$(BIN)/python bench/durable_rules_hazards.py
	$(BIN)/python bench/terminology.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/peers.py
	$(BIN)/python bench/audit_scale.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/reports.py
	$(BIN)/python bench/cli_startup.py $(if $(BEFORE),--before $(BEFORE))
	bench/http_load.sh 15
	bench/cds_hooks_load.sh 15
	FORMULARY_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dbench" \
	  sh -c 'psql -h 127.0.0.1 -U postgres -d test -qc "DROP SCHEMA IF EXISTS bench CASCADE; CREATE SCHEMA bench" && bench/http_load.sh 15'

clean:
	rm -rf $(VENV) *.egg-info
