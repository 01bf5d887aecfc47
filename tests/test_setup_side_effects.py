"""setup_instrumentation leaves the process alone, never raises on delivery, and flushes at exit.

Covers issue 8 §4: a flush against a dead endpoint returns False; the root logger level and
``os.environ`` stay the user's; an engine that forgets ``shutdown()`` still delivers its last
spans; the standard ``OTEL_*_EXPORTER`` variables are honoured; the resource carries only
what was configured; ``set_global=False`` is independent of the global instrumentation.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from voiceobs import Exporters, VoiceobsSettings, setup_instrumentation
from voiceobs import semconv as sc
from voiceobs.setup import build_resource

ROOT = Path(__file__).resolve().parent.parent


def _closed_port() -> int:
    """A loopback port nobody listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_force_flush_returns_false_instead_of_raising_when_the_collector_is_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    obs = setup_instrumentation(
        settings=VoiceobsSettings.load(export_timeout_s=0.5), set_global=False
    )
    try:
        with obs.call("c-down") as call:
            call.turn().end()
        logging.getLogger("voiceobs.engine").warning("nobody listens")
        assert obs.force_flush(timeout_s=1.0) is False
    finally:
        obs.shutdown(timeout_s=1.0)


def test_setup_and_shutdown_leave_root_logger_level_and_environment_unchanged() -> None:
    root = logging.getLogger()
    level, environ = root.level, dict(os.environ)
    spans, reader, logs = (
        InMemorySpanExporter(),
        InMemoryMetricReader(),
        InMemoryLogRecordExporter(),
    )
    obs = setup_instrumentation(
        settings=VoiceobsSettings.load(),
        exporters=Exporters(span=spans, metric_readers=[reader], log=logs),
    )
    try:
        assert root.level == level
        assert dict(os.environ) == environ
        assert obs.log_handler in root.handlers
        # The SDK still counts its own queue (its internal metrics were on while it was built).
        with obs.call("c-env"):
            pass
        obs.force_flush(5)
        names = {
            m.name
            for rm in reader.get_metrics_data().resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }
        assert "otel.sdk.processor.span.processed" in names
    finally:
        obs.shutdown(timeout_s=5)
    assert root.level == level
    assert dict(os.environ) == environ
    assert obs.log_handler not in root.handlers


def test_the_handler_level_picks_what_is_exported_among_what_loggers_let_through() -> None:
    logs = InMemoryLogRecordExporter()
    obs = setup_instrumentation(
        settings=VoiceobsSettings.load(log_level="WARNING", traces_enabled=False),
        exporters=Exporters(log=logs, metric_readers=[InMemoryMetricReader()]),
        set_global=False,
    )
    engine = logging.getLogger("engine.levels")
    engine.setLevel(logging.DEBUG)
    assert obs.log_handler is not None
    engine.addHandler(obs.log_handler)
    try:
        engine.info("routine")
        engine.warning("worth exporting")
        obs.force_flush(5)
        assert [r.log_record.body for r in logs.get_finished_logs()] == ["worth exporting"]
    finally:
        engine.removeHandler(obs.log_handler)
        obs.shutdown(timeout_s=5)


def test_stable_http_conventions_apply_to_our_app_only() -> None:
    reader = InMemoryMetricReader()
    obs = setup_instrumentation(
        settings=VoiceobsSettings.load(traces_enabled=False, logs_enabled=False),
        exporters=Exporters(metric_readers=[reader]),
        set_global=False,
    )
    ours, theirs = FastAPI(), FastAPI()
    for app in (ours, theirs):
        app.add_api_route("/ping", lambda: "pong")
    their_reader = InMemoryMetricReader()
    their_meters = MeterProvider(metric_readers=[their_reader])
    obs.instrument_app(ours)
    FastAPIInstrumentor.instrument_app(theirs, meter_provider=their_meters)
    try:
        TestClient(ours).get("/ping")
        TestClient(theirs).get("/ping")
        assert obs.transport.flush(5)  # our requests are recorded by the export side

        def names(r: InMemoryMetricReader) -> set[str]:
            data = r.get_metrics_data()
            assert data is not None
            return {
                m.name
                for rm in data.resource_metrics
                for sm in rm.scope_metrics
                for m in sm.metrics
            }

        assert "http.server.request.duration" in names(reader)
        assert "http.server.duration" in names(their_reader)  # the user's choice: the default
        assert "OTEL_SEMCONV_STABILITY_OPT_IN" not in os.environ
    finally:
        FastAPIInstrumentor.uninstrument_app(theirs)
        their_meters.shutdown()
        obs.shutdown(timeout_s=5)


