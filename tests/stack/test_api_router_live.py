"""The dashboard API against the live native stack after a short demo run: every endpoint
answers with the run's own figures, calls, turns and log lines; a tenant's credential reads
only its tenant; a backend that is down is named; and each endpoint's p95 is recorded."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stack.control import free_port
from stack.settings import StackSettings
from tests.stack.api_support import (
    ACME_KEY,
    ADMIN_KEY,
    GLOBEX_KEY,
    api_settings,
    ratable_pipelines,
)
from tests.stack.test_e2e_demo import DemoRun, jaeger_traces_of_call, tags
from voiceobs.api import create_app

pytestmark = pytest.mark.stack
TENANTS = {"acme", "globex", "initech"}


@pytest.fixture(scope="module")
def run(api_demo: DemoRun) -> DemoRun:
    return api_demo


@pytest.fixture(scope="module")
def client(stack: StackSettings, run: DemoRun) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings(stack, run.service))) as client:
        yield client


def get(client: TestClient, path: str, key: str = ADMIN_KEY, **params: Any) -> Any:
    response = client.get(path, params=params, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.json()


def calls_of(run: DemoRun, tenant: str) -> list[dict[str, Any]]:
    return [c for c in run.calls if c["tenant"] == tenant]


def test_latency_percentiles_per_pipeline_cover_every_demo_pipeline(
    stack: StackSettings, client: TestClient, run: DemoRun
) -> None:
    body = get(client, "/api/dashboard/metrics/latency", window="5m")
    ratable = ratable_pipelines(stack, run.service, at=body["evaluated_at"])
    assert {p["pipeline"] for p in body["pipelines"]} == ratable
    slowest = max(run.latencies)
    for row in body["pipelines"]:
        turn = row["turn"]
        assert 0 < turn["p50"] <= turn["p95"] <= turn["p99"] <= slowest * 1.5, row
        for part in ("eou_delay", "stt", "llm_ttft", "tts_ttfb"):
            assert row[part]["p95"] is not None and row[part]["p95"] > 0, (part, row)
    assert body["missing"] == []


def test_overview_reads_the_recording_rules_and_the_run_s_calls(
    stack: StackSettings, client: TestClient, run: DemoRun
) -> None:
    body = get(client, "/api/dashboard/metrics")
    assert {p["pipeline"] for p in body["pipelines"]} <= {c["pipeline"] for c in run.calls}
    recorded = {p["pipeline"] for p in body["pipelines"] if p["turn_latency"]["p95"]}
    # The recording rules' per-pipeline quantiles: only pipelines with a turn rate have one.
    # The rules' last evaluation, read as of generated_at, ran up to one evaluation interval
    # (15 s) before it: its 5-minute window lies inside the 5.5 minutes before generated_at.
    ratable = ratable_pipelines(stack, run.service, at=body["generated_at"], window="330s")
    assert recorded and recorded <= ratable
    assert body["calls_per_minute"] > 0
    assert body["success_rate"] is not None and 0 <= body["success_rate"] <= 1
    assert body["cost_per_minute_usd"] > 0
    assert body["turn_latency"]["p95"] > 0


def test_calls_report_counts_each_call_of_the_run_once(client: TestClient, run: DemoRun) -> None:
    body = get(client, "/api/dashboard/metrics/calls", window="1h")
    # Exact, not extrapolated: a series' zero start point and `anchored` make 5 calls read 5.
    assert body["by_status"] == dict(Counter(c["status"] for c in run.calls))
    assert body["total"] == len(run.calls)
    served = body["by_status"].get("completed", 0) + body["by_status"].get("transferred", 0)
    assert body["success_rate"] == pytest.approx(served / body["total"])
    if any(c["status"] == "failed" for c in run.calls):
        assert body["failure_reasons"]


def test_cost_per_tenant_component_and_month(client: TestClient, run: DemoRun) -> None:
    body = get(client, "/api/dashboard/metrics/cost", window="1h")
    assert body["total_usd"] > 0 and body["per_call_usd"] > 0 and body["per_call_minute_usd"] > 0
    assert set(body["by_tenant"]) == {c["tenant"] for c in run.calls}
    assert {"stt", "llm", "tts"} <= set(body["by_component"])
    assert body["by_month"][0]["month"] == time.strftime("%Y-%m", time.gmtime())
    assert body["by_month"][0]["usd"] > 0


def test_call_volume_has_the_run_s_calls(client: TestClient, run: DemoRun) -> None:
    body = get(client, "/api/dashboard/call-volume", hours=1)
    assert {s["status"] for s in body["series"]} <= {c["status"] for c in run.calls}
    # The steps tile the hour without extrapolation: together they count each call once.
    assert sum(v for s in body["series"] for _, v in s["points"]) == len(run.calls)


def test_recent_activity_lists_every_call_with_its_trace_and_status(
    client: TestClient, run: DemoRun
) -> None:
    body = get(client, "/api/dashboard/recent-activity", limit=100)
    listed = {c["call_id"]: c for c in body["calls"]}
    for call in run.calls:
        assert listed[call["call_id"]]["trace_id"] == call["trace_id"]
        assert listed[call["call_id"]]["status"] == call["status"]
        assert listed[call["call_id"]]["tenant"] == call["tenant"]


def test_call_detail_has_its_turns_latencies_logs_cost_and_status(
    stack: StackSettings, client: TestClient, run: DemoRun
) -> None:
    call = max(run.calls, key=lambda c: len(c["latencies"]))
    body = get(client, f"/api/dashboard/calls/{call['call_id']}")
    assert body["trace_id"] == call["trace_id"] and body["status"] == call["status"]
    assert body["cost_usd"] > 0
    spans = [s for t in jaeger_traces_of_call(stack, run, call["call_id"]) for s in t["spans"]]
    in_jaeger = sorted(
        (tags(s)["voice.turn.number"], tags(s).get("voice.turn.latency"))
        for s in spans
        if s["operationName"] == "voice.turn"
    )
    assert [(t["number"], t["latency_s"]) for t in body["turns"]] == in_jaeger
    measured = [t["latency_s"] for t in body["turns"] if t["latency_s"] is not None]
    assert measured == pytest.approx(call["latencies"])
    for turn in body["turns"]:
        if turn["latency_s"] is not None:
            assert {"stt", "llm", "tts"} <= {s["name"] for s in turn["stages"]}
            assert turn["eou_delay_s"] is not None and turn["stt_finalisation_s"] is not None
    assert len(body["logs"]) == call["log_lines"]
    assert all(line["trace_id"] == call["trace_id"] for line in body["logs"])


def test_trace_view_opens_a_call_s_trace(client: TestClient, run: DemoRun) -> None:
    # A call whose turns reached the agent's audio (the demo's outage may fail the first
    # call to end before its TTS stage): the one with the most measured turns.
    call = max(run.calls, key=lambda c: len(c["latencies"]))
    body = get(client, f"/api/dashboard/traces/{call['trace_id']}")
    assert body["call_id"] == call["call_id"]
    names = {s["name"] for s in body["spans"]}
    assert {"voice.call", "voice.turn", "voice.stt", "voice.llm", "voice.tts"} <= names


def test_slowest_turns_come_from_exemplars_of_this_run(client: TestClient, run: DemoRun) -> None:
    body = get(client, "/api/dashboard/slowest-turns", window="15m", limit=5)
    assert body["turns"], body["missing"]
    values = [t["latency_s"] for t in body["turns"]]
    assert values == sorted(values, reverse=True)
    traces = {c["trace_id"] for c in run.calls}
    assert all(t["trace_id"] in traces for t in body["turns"])


def test_health_sees_every_backend_ready(client: TestClient) -> None:
    body = get(client, "/api/dashboard/health")
    assert body["status"] == "ok"
    assert body["backends"] == {"prometheus": True, "jaeger": True, "loki": True}


# Tenant scope: a credential of acme asks each endpoint for globex, then reads unasked.

SCOPED = [
    "/api/dashboard/metrics",
    "/api/dashboard/health",
    "/api/dashboard/metrics/health",
    "/api/dashboard/call-volume",
    "/api/dashboard/recent-activity",
    "/api/dashboard/metrics/latency",
    "/api/dashboard/metrics/cost",
    "/api/dashboard/metrics/calls",
    "/api/dashboard/slowest-turns",
    "/api/dashboard/calls/{call}",
    "/api/dashboard/traces/{trace}",
]


@pytest.mark.parametrize("path", SCOPED)
def test_a_tenant_credential_cannot_name_another_tenant(
    client: TestClient, run: DemoRun, path: str
) -> None:
    acme = calls_of(run, "acme")[0]
    url = path.format(call=acme["call_id"], trace=acme["trace_id"])
    response = client.get(
        url, params={"tenant": "globex"}, headers={"Authorization": f"Bearer {ACME_KEY}"}
    )
    assert response.status_code == 403
    assert "scoped to tenant 'acme'" in response.json()["detail"]


def _acme_only(body: dict[str, Any]) -> None:
    assert body["tenant"] == "acme"


SCOPE_CHECKS: dict[str, Callable[[dict[str, Any], DemoRun], None]] = {
    "/api/dashboard/metrics": lambda b, r: _acme_only(b),
    "/api/dashboard/call-volume": lambda b, r: _acme_only(b),
    "/api/dashboard/metrics/latency": lambda b, r: (
        _acme_only(b),
        {p["pipeline"] for p in b["pipelines"]} <= {c["pipeline"] for c in calls_of(r, "acme")}
        or pytest.fail("a pipeline only other tenants used"),
    ),
    "/api/dashboard/metrics/cost": lambda b, r: (
        set(b["by_tenant"]) == {"acme"} or pytest.fail(str(b["by_tenant"]))
    ),
    "/api/dashboard/metrics/calls": lambda b, r: (
        b["total"] <= len(calls_of(r, "acme")) or pytest.fail(f"{b['total']} calls for acme")
    ),
    "/api/dashboard/recent-activity": lambda b, r: (
        {c["call_id"] for c in b["calls"]} == {c["call_id"] for c in calls_of(r, "acme")}
        or pytest.fail("other tenants' calls listed")
    ),
    "/api/dashboard/slowest-turns": lambda b, r: (
        all(t["tenant"] == "acme" for t in b["turns"]) or pytest.fail("other tenants' exemplars")
    ),
    "/api/dashboard/health": lambda b, r: (
        (b["workers"], b["providers"]) == ([], [])
        or pytest.fail("shared machinery shown to a tenant")
    ),
}


@pytest.mark.parametrize("path", sorted(SCOPE_CHECKS))
def test_a_tenant_credential_reads_only_its_tenant(
    client: TestClient, run: DemoRun, path: str
) -> None:
    assert calls_of(run, "acme"), "the demo run made no acme call"
    SCOPE_CHECKS[path](get(client, path, key=ACME_KEY, limit=100) if "activity" in path
                       else get(client, path, key=ACME_KEY), run)  # fmt: skip


def test_another_tenant_s_call_and_trace_are_not_found(client: TestClient, run: DemoRun) -> None:
    globex = calls_of(run, "globex") or calls_of(run, "initech")
    assert globex
    headers = {"Authorization": f"Bearer {ACME_KEY}"}
    call = client.get(f"/api/dashboard/calls/{globex[0]['call_id']}", headers=headers)
    trace = client.get(f"/api/dashboard/traces/{globex[0]['trace_id']}", headers=headers)
    assert (call.status_code, trace.status_code) == (404, 404)
    own = calls_of(run, "acme")[0]
    assert client.get(f"/api/dashboard/calls/{own['call_id']}", headers=headers).status_code == 200
    globex_headers = {"Authorization": f"Bearer {GLOBEX_KEY}"}
    other = client.get(f"/api/dashboard/calls/{own['call_id']}", headers=globex_headers)
    assert other.status_code == 404


def test_loki_down_gives_the_call_without_logs_and_says_so(
    stack: StackSettings, run: DemoRun
) -> None:
    settings = api_settings(stack, run.service, loki_url=f"http://127.0.0.1:{free_port()}")
    call = run.calls[0]
    with TestClient(create_app(settings)) as client:
        body = get(client, f"/api/dashboard/calls/{call['call_id']}")
        health = get(client, "/api/dashboard/health")
    assert body["turns"] and body["logs"] == []
    assert any(m.startswith("logs: loki: http://127.0.0.1:") for m in body["missing"])
    assert health["status"] == "degraded" and health["backends"]["loki"] is False


ENDPOINT_TIMINGS = [
    "/api/dashboard/metrics",
    "/api/dashboard/health",
    "/api/dashboard/call-volume?hours=24",
    "/api/dashboard/recent-activity",
    "/api/dashboard/metrics/latency",
    "/api/dashboard/metrics/cost",
    "/api/dashboard/metrics/calls",
    "/api/dashboard/slowest-turns",
    "/api/dashboard/calls/{call}",
    "/api/dashboard/traces/{trace}",
]


def test_endpoint_latencies_are_recorded(
    client: TestClient, run: DemoRun, report: Callable[[str], None]
) -> None:
    """Each endpoint 20 times against the live backends: p50/p95 go to the run's summary."""
    call = run.calls[0]
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for path in ENDPOINT_TIMINGS:
        url = path.format(call=call["call_id"], trace=call["trace_id"])
        samples = []
        for _ in range(20):
            began = time.perf_counter()
            assert client.get(url, headers=headers).status_code == 200
            samples.append(time.perf_counter() - began)
        p95 = statistics.quantiles(samples, n=20)[18]
        report(
            f"api {path}: p50 {statistics.median(samples) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms"
        )
