"""The demo engine and simulator: realistic traffic, redaction on, bounded, happy offline."""

from __future__ import annotations

import itertools

import pytest
from fastapi.testclient import TestClient

from stack.control import free_port
from tests.conftest import Telemetry, make_telemetry
from voiceobs import semconv as sc
from voiceobs.cli import main
from voiceobs.cost import example_rate_card_path
from voiceobs.demo.engine import create_app
from voiceobs.demo.runner import run_demo
from voiceobs.demo.simulator import SimOptions


@pytest.fixture
def demo() -> Telemetry:
    t = make_telemetry()
    yield t
    t.obs.shutdown()


def test_engine_turns_produce_the_full_span_tree(demo: Telemetry) -> None:
    client = TestClient(create_app(demo.obs, seed=3, speed=1000))
    started = client.post(
        "/v1/calls",
        json={
            "call_id": "t-1",
            "tenant": "acme",
            "pipeline": "support-en",
            "caller": "+1 415 555 0199",
        },
    ).json()
    for _ in range(3):
        reply = client.post("/v1/calls/t-1/turns", json={"utterance": "call me at +1 415 555 0199"})
        assert reply.status_code == 200
        assert reply.json()["latency_s"] > 0.2
    assert client.post("/v1/calls/t-1/hangup", json={"status": "completed"}).json()["turns"] == 3
    spans = demo.finished_spans()
    turns = [s for s in spans if s.name == sc.SPAN_TURN]
    assert len(turns) == 3
    assert {s.context.trace_id for s in spans if s.name.startswith("voice.")} == {
        int(started["trace_id"], 16)
    }
    assert {s.name for s in spans} >= {sc.SPAN_CALL, sc.SPAN_STT, sc.SPAN_LLM, sc.SPAN_TTS}
    bodies = [r.log_record.body for r in demo.logs.get_finished_logs()]
    assert any("user said" in b for b in bodies)
    assert not any("555 0199" in str(b) for b in bodies), "phone numbers must be redacted"
    call = demo.span(sc.SPAN_CALL)
    assert call.end_time >= max(t.end_time for t in turns), "logging in the call must not end it"
    assert call.attributes[sc.CALL_STATUS] == "completed"
    assert call.attributes[sc.CALL_TURNS] == 3


def test_engine_rejects_unknown_pipelines_and_calls(demo: Telemetry) -> None:
    client = TestClient(create_app(demo.obs))
    assert client.post("/v1/calls", json={"pipeline": "nope"}).status_code == 422
    assert client.post("/v1/calls/ghost/turns", json={"utterance": "hi"}).status_code == 404
    assert client.get("/healthz").json()["status"] == "ok"


def test_simulation_is_reproducible_from_its_seed() -> None:
    def latencies() -> list[float]:
        t = make_telemetry()
        try:
            client = TestClient(create_app(t.obs, seed=7, speed=1000))
            client.post("/v1/calls", json={"call_id": "r-1", "pipeline": "sales-premium"})
            return [
                client.post("/v1/calls/r-1/turns", json={"utterance": "hello there"}).json()[
                    "latency_s"
                ]
                for _ in range(4)
            ]
        finally:
            t.obs.shutdown()

    assert latencies() == pytest.approx(latencies(), abs=1e-6)


def test_demo_runs_happily_when_no_collector_listens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "voiceobs-demo-test")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    options = SimOptions(calls=12, duration_s=30, rate=50, concurrency=6, seed=5)
    report = run_demo(options, port=free_port(), speed=200)
    assert len(report.calls) == 12
    assert report.turns >= 12 * 2 - sum(c.status == "failed" for c in report.calls) * 2
    assert {c.pipeline for c in report.calls} >= {"support-en", "sales-premium"}
    out = capsys.readouterr().out
    assert "engine on http://127.0.0.1:" in out and "turn latency p50" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--calls", "0"], "--calls: must be between 1 and 100000"),
        (["demo", "--turns", "5-2"], "--turns: must be 1 <= min <= max <= 100"),
        (["demo", "--turns", "many"], "--turns: 'many' is not MIN-MAX"),
        (["demo", "--speed", "0"], "--speed: must be between 0 and 1000"),
        (["demo", "--port", "80"], "--port: must be between 1024 and 65535"),
    ],
)
def test_cli_names_the_bad_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_demo_fails_when_its_telemetry_reaches_no_collector(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``make demo`` must stop when the demo fed nothing to the stack it just started."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "voiceobs-demo-test")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("VOICEOBS_SHUTDOWN_TIMEOUT_S", "1")
    argv = ["demo", "--calls", "2", "--rate", "50", "--speed", "200", "--port", str(free_port())]
    assert main(argv) == 1
    assert "telemetry did not reach the collector" in capsys.readouterr().err


def test_a_short_demo_exercises_every_contract_metric() -> None:
    """Twenty seconds of demo traffic show every metric the dashboards and alerts use:
    breakers open, half-open and closed again, streams restart, a late event is dropped and
    counted, calls cost money. Only export failures need a Collector that fails."""
    t = make_telemetry(rate_card_path=example_rate_card_path())
    now = [0.0]  # the demo's real-time clock, moved by hand: 0.5 s per turn, 20 s in all
    try:
        client = TestClient(create_app(t.obs, seed=11, speed=1000, clock=lambda: now[0]))
        client.post("/v1/calls", json={"call_id": "still-on-the-line"})
        calls = itertools.count()
        on_line: dict[str, tuple[str, int]] = {}  # one call at a time per pipeline
        while now[0] < 20:
            for pipeline in ("support-en", "sales-premium", "booking-fast"):
                if pipeline not in on_line:
                    call_id = f"short-{next(calls)}"
                    client.post("/v1/calls", json={"call_id": call_id, "pipeline": pipeline})
                    on_line[pipeline] = (call_id, 0)
                call_id, turns = on_line[pipeline]
                reply = client.post(f"/v1/calls/{call_id}/turns", json={"utterance": "hello"})
                now[0] += 0.5
                on_line[pipeline] = (call_id, turns + 1)
                if reply.status_code == 503:  # the engine ended the call
                    del on_line[pipeline]
                elif turns + 1 == 4:
                    client.post(f"/v1/calls/{call_id}/hangup", json={"status": "completed"})
                    del on_line[pipeline]
        metrics = t.metrics()
        bodies = [str(r.log_record.body) for r in t.logs.get_finished_logs()]
    finally:
        t.obs.shutdown()
    unexercised = {
        spec.name
        for spec in sc.VOICE_METRICS
        if spec.name not in metrics or not list(metrics[spec.name].data.data_points)
    }
    assert unexercised == {sc.TELEMETRY_EXPORT_FAILURES.name}
    for state in ("open", "half_open", "closed"):
        assert f"circuit breaker of groq is now {state}" in bodies
    dropped = metrics[sc.TELEMETRY_DROPPED.name].data.data_points
    assert {p.attributes[sc.L_REASON] for p in dropped} == {"unknown_call"}
    turns = metrics[sc.TURNS.name].data.data_points
    assert {p.attributes[sc.L_INTERRUPTED] for p in turns} == {"true", "false"}
