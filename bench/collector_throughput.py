"""Collector throughput: one Collector with the stack's own processors (collector/config.yaml,
exporters swapped for one that keeps nothing by bench/collector-throughput.yaml) takes
20 000 spans/s and 20 000 log records/s over OTLP/HTTP, and every item must come out of it.

The load comes from this process: one thread per signal posting pre-encoded OTLP protobuf
batches shaped like voiceobs' turn spans and call logs (call id, tenant, pipeline, a phone
number for the redaction rules to find) at a fixed rate. Pre-encoding keeps the client's CPU
small, so the Collector has the cores.
"""

from __future__ import annotations

import http.client
import os
import tempfile
import threading
import time
from dataclasses import dataclass

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from bench.collector import Ports, PrivateCollector, deltas
from bench.engine_load import REPO_ROOT
from bench.figures import Figure, Goal

RATE = 20_000
"""Items per second and signal."""
BATCH = 500
PORTS = Ports(grpc=24417, http=24418, telemetry=28898, metrics=None)
CONFIGS = (
    REPO_ROOT / "collector" / "config.yaml",
    REPO_ROOT / "bench" / "collector-throughput.yaml",
)


def _attrs(**values: str | int | float) -> list[KeyValue]:
    out = []
    for key, value in values.items():
        if isinstance(value, str):
            any_value = AnyValue(string_value=value)
        elif isinstance(value, int):
            any_value = AnyValue(int_value=value)
        else:
            any_value = AnyValue(double_value=value)
        out.append(KeyValue(key=key.replace("__", "."), value=any_value))
    return out


RESOURCE = Resource(attributes=_attrs(service__name="bench-throughput"))
SCOPE = InstrumentationScope(name="voiceobs")


def _call_attrs(i: int) -> list[KeyValue]:
    call = f"call-{i // 20}"
    return _attrs(
        voice__call__id=call,
        gen_ai__conversation__id=call,
        voice__tenant="acme",
        voice__pipeline="support",
    )


def span_batch() -> bytes:
    """``BATCH`` turn spans with their attributes and events, encoded once."""
    now = time.time_ns()
    spans = []
    for i in range(BATCH):
        spans.append(
            Span(
                trace_id=(i // 20 + 1).to_bytes(16, "big"),
                span_id=(i + 1).to_bytes(8, "big"),
                parent_span_id=(10_000 + i // 20).to_bytes(8, "big"),
                name="voice.turn",
                kind=Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=now,
                end_time_unix_nano=now + 600_000_000,
                attributes=_call_attrs(i)
                + _attrs(
                    voice__turn__number=i % 20 + 1,
                    voice__turn__latency=0.61,
                    voice__turn__interrupted="false",
                    voice__caller="+1 415 555 0100",
                ),
                events=[
                    Span.Event(time_unix_nano=now, name="voice.user_speech_ended"),
                    Span.Event(time_unix_nano=now + 1, name="voice.agent_audio_started"),
                ],
            )
        )
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource=RESOURCE, scope_spans=[ScopeSpans(scope=SCOPE, spans=spans)])
        ]
    )
    return request.SerializeToString()


def log_batch() -> bytes:
    """``BATCH`` call log records carrying trace and span ids, encoded once."""
    now = time.time_ns()
    records = [
        LogRecord(
            time_unix_nano=now,
            observed_time_unix_nano=now,
            severity_number=9,
            severity_text="INFO",
            body=AnyValue(string_value=f"caller +1 415 555 0100 asked about order {i}"),
            attributes=_call_attrs(i),
            trace_id=(i // 20 + 1).to_bytes(16, "big"),
            span_id=(i + 1).to_bytes(8, "big"),
        )
        for i in range(BATCH)
    ]
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=RESOURCE, scope_logs=[ScopeLogs(scope=SCOPE, log_records=records)]
            )
        ]
    )
    return request.SerializeToString()


@dataclass
class Sent:
    """What one sender thread got through, and what the Collector told it it rejected."""

    items: int = 0
    failed_requests: int = 0
    rejected: int = 0
    error: str = ""
    window_s: float = 0.0
    """The time the load took: its schedule (batches x interval), or longer if the Collector
    held the sender back so that its last batch went out late."""
    late_s: float = 0.0
    """How late the last batch went out against its schedule."""


