"""Acknowledged means durable, measured from outside on the native stack.

The sender is not our library and cannot drop: a raw OTLP/gRPC client on the
opentelemetry-proto stubs that re-sends each request until the Collector answers OK
(a request the Collector acknowledged with rejected items would fail the test). It
sends at >= 2 000 items/s per signal while a fault happens, then counts what each
backend stored:

* the Collector SIGKILLed mid-load and restarted by supervisord;
* Jaeger, Loki or Prometheus stopped for 60 s under load, then started again.

Each test prints sent and stored counts. Spans are counted by distinct span id in
Jaeger, log records with Loki's count_over_time, metric points as stored samples
(one per counter point, one ``_count`` sample per histogram point) plus the final
counter totals and histogram counts. Loads are bounded in items, waits in time.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from stack import control
from stack.services import services
from stack.settings import StackSettings, listener

pytestmark = pytest.mark.stack

RATE = 2_000
"""Items per second and signal (spans, log records, metric points)."""
BATCH = 500
"""Spans or log records per request."""
SPANS_PER_TRACE = 1_000
COUNTERS, HISTOGRAMS = 800, 200
"""Metric points per push: one per series; pushed every (COUNTERS + HISTOGRAMS) / RATE s."""
BOUNDS = (0.1, 0.5, 1.0)
SEND_DEADLINE_S = 180.0
"""How long one request is re-sent before the test gives up on the Collector."""
STORE_DEADLINE_S = 240.0
"""How long a backend may take to hold everything after the fault ends."""
OUTAGE_S = 60.0

Say = Callable[[str], None]


def get_json(url: str, params: dict[str, str] | None = None) -> Any:
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.load(resp)


def _attr(key: str, value: str) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


class AckingSender:
    """A raw OTLP/gRPC client: each request is re-sent until the Collector answers OK.

    Nothing is queued in memory, so nothing can be dropped: an item counts as sent
    only once the Collector acknowledged the request that carried it.
    """

    def __init__(self, endpoint: str) -> None:
        self._channel = grpc.insecure_channel(endpoint)
        self.traces = trace_service_pb2_grpc.TraceServiceStub(self._channel)
        self.logs = logs_service_pb2_grpc.LogsServiceStub(self._channel)
        self.metrics = metrics_service_pb2_grpc.MetricsServiceStub(self._channel)
        self.retries = 0

    def send(self, export: Callable[..., Any], request: Any) -> int:
        """Send until acknowledged; return the items the Collector rejected (want 0)."""
        deadline = time.monotonic() + SEND_DEADLINE_S
        while True:
            try:
                response = export(request, timeout=10)
            except grpc.RpcError as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(f"not acknowledged within {SEND_DEADLINE_S}s") from exc
                self.retries += 1
                time.sleep(0.2)
                continue
            partial = response.partial_success
            return int(
                getattr(partial, "rejected_spans", 0)
                or getattr(partial, "rejected_log_records", 0)
                or getattr(partial, "rejected_data_points", 0)
            )

    def close(self) -> None:
        self._channel.close()


@dataclass
class Load:
    """What one run sent, by signal; filled by the sender threads."""

    service: str
    run: bytes = field(default_factory=lambda: uuid.uuid4().bytes[:8])
    spans: int = 0
    logs: int = 0
    points: int = 0
    counter_total: int = 0
    histogram_count: int = 0
    pushes: int = 0
    rejected: int = 0
    errors: list[BaseException] = field(default_factory=list)

    def resource(self) -> resource_pb2.Resource:
        return resource_pb2.Resource(
            attributes=[_attr("service.name", self.service), _attr("service.instance.id", "1")]
        )


def _paced(total: int, per_step: int, step: Callable[[int], None]) -> None:
    """Call ``step(first_index)`` for each slice of ``per_step`` items, at RATE items/s.

    Bounded by item count: after a stall (the Collector down) it catches up at once.
    """
    started = time.monotonic()
    for first in range(0, total, per_step):
        wait = started + first / RATE - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        step(first)


def _send_batches(
    sender: AckingSender,
    load: Load,
    total: int,
    export: Callable[..., Any],
    build: Callable[[range, int], Any],
    counter: str,
) -> None:
    """Send ``total`` items in requests of BATCH, built by ``build(seqs, now_ns)``."""

    def step(first: int) -> None:
        seqs = range(first, min(first + BATCH, total))
        load.rejected += sender.send(export, build(seqs, time.time_ns()))
        setattr(load, counter, getattr(load, counter) + len(seqs))

    _paced(total, BATCH, step)


def send_spans(sender: AckingSender, load: Load, total: int) -> None:
    def build(seqs: range, now: int) -> trace_service_pb2.ExportTraceServiceRequest:
        spans = [
            trace_pb2.Span(
                trace_id=load.run + (seq // SPANS_PER_TRACE).to_bytes(8, "big"),
                span_id=(seq + 1).to_bytes(8, "big"),
                name="fault.span",
                kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=now,
                end_time_unix_nano=now + 1_000_000,
            )
            for seq in seqs
        ]
        scope = trace_pb2.ScopeSpans(spans=spans)
        return trace_service_pb2.ExportTraceServiceRequest(
            resource_spans=[trace_pb2.ResourceSpans(resource=load.resource(), scope_spans=[scope])]
        )

    _send_batches(sender, load, total, sender.traces.Export, build, "spans")


def send_logs(sender: AckingSender, load: Load, total: int) -> None:
    def build(seqs: range, now: int) -> logs_service_pb2.ExportLogsServiceRequest:
        records = [
            logs_pb2.LogRecord(
                time_unix_nano=now,
                observed_time_unix_nano=now,
                severity_number=logs_pb2.SEVERITY_NUMBER_INFO,
                severity_text="INFO",
                body=common_pb2.AnyValue(string_value=f"fault log {seq}"),
            )
            for seq in seqs
        ]
        scope = logs_pb2.ScopeLogs(log_records=records)
        return logs_service_pb2.ExportLogsServiceRequest(
            resource_logs=[logs_pb2.ResourceLogs(resource=load.resource(), scope_logs=[scope])]
        )

    _send_batches(sender, load, total, sender.logs.Export, build, "logs")


def send_metrics(sender: AckingSender, load: Load, total: int) -> None:
    """Cumulative counters (+1 a push) and histograms (+3 observations a push)."""
    started = time.time_ns()
    per_push = COUNTERS + HISTOGRAMS

    def step(first: int) -> None:
        push = first // per_push + 1
        now = time.time_ns()
        counters = [
            metrics_pb2.NumberDataPoint(
                attributes=[_attr("series", str(i))],
                start_time_unix_nano=started,
                time_unix_nano=now,
                as_int=push,
            )
            for i in range(COUNTERS)
        ]
        histograms = [
            metrics_pb2.HistogramDataPoint(
                attributes=[_attr("series", str(i))],
                start_time_unix_nano=started,
                time_unix_nano=now,
                count=3 * push,
                sum=1.5 * push,
                explicit_bounds=BOUNDS,
                bucket_counts=[push, push, push, 0],
            )
            for i in range(HISTOGRAMS)
        ]
        cumulative = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        request = metrics_service_pb2.ExportMetricsServiceRequest(
            resource_metrics=[
                metrics_pb2.ResourceMetrics(
                    resource=load.resource(),
                    scope_metrics=[
                        metrics_pb2.ScopeMetrics(
                            metrics=[
                                metrics_pb2.Metric(
                                    name="faults.points",
                                    sum=metrics_pb2.Sum(
                                        data_points=counters,
                                        aggregation_temporality=cumulative,
                                        is_monotonic=True,
                                    ),
                                ),
                                metrics_pb2.Metric(
                                    name="faults.latency",
                                    unit="s",
                                    histogram=metrics_pb2.Histogram(
                                        data_points=histograms,
                                        aggregation_temporality=cumulative,
                                    ),
                                ),
                            ]
                        )
                    ],
                )
            ]
        )
        load.rejected += sender.send(sender.metrics.Export, request)
        load.points += per_push
        load.pushes = push
        load.counter_total = COUNTERS * push
        load.histogram_count = HISTOGRAMS * 3 * push

    _paced(total - total % per_push, per_push, step)


@dataclass
class Running:
    load: Load
    threads: list[threading.Thread]
    sender: AckingSender

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=SEND_DEADLINE_S + 300)
            assert not thread.is_alive(), f"{thread.name} did not finish"
        self.sender.close()
        assert not self.load.errors, self.load.errors
        assert self.load.rejected == 0, f"the Collector rejected {self.load.rejected} items"


def start_load(stack: StackSettings, signals: dict[str, int]) -> Running:
    """Start one sender thread per signal, each sending ``signals[name]`` items."""
    grpc_endpoint = listener("collector", "OTLP/gRPC receiver").hostport(stack.env)
    sender = AckingSender(grpc_endpoint)
    load = Load(service=f"faults-{uuid.uuid4().hex[:8]}")
    senders = {"spans": send_spans, "logs": send_logs, "metrics": send_metrics}
    threads = []
    for name, total in signals.items():

        def run(
            fn: Callable[[AckingSender, Load, int], None] = senders[name], n: int = total
        ) -> None:
            try:
                fn(sender, load, n)
            except BaseException as exc:  # reported by join()
                load.errors.append(exc)

        thread = threading.Thread(target=run, name=f"send-{name}", daemon=True)
        thread.start()
        threads.append(thread)
    return Running(load, threads, sender)


# --- what the backends hold ------------------------------------------------------------


def jaeger_span_ids(stack: StackSettings, load: Load, known: dict[str, set[str]]) -> int:
    """Distinct span ids of this run in Jaeger; complete traces are not fetched again."""
    for index in range((load.spans + SPANS_PER_TRACE - 1) // SPANS_PER_TRACE):
        trace_id = (load.run + index.to_bytes(8, "big")).hex()
        expected = min(SPANS_PER_TRACE, load.spans - index * SPANS_PER_TRACE)
        if len(known.get(trace_id, ())) >= expected:
            continue
        url = stack.url("jaeger", "query HTTP API", f"/api/traces/{trace_id}")
        try:
            data = get_json(url)["data"]
        except (OSError, ValueError):  # 404 until the first span of the trace is stored
            continue
        known[trace_id] = {span["spanID"] for trace in data for span in trace["spans"]}
    return sum(len(ids) for ids in known.values())


def loki_count(stack: StackSettings, load: Load) -> int:
    url = stack.url("loki", "HTTP API", "/loki/api/v1/query")
    query = f'sum(count_over_time({{service_name="{load.service}"}}[1h]))'
    result = get_json(url, {"query": query, "time": str(time.time_ns())})["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def prometheus_value(stack: StackSettings, query: str) -> int:
    url = stack.url("prometheus", "web/API", "/api/v1/query")
    result = get_json(url, {"query": query})["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


@dataclass
class MetricsStored:
    points: int
    counter_total: int
    histogram_count: int


def prometheus_stored(stack: StackSettings, load: Load) -> MetricsStored:
    job = f'job="{load.service}"'
    samples = prometheus_value(
        stack, f"sum(count_over_time(faults_points_total{{{job}}}[1h]))"
    ) + prometheus_value(stack, f"sum(count_over_time(faults_latency_seconds_count{{{job}}}[1h]))")
    return MetricsStored(
        points=samples,
        counter_total=prometheus_value(stack, f"sum(faults_points_total{{{job}}})"),
        histogram_count=prometheus_value(stack, f"sum(faults_latency_seconds_count{{{job}}})"),
    )


def wait_until_stored(what: str, probe: Callable[[], Any], want: Any) -> Any:
    """Poll ``probe`` until it returns ``want`` or STORE_DEADLINE_S passes; return the last."""
    deadline = time.monotonic() + STORE_DEADLINE_S
    got = None
    while time.monotonic() < deadline:
        try:
            got = probe()
        except (OSError, ValueError, KeyError, IndexError):
            got = None
        if got == want:
            return got
        time.sleep(3)
    return got


def check_spans(stack: StackSettings, load: Load, say: Say) -> None:
    known: dict[str, set[str]] = {}
    stored = wait_until_stored("spans", lambda: jaeger_span_ids(stack, load, known), load.spans)
    say(f"[faults] spans: sent {load.spans}, stored in Jaeger {stored}")
    assert stored == load.spans


def check_logs(stack: StackSettings, load: Load, say: Say) -> None:
    stored = wait_until_stored("logs", lambda: loki_count(stack, load), load.logs)
    say(f"[faults] log records: sent {load.logs}, stored in Loki {stored}")
    assert stored == load.logs


def check_metrics(stack: StackSettings, load: Load, say: Say) -> None:
    want = MetricsStored(load.points, load.counter_total, load.histogram_count)
    stored = wait_until_stored("metrics", lambda: prometheus_stored(stack, load), want)
    say(
        f"[faults] metric points: sent {load.points} ({load.pushes} pushes), stored in "
        f"Prometheus {stored and stored.points}; counter total sent {load.counter_total}, "
        f"stored {stored and stored.counter_total}; histogram count sent "
        f"{load.histogram_count}, stored {stored and stored.histogram_count}"
    )
    assert stored == want


def collector_self_metrics(stack: StackSettings) -> str:
    """The Collector's own metrics, as text."""
    url = stack.url("collector", "own telemetry", "/metrics")
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def component_value(text: str, name: str, component: str, label: str = "exporter") -> float:
    """One component's value of a Collector self-metric in ``text``, summed over its series
    (failures come by error type); 0 while there is none. ``label`` names the component."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(f"{name}{{") and f'{label}="{component}"' in line
    )


def collector_metric(
    stack: StackSettings, name: str, component: str, label: str = "exporter"
) -> float:
    """One component's value of a Collector self-metric, read from the Collector itself."""
    return component_value(collector_self_metrics(stack), name, component, label)


