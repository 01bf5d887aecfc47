"""The rules on real data: the demo engine -> our Collector build -> our Prometheus build.

Runs a private pipeline on free ports (so it never disturbs a running stack): the stack's
Prometheus with the remote-write receiver and prometheus/rules/, the Collector built by
`make stack-build` pushing to it, and `voiceobs demo --slow` as traffic. Then checks that
every recording rule the demo can feed produces series with the contract's labels, and that
the slow demo turns put TurnLatencyP95High on its way (pending: its `for` is 5 minutes).
Marked `stack` (about a minute); skipped when the Collector has not been built.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.collector_env import private_collector_env
from voiceobs import semconv

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.stack

# Recorded series the demo feeds (it has no circuit-breaker flips or telemetry drops).
EXPECTED_RECORDS = {
    "job_tenant_pipeline:voice_turn_latency_seconds:p50_rate5m",
    "job_tenant_pipeline:voice_turn_latency_seconds:p95_rate5m",
    "job_tenant_pipeline:voice_turn_latency_seconds:p99_rate5m",
    "job_pipeline:voice_turn_latency_seconds:p95_rate5m",
    "job_pipeline_provider:voice_stt_latency_seconds:p95_rate5m",
    "job_pipeline_provider:voice_llm_ttft_seconds:p95_rate5m",
    "job_pipeline_provider:voice_tts_ttfb_seconds:p95_rate5m",
    "job_tenant_pipeline:voice_calls:success_ratio_rate5m",
    "job_tenant_pipeline:voice_calls:error_ratio_rate5m",
    "job_tenant_pipeline:voice_call_cost_usd:per_call_minute_rate5m",
    "provider_component:voice_provider_requests:error_ratio_rate5m",
    "job_instance:process_memory_usage_bytes:ratio_limit",
}
SERVICE = "voiceobs-rules-live"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def _query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    answer = _get(url)
    assert answer and answer["status"] == "success", answer
    return list(answer["data"]["result"])


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


@pytest.fixture(scope="module")
def prometheus_with_demo_data(
    tmp_path_factory: pytest.TempPathFactory, prometheus: Path
) -> Iterator[str]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from stack.build import go_binaries

    collector = Path(go_binaries()["collector"].path)
    if not collector.exists():
        pytest.skip("the Collector is not built yet: make stack-build")

    tmp = tmp_path_factory.mktemp("rules-live")
    (tmp / "rules").symlink_to(ROOT / "prometheus" / "rules")
    p = {name: _port() for name in ("prom", "engine")}
    prom_url = f"http://127.0.0.1:{p['prom']}"
    collector_env, collector_ports = private_collector_env(
        tmp,
        traces="127.0.0.1:9",  # traces and logs have nowhere to go here
        logs="http://127.0.0.1:9/otlp",
        remote_write=f"{prom_url}/api/v1/write",
    )
    p.update(collector_ports)
    config = {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        # as the stacks' Prometheus: the Collector's remote-write WAL may resend older samples
        "storage": {"tsdb": {"out_of_order_time_window": "2h"}},
        "rule_files": ["rules/*.yml"],
        "scrape_configs": [
            {"job_name": "otelcol", "static_configs": [{"targets": [f"127.0.0.1:{p['self']}"]}]}
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    logs = {name: (tmp / f"{name}.log").open("w") for name in ("prometheus", "collector", "demo")}
    procs = [
        subprocess.Popen(
            [str(prometheus), f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{p['prom']}",
             "--enable-feature=exemplar-storage", "--web.enable-remote-write-receiver"],
            stdout=logs["prometheus"], stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [str(collector), "--config", str(ROOT / "collector" / "config.yaml")],
            env=collector_env, stdout=logs["collector"], stderr=subprocess.STDOUT,
        ),
    ]  # fmt: skip
    try:
        assert _wait(lambda: _get(f"{prom_url}/api/v1/status/buildinfo") is not None, 30)
        assert _wait(lambda: _get(f"http://127.0.0.1:{p['health']}/") is not None, 30)
        demo_env = {  # the user's environment as it is, plus where this run's telemetry goes
            **os.environ,
            "OTEL_SERVICE_NAME": SERVICE,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{p['grpc']}",
            "VOICEOBS_METRIC_EXPORT_INTERVAL_MS": "1000",
        }
        demo = subprocess.run(
            [sys.executable, "-m", "voiceobs.cli", "demo", "--slow", "--port", str(p["engine"]),
             "--duration", "30", "--calls", "90", "--rate", "3", "--concurrency", "12",
             "--prefix", "rules-live"],
            env=demo_env, cwd=ROOT, stdout=logs["demo"], stderr=subprocess.STDOUT, timeout=150,
        )  # fmt: skip
        assert demo.returncode == 0, (tmp / "demo.log").read_text()[-2000:]
        # The last push reaches Prometheus through the Collector's disk queue and remote
        # write; then the rules need evaluations (every 2 s): wait for a recorded series of
        # this run, then two more rounds.
        recorded = f'job_pipeline:voice_turn_latency_seconds:p95_rate5m{{job="{SERVICE}"}}'
        _wait(lambda: _query(prom_url, recorded), 60)
        time.sleep(4)
        yield prom_url
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)
        for log in logs.values():
            log.close()


def test_recording_rules_produce_series_from_real_engine_data(
    prometheus_with_demo_data: str,
) -> None:
    recorded = {
        series["metric"]["__name__"]
        for series in _query(
            prometheus_with_demo_data, f'{{__name__=~".+:.+:.+", job="{SERVICE}"}}'
        )
    }
    recorded |= {
        s["metric"]["__name__"]
        for s in _query(prometheus_with_demo_data, '{__name__=~"provider_component:.+"}')
    }
    assert recorded >= EXPECTED_RECORDS, sorted(EXPECTED_RECORDS - recorded)


def test_recorded_ratios_and_percentiles_are_sane(prometheus_with_demo_data: str) -> None:
    for name in ("success_ratio_rate5m", "error_ratio_rate5m"):
        values = [float(s["value"][1]) for s in _query(
            prometheus_with_demo_data, f"job_tenant_pipeline:voice_calls:{name}")]  # fmt: skip
        assert values and all(0.0 <= v <= 1.0 for v in values), (name, values)
    p50 = _query(prometheus_with_demo_data, "job_pipeline:voice_turn_latency_seconds:p50_rate5m")
    p99 = {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in _query(
        prometheus_with_demo_data, "job_pipeline:voice_turn_latency_seconds:p99_rate5m")}  # fmt: skip
    for series in p50:
        key = tuple(sorted({**series["metric"], "__name__": series["metric"]["__name__"].replace(
            "p50", "p99")}.items()))  # fmt: skip
        assert 0.0 < float(series["value"][1]) <= p99[key]
    cost = _query(prometheus_with_demo_data,
                  "job_tenant_pipeline:voice_call_cost_usd:per_call_minute_rate5m")  # fmt: skip
    assert cost and all(float(s["value"][1]) > 0 for s in cost)


def test_recorded_series_carry_only_contract_labels(prometheus_with_demo_data: str) -> None:
    # Bounded labels only: the contract's (tenant, pipeline, provider, model, direction,
    # outcome ...), never a call id; `le` where a rule keeps bucket rates (heatmaps).
    contract = {label for spec in semconv.VOICE_METRICS for label in spec.labels}
    allowed = {"__name__", "job", "instance", "le", *contract}
    assert semconv.CALL_ID.replace(".", "_") not in allowed
    for series in _query(prometheus_with_demo_data, f'{{__name__=~".+:.+:.+", job="{SERVICE}"}}'):
        assert set(series["metric"]) <= allowed, series["metric"]


def test_slow_demo_turns_put_turn_latency_alert_pending(prometheus_with_demo_data: str) -> None:
    selector = f'ALERTS{{alertname="TurnLatencyP95High", job="{SERVICE}"}}'
    # The last points go through the Collector's disk queue and remote write, then a recording
    # rule and the alert rule each need an evaluation: a bounded wait, not a fixed sleep.
    _wait(lambda: _query(prometheus_with_demo_data, selector), 60)
    alerts = _query(prometheus_with_demo_data, selector)
    assert alerts, "the --slow demo's P95 is above 0.8 s: the alert should be pending"
    assert {a["metric"]["alertstate"] for a in alerts} <= {"pending", "firing"}