class _OtlpHttpReceiver(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP posts and keeps their bodies per path."""

    received: dict[str, list[bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.setdefault(self.path, []).append(body)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def otlp_receiver() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OtlpHttpReceiver)
    server.received = {}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_an_engine_that_exits_without_shutdown_still_delivers_its_last_spans(
    otlp_receiver: ThreadingHTTPServer,
) -> None:
    engine = textwrap.dedent(
        """
        from voiceobs import setup_instrumentation

        obs = setup_instrumentation()
        with obs.call("c-exit") as call:
            call.turn().end()
        # no obs.shutdown(): the process simply ends
        """
    )
    port = otlp_receiver.server_address[1]
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
    }  # built from nothing: the machine's OTEL_*/VOICEOBS_* must not redirect the engine
    done = subprocess.run(
        [sys.executable, "-c", engine],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    names = set()
    for body in otlp_receiver.received.get("/v1/traces", []):  # type: ignore[attr-defined]
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                names.update(span.name for span in scope_spans.spans)
    assert {sc.SPAN_CALL, sc.SPAN_TURN} <= names, done.stderr


def test_explicit_shutdown_removes_the_exit_hook() -> None:
    engine = textwrap.dedent(
        """
        import atexit
        from voiceobs import Instrumentation, setup_instrumentation

        obs = setup_instrumentation()
        assert obs.shutdown()
        Instrumentation.shutdown = lambda self, timeout_s=None: print("shutdown at exit")
        """
    )
    env = {"PATH": os.environ["PATH"], "OTEL_TRACES_EXPORTER": "console"}
    env |= {"OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    done = subprocess.run(
        [sys.executable, "-c", engine],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "shutdown at exit" not in done.stdout


def test_otel_exporter_variables_choose_console_or_nothing() -> None:
    engine = textwrap.dedent(
        """
        from voiceobs import setup_instrumentation

        obs = setup_instrumentation()
        assert obs.meter_provider is None and obs.logger_provider is None
        with obs.call("c-console"):
            pass
        assert obs.shutdown()
        """
    )
    env = {
        "PATH": os.environ["PATH"],
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",
    }  # built from nothing so that the machine's OTEL_* cannot decide the exporters
    done = subprocess.run(
        [sys.executable, "-c", engine],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f'"name": "{sc.SPAN_CALL}"' in done.stdout
    assert "Failed to export" not in done.stderr  # nothing tried OTLP


@pytest.mark.parametrize(
    "variable", ["OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"]
)
def test_an_unknown_exporter_name_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "zipkin")
    with pytest.raises(ValueError, match=rf"{variable}='zipkin'.*allowed: otlp, console, none"):
        setup_instrumentation(settings=VoiceobsSettings.load(), set_global=False)


def test_the_resource_carries_no_invented_version_or_environment() -> None:
    attributes = build_resource(VoiceobsSettings.load()).attributes
    assert "service.version" not in attributes
    assert "deployment.environment.name" not in attributes
    configured = build_resource(VoiceobsSettings.load(service_version="2.1", environment="prod"))
    assert configured.attributes["service.version"] == "2.1"
    assert configured.attributes["deployment.environment.name"] == "prod"


def test_set_global_false_builds_its_own_instrumentation_with_its_exporters() -> None:
    global_spans, own_spans = InMemorySpanExporter(), InMemorySpanExporter()
    settings = VoiceobsSettings.load(metrics_enabled=False, logs_enabled=False)
    shared = setup_instrumentation(settings=settings, exporters=Exporters(span=global_spans))
    own = setup_instrumentation(
        settings=settings, exporters=Exporters(span=own_spans), set_global=False
    )
    try:
        assert own is not shared
        with own.call("c-own"):
            pass
        own.force_flush(5)
        shared.force_flush(5)
        assert [s.name for s in own_spans.get_finished_spans()] == [sc.SPAN_CALL]
        assert global_spans.get_finished_spans() == ()
    finally:
        own.shutdown(timeout_s=5)
        shared.shutdown(timeout_s=5)


def test_under_opentelemetry_instrument_voiceobs_joins_the_existing_pipeline() -> None:
    """Global SDK providers (what ``opentelemetry-instrument`` sets up) receive voiceobs'
    spans and logs, redacted, exported once by their own processors and never shut down."""
    engine = textwrap.dedent(
        """
        import json, logging
        from opentelemetry import _logs, trace
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from voiceobs import setup_instrumentation

        resource = Resource.create({"service.name": "app-under-instrument"})
        spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(tracer_provider)
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
        _logs.set_logger_provider(logger_provider)

        obs = setup_instrumentation()
        engine_log = logging.getLogger("engine")
        engine_log.setLevel(logging.INFO)
        with obs.call("c-shared", caller="+1 415 555 0199"):
            engine_log.info("caller +1 415 555 0199 is waiting")
        assert obs.shutdown()
        with trace.get_tracer("app").start_as_current_span("after-voiceobs-shutdown"):
            pass
        print(json.dumps({
            "spans": [
                [s.name, s.resource.attributes["service.name"], dict(s.attributes)]
                for s in spans.get_finished_spans()
            ],
            "logs": [
                [r.log_record.body, r.resource.attributes["service.name"]]
                for r in logs.get_finished_logs()
            ],
        }))
        """
    )
    env = {
        "PATH": os.environ["PATH"],
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",
    }  # built from nothing: only the providers the script sets up may receive anything
    done = subprocess.run(
        [sys.executable, "-c", engine],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    exported = json.loads(done.stdout.strip().splitlines()[-1])
    names = [name for name, _, _ in exported["spans"]]
    assert names.count(sc.SPAN_CALL) == 1 and "after-voiceobs-shutdown" in names
    call = next(attributes for name, _, attributes in exported["spans"] if name == sc.SPAN_CALL)
    assert call[sc.CALL_ID] == "c-shared"
    assert "555 0199" not in json.dumps(exported)
    assert {service for _, service, _ in exported["spans"]} == {"app-under-instrument"}
    assert [service for body, service in exported["logs"] if "is waiting" in body] == [
        "app-under-instrument"
    ]
    assert "Failed to export" not in done.stderr  # nothing went to voiceobs' own OTLP exporters
