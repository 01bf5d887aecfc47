# Docker monitoring stack (compose.monitoring.yml): the monitor-* verbs, included by the
# top-level Makefile. Local by default; REMOTE=user@host runs the stack on a server over SSH
# (configs are rsynced to $(REMOTE_DIR) first). DRY_RUN=1 prints the exact commands instead
# of running them. PROFILES="tempo probes host" switches on the optional services.
# The native stack (no Docker) has the stack-* verbs instead (stack/stack.mk).
.PHONY: monitor-up monitor-down monitor-logs monitor-reload monitor-status monitor-render

MONITOR_PROJECT := voiceobs-monitoring
MONITOR_COMPOSE_FILE := compose.monitoring.yml
MONITOR_STATE := .state/docker
MONITOR_PYTHON ?= python3
# Everything except secrets that the stack reads, relative to the repository (and REMOTE_DIR).
MONITOR_SYNC := $(MONITOR_COMPOSE_FILE) collector jaeger loki prometheus/rules alertmanager \
	grafana/provisioning grafana/dashboards blackbox tempo $(MONITOR_STATE)

PROFILES ?=
# With the tempo profile, traces go to Tempo as well as Jaeger (collector/config.yaml).
comma := ,
export VOICEOBS_STACK_TRACE_EXPORTERS ?= [otlp_grpc/jaeger$(if $(filter tempo,$(PROFILES)),$(comma) otlp_grpc/tempo)]
REMOTE ?=
REMOTE_DIR ?= voiceobs
SSH ?= ssh
RSYNC ?= rsync -az --delete --relative --exclude=secrets/
# Grafana (login required) is published on VOICEOBS_STACK_BIND, OTLP on VOICEOBS_STACK_OTLP_BIND;
# every other port stays on 127.0.0.1 (docs/security.md). OTLP token and TLS: stack/exposure.py.
VOICEOBS_STACK_BIND ?= 127.0.0.1
export VOICEOBS_STACK_OTLP_BIND ?= 127.0.0.1
export VOICEOBS_STACK_OTLP_AUTH ?= none
export VOICEOBS_STACK_OTLP_TLS ?= false
export VOICEOBS_STACK_OTLP_INSECURE ?= false
export VOICEOBS_STACK_ENABLE_LIFECYCLE ?= false
VOICEOBS_STACK_SECRETS_DIR ?= .state/secrets
SERVICE ?=
FOLLOW ?=
TAIL ?= 200

# Where Grafana's published port answers (0.0.0.0 is reached through loopback).
MONITOR_HOST := $(if $(filter 0.0.0.0,$(VOICEOBS_STACK_BIND)),127.0.0.1,$(VOICEOBS_STACK_BIND))
MONITOR_PROFILE_FLAGS := $(foreach p,$(PROFILES),--profile $(p))
MONITOR_ALL_PROFILES := --profile tempo --profile probes --profile host
# Prometheus' /-/reload and /-/quit only when asked (kingpin spells "off" --no-FLAG).
MONITOR_LIFECYCLE := $(if $(filter true 1 yes on,$(VOICEOBS_STACK_ENABLE_LIFECYCLE)),--web.enable-lifecycle,--no-web.enable-lifecycle)
MONITOR_DC = VOICEOBS_STACK_BIND=$(VOICEOBS_STACK_BIND) VOICEOBS_STACK_OTLP_BIND=$(VOICEOBS_STACK_OTLP_BIND) \
	VOICEOBS_STACK_PROMETHEUS_LIFECYCLE=$(MONITOR_LIFECYCLE) VOICEOBS_STACK_SECRETS_DIR=$(VOICEOBS_STACK_SECRETS_DIR) \
	docker compose -p $(MONITOR_PROJECT) -f $(MONITOR_COMPOSE_FILE)
# $(call monitor_grafana,URL): POST to Grafana's API as admin. The credentials reach curl as a
# config on stdin (printf is a shell builtin): never in an argv that `ps` shows.
monitor_grafana = printf "user = %s:%s\n" "$${GRAFANA_ADMIN_USER:-admin}" \
	"$${GRAFANA_ADMIN_PASSWORD:-$$(cat $(VOICEOBS_STACK_SECRETS_DIR)/grafana_admin_password)}" | curl -fsS -X POST -K - $(1)

# Prometheus' addresses inside the compose network (the template's defaults are native).
MONITOR_RENDER_ENV := COLLECTOR_TELEMETRY_TARGET=collector:8888 PROMETHEUS_TARGET=localhost:9090 \
	ALERTMANAGER_TARGET=alertmanager:9093 JAEGER_METRICS_TARGET=jaeger:14269 \
	LOKI_TARGET=loki:3100
MONITOR_SCRAPE_tempo := tempo/scrape-tempo.yml
MONITOR_SCRAPE_probes := blackbox/scrape-probes.yml
MONITOR_SCRAPE_host := blackbox/scrape-host.yml

# $(call monitor_at,CMD): CMD run in the stack's directory, here or on $(REMOTE).
monitor_at = $(if $(REMOTE),$(SSH) $(REMOTE) 'cd $(REMOTE_DIR) && $(1)',$(1))
# $(call monitor_do,CMD): run CMD, or print it exactly when DRY_RUN=1.
ifeq ($(DRY_RUN),1)
monitor_do = @printf '%s\n' '$(subst ','\'',$(1))'
else
monitor_do = $(1)
endif