# --- the faults ------------------------------------------------------------------------


@pytest.fixture
def collector_restarts(stack: StackSettings) -> Iterator[Callable[[], None]]:
    """SIGKILL the Collector; supervisord starts it again; wait until it is ready."""
    collector = [s for s in services(stack) if s.name == "collector"]

    def kill() -> None:
        pid = int(control.process_info(stack)["collector"]["pid"])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            info = control.process_info(stack).get("collector", {})
            if info.get("statename") == "RUNNING" and int(info.get("pid", 0)) not in (0, pid):
                break
            assert time.monotonic() < deadline, f"collector not restarted: {info}"
            time.sleep(0.2)
        control.wait_ready(stack, collector)

    yield kill
    if control.process_info(stack).get("collector", {}).get("statename") != "RUNNING":
        control.start_service(stack, "collector")


def test_collector_sigkilled_mid_load_loses_nothing_acknowledged(
    stack: StackSettings, collector_restarts: Callable[[], None], report: Say
) -> None:
    items = 10 * RATE  # 10 s of each signal; the kill comes at 5 s
    running = start_load(stack, {"spans": items, "logs": items, "metrics": items})
    time.sleep(5)
    collector_restarts()
    running.join()
    load = running.load
    report(f"[faults] Collector SIGKILLed at 5 s; {running.sender.retries} requests re-sent")
    check_spans(stack, load, report)
    check_logs(stack, load, report)
    check_metrics(stack, load, report)


