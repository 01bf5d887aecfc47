"""Each shared config passes its own tool's check, and the Prometheus template
renders for both the native and the Docker stack."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stack.render import RenderError, render
from stack.services import services
from stack.settings import StackSettings

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]


def check(settings: StackSettings, name: str) -> str:
    svc = next(s for s in services(settings) if s.name == name)
    assert svc.validate is not None
    proc = subprocess.run(
        svc.validate, env=dict(settings.env), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_collector_config_passes_otelcol_validate(stack_settings: StackSettings) -> None:
    check(stack_settings, "collector")


def test_collector_config_with_tempo_as_second_trace_backend_validates(
    stack_settings: StackSettings,
) -> None:
    """What the Docker stack's tempo profile sets (monitor.mk, compose.monitoring.yml)."""
    svc = next(s for s in services(stack_settings) if s.name == "collector")
    assert svc.validate is not None
    env = {
        **stack_settings.env,
        "VOICEOBS_STACK_TRACE_EXPORTERS": "[otlp_grpc/jaeger, otlp_grpc/tempo]",
    }
    proc = subprocess.run(svc.validate, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env["VOICEOBS_STACK_TRACE_EXPORTERS"] = "[otlp_grpc/tempo, otlp_grpc/nowhere]"
    proc = subprocess.run(svc.validate, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "otlp_grpc/nowhere" in proc.stdout + proc.stderr


def test_rendered_prometheus_config_passes_promtool(stack_settings: StackSettings) -> None:
    out = check(stack_settings, "prometheus")
    assert "SUCCESS" in out


def test_alertmanager_config_passes_amtool(stack_settings: StackSettings) -> None:
    out = check(stack_settings, "alertmanager")
    assert "SUCCESS" in out


def test_jaeger_and_loki_configs_validate(stack_settings: StackSettings) -> None:
    check(stack_settings, "jaeger")
    check(stack_settings, "loki")


def test_prometheus_template_renders_docker_service_names() -> None:
    template = (REPO / "prometheus" / "prometheus.yml.tmpl").read_text()
    docker = render(template, {"COLLECTOR_TELEMETRY_TARGET": "collector:8888"})
    native = render(template, {})
    assert '"collector:8888"' in docker
    assert '"127.0.0.1:8888"' in native
    assert "rules/*.yml" in native


def test_render_refuses_unset_variable_without_default() -> None:
    with pytest.raises(RenderError, match="LOKI_TARGET"):
        render("targets: [${LOKI_TARGET}]\n", {})
