# Native monitoring stack (no Docker): included by the top-level Makefile.
# State (data, logs, generated configs) goes to $(VOICEOBS_STACK_STATE_DIR), default .state/.
# Binaries are cached in ${XDG_CACHE_HOME:-~/.cache}/voiceobs/bin/.
.PHONY: stack-build stack-up stack-down stack-status stack-logs

STACK := $(PY) -m stack

stack-build: $(STAMP) ## Build/install the pinned Collector, Jaeger, Loki, Prometheus, Alertmanager (cached)
	$(STACK) build

stack-up: $(STAMP) ## Start the native stack under supervisord (builds on first use), wait until ready
	$(STACK) up

stack-down: $(STAMP) ## Stop the native stack
	$(STACK) down

stack-status: $(STAMP) ## State, pid, memory and readiness of each native service
	$(STACK) status

stack-logs: $(STAMP) ## Tail native service logs (SERVICE=name, FOLLOW=1 to follow)
	$(STACK) logs $(if $(FOLLOW),-f) $(SERVICE)