OUTAGES = {
    "jaeger": ("spans", check_spans, "otlp_grpc/jaeger"),
    "loki": ("logs", check_logs, "otlp_http/loki"),
    "prometheus": ("metrics", check_metrics, "otlp_grpc/remote_write_stage"),
}


@pytest.mark.parametrize("backend", list(OUTAGES))
def test_backend_down_for_a_minute_under_load_loses_nothing(
    stack: StackSettings, backend: str, report: Say
) -> None:
    signal_name, check, exporter = OUTAGES[backend]
    items = int((OUTAGE_S + 15) * RATE)  # the outage runs from 5 s to 65 s of 75 s of load
    running = start_load(stack, {signal_name: items})
    time.sleep(5)
    control.stop_service(stack, backend)
    try:
        time.sleep(OUTAGE_S)
        if exporter:  # bytes waiting on disk after a minute: what the queue bound buys
            queued = collector_metric(stack, "otelcol_exporter_queue_size", exporter)
            sent = getattr(running.load, "points" if signal_name == "metrics" else signal_name)
            report(
                f"[faults] {exporter} queue after {OUTAGE_S:.0f} s of outage: {queued:.0f} bytes"
                f" for ~{OUTAGE_S * RATE:.0f} items ({queued / max(OUTAGE_S * RATE, 1):.0f}"
                f" bytes/item; {sent} sent so far)"
            )
    finally:
        control.start_service(stack, backend)
    running.join()
    report(f"[faults] {backend} down {OUTAGE_S:.0f} s under load")
    check(stack, running.load, report)


