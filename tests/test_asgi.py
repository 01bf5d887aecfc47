"""The lean HTTP middleware: server spans and ``http.server.*`` metrics of the stable HTTP
conventions, trace context in and out, errors, exclusions and sampling."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import HistogramDataPoint
from opentelemetry.trace import SpanKind, StatusCode

from tests.conftest import Telemetry, make_telemetry
from voiceobs.asgi import parse_traceparent

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_ID = 0x00F067AA0BA902B7


def _app(seen: list[int]) -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/v1/calls/{call_id}")
    def call(call_id: str) -> dict[str, str]:
        seen.append(trace.get_current_span().get_span_context().span_id)
        logging.getLogger("engine.http").warning("looked up %s", call_id)
        return {"call": call_id}

    @app.get("/v1/missing")
    def missing() -> None:
        raise HTTPException(status_code=404)

    @app.get("/v1/crash")
    def crash() -> None:
        raise RuntimeError("boom")

    return app


@pytest.fixture
def served() -> Iterator[tuple[Telemetry, TestClient, list[int]]]:
    t = make_telemetry()
    seen: list[int] = []
    app = _app(seen)
    t.obs.instrument_app(app)
    yield t, TestClient(app, raise_server_exceptions=False), seen
    t.obs.shutdown()


def _durations(t: Telemetry) -> dict[tuple[str | None, int], int]:
    points = t.metrics()["http.server.request.duration"].data.data_points
    counts: dict[tuple[str | None, int], int] = {}
    for point in points:
        assert isinstance(point, HistogramDataPoint)
        key = (point.attributes.get("http.route"), point.attributes["http.response.status_code"])
        counts[key] = counts.get(key, 0) + point.count
    return counts


def test_a_request_continues_the_callers_trace_and_its_span_is_current_in_the_app(
    served: tuple[Telemetry, TestClient, list[int]],
) -> None:
    t, client, seen = served
    engine_log = logging.getLogger("engine.http")
    assert t.obs.log_handler is not None
    engine_log.addHandler(t.obs.log_handler)
    header = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"
    try:
        assert client.get("/v1/calls/c-9", headers={"traceparent": header}).status_code == 200
    finally:
        engine_log.removeHandler(t.obs.log_handler)
    span = t.span("GET /v1/calls/{call_id}")
    assert span.kind is SpanKind.SERVER
    assert span.context.trace_id == TRACE_ID
    assert span.parent is not None and span.parent.span_id == PARENT_ID
    assert seen == [span.context.span_id]  # the app saw the request's span as current
    attributes = span.attributes
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.route"] == "/v1/calls/{call_id}"
    assert attributes["http.response.status_code"] == 200
    assert attributes["url.path"] == "/v1/calls/c-9"
    assert span.status.status_code is StatusCode.UNSET
    logs = [r.log_record for r in t.logs.get_finished_logs()]
    line = next(r for r in logs if "looked up" in str(r.body))
    assert line.span_id == span.context.span_id and line.trace_id == TRACE_ID


def test_errors_are_server_errors_only_from_500_and_health_checks_are_not_recorded(
    served: tuple[Telemetry, TestClient, list[int]],
) -> None:
    t, client, _ = served
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/missing").status_code == 404
    assert client.get("/v1/crash").status_code == 500
    names = sorted(s.name for s in t.finished_spans())
    assert names == ["GET /v1/crash", "GET /v1/missing"]
    crash = t.span("GET /v1/crash")
    assert crash.status.status_code is StatusCode.ERROR
    assert crash.attributes["error.type"] == "RuntimeError"
    assert t.span("GET /v1/missing").status.status_code is StatusCode.UNSET
    assert _durations(t) == {("/v1/missing", 404): 1, ("/v1/crash", 500): 1}
    active = t.metrics()["http.server.active_requests"].data.data_points
    assert sum(point.value for point in active) == 0  # every request started also ended


def test_metrics_count_every_request_when_sampling_thins_spans(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    t = make_telemetry()
    app = _app([])
    t.obs.instrument_app(app)
    try:
        client = TestClient(app)
        for index in range(5):
            assert client.get(f"/v1/calls/c-{index}").status_code == 200
        assert t.finished_spans() == []
        assert _durations(t) == {("/v1/calls/{call_id}", 200): 5}
    finally:
        t.obs.shutdown()


@pytest.mark.parametrize(
    "header",
    [
        b"",
        b"00-zz-00f067aa0ba902b7-01",
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    ],
)
def test_a_malformed_traceparent_starts_a_new_trace(header: bytes) -> None:
    assert parse_traceparent(header) is None


def test_a_valid_traceparent_is_read_with_its_sampled_flag() -> None:
    context = parse_traceparent(f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-00".encode())
    assert context is not None
    assert (context.trace_id, context.span_id, context.is_remote) == (TRACE_ID, PARENT_ID, True)
    assert not context.trace_flags.sampled


class _Records:
    """A transport that keeps what the middleware sends."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, record: object) -> None:
        self.sent.append(record)


@pytest.mark.parametrize("header", [None, b"01", b"00"])
def test_the_default_sampler_decides_as_the_sdk_without_being_asked(header: bytes | None) -> None:
    """The SDK's default sampler (parent-based, else always on) is not called per request
    (its result objects cost a few microseconds): the decision it would make is taken from the
    parent, or sampled for a root. Any other sampler is asked."""
    import asyncio

    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_ON,
        DEFAULT_ON,
        Decision,
        ParentBased,
        TraceIdRatioBased,
    )
    from opentelemetry.trace import NonRecordingSpan

    from voiceobs.asgi import TelemetryMiddleware
    from voiceobs.records import HttpServed

    class Counting(ParentBased):
        calls = 0

        def should_sample(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
            Counting.calls += 1
            return super().should_sample(*args, **kwargs)  # type: ignore[arg-type]

    async def app(scope: object, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 204})  # type: ignore[operator]

    async def send(message: object) -> None:
        pass

    async def receive() -> dict[str, object]:
        return {}

    headers = (
        []
        if header is None
        else [(b"traceparent", f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-".encode() + header)]
    )
    scope = {"type": "http", "path": "/x", "method": "GET", "headers": headers}
    for sampler, asked in ((Counting(ALWAYS_ON), 0), (Counting(TraceIdRatioBased(1.0)), 1)):
        records = _Records()
        Counting.calls = 0
        middleware = TelemetryMiddleware(app, records, sampler, ())  # type: ignore[arg-type]
        asyncio.run(middleware(scope, receive, send))  # type: ignore[arg-type]
        (served,) = [r for r in records.sent if isinstance(r, HttpServed)]
        parent = parse_traceparent(headers[0][1]) if headers else None
        context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent else None
        expected = DEFAULT_ON.should_sample(context, served.trace_id, "GET").decision
        assert served.trace_flags == (1 if expected is Decision.RECORD_AND_SAMPLE else 0)
        assert Counting.calls == asked
