# The two commands: `make run` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-long lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info[:2] < (3, 13), "durable-rules needs CPython 3.11 or 3.12, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/formulary serve --host 127.0.0.1 --port 8000 --workers 2

lint: $(STAMP)
	$(BIN)/formulary lint rules/

test: lint
	$(BIN)/python -m pytest

test-long: $(STAMP)
	$(BIN)/python -m pytest -m long

clean:
	rm -rf $(VENV) *.egg-info