def one_counter_point(load: Load, name: str, at_ns: int, value: int = 1) -> Any:
    """A request with one cumulative counter point of ``name`` at ``at_ns``."""
    point = metrics_pb2.NumberDataPoint(
        start_time_unix_nano=at_ns - 10**9, time_unix_nano=at_ns, as_int=value
    )
    counter = metrics_pb2.Sum(
        data_points=[point],
        aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
        is_monotonic=True,
    )
    metric = metrics_pb2.Metric(name=name, sum=counter)
    scope = metrics_pb2.ScopeMetrics(metrics=[metric])
    return metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(resource=load.resource(), scope_metrics=[scope])
        ]
    )


REFUSAL_COUNTS = {
    "prometheus_remote_write": ("otelcol_exporter_send_failed_metric_points", "exporter"),
    "otlp_grpc/remote_write_stage": ("otelcol_exporter_send_failed_metric_points", "exporter"),
    "filter/older_than_prometheus_window": (
        "otelcol_processor_filter_datapoints_filtered",
        "filter",
    ),
}
"""Where refused metric points are counted: failed by both stages of the remote-write path,
or filtered before it as too old for Prometheus."""


def refusal_counts(stack: StackSettings) -> dict[str, float]:
    """Each of REFUSAL_COUNTS' components, from one read of the Collector's metrics."""
    text = collector_self_metrics(stack)
    return {
        component: component_value(text, name, component, label)
        for component, (name, label) in REFUSAL_COUNTS.items()
    }


