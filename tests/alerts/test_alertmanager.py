"""Alertmanager: the config is valid, every route resolves to the receivers it should, secrets
come from files only, and a real Alertmanager inhibits and notifies as designed.

Route cases use `amtool config routes test --verify.receivers=…`; the live tests run the native
stack's Alertmanager (built by stack/build.py at the Docker image's version) on a free port with
a copy of the config whose secret files, webhook and PagerDuty URLs point at a local capture
server.
"""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from stack.control import free_port

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stack.services import external_url  # noqa: E402
from stack.settings import load  # noqa: E402

ALERTMANAGER_CONFIG = Path(__file__).resolve().parents[2] / "alertmanager" / "alertmanager.yml"
SECRETS_DIR = "/etc/alertmanager/secrets/"
WEBHOOK_URL = "http://127.0.0.1:5001/alerts"
# The native stack's defaults: links in notifications must open these, not a dead address.
PROMETHEUS_URL = external_url(load({}), "prometheus")
ALERTMANAGER_URL = external_url(load({}), "alertmanager")

# (labels, receivers in the order Alertmanager notifies them). One case per route at least.
ROUTE_CASES: list[tuple[dict[str, str], str]] = [
    ({"alertname": "ProviderDown", "severity": "critical", "team": "voice"}, "webhook,pager,chat"),
    ({"alertname": "WorkerMemoryCritical", "severity": "critical", "team": "platform"},
     "webhook,pager,chat"),
    ({"alertname": "TurnLatencyP95High", "severity": "warning", "team": "voice"}, "webhook,chat"),
    ({"alertname": "TargetDown", "severity": "warning", "team": "platform"}, "webhook,chat"),
    ({"alertname": "TlsCertificateExpiring", "severity": "warning", "team": "security"},
     "webhook,security"),
    ({"alertname": "CertificateCompromised", "severity": "critical", "team": "security"},
     "webhook,security-pager"),
    ({"alertname": "CostPerMinuteHigh", "severity": "warning", "team": "product"},
     "webhook,product"),
    ({"alertname": "Watchdog", "severity": "info", "team": "platform"}, "deadman"),
    ({"alertname": "SomethingToKnow", "severity": "info", "team": "voice"}, "info"),
    ({"alertname": "Unlabelled"}, "chat"),
]  # fmt: skip


