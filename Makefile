# voiceobs — the user's verbs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv demo test test-unit lint bench

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[demo,dev]'
	touch $@

venv: $(STAMP) ## Create .venv with voiceobs and its dev/demo extras

test-unit: $(STAMP) ## Run the Python unit tests (no backends)
	$(PY) -m pytest -q -m 'not stack' tests

lint: $(STAMP) ## ruff + mypy --strict on voiceobs/
	$(VENV)/bin/ruff check voiceobs tests
	$(VENV)/bin/ruff format --check voiceobs tests
	$(VENV)/bin/mypy voiceobs

# Native stack (stack/stack.mk) and Docker stack (monitor.mk) verbs.
-include stack/stack.mk
-include monitor.mk
