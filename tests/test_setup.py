"""setup_instrumentation: idempotency, shutdown, disabled mode, failure isolation, FastAPI."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from stack.control import free_port
from tests.conftest import make_telemetry
from voiceobs import Exporters, VoiceobsSettings, get_instrumentation, setup_instrumentation
from voiceobs import semconv as sc
from voiceobs.setup import build_resource


def test_second_setup_returns_the_same_instrumentation_and_instruments_once() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    app = FastAPI()

    @app.get("/ping")
    def ping() -> str:
        return "pong"

    spans = InMemorySpanExporter()
    settings = VoiceobsSettings.load(metrics_enabled=False, logs_enabled=False)
    first = setup_instrumentation(app, settings, exporters=Exporters(span=spans))
    try:
        second = setup_instrumentation(app)
        assert second is first
        assert get_instrumentation() is first
        TestClient(app).get("/ping")
        first.force_flush(5)
        assert [s.name for s in spans.get_finished_spans()] == ["GET /ping"]
    finally:
        assert first.shutdown(timeout_s=5)
    assert get_instrumentation() is None


def test_shutdown_reports_undelivered_telemetry_when_no_collector_listens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing listens: shutdown says so with False instead of raising. How long it takes
    against its deadline is a figure of ``make bench`` (no wall-clock limit in a test)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    obs = setup_instrumentation(
        settings=VoiceobsSettings.load(shutdown_timeout_s=1), set_global=False
    )
    logging.getLogger("voiceobs.engine").warning("nobody listens")
    with obs.call("c-1") as call:
        with call.turn():
            pass
    assert obs.shutdown() is False


class _BrokenExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise ConnectionError("collector on fire")

    def shutdown(self) -> None:
        pass


def test_a_failing_exporter_never_reaches_the_engine() -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    obs = setup_instrumentation(
        settings=VoiceobsSettings.load(),
        exporters=Exporters(span=_BrokenExporter(), metric_readers=[reader]),
        set_global=False,
    )
    try:
        for index in range(20):
            with obs.call(f"c{index}") as call:
                call.turn().end()
        assert obs.force_flush(5) is False  # the batches failed: reported, never raised
        data = reader.get_metrics_data()
        failures = [
            p.value
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == sc.TELEMETRY_EXPORT_FAILURES.name
            for p in m.data.data_points
            if p.attributes == {sc.L_SIGNAL: "traces"}
        ]
        assert failures and failures[0] >= 1
    finally:
        obs.shutdown()


def test_disabled_mode_records_nothing_and_the_api_still_works() -> None:
    t = make_telemetry(enabled=False)
    with t.obs.call("c-off") as call:
        with call.turn() as turn:
            turn.user_speech_ended()
            with turn.llm("openai") as llm:
                llm.first_token()
            turn.agent_audio_started()
        call.jitter_buffer().sample(0.02)
    assert t.obs.tracer_provider is None and t.obs.meter_provider is None
    assert len(t.obs.transport.recorder) == 0
    assert t.obs.shutdown()
    assert t.spans.get_finished_spans() == ()


def test_materialisation_errors_are_counted_not_raised() -> None:
    t = make_telemetry()
    try:
        t.obs.transport.recorder.submit(lambda _: 1 / 0, object())
        t.obs.call("c-ok").end()
        metrics = t.metrics()
        (dropped,) = metrics[sc.TELEMETRY_DROPPED.name].data.data_points
        assert dropped.attributes == {sc.L_SIGNAL: "voice", sc.L_REASON: "materialise_error"}
        assert sc.CALLS.name in metrics  # later work still went through
    finally:
        t.obs.shutdown()


def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    t = make_telemetry(queue_size=100)
    try:
        blocker_started = []

        def slow(_: object) -> None:
            blocker_started.append(1)
            time.sleep(0.3)

        t.obs.transport.recorder.submit(slow, object())
        while not blocker_started:
            time.sleep(0.001)
        for index in range(300):
            call = t.obs.call(f"c{index}")
            call.turn().end()
            call.end()
        (dropped,) = t.metrics()[sc.TELEMETRY_DROPPED.name].data.data_points
        assert dropped.attributes[sc.L_REASON] == "queue_full"
        assert dropped.value >= 300 - 100  # turns beyond what fit (a call's start and end
        # always get in: see tests/test_voice.py)
    finally:
        t.obs.shutdown()


def test_fastapi_spans_skip_health_and_asgi_messages() -> None:
    t = make_telemetry()
    app = FastAPI()

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/v1/things/{thing}")
    def thing(thing: str) -> dict[str, str]:
        return {"thing": thing}

    t.obs.instrument_app(app)
    t.obs.instrument_app(app)  # idempotent
    try:
        client = TestClient(app)
        assert client.get("/healthz").status_code == 200
        assert client.get("/v1/things/7").status_code == 200
        names = [s.name for s in t.finished_spans()]
        assert names == ["GET /v1/things/{thing}"]
        metrics = t.metrics()
        assert "http.server.request.duration" in metrics
    finally:
        t.obs.shutdown()


def test_prometheus_route_serves_the_contract_names() -> None:
    t = make_telemetry(prometheus_route=True)
    app = FastAPI()
    t.obs.instrument_app(app)
    try:
        with t.obs.call("c-prom", tenant="acme", pipeline="support") as call:
            with call.turn() as turn:
                turn.user_speech_ended()
                turn.agent_audio_started()
        t.flush()
        body = TestClient(app).get("/metrics").text
        for spec in (sc.CALLS, sc.TURN_LATENCY_METRIC, sc.CALL_DURATION, sc.CALLS_ACTIVE):
            assert spec.prometheus in body, spec.prometheus
        assert "voice_turn_latency_seconds_bucket{" in body
        assert 'le="0.8"' in body
        assert "voice_call_id" not in body and "c-prom" not in body
    finally:
        t.obs.shutdown()


def test_resource_honours_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "engine-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.version=9.9,team=voice")
    monkeypatch.setattr("sys.argv", ["engine", "--token=secret-123"])
    attributes = build_resource(VoiceobsSettings.load(environment="prod")).attributes
    assert attributes["service.name"] == "engine-eu"
    assert attributes["service.version"] == "9.9"
    assert attributes["team"] == "voice"
    assert attributes["deployment.environment.name"] == "prod"
    assert attributes["service.instance.id"]
    assert attributes["host.name"] and attributes["process.pid"]
    assert "process.command_args" not in attributes


def test_bad_otlp_protocol_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
    with pytest.raises(
        ValueError, match=r"OTEL_EXPORTER_OTLP_PROTOCOL.*allowed: grpc, http/protobuf"
    ):
        setup_instrumentation(settings=VoiceobsSettings.load(), set_global=False)


def test_the_disabled_scope_answers_every_public_method_of_the_real_scopes() -> None:
    from voiceobs.disabled import DisabledScope
    from voiceobs.voice import Call, JitterBuffer, Stage, Turn

    for scope in (Call, Turn, Stage, JitterBuffer):
        public = {
            name
            for name in dir(scope)
            if not name.startswith("_")
            and (callable(getattr(scope, name)) or isinstance(getattr(scope, name), property))
        }
        missing = {name for name in public if not hasattr(DisabledScope, name)}
        assert not missing, f"DisabledScope lacks {scope.__name__}.{sorted(missing)}"


def test_disabled_events_are_accepted_and_cost_nothing() -> None:
    t = make_telemetry(enabled=False)
    try:
        for event in (
            {"type": "call.started", "call_id": "d-1"},
            {"type": "turn.started", "call_id": "d-1"},
            {"type": "jitter.sample", "call_id": "d-1", "depth_s": 0.02},
            {"type": "call.ended", "call_id": "d-1"},
        ):
            assert t.obs.events.handle(event).accepted
        assert t.obs.call("x") is t.obs.call("y")  # one shared do-nothing scope
    finally:
        t.obs.shutdown()


def test_disabled_mode_runs_no_background_thread() -> None:
    t = make_telemetry(enabled=False)
    try:
        with t.obs.call("c-off") as call, call.turn():
            pass
        assert t.obs.transport.recorder._thread is None
    finally:
        t.obs.shutdown()


@pytest.mark.parametrize(("protocol", "transport"), [("grpc", "grpc"), ("http/protobuf", "http")])
def test_each_signal_uses_the_otlp_protocol_the_environment_names(
    monkeypatch: pytest.MonkeyPatch, protocol: str, transport: str
) -> None:
    from voiceobs.exportpipeline import otlp_exporter

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    settings = VoiceobsSettings.load()
    for signal in ("traces", "metrics", "logs"):
        exporter = otlp_exporter(signal, settings)
        assert type(exporter).__module__.startswith(
            f"opentelemetry.exporter.otlp.proto.{transport}."
        )
        exporter.shutdown()
