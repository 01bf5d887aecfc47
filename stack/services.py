"""The five services of the native stack: how each is started, validated and
known to be ready. Commands point at the shared config files in the repository;
only data and logs go to the state directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stack import exposure
from stack.build import go_binaries
from stack.settings import LOOPBACK, StackSettings, listener


@dataclass(frozen=True)
class Service:
    name: str
    command: tuple[str, ...]
    ready_url: str
    validate: tuple[str, ...] | None
    priority: int  # supervisord start order (lower first)

    @property
    def binary(self) -> Path:
        return Path(self.command[0])


def external_url(settings: StackSettings, service: str) -> str:
    """The URL people open ``service`` at, for the links in alerts and notifications:
    VOICEOBS_STACK_<SERVICE>_URL, else its port on the loopback address."""
    explicit = settings.env.get(f"VOICEOBS_STACK_{service.upper()}_URL")
    if explicit:
        return explicit
    _, port = listener(service, "web/API").address(settings.env)
    return f"http://{LOOPBACK}:{port}"


def services(settings: StackSettings) -> list[Service]:
    """Backends first, the Collector last (its exporters retry anyway)."""
    repo, state = settings.repo, settings.state_dir
    go = go_binaries()
    collector = str(go["collector"].path)
    # The shared pipeline, then OTLP auth/TLS from the settings (stack.exposure).
    collector_configs = (
        "--config",
        str(repo / "collector" / "config.yaml"),
        "--config",
        str(settings.collector_overlay),
    )
    jaeger = str(go["jaeger"].path)
    jaeger_config = str(repo / "jaeger" / "config.yaml")
    loki = str(go["loki"].path)
    loki_args = (f"-config.file={repo / 'loki' / 'config.yaml'}", "-config.expand-env=true")
    prometheus_listen = settings.env.get("PROMETHEUS_LISTEN_ADDRESS") or "127.0.0.1:9090"
    alertmanager_listen = settings.env.get("ALERTMANAGER_LISTEN_ADDRESS") or "127.0.0.1:9093"
    return [
        Service(
            "loki",
            (loki, *loki_args),
            settings.url("loki", "HTTP API", "/ready"),
            (loki, *loki_args, "-verify-config=true"),
            10,
        ),
        Service(
            "jaeger",
            (jaeger, "--config", jaeger_config),
            settings.url("jaeger", "query HTTP API", "/api/services"),
            (jaeger, "validate", "--config", jaeger_config),
            10,
        ),
        Service(
            "prometheus",
            (
                str(go["prometheus"].path),
                f"--config.file={settings.prometheus_config}",
                f"--storage.tsdb.path={state / 'prometheus' / 'data'}",
                f"--storage.tsdb.retention.time={settings.env['VOICEOBS_STACK_METRICS_RETENTION']}",
                f"--storage.tsdb.retention.size={settings.env['VOICEOBS_STACK_METRICS_RETENTION_SIZE']}",
                f"--web.listen-address={prometheus_listen}",
                f"--web.external-url={external_url(settings, 'prometheus')}",  # alert links
                "--web.route-prefix=/",  # a proxy path in the URL moves no local endpoint
                "--enable-feature=exemplar-storage",
                # /-/reload and /-/quit only when asked; reload is SIGHUP (control.reload).
                *(
                    ["--web.enable-lifecycle"]
                    if exposure.flag(settings.env, exposure.LIFECYCLE_ENV)
                    else []
                ),
                "--web.enable-remote-write-receiver",  # the Collector pushes engine metrics
            ),
            settings.url("prometheus", "web/API", "/-/ready"),
            (
                str(go["prometheus"].path.with_name("promtool")),
                "check",
                "config",
                str(settings.prometheus_config),
            ),
            20,
        ),
        Service(
            "alertmanager",
            (
                str(go["alertmanager"].path),
                f"--config.file={settings.alertmanager_config}",
                f"--storage.path={state / 'alertmanager'}",
                f"--web.listen-address={alertmanager_listen}",
                f"--web.external-url={external_url(settings, 'alertmanager')}",  # links
                "--web.route-prefix=/",
                "--cluster.listen-address=",  # single node: no gossip port
            ),
            settings.url("alertmanager", "web/API", "/-/ready"),
            (
                str(go["alertmanager"].path.with_name("amtool")),
                "check-config",
                str(settings.alertmanager_config),
            ),
            20,
        ),
        Service(
            "collector",
            (collector, *collector_configs),
            settings.url("collector", "health_check", "/"),
            (collector, "validate", *collector_configs),
            30,
        ),
    ]