def _config() -> dict[str, Any]:
    data = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}.{key}", value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def test_config_passes_amtool_check(amtool: str) -> None:
    result = subprocess.run(
        [amtool, "check-config", str(ALERTMANAGER_CONFIG)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("labels", "receivers"), ROUTE_CASES, ids=[c[1] for c in ROUTE_CASES])
def test_route_resolves_to_receivers(amtool: str, labels: dict[str, str], receivers: str) -> None:
    result = subprocess.run(
        [
            amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
            f"--verify.receivers={receivers}", *(f"{k}={v}" for k, v in labels.items()),
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, f"{labels}: got {result.stdout.strip()}, want {receivers}"


def test_every_receiver_has_a_route_case() -> None:
    reached = {name for _, receivers in ROUTE_CASES for name in receivers.split(",")}
    assert {r["name"] for r in _config()["receivers"]} == reached


def test_critical_and_warning_of_team_voice_reach_the_local_webhook() -> None:
    webhook = next(r for r in _config()["receivers"] if r["name"] == "webhook")
    assert [c["url"] for c in webhook["webhook_configs"]] == [WEBHOOK_URL]
    voice_cases = [r for labels, r in ROUTE_CASES if labels.get("team") == "voice"]
    assert all(r.startswith("webhook") for r in voice_cases if r != "info")


def test_secrets_are_read_from_files_only() -> None:
    inline = {"api_url", "slack_api_url", "routing_key", "service_key", "auth_password",
              "smtp_auth_password", "bot_token", "api_key"}  # fmt: skip
    files = []
    for path, value in _walk(_config()):
        key = path.rsplit(".", 1)[-1]
        assert key not in inline, f"{path}: secrets must come from a *_file field"
        if key.endswith("_file"):
            files.append(value)
    assert files, "no secret files configured"
    assert all(str(f).startswith(SECRETS_DIR) for f in files), files


def test_inhibition_rules_cover_outages_and_severity_pairs() -> None:
    rules = _config()["inhibit_rules"]
    sources = [" ".join(r["source_matchers"]) for r in rules]
    assert any("ServiceDown" in s for s in sources)
    assert any("TargetDown" in s for s in sources)
    pair = next(r for r in rules if 'severity="critical"' in r["source_matchers"])
    assert {"kind", "job", "instance"} <= set(pair["equal"])
    assert 'kind=~".+"' in pair["source_matchers"], "alerts without kind must not inhibit"


# --- live Alertmanager ---------------------------------------------------------------------


class _Capture(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Capture.received.append((self.path, json.loads(body or b"{}")))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def live_alertmanager(tmp_path: Path, alertmanager: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    _Capture.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    capture = f"http://127.0.0.1:{server.server_address[1]}"

    text = ALERTMANAGER_CONFIG.read_text(encoding="utf-8")
    text = text.replace(SECRETS_DIR, f"{tmp_path}/secrets/")
    text = text.replace(WEBHOOK_URL, f"{capture}/webhook")
    config = yaml.safe_load(text)
    config["global"]["pagerduty_url"] = f"{capture}/pagerduty"
    config["global"]["smtp_smarthost"] = "127.0.0.1:1"
    config["templates"] = [str(ALERTMANAGER_CONFIG.parent / t) for t in config["templates"]]
    for route in [config["route"], *config["route"]["routes"]]:  # notify quickly
        if "group_wait" in route or route is config["route"]:
            route["group_wait"] = "1s"
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "slack_api_url").write_text(f"{capture}/slack")
    (tmp_path / "secrets" / "deadman_url").write_text(f"{capture}/deadman\n")
    for name in ("pagerduty_routing_key", "pagerduty_security_routing_key", "smtp_password"):
        (tmp_path / "secrets" / name).write_text("test-secret")
    (tmp_path / "am.yml").write_text(yaml.safe_dump(config))

    port = free_port()
    proc = subprocess.Popen(
        [alertmanager, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={ALERTMANAGER_URL}",
         "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "am.log").open("w"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        ready = _wait(lambda: _get(f"{url}/-/ready") is not None, 15)
        assert ready, (tmp_path / "am.log").read_text()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        server.shutdown()


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body = response.read()
            return json.loads(body) if body.startswith((b"[", b"{")) else body
    except OSError:
        return None


def _post_alerts(url: str, alerts: list[dict[str, str]]) -> None:
    payload = [
        {
            "labels": a,
            "annotations": {
                "summary": f"{a['alertname']} summary",
                "description": "value 0.93",
                "runbook_url": f"docs/runbooks.md#{a['alertname'].lower()}",
            },
        }
        for a in alerts
    ]
    data = json.dumps(payload).encode()
    request = urllib.request.Request(
        f"{url}/api/v2/alerts", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


def test_live_alertmanager_inhibits_and_notifies(live_alertmanager: str) -> None:
    memory = {"team": "platform", "kind": "worker_memory", "job": "engine", "instance": "w1"}
    _post_alerts(live_alertmanager, [
        {"alertname": "WorkerMemoryCritical", "severity": "critical", **memory},
        {"alertname": "WorkerMemoryHigh", "severity": "warning", **memory},
        {"alertname": "WorkerMemoryHigh", "severity": "warning", **memory, "instance": "w2"},
        {"alertname": "ServiceDown", "severity": "critical", "team": "platform",
         "kind": "availability", "job": "billing"},
        {"alertname": "ApiResponseTimeHigh", "severity": "warning", "team": "platform",
         "kind": "api_latency", "job": "billing"},
        {"alertname": "ProviderDown", "severity": "critical", "team": "voice", "kind": "provider",
         "provider": "deepgram", "component": "stt"},
        {"alertname": "CircuitBreakerOpen", "severity": "warning", "team": "voice",
         "kind": "provider", "provider": "deepgram", "job": "engine", "instance": "w1"},
    ])  # fmt: skip

    def states() -> dict[tuple[str, str], str]:
        alerts = _get(f"{live_alertmanager}/api/v2/alerts") or []
        return {(a["labels"]["alertname"], a["labels"].get("instance", "")): a["status"]["state"]
                for a in alerts}  # fmt: skip

    assert _wait(lambda: len(states()) == 7, 10), states()
    got = states()
    assert got[("WorkerMemoryHigh", "w1")] == "suppressed"  # its critical twin fires
    assert got[("WorkerMemoryHigh", "w2")] == "active"  # other worker: not silenced
    assert got[("ApiResponseTimeHigh", "")] == "suppressed"  # its service is down
    assert got[("CircuitBreakerOpen", "w1")] == "suppressed"  # provider down explains it
    assert got[("WorkerMemoryCritical", "w1")] == "active"

    def paths() -> set[str]:
        return {path for path, _ in _Capture.received}

    def webhook_alerts() -> list[str]:
        return [a["labels"]["alertname"] for p, b in _Capture.received if p == "/webhook"
                for a in b["alerts"]]  # fmt: skip

    wanted = {"WorkerMemoryCritical", "WorkerMemoryHigh", "ServiceDown", "ProviderDown"}
    assert _wait(lambda: wanted <= set(webhook_alerts()), 20), webhook_alerts()
    assert _wait(lambda: {"/slack", "/pagerduty"} <= paths(), 20), paths()
    # Inhibited alerts are never sent: only w2's WorkerMemoryHigh, no ApiResponseTimeHigh.
    assert webhook_alerts().count("WorkerMemoryHigh") == 1
    assert "ApiResponseTimeHigh" not in webhook_alerts()
    assert "CircuitBreakerOpen" not in webhook_alerts()
    slack_text = " ".join(json.dumps(b) for p, b in _Capture.received if p == "/slack")
    assert "blob/main/docs/runbooks.md#" in slack_text, "runbook links are made absolute"


def test_live_collector_down_inhibits_missing_telemetry_of_every_service(
    live_alertmanager: str,
) -> None:
    """Services' telemetry stops when the Collector dies: page for the Collector, not for each."""

    def states() -> dict[tuple[str, str], str]:
        alerts = _get(f"{live_alertmanager}/api/v2/alerts") or []
        return {(a["labels"]["alertname"], a["labels"]["job"]): a["status"]["state"]
                for a in alerts}  # fmt: skip

    missing = {"alertname": "ServiceTelemetryMissing", "severity": "critical",
               "team": "platform", "kind": "telemetry"}  # fmt: skip
    _post_alerts(live_alertmanager, [{**missing, "job": "engine"}])
    assert _wait(lambda: states().get(("ServiceTelemetryMissing", "engine")) == "active", 10)

    collector_down = {"alertname": "ServiceDown", "severity": "critical", "team": "platform",
                      "kind": "availability", "job": "otelcol"}  # fmt: skip
    _post_alerts(live_alertmanager, [collector_down, {**missing, "job": "billing"}])

    def suppressed() -> set[tuple[str, str]]:
        return {key for key, state in states().items() if state == "suppressed"}

    both = {("ServiceTelemetryMissing", "engine"), ("ServiceTelemetryMissing", "billing")}
    assert _wait(lambda: suppressed() == both, 10), states()
    assert states()[("ServiceDown", "otelcol")] == "active"


def test_watchdog_reaches_only_the_dead_mans_switch_every_5_minutes() -> None:
    route = next(r for r in _config()["route"]["routes"] if r["receiver"] == "deadman")
    assert route["matchers"] == ['alertname="Watchdog"']
    assert "continue" not in route, "the heartbeat goes nowhere else"
    assert route["repeat_interval"] == "5m"
    assert route["group_interval"] == "1m", "repeats are checked once per group_interval"
    deadman = next(r for r in _config()["receivers"] if r["name"] == "deadman")
    assert deadman["webhook_configs"] == [
        {"url_file": f"{SECRETS_DIR}deadman_url", "send_resolved": False, "max_alerts": 1}
    ]


def test_live_watchdog_pings_the_dead_mans_switch_from_its_secret_file(
    live_alertmanager: str,
) -> None:
    """The Watchdog reaches the URL in secrets/deadman_url, and no other receiver."""
    watchdog = {"alertname": "Watchdog", "severity": "info", "team": "platform",
                "kind": "watchdog"}  # fmt: skip
    _post_alerts(live_alertmanager, [watchdog])

    def pings() -> list[dict[str, Any]]:
        return [body for path, body in _Capture.received if path == "/deadman"]

    assert _wait(lambda: len(pings()) == 1, 20), _Capture.received
    assert [a["labels"]["alertname"] for a in pings()[0]["alerts"]] == ["Watchdog"]
    assert pings()[0]["receiver"] == "deadman"
    assert pings()[0]["externalURL"] == ALERTMANAGER_URL
    assert {path for path, _ in _Capture.received} == {"/deadman"}


@pytest.fixture
def live_prometheus(live_alertmanager: str, tmp_path: Path, prometheus: Path) -> Iterator[str]:
    """The stack's Prometheus with our rules (``for`` cut to 0s), one dead scrape target, and
    the live Alertmanager above as its alert receiver."""
    rules_dir = tmp_path / "prom" / "rules"
    rules_dir.mkdir(parents=True)
    for path in (ALERTMANAGER_CONFIG.parents[1] / "prometheus" / "rules").glob("*.yml"):
        text = re.sub(r"(?m)^(\s+)for: \S+$", r"\1for: 0s", path.read_text("utf-8"))
        (rules_dir / path.name).write_text(text, encoding="utf-8")
    am = live_alertmanager.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules/*.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am]}]}]},
        "scrape_configs": [
            {"job_name": "engine", "static_configs": [{"targets": [f"127.0.0.1:{free_port()}"]}]}
        ],
    }
    (tmp_path / "prom" / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log = tmp_path / "prometheus.log"
    proc = subprocess.Popen(
        [str(prometheus), f"--config.file={tmp_path / 'prom' / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'prom' / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={PROMETHEUS_URL}",
         "--enable-feature=exemplar-storage"],
        stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        assert _wait(lambda: _get(f"{url}/-/ready") is not None, 30), log.read_text()[-3000:]
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_real_prometheus_loads_the_rules_and_a_dead_service_pages_once(
    live_prometheus: str, live_alertmanager: str
) -> None:
    """Rules load in a real Prometheus; a dead job fires TargetDown and ServiceDown, and
    Alertmanager notifies ServiceDown while it inhibits the TargetDown of the same job."""
    rules = _get(f"{live_prometheus}/api/v1/rules")
    groups = rules["data"]["groups"]
    assert {g["name"] for g in groups} >= {
        "voiceobs-recording-turn-latency",
        "voiceobs-alerts-availability",
    }
    assert all(r["health"] != "err" for g in groups for r in g["rules"]), groups

    def alert_states() -> dict[str, str]:
        alerts = _get(f"{live_alertmanager}/api/v2/alerts") or []
        return {a["labels"]["alertname"]: a["status"]["state"] for a in alerts}

    assert _wait(lambda: {"TargetDown", "ServiceDown"} <= set(alert_states()), 30), alert_states()
    assert alert_states()["TargetDown"] == "suppressed"
    assert alert_states()["ServiceDown"] == "active"

    def webhook_alerts() -> set[str]:
        return {a["labels"]["alertname"] for p, body in _Capture.received if p == "/webhook"
                for a in body["alerts"]}  # fmt: skip

    assert _wait(lambda: "ServiceDown" in webhook_alerts(), 20), _Capture.received
    assert "TargetDown" not in webhook_alerts()
    # Links in the notification open Alertmanager and the alert's query in Prometheus.
    payload = next(b for p, b in _Capture.received if p == "/webhook")
    assert payload["externalURL"] == ALERTMANAGER_URL
    generator = next(a["generatorURL"] for a in payload["alerts"])
    assert generator.startswith(f"{PROMETHEUS_URL}/graph?g0.expr="), generator
