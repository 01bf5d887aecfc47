"""End to end through the real native stack: the plain OpenTelemetry SDK sends a
trace, a histogram with an exemplar and a log record to the Collector; each must
arrive in Jaeger, Prometheus and Loki, linked by trace id and call id."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal.exemplar import TraceBasedExemplarFilter
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from stack import control
from stack.settings import StackSettings, listener

pytestmark = [
    pytest.mark.stack,
    # The SDK's LoggingHandler is deprecated in favour of a contrib package the
    # project does not install; it is still the plain-SDK way to emit a log here.
    pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning"),
]

POLL_TIMEOUT_S = 60.0
T = TypeVar("T")


def get_json(url: str, params: dict[str, str] | None = None) -> Any:
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def poll(what: str, probe: Callable[[], T | None], timeout_s: float = POLL_TIMEOUT_S) -> T:
    """Call ``probe`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except (OSError, ValueError, KeyError) as exc:  # not there yet (404, empty ...)
            last_error = exc
        time.sleep(1)
    pytest.fail(f"{what} did not arrive within {timeout_s:.0f}s (last error: {last_error})")


@dataclass
class Sent:
    service_name: str
    call_id: str
    trace_id: str
    span_id: str


@dataclass
class Sdk:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider

    def flush(self) -> None:
        self.tracer_provider.force_flush()
        self.meter_provider.force_flush()
        self.logger_provider.force_flush()

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()


def make_sdk(endpoint: str, service_name: str) -> Sdk:
    resource = Resource.create(
        {"service.name": service_name, "service.instance.id": "stack-test-1"}
    )
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=endpoint, insecure=True),
        export_interval_millis=1000,
    )
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        exemplar_filter=TraceBasedExemplarFilter(),
        views=[
            View(
                instrument_name="voice.turn.latency",
                aggregation=ExplicitBucketHistogramAggregation(
                    [0.1, 0.25, 0.5, 0.75, 0.8, 0.85, 1.0, 2.0, 5.0]
                ),
            )
        ],
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True))
    )
    return Sdk(tracer_provider, meter_provider, logger_provider)


@pytest.fixture(scope="module")
def sent(stack: StackSettings) -> Iterator[Sent]:
    """One voice turn's telemetry, sent once for the tests of this module."""
    grpc = listener("collector", "OTLP/gRPC receiver").hostport(stack.env)
    service_name = f"voiceobs-stacktest-{uuid.uuid4().hex[:8]}"
    call_id = str(uuid.uuid4())
    sdk = make_sdk(f"http://{grpc}", service_name)
    tracer = sdk.tracer_provider.get_tracer("voiceobs.stacktest")
    meter = sdk.meter_provider.get_meter("voiceobs.stacktest")
    latency = meter.create_histogram("voice.turn.latency", unit="s")
    calls = meter.create_counter("voice.calls", unit="{call}")
    logger = logging.getLogger(f"voiceobs.stacktest.{service_name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=sdk.logger_provider))
    with tracer.start_as_current_span(
        "voice.turn",
        attributes={
            "voice.call.id": call_id,
            "voice.turn.number": 1,
            "caller.email": "jane.doe@example.com",
        },
    ) as span:
        ctx = span.get_span_context()
        latency.record(0.82, {"tenant": "acme", "pipeline": "default"})
        calls.add(1, {"tenant": "acme", "pipeline": "default", "status": "completed"})
        logger.info(
            "turn done for jane.doe@example.com, card 4111 1111 1111 1111",
            extra={"voice.call.id": call_id, "caller.phone": "+14155550123"},
        )
    sdk.flush()
    yield Sent(service_name, call_id, f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
    sdk.shutdown()


def test_trace_reaches_jaeger_with_call_id(stack: StackSettings, sent: Sent) -> None:
    url = stack.url("jaeger", "query HTTP API", f"/api/traces/{sent.trace_id}")
    data = poll("trace in Jaeger", lambda: get_json(url)["data"])
    spans = data[0]["spans"]
    assert [s["operationName"] for s in spans] == ["voice.turn"]
    tags = {t["key"]: t["value"] for t in spans[0]["tags"]}
    assert tags["voice.call.id"] == sent.call_id
    assert tags["caller.email"] == "****", "the Collector's redaction processor masks e-mails"
    assert data[0]["processes"][spans[0]["processID"]]["serviceName"] == sent.service_name


def test_histogram_exemplar_links_to_the_trace(stack: StackSettings, sent: Sent) -> None:
    query = f'voice_turn_latency_seconds_bucket{{job="{sent.service_name}"}}'
    url = stack.url("prometheus", "web/API", "/api/v1/query_exemplars")

    def exemplars() -> list[dict[str, Any]]:
        now = time.time()
        params = {"query": query, "start": str(now - 600), "end": str(now + 60)}
        return [e for series in get_json(url, params)["data"] for e in series["exemplars"]]

    found = poll("exemplar in Prometheus", exemplars)
    assert {e["labels"]["trace_id"] for e in found} == {sent.trace_id}
    assert found[0]["labels"]["span_id"] == sent.span_id
    assert float(found[0]["value"]) == pytest.approx(0.82)


def test_prometheus_metric_names_follow_otel_translation(stack: StackSettings, sent: Sent) -> None:
    url = stack.url("prometheus", "web/API", "/api/v1/series")

    def names() -> set[str] | None:
        params = {"match[]": f'{{job="{sent.service_name}"}}'}
        series = get_json(url, params)["data"]
        found = {s["__name__"] for s in series}
        return found if "voice_calls_total" in found else None

    found = poll("engine metrics in Prometheus", names)
    assert {
        "voice_turn_latency_seconds_bucket",
        "voice_turn_latency_seconds_sum",
        "voice_turn_latency_seconds_count",
        "voice_calls_total",
    } <= found
    series = get_json(url, {"match[]": f'voice_calls_total{{job="{sent.service_name}"}}'})["data"]
    assert series[0]["instance"] == "stack-test-1"
    assert series[0]["status"] == "completed"
    assert "voice_call_id" not in series[0]


def test_collector_self_metrics_are_scraped(stack: StackSettings, sent: Sent) -> None:
    # Collector 0.161 (as 0.155) exposes its counters without a _total suffix (measured).
    url = stack.url("prometheus", "web/API", "/api/v1/query")

    def accepted_and_sent() -> dict[str, float] | None:
        values: dict[str, float] = {}
        for name in ("otelcol_receiver_accepted_spans", "otelcol_exporter_sent_spans"):
            result = get_json(url, {"query": f'sum({name}{{job="otelcol"}})'})["data"]["result"]
            if not result or float(result[0]["value"][1]) < 1:
                return None
            values[name] = float(result[0]["value"][1])
        return values

    assert poll("Collector self-metrics in Prometheus", accepted_and_sent)


def test_log_reaches_loki_with_call_id_metadata(stack: StackSettings, sent: Sent) -> None:
    url = stack.url("loki", "HTTP API", "/loki/api/v1/query_range")
    query = f'{{service_name="{sent.service_name}"}} | voice_call_id="{sent.call_id}"'

    def streams() -> list[dict[str, Any]]:
        now_ns = time.time_ns()
        params = {
            "query": query,
            "start": str(now_ns - 600 * 10**9),
            "end": str(now_ns + 60 * 10**9),
            "limit": "10",
        }
        return list(get_json(url, params)["data"]["result"])

    result = poll("log in Loki", streams)
    labels = result[0]["stream"]
    line = result[0]["values"][0][1]
    assert labels["voice_call_id"] == sent.call_id
    assert labels["trace_id"] == sent.trace_id
    assert labels["caller_phone"] == "****", "attribute values are redacted"
    assert "jane.doe@example.com" not in line and "4111" not in line, line
    assert "****" in line


def test_jaeger_keeps_traces_across_restart(stack: StackSettings, sent: Sent) -> None:
    url = stack.url("jaeger", "query HTTP API", f"/api/traces/{sent.trace_id}")
    poll("trace in Jaeger", lambda: get_json(url)["data"])
    control.restart_service(stack, "jaeger")
    data = get_json(url)["data"]
    assert data[0]["traceID"] == sent.trace_id


def test_trace_sent_while_jaeger_is_down_arrives_once_it_is_back(stack: StackSettings) -> None:
    """The Collector's sending queue (file_storage) and retries bridge an outage."""
    grpc = listener("collector", "OTLP/gRPC receiver").hostport(stack.env)
    sdk = make_sdk(f"http://{grpc}", f"voiceobs-outage-{uuid.uuid4().hex[:8]}")
    control.stop_service(stack, "jaeger")
    try:
        with sdk.tracer_provider.get_tracer("voiceobs.stacktest").start_as_current_span(
            "voice.call", attributes={"voice.call.id": str(uuid.uuid4())}
        ) as span:
            trace_id = f"{span.get_span_context().trace_id:032x}"
        sdk.flush()
        time.sleep(2)  # the Collector has tried and queued it by now
    finally:
        control.start_service(stack, "jaeger")
        sdk.shutdown()
    url = stack.url("jaeger", "query HTTP API", f"/api/traces/{trace_id}")
    data = poll("queued trace in Jaeger", lambda: get_json(url)["data"], timeout_s=90)
    assert data[0]["spans"][0]["operationName"] == "voice.call"


def test_ports_in_use_are_named(stack: StackSettings) -> None:
    with pytest.raises(control.StackError) as err:
        control.check_ports(stack)
    message = str(err.value)
    host, port = listener("collector", "OTLP/gRPC receiver").address(stack.env)
    assert f"port {port} on {host} (collector OTLP/gRPC receiver)" in message
    assert "COLLECTOR_OTLP_GRPC_ENDPOINT" in message