def _send(path: str, body: bytes, seconds: float, sent: Sent) -> None:
    """Post ``body`` (``BATCH`` items) at ``RATE`` items/s for ``seconds`` on one keep-alive
    connection; a request that fails is counted, never retried."""
    connection = http.client.HTTPConnection("127.0.0.1", PORTS.http, timeout=10)
    headers = {"Content-Type": "application/x-protobuf"}
    response_type = (
        ExportTraceServiceResponse if path == "/v1/traces" else ExportLogsServiceResponse
    )
    interval = BATCH / RATE
    began = time.monotonic()
    batches = int(seconds / interval)
    last_sent = began
    try:
        for n in range(batches):
            delay = began + n * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            last_sent = time.monotonic()
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                sent.failed_requests += 1
                continue
            partial = response_type.FromString(payload).partial_success
            rejected = getattr(partial, "rejected_spans", 0) or getattr(
                partial, "rejected_log_records", 0
            )
            sent.rejected += rejected
            sent.items += BATCH - rejected
    except OSError as exc:
        sent.error = repr(exc)
    finally:
        connection.close()
        # Each batch is the load of one interval. A Collector that keeps up lets every batch
        # go out on time, but for the sender's own sleep jitter (under an interval); one that
        # cannot holds the synchronous sender back more and more (seconds by the end of the
        # run), and then the load took until one interval after its last batch. The latency
        # of the last answer is not throughput.
        sent.late_s = max(0.0, last_sent - began - (batches - 1) * interval)
        schedule = batches * interval
        sent.window_s = schedule if sent.late_s <= interval else schedule + sent.late_s


def measure(seconds: float) -> list[Figure]:
    print(
        f"[bench] Collector throughput: {RATE} spans/s + {RATE} logs/s, {seconds:.0f} s",
        flush=True,
    )
    group = "Collector throughput, stack processors, one Collector"
    bodies = {"/v1/traces": span_batch(), "/v1/logs": log_batch()}
    with tempfile.TemporaryDirectory(prefix="bench-collector-") as storage:
        env = {
            "COLLECTOR_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{PORTS.grpc}",
            "COLLECTOR_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{PORTS.http}",
            "COLLECTOR_TELEMETRY_PORT": str(PORTS.telemetry),
            "COLLECTOR_STORAGE_DIR": storage,
            "COLLECTOR_HEALTH_ENDPOINT": "127.0.0.1:0",
            "COLLECTOR_PPROF_ENDPOINT": "127.0.0.1:0",
            "COLLECTOR_ZPAGES_ENDPOINT": "127.0.0.1:0",
            "COLLECTOR_REMOTE_WRITE_STAGE_ENDPOINT": "127.0.0.1:0",
            "COLLECTOR_PROMETHEUS_ENDPOINT": "127.0.0.1:0",
        }
        with PrivateCollector(configs=list(CONFIGS), env=env, ports=PORTS) as c:
            before = c.counts()
            cpu = c.cpu_seconds()
            client_cpu = time.process_time()
            began = time.monotonic()
            sent = {path: Sent() for path in bodies}
            threads = [
                threading.Thread(target=_send, args=(path, body, seconds, sent[path]))
                for path, body in bodies.items()
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(seconds + 60)
            wall = time.monotonic() - began
            collector_cpu = 100 * (c.cpu_seconds() - cpu) / wall
            client = 100 * (time.process_time() - client_cpu) / wall
            rss = c.rss_mib()
            deadline = time.monotonic() + 15  # the exporters drain
            while True:
                seen = deltas(before, c.counts())
                drained = all(
                    seen[f"sent_{s}"] >= seen[f"accepted_{s}"] for s in ("spans", "log_records")
                )
                if drained or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
    figures = []
    for path, signal, unit in (
        ("/v1/traces", "spans", "spans/s"),
        ("/v1/logs", "log_records", "log records/s"),
    ):
        s = sent[path]
        if s.error:
            raise OSError(f"the {signal} sender failed: {s.error}")
        made = (s.items + s.rejected) + s.failed_requests * BATCH
        lost = made - seen[f"sent_{signal}"]
        figures += [
            Figure(
                f"collector-{signal.replace('_', '-')}-rate",
                group,
                f"{signal.replace('_', ' ')} taken per second (target {RATE})",
                seen[f"accepted_{signal}"] / s.window_s,
                unit,
                goal=Goal(">=", RATE, on_ratio=False),
                note=f"over {s.window_s:.3f} s, the last batch {1e3 * s.late_s:.1f} ms late "
                f"(up to one {1e3 * BATCH / RATE:.0f} ms interval the schedule counts); "
                f"{s.failed_requests} requests failed, {s.rejected} items rejected",
            ),
            Figure(
                f"collector-{signal.replace('_', '-')}-lost",
                group,
                f"{signal.replace('_', ' ')} sent but not exported by the Collector",
                lost,
                "items",
                goal=Goal("<=", 0, on_ratio=False),
                note=f"{made} sent, {seen[f'accepted_{signal}']:.0f} accepted, "
                f"{seen[f'sent_{signal}']:.0f} exported, "
                f"{seen[f'refused_{signal}']:.0f} refused",
            ),
        ]
    figures += [
        Figure(
            "collector-throughput-cpu",
            group,
            "Collector CPU at that load",
            collector_cpu,
            "% of a core",
            note=f"RSS {rss:.0f} MiB; load client {client:.0f} % of a core",
        ),
    ]
    return figures


if __name__ == "__main__":
    from bench.report import print_table

    print_table(measure(float(os.environ.get("BENCH_SECONDS", "10"))))
