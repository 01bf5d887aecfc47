"""The real Collector, with collector/config.yaml's processors, masks personal data that
reached it without the library's redaction (plain SDK spans and logs): span names, status
messages, event names and attributes, resource attributes, log bodies and attributes, and
never the call id. It runs on free ports and exports to an in-test OTLP receiver, so it
never touches the shared stack."""

from __future__ import annotations

import gzip
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from stack.build import go_binaries
from tests.collector_env import free_ports
from tests.pii_cases import ORDINARY, SENSITIVE

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]
CALL_ID = "20240611093015"
PHONE = "+14155550199"
SECRETS = [PHONE, "4155550199", "jane@example.com", "555-0100"] + [s for _, s in SENSITIVE]
WAIT_S = 30.0


@dataclass
class Sink:
    """An OTLP/HTTP receiver keeping what the Collector exported, as JSON-like dicts."""

    port: int = 0
    """Set once its server is bound."""
    traces: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = (
                    ExportTraceServiceRequest()
                    if self.path == "/v1/traces"
                    else ExportLogsServiceRequest()
                )
                request.ParseFromString(body)
                target = sink.traces if self.path == "/v1/traces" else sink.logs
                target.append(MessageToDict(request))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        return Handler


def collector_config(otlp_port: int, health_port: int, sink_port: int) -> dict[str, Any]:
    """collector/config.yaml's processors and pipeline order, with a test receiver/exporter."""
    real = yaml.safe_load((REPO / "collector" / "config.yaml").read_text())
    pipelines = real["service"]["pipelines"]
    used = {p for name in ("traces", "logs") for p in pipelines[name]["processors"]}
    return {
        "extensions": {"health_check": {"endpoint": f"127.0.0.1:{health_port}"}},
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp_port}"}}}},
        "processors": {name: real["processors"][name] for name in used},
        "exporters": {
            "otlp_http/sink": {
                "endpoint": f"http://127.0.0.1:{sink_port}",
                "retry_on_failure": {"enabled": False},
            }
        },
        "service": {
            "extensions": ["health_check"],
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
            "pipelines": {
                name: {
                    "receivers": ["otlp"],
                    "processors": pipelines[name]["processors"],
                    "exporters": ["otlp_http/sink"],
                }
                for name in ("traces", "logs")
            },
        },
    }


def wait_for(what: str, ready: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{what} not within {WAIT_S:.0f}s", pytrace=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Sink]]:
    """Raw PII sent through the Collector; yields the Collector's OTLP endpoint and sink."""
    binary = go_binaries()["collector"].path
    if not binary.exists():
        pytest.fail(f"no Collector at {binary}: run `make stack-build`", pytrace=False)
    sink = Sink()
    server = ThreadingHTTPServer(("127.0.0.1", 0), sink.handler())  # bound here: no race
    sink.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    otlp_port, health_port = free_ports(2)
    config = tmp_path_factory.mktemp("collector") / "config.yaml"
    config.write_text(yaml.safe_dump(collector_config(otlp_port, health_port, sink.port)))
    proc = subprocess.Popen(
        [str(binary), f"--config={config}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        health = f"http://127.0.0.1:{health_port}/"
        wait_for("Collector health", lambda: urllib.request.urlopen(health).status == 200)
        send(f"http://127.0.0.1:{otlp_port}")
        wait_for("traces and logs at the sink", lambda: spans(sink) and len(log_records(sink)) == 2)
        yield f"http://127.0.0.1:{otlp_port}", sink
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        server.shutdown()


def send(endpoint: str) -> None:
    """A plain SDK (no voiceobs redaction) sends spans and logs full of personal data."""
    resource = Resource.create({"service.name": "pii-probe", "operator.email": "jane@example.com"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
    )
    tracer = tracer_provider.get_tracer("probe")
    cases = {f"case.{i}": text for i, (text, _) in enumerate(SENSITIVE)}
    ordinary = {f"ordinary.{i}": text for i, text in enumerate(ORDINARY)}
    with tracer.start_as_current_span(
        f"dial {PHONE}",
        attributes={
            "voice.call.id": CALL_ID,
            "caller": PHONE,
            "callers": [PHONE],
            **cases,
            **ordinary,
        },
    ) as span:
        span.add_event("ringing 415-555-0100", {"to": "(415) 555-0100"})
        try:
            raise ValueError(f"transfer to {PHONE} failed, told jane@example.com")
        except ValueError as exc:
            span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"transfer to {PHONE} failed"))
    tracer_provider.shutdown()

    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs"))
    )
    logger = logger_provider.get_logger("probe")
    logger.emit(
        body=f"transfer to {PHONE} failed for call {CALL_ID}",
        attributes={"voice.call.id": CALL_ID, "transfer_to": PHONE, **cases, **ordinary},
        event_name=f"transfer {PHONE}",
    )
    logger.emit(body={"caller": PHONE, "history": ["mailed jane@example.com"]})
    logger_provider.shutdown()


def spans(sink: Sink) -> list[dict[str, Any]]:
    return [
        s
        for request in sink.traces
        for rs in request["resourceSpans"]
        for ss in rs["scopeSpans"]
        for s in ss["spans"]
    ]


def log_records(sink: Sink) -> list[dict[str, Any]]:
    return [
        r
        for request in sink.logs
        for rl in request["resourceLogs"]
        for sl in rl["scopeLogs"]
        for r in sl["logRecords"]
    ]


def text_and_map_records(sink: Sink) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two log records sent, told apart by their bodies: the Collector exports the two
    requests on concurrent queue consumers, so the sink may get them in either order."""
    records = log_records(sink)
    (text_record,) = [r for r in records if "stringValue" in r["body"]]
    (map_record,) = [r for r in records if "kvlistValue" in r["body"]]
    return text_record, map_record


def attributes(item: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: next(iter(a["value"].values())) for a in item.get("attributes", [])}


def test_no_personal_data_leaves_the_collector(exported: tuple[str, Sink]) -> None:
    _, sink = exported
    text = repr(sink.traces) + repr(sink.logs)
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, leaked


def test_span_name_status_events_and_attributes_are_masked(exported: tuple[str, Sink]) -> None:
    _, sink = exported
    (span,) = spans(sink)
    assert span["name"] == "dial ****"
    assert span["status"]["message"] == "transfer to **** failed"
    ringing, exception = span["events"]
    assert ringing["name"] == "ringing ****"
    assert attributes(ringing)["to"] == "****"
    assert "****" in attributes(exception)["exception.message"]
    assert attributes(span)["caller"] == "****"


def test_log_bodies_attributes_and_event_names_are_masked(exported: tuple[str, Sink]) -> None:
    _, sink = exported
    text_record, map_record = text_and_map_records(sink)
    assert text_record["body"]["stringValue"] == f"transfer to **** failed for call {CALL_ID}"
    assert attributes(text_record)["transfer_to"] == "****"
    assert text_record["eventName"] == "transfer ****"
    assert PHONE not in repr(map_record["body"])


def test_call_id_and_ordinary_text_pass_unchanged(exported: tuple[str, Sink]) -> None:
    """The same table as the library's: Go's RE2 reads the expressions as Python does."""
    _, sink = exported
    (span,) = spans(sink)
    text_record, _ = text_and_map_records(sink)
    for item in (attributes(span), attributes(text_record)):
        assert item["voice.call.id"] == CALL_ID
        for i, text in enumerate(ORDINARY):
            assert item[f"ordinary.{i}"] == text
        for i, (_, secret) in enumerate(SENSITIVE):
            assert secret not in item[f"case.{i}"]