# Secrets are created where the stack runs; Grafana gets a random admin password (never a
# default). The directory is private; the files stay readable by the containers' users.
MONITOR_SECRETS_CMD = mkdir -p $(VOICEOBS_STACK_SECRETS_DIR)/alertmanager && \
	chmod 700 $(VOICEOBS_STACK_SECRETS_DIR) && chmod 755 $(VOICEOBS_STACK_SECRETS_DIR)/alertmanager && \
	{ test -s $(VOICEOBS_STACK_SECRETS_DIR)/grafana_admin_password || \
	head -c 24 /dev/urandom | base64 > $(VOICEOBS_STACK_SECRETS_DIR)/grafana_admin_password; } && \
	chmod 644 $(VOICEOBS_STACK_SECRETS_DIR)/grafana_admin_password && \
	mkdir -p $(VOICEOBS_STACK_SECRETS_DIR)/otlp && chmod 755 $(VOICEOBS_STACK_SECRETS_DIR)/otlp$(if $(filter bearer,$(VOICEOBS_STACK_OTLP_AUTH)), && \
	{ test -s $(VOICEOBS_STACK_SECRETS_DIR)/otlp/token || \
	head -c 24 /dev/urandom | od -An -tx1 | tr -dc 0-9a-f > $(VOICEOBS_STACK_SECRETS_DIR)/otlp/token; } && \
	chmod 644 $(VOICEOBS_STACK_SECRETS_DIR)/otlp/token)

monitor-render: ## Render .state/docker/ (Prometheus config + profile scrape jobs, Alertmanager config) without starting
	$(call monitor_do,mkdir -p $(MONITOR_STATE)/prometheus/rules $(MONITOR_STATE)/prometheus/scrape.d)
	$(call monitor_do,$(MONITOR_RENDER_ENV) $(MONITOR_PYTHON) stack/render.py prometheus/prometheus.yml.tmpl $(MONITOR_STATE)/prometheus/prometheus.yml)
	$(call monitor_do,printf '\n# Docker only (Prometheus >= 2.43): jobs of the enabled profiles.\nscrape_config_files:\n  - /etc/prometheus/scrape.d/*.yml\n' >> $(MONITOR_STATE)/prometheus/prometheus.yml)
	$(call monitor_do,rm -f $(MONITOR_STATE)/prometheus/scrape.d/*.yml)
	$(call monitor_do,$(MONITOR_PYTHON) stack/alertmanager_docker.py alertmanager/alertmanager.yml $(MONITOR_STATE)/alertmanager/alertmanager.yml)
	$(call monitor_do,$(MONITOR_PYTHON) stack/exposure.py docker $(MONITOR_STATE)/collector/otlp.yaml)
ifneq ($(strip $(PROFILES)),)
	$(call monitor_do,cp $(foreach p,$(PROFILES),$(MONITOR_SCRAPE_$(p))) $(MONITOR_STATE)/prometheus/scrape.d/)
endif
ifneq ($(REMOTE),)
	$(call monitor_do,$(SSH) $(REMOTE) 'mkdir -p $(REMOTE_DIR)')
	$(call monitor_do,$(RSYNC) $(MONITOR_SYNC) $(REMOTE):$(REMOTE_DIR)/)
endif

monitor-up: monitor-render ## Start the Docker monitoring stack (REMOTE=user@host, PROFILES="tempo probes host", DRY_RUN=1)
	$(call monitor_do,$(call monitor_at,$(MONITOR_SECRETS_CMD)))
	$(call monitor_do,$(call monitor_at,$(strip $(MONITOR_DC) $(MONITOR_PROFILE_FLAGS)) up -d --remove-orphans))
	$(if $(filter 1,$(DRY_RUN)),,@echo "Grafana: http://$(MONITOR_HOST):3000 (user $${GRAFANA_ADMIN_USER:-admin}, password in $(VOICEOBS_STACK_SECRETS_DIR)/grafana_admin_password$(if $(REMOTE), on $(REMOTE)))")

monitor-down: ## Stop the Docker monitoring stack; data volumes are kept (the engine is not touched)
	$(call monitor_do,$(call monitor_at,$(MONITOR_DC) $(MONITOR_ALL_PROFILES) down))

monitor-logs: ## Show the stack's logs (SERVICE=name, FOLLOW=1, TAIL=200)
	$(call monitor_do,$(call monitor_at,$(MONITOR_DC) $(MONITOR_ALL_PROFILES) $(strip logs --tail=$(TAIL) $(if $(FOLLOW),-f) $(SERVICE))))

monitor-status: ## State and health of every monitoring container
	$(call monitor_do,$(call monitor_at,$(MONITOR_DC) $(MONITOR_ALL_PROFILES) ps -a))

monitor-reload: monitor-render ## Re-read configs: Prometheus, Alertmanager, Collector (SIGHUP), Grafana provisioning
	$(call monitor_do,$(call monitor_at,$(MONITOR_DC) kill -s HUP prometheus alertmanager collector))
	$(call monitor_do,$(call monitor_at,$(call monitor_grafana,http://$(MONITOR_HOST):3000/api/admin/provisioning/dashboards/reload)))
	$(call monitor_do,$(call monitor_at,$(call monitor_grafana,http://$(MONITOR_HOST):3000/api/admin/provisioning/datasources/reload)))