def test_points_prometheus_refuses_are_dropped_counted_and_metrics_flow_on(
    stack: StackSettings, report: Say
) -> None:
    """Nothing Prometheus refuses may hold the metrics path: a conflicting duplicate (400) is
    dropped and counted by both stages; a point older than Prometheus' out-of-order window
    (refused with the whole request carrying it) is dropped and counted before remote write;
    the queue empties and the next metrics are stored."""
    sender = AckingSender(listener("collector", "OTLP/gRPC receiver").hostport(stack.env))
    load = Load(service=f"faults-{uuid.uuid4().hex[:8]}")
    before = refusal_counts(stack)

    def send(name: str, at_ns: int, value: int = 1) -> None:
        assert sender.send(sender.metrics.Export, one_counter_point(load, name, at_ns, value)) == 0

    def stored(query: str) -> int:
        return prometheus_value(stack, query.replace("JOB", f'job="{load.service}"'))

    at = time.time_ns()
    send("faults.conflict", at, 1)
    assert wait_until_stored("first value", lambda: stored("faults_conflict_total{JOB}"), 1) == 1
    send("faults.conflict", at, 2)  # the same timestamp, another value: refused for good (400)
    three_hours_ago = time.time_ns() - 3 * 3600 * 10**9
    send("faults.too_old", three_hours_ago)

    def counted() -> bool:
        now = refusal_counts(stack)
        return all(now[c] > before[c] for c in now)

    assert wait_until_stored("refusals", counted, True), (
        f"not counted: {refusal_counts(stack)} (before {before})"
    )
    grown = {c: v - before[c] for c, v in refusal_counts(stack).items()}
    report(
        "[faults] a conflicting duplicate, refused by Prometheus (400), and a 3 h old point,"
        f" filtered before remote write: counted {grown}"
    )

    send("faults.after_refusal", time.time_ns())
    sender.close()
    after = wait_until_stored("after refusal", lambda: stored("faults_after_refusal_total{JOB}"), 1)
    report(f"[faults] the next point after the refusals: sent 1, stored {after}")
    assert after == 1
    assert stored("faults_conflict_total{JOB}") == 1  # the first value stands
    assert stored("count(faults_too_old_total{JOB})") == 0
    queued = collector_metric(stack, "otelcol_exporter_queue_size", "otlp_grpc/remote_write_stage")
    assert queued == 0, f"{queued} bytes still queued in front of remote write"
