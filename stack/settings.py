"""Where the native stack lives and listens: state directory, listeners, and the
environment every service and config template is given.

Every listener binds to 127.0.0.1 on its standard port unless the environment
variable that the shared config files read says otherwise; only the OTLP receivers may
leave loopback (``VOICEOBS_STACK_OTLP_BIND``, rules in ``stack.exposure``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stack import exposure

REPO_ROOT = Path(__file__).resolve().parent.parent

STATE_DIR_ENV = "VOICEOBS_STACK_STATE_DIR"
"""Directory for all data, logs and generated config (default: ``<repo>/.state``)."""

TIMEOUT_ENV = "VOICEOBS_STACK_TIMEOUT"
"""Seconds to wait for each service to become ready (default 90)."""

# Retention, shared with the Docker stack: VOICEOBS_STACK_METRICS_RETENTION (35d),
# VOICEOBS_STACK_METRICS_RETENTION_SIZE (5GB), VOICEOBS_STACK_TRACE_RETENTION (-> JAEGER_TRACE_TTL,
# 168h) and VOICEOBS_STACK_LOG_RETENTION (-> LOKI_RETENTION, 168h). The Collector's queue
# bound: VOICEOBS_STACK_QUEUE_MAX_BYTES (-> COLLECTOR_QUEUE_MAX_BYTES, 2 GiB per exporter),
# and VOICEOBS_STACK_QUEUE_FSYNC (-> COLLECTOR_STORAGE_FSYNC, false) to survive power loss.

LOOPBACK = "127.0.0.1"


class StackError(RuntimeError):
    """A problem the user can act on; the CLI prints it without a traceback."""


@dataclass(frozen=True)
class Listener:
    """One TCP listener of a service, and the env variable(s) that move it.

    ``addr_var`` holds ``host:port``; when a config splits host and port into two
    variables, ``addr_var`` is the port variable and ``host_var`` the host one.
    """

    service: str
    purpose: str
    addr_var: str
    port: int
    host_var: str | None = None

    def address(self, env: Mapping[str, str]) -> tuple[str, int]:
        """The (host, port) this listener uses under ``env``."""
        if self.host_var is not None:
            host = env.get(self.host_var) or LOOPBACK
            return host, int(env.get(self.addr_var) or self.port)
        value = env.get(self.addr_var)
        if not value:
            return LOOPBACK, self.port
        host, _, port = value.rpartition(":")
        return host or LOOPBACK, int(port)

    def hostport(self, env: Mapping[str, str]) -> str:
        host, port = self.address(env)
        return f"{host}:{port}"


LISTENERS: tuple[Listener, ...] = (
    Listener("collector", "OTLP/gRPC receiver", "COLLECTOR_OTLP_GRPC_ENDPOINT", 4317),
    Listener("collector", "OTLP/HTTP receiver", "COLLECTOR_OTLP_HTTP_ENDPOINT", 4318),
    Listener("collector", "Prometheus exporter", "COLLECTOR_PROMETHEUS_ENDPOINT", 8889),
    Listener(
        "collector", "own telemetry", "COLLECTOR_TELEMETRY_PORT", 8888, "COLLECTOR_TELEMETRY_HOST"
    ),
    Listener("collector", "health_check", "COLLECTOR_HEALTH_ENDPOINT", 13133),
    Listener("collector", "pprof", "COLLECTOR_PPROF_ENDPOINT", 1777),
    Listener("collector", "zpages", "COLLECTOR_ZPAGES_ENDPOINT", 55679),
    Listener("collector", "remote-write stage", "COLLECTOR_REMOTE_WRITE_STAGE_ENDPOINT", 4319),
    Listener("jaeger", "OTLP/gRPC receiver", "JAEGER_OTLP_GRPC_ENDPOINT", 14317),
    Listener("jaeger", "OTLP/HTTP receiver", "JAEGER_OTLP_HTTP_ENDPOINT", 14318),
    Listener("jaeger", "query HTTP API", "JAEGER_QUERY_HTTP_ENDPOINT", 16686),
    Listener("jaeger", "query gRPC API", "JAEGER_QUERY_GRPC_ENDPOINT", 16685),
    Listener("jaeger", "healthcheckv2", "JAEGER_HEALTH_ENDPOINT", 13134),
    Listener("jaeger", "own telemetry", "JAEGER_METRICS_PORT", 14269, "JAEGER_METRICS_HOST"),
    Listener("loki", "HTTP API", "LOKI_HTTP_PORT", 3100, "LOKI_HTTP_ADDRESS"),
    Listener("loki", "gRPC", "LOKI_GRPC_PORT", 9096, "LOKI_GRPC_ADDRESS"),
    Listener("prometheus", "web/API", "PROMETHEUS_LISTEN_ADDRESS", 9090),
    Listener("alertmanager", "web/API", "ALERTMANAGER_LISTEN_ADDRESS", 9093),
)


def listener(service: str, purpose: str) -> Listener:
    for item in LISTENERS:
        if item.service == service and item.purpose == purpose:
            return item
    raise KeyError((service, purpose))


@dataclass(frozen=True)
class StackSettings:
    """Resolved locations and the environment handed to supervisord (and so to
    every service) and to the Prometheus template renderer."""

    repo: Path
    state_dir: Path
    timeout_s: float
    env: Mapping[str, str]

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    def log_file(self, service: str) -> Path:
        return self.logs_dir / f"{service}.log"

    @property
    def supervisor_conf(self) -> Path:
        return self.state_dir / "supervisord.conf"

    @property
    def prometheus_config(self) -> Path:
        return self.state_dir / "prometheus" / "prometheus.yml"

    @property
    def collector_overlay(self) -> Path:
        """OTLP auth/TLS merged over collector/config.yaml (``stack.exposure``)."""
        return self.state_dir / "collector" / "otlp.yaml"

    @property
    def alertmanager_config(self) -> Path:
        return self.repo / "alertmanager" / "alertmanager.yml"

    def url(self, service: str, purpose: str, path: str = "") -> str:
        return f"http://{listener(service, purpose).hostport(self.env)}{path}"


def load(environ: Mapping[str, str] | None = None, repo: Path = REPO_ROOT) -> StackSettings:
    """Settings from ``environ`` (default ``os.environ``), with native defaults."""
    base = dict(os.environ if environ is None else environ)
    state_dir = Path(base.get(STATE_DIR_ENV) or repo / ".state").resolve()
    timeout_s = float(base.get(TIMEOUT_ENV) or 90)

    env = dict(base)
    env[STATE_DIR_ENV] = str(state_dir)
    # OTLP intake: its own bind; token and certificates from <secrets>/otlp/ (stack.exposure).
    otlp_host = exposure.otlp_bind(base)
    otlp_host = f"[{otlp_host}]" if ":" in otlp_host else otlp_host
    for purpose, var in (
        ("gRPC", "COLLECTOR_OTLP_GRPC_ENDPOINT"),
        ("HTTP", "COLLECTOR_OTLP_HTTP_ENDPOINT"),
    ):
        env.setdefault(var, f"{otlp_host}:{listener('collector', f'OTLP/{purpose} receiver').port}")
    secrets_dir = Path(base.get(exposure.SECRETS_DIR_ENV) or state_dir / "secrets").resolve()
    env[exposure.SECRETS_DIR_ENV] = str(secrets_dir)
    for var, path in exposure.secret_paths(secrets_dir).items():
        env.setdefault(var, path)
    # Data directories the shared configs read (the Docker stack uses volumes).
    env.setdefault("COLLECTOR_STORAGE_DIR", str(state_dir / "collector" / "file_storage"))
    env.setdefault("JAEGER_BADGER_DIR", str(state_dir / "jaeger" / "badger"))
    env.setdefault("LOKI_DATA_DIR", str(state_dir / "loki"))
    # Retention: the same VOICEOBS_* knobs as the Docker stack.
    if base.get("VOICEOBS_STACK_TRACE_RETENTION"):
        env.setdefault("JAEGER_TRACE_TTL", base["VOICEOBS_STACK_TRACE_RETENTION"])
    if base.get("VOICEOBS_STACK_LOG_RETENTION"):
        env.setdefault("LOKI_RETENTION", base["VOICEOBS_STACK_LOG_RETENTION"])
    # Bound of each Collector exporter's disk queue (bytes), the same knob as on Docker.
    if base.get("VOICEOBS_STACK_QUEUE_MAX_BYTES"):
        env.setdefault("COLLECTOR_QUEUE_MAX_BYTES", base["VOICEOBS_STACK_QUEUE_MAX_BYTES"])
    if base.get("VOICEOBS_STACK_QUEUE_FSYNC"):
        env.setdefault("COLLECTOR_STORAGE_FSYNC", base["VOICEOBS_STACK_QUEUE_FSYNC"])
    env.setdefault("VOICEOBS_STACK_METRICS_RETENTION", "35d")
    env.setdefault("VOICEOBS_STACK_METRICS_RETENTION_SIZE", "5GB")
    # Where the Collector sends, following the backends' listeners.
    env.setdefault("JAEGER_OTLP_ENDPOINT", listener("jaeger", "OTLP/gRPC receiver").hostport(env))
    env.setdefault(
        "LOKI_OTLP_ENDPOINT", f"http://{listener('loki', 'HTTP API').hostport(env)}/otlp"
    )
    env.setdefault(
        "PROMETHEUS_REMOTE_WRITE_ENDPOINT",
        f"http://{listener('prometheus', 'web/API').hostport(env)}/api/v1/write",
    )
    # What Prometheus scrapes (prometheus/prometheus.yml.tmpl).
    targets = {
        "COLLECTOR_TELEMETRY_TARGET": ("collector", "own telemetry"),
        "PROMETHEUS_TARGET": ("prometheus", "web/API"),
        "ALERTMANAGER_TARGET": ("alertmanager", "web/API"),
        "JAEGER_METRICS_TARGET": ("jaeger", "own telemetry"),
        "LOKI_TARGET": ("loki", "HTTP API"),
    }
    for var, (service, purpose) in targets.items():
        env.setdefault(var, listener(service, purpose).hostport(env))
    return StackSettings(repo=repo, state_dir=state_dir, timeout_s=timeout_s, env=env)
