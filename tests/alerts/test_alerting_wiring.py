"""How each stack wires alerting around the shared configs: Prometheus scrapes Alertmanager
(for AlertmanagerNotificationsFailing), both run with an external URL so links in alerts and
notifications open, and the Docker stack's local webhook leaves the Alertmanager container.

Static checks of compose.monitoring.yml, monitor.mk (dry run) and the native stack's service
definitions; the rendered Docker Alertmanager config is checked with amtool.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stack import alertmanager_docker  # noqa: E402
from stack.build import ALERTMANAGER_VERSION, PROMETHEUS_VERSION  # noqa: E402
from stack.render import render  # noqa: E402
from stack.services import services  # noqa: E402
from stack.settings import load  # noqa: E402

ALERTMANAGER_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
PROMETHEUS_TEMPLATE = ROOT / "prometheus" / "prometheus.yml.tmpl"


@pytest.mark.parametrize(
    ("built", "version"),
    [("prometheus", PROMETHEUS_VERSION), ("alertmanager", ALERTMANAGER_VERSION)],
)
def test_the_native_build_is_the_docker_image_version(
    built: str, version: str, request: pytest.FixtureRequest
) -> None:
    """One version for both stacks: rules, tests and config see one engine."""
    compose = (ROOT / "compose.monitoring.yml").read_text("utf-8")
    match = re.search(rf"image: prom/{built}:v([0-9.]+)", compose)
    assert match, f"compose.monitoring.yml pins no prom/{built} image"
    assert match.group(1) == version
    binary = request.getfixturevalue(built)
    result = subprocess.run([binary, "--version"], capture_output=True, text=True)
    assert f"version {version} " in result.stdout + result.stderr


def _compose_service(name: str) -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "compose.monitoring.yml").read_text(encoding="utf-8"))
    service = compose["services"][name]
    assert isinstance(service, dict)
    return service


def _flag(command: list[str] | tuple[str, ...], name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"{name}=")]
    assert len(values) == 1, f"{name} given {len(values)} times in {command}"
    return values[0]


def _native_commands(env: dict[str, str]) -> dict[str, tuple[str, ...]]:
    return {svc.name: svc.command for svc in services(load(env))}


def _docker_render_env() -> dict[str, str]:
    """The variables `make monitor-render` gives the Prometheus template renderer."""
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", "-f", "Makefile", "monitor-render", "DRY_RUN=1"],
        cwd=ROOT, capture_output=True, text=True, env={"PATH": os.environ["PATH"]},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if "stack/render.py" in x)
    words = shlex.split(line)
    return dict(w.split("=", 1) for w in words[: words.index("python3")])


def _scrape_targets(config_text: str, job: str) -> list[str]:
    config = yaml.safe_load(config_text)
    scrape = next(c for c in config["scrape_configs"] if c["job_name"] == job)
    return [t for static in scrape["static_configs"] for t in static["targets"]]


# --- Prometheus scrapes Alertmanager ---------------------------------------------------------


def test_native_prometheus_scrapes_the_native_alertmanager() -> None:
    settings = load({})
    native = render(PROMETHEUS_TEMPLATE.read_text(encoding="utf-8"), settings.env)
    am_listen = _flag(_native_commands({})["alertmanager"], "--web.listen-address")
    assert _scrape_targets(native, "alertmanager") == [am_listen]


def test_docker_prometheus_scrapes_the_alertmanager_container() -> None:
    docker = render(PROMETHEUS_TEMPLATE.read_text(encoding="utf-8"), _docker_render_env())
    port = _flag(_compose_service("alertmanager")["command"], "--web.listen-address").split(":")[1]
    assert _scrape_targets(docker, "alertmanager") == [f"alertmanager:{port}"]


# --- external URLs: links in notifications ---------------------------------------------------


def test_native_stack_gives_prometheus_and_alertmanager_their_loopback_url_by_default() -> None:
    commands = _native_commands({})
    assert _flag(commands["prometheus"], "--web.external-url") == "http://127.0.0.1:9090"
    assert _flag(commands["alertmanager"], "--web.external-url") == "http://127.0.0.1:9093"


def test_a_path_in_the_external_url_moves_no_endpoint() -> None:
    """Health checks, scrapes and the alerting API stay at / behind a proxy path."""
    commands = _native_commands({"VOICEOBS_STACK_PROMETHEUS_URL": "https://ops.example.com/prom"})
    for name in ("prometheus", "alertmanager"):
        assert _flag(commands[name], "--web.route-prefix") == "/"
        assert _flag(_compose_service(name)["command"], "--web.route-prefix") == "/"


def test_native_external_urls_follow_the_listen_port_and_the_settings() -> None:
    moved = _native_commands({"PROMETHEUS_LISTEN_ADDRESS": "0.0.0.0:19090"})
    assert _flag(moved["prometheus"], "--web.external-url") == "http://127.0.0.1:19090"
    public = _native_commands({
        "VOICEOBS_STACK_PROMETHEUS_URL": "https://prometheus.voice.example.com",
        "VOICEOBS_STACK_ALERTMANAGER_URL": "https://alerts.voice.example.com",
    })  # fmt: skip
    assert _flag(public["prometheus"], "--web.external-url") == (
        "https://prometheus.voice.example.com"
    )
    assert _flag(public["alertmanager"], "--web.external-url") == "https://alerts.voice.example.com"


@pytest.mark.parametrize(
    ("service", "variable", "port"),
    [("prometheus", "VOICEOBS_STACK_PROMETHEUS_URL", 9090),
     ("alertmanager", "VOICEOBS_STACK_ALERTMANAGER_URL", 9093)],
)  # fmt: skip
def test_docker_services_get_an_external_url_setting_defaulting_to_loopback(
    service: str, variable: str, port: int
) -> None:
    command = _compose_service(service)["command"]
    assert _flag(command, "--web.external-url") == f"${{{variable}:-http://127.0.0.1:{port}}}"


# --- the Docker stack's local webhook --------------------------------------------------------


def _webhook_urls(config_text: str) -> list[str]:
    config = yaml.safe_load(config_text)
    webhook = next(r for r in config["receivers"] if r["name"] == "webhook")
    return [c["url"] for c in webhook["webhook_configs"]]


def test_native_config_keeps_the_local_webhook_on_loopback() -> None:
    native = ALERTMANAGER_CONFIG.read_text(encoding="utf-8")
    assert _webhook_urls(native) == [alertmanager_docker.NATIVE_WEBHOOK_URL]


def test_docker_config_sends_the_webhook_to_the_docker_host_by_default() -> None:
    docker = alertmanager_docker.docker_config(ALERTMANAGER_CONFIG.read_text("utf-8"), {})
    assert _webhook_urls(docker) == ["http://host.docker.internal:5001/alerts"]
    assert "127.0.0.1" not in docker.split("\nreceivers:")[1], "no receiver may stay on loopback"
    assert yaml.safe_load(docker)["templates"] == ["/etc/alertmanager/templates/*.tmpl"]
    # Only those two lines differ from the repository's file.
    native_lines = ALERTMANAGER_CONFIG.read_text("utf-8").splitlines()
    assert sum(a != b for a, b in zip(native_lines, docker.splitlines(), strict=True)) == 2


def test_docker_webhook_url_comes_from_the_setting(tmp_path: Path, amtool: str) -> None:
    url = "https://hooks.voice.example.com/alertmanager?team=voice&x=1"
    out = alertmanager_docker.write(
        ALERTMANAGER_CONFIG, tmp_path / "alertmanager.yml", {alertmanager_docker.WEBHOOK_ENV: url}
    )
    assert _webhook_urls(out.read_text(encoding="utf-8")) == [url]
    check = subprocess.run([amtool, "check-config", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    routes = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={out}",
         "--verify.receivers=webhook,pager,chat", "severity=critical", "team=voice"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert routes.returncode == 0, routes.stdout + routes.stderr


@pytest.mark.parametrize("bad", ["host.docker.internal:5001/alerts", "ftp://x/alerts", "http://"])
def test_a_bad_webhook_setting_is_refused_naming_the_variable(bad: str) -> None:
    with pytest.raises(alertmanager_docker.AlertmanagerConfigError, match=re.escape(bad)) as err:
        alertmanager_docker.webhook_url({alertmanager_docker.WEBHOOK_ENV: bad})
    assert alertmanager_docker.WEBHOOK_ENV in str(err.value)


def test_monitor_render_writes_the_docker_alertmanager_config_the_container_reads() -> None:
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", "-f", "Makefile", "monitor-render", "DRY_RUN=1"],
        cwd=ROOT, capture_output=True, text=True, env={"PATH": os.environ["PATH"]},
    )  # fmt: skip
    line = next(x for x in result.stdout.splitlines() if "alertmanager_docker.py" in x)
    output = Path(shlex.split(line)[-1])
    service = _compose_service("alertmanager")
    mounts = {v.split(":")[0]: v.split(":")[1] for v in service["volumes"] if isinstance(v, str)}
    container_dir = mounts[f"./{output.parent}"]
    assert _flag(service["command"], "--config.file") == f"{container_dir}/{output.name}"
    # The default URL names the Docker host, which Linux only resolves with this entry.
    assert "host.docker.internal:host-gateway" in service["extra_hosts"]
