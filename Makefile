# voiceobs — the user's verbs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv demo report test test-unit test-deps lint bench

# The demo's traffic: bounded in calls and seconds (voiceobs demo --help for every option).
DEMO_ARGS ?= --calls 120 --duration 90 --rate 2 --concurrency 10
# The same calls' shape through a real Pipecat pipeline of fake services (the Pipecat adapter).
PIPECAT_DEMO_ARGS ?= --calls 20 --duration 30 --rate 2 --concurrency 5 --prefix pipecat
OTLP_ENDPOINT ?= http://127.0.0.1:4317
# The benchmark suite's options (.venv/bin/python -m bench -h): CI passes --short.
BENCH_ARGS ?=

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[demo,dev,pipecat,livekit]'
	touch $@

venv: $(STAMP) ## Create .venv with voiceobs and its dev/demo/framework-adapter extras

demo: $(STAMP) ## Main job: native stack up, demo engine streams calls into it, correlation report
	$(PY) -m stack up
	OTEL_EXPORTER_OTLP_ENDPOINT=$(OTLP_ENDPOINT) $(VENV)/bin/voiceobs demo $(DEMO_ARGS)
	OTEL_EXPORTER_OTLP_ENDPOINT=$(OTLP_ENDPOINT) $(VENV)/bin/voiceobs demo --engine pipecat $(PIPECAT_DEMO_ARGS)
	$(VENV)/bin/voiceobs report
	@echo "The stack keeps running: Prometheus http://127.0.0.1:9090, Jaeger http://127.0.0.1:16686," \
	  "Loki http://127.0.0.1:3100. Stop it with: make stack-down"
	@echo "The console (calls, turns, traces, logs; no Grafana needed):" \
	  "$(VENV)/bin/voiceobs console --no-auth, then open http://127.0.0.1:8900/console/"

report: $(STAMP) ## Walk metric → exemplar → trace → logs on the running stack
	$(VENV)/bin/voiceobs report

test: $(STAMP) ## The whole suite: unit, config and end-to-end tests (builds the native stack once)
	$(PY) -m stack build
	$(PY) -m pytest -q tests

test-unit: $(STAMP) ## Only the tests that need no backend
	$(PY) -m pytest -q -m 'not stack' tests

bench: $(STAMP) ## Benchmark suite (engine load, Collector outage, HTTP, hot path, Collector throughput, Pipecat adapter, freshness, dashboard panels, Loki) → docs/performance.md; BENCH_ARGS=--short for CI's ~10 min form
	$(PY) -m bench $(BENCH_ARGS)

# test-deps installs the framework adapters' extras too; livekit-agents pins OpenTelemetry 1.45.x,
# so the lowest end (OpenTelemetry 1.43) leaves it out with its tests (test_integration_livekit.py
# and the LiveKit example of docs/integrations.md).
test-deps: $(STAMP) ## Unit suite at the lowest and the highest dependency versions allowed (~9 min)
	$(PY) scripts/dependency_range.py

lint: $(STAMP) ## ruff + mypy --strict on voiceobs/
	$(VENV)/bin/ruff check voiceobs tests stack scripts bench grafana
	$(VENV)/bin/ruff format --check voiceobs tests stack scripts bench grafana
	$(VENV)/bin/mypy voiceobs

# Native stack (stack/stack.mk) and Docker stack (monitor.mk) verbs.
-include stack/stack.mk
-include monitor.mk
