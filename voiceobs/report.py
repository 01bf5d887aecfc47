"""``voiceobs report``: walk the correlation path in the terminal, no Grafana needed.

Turn latency P50/P95/P99 per pipeline from Prometheus → the slowest turn's exemplar trace id →
that turn's span in Jaeger → the call's log lines in Loki. This is the two-click path of the
dashboards, done with the backends' HTTP APIs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from voiceobs import semconv as sc

CONSOLE = "http://127.0.0.1:8900"
"""Where ``voiceobs console`` serves the console page by default."""


@dataclass(frozen=True)
class Backends:
    prometheus: str = "http://127.0.0.1:9090"
    jaeger: str = "http://127.0.0.1:16686"
    loki: str = "http://127.0.0.1:3100"


@dataclass
class Exemplar:
    trace_id: str
    span_id: str
    value: float
    labels: dict[str, str]


class ReportError(RuntimeError):
    """A backend did not answer or had no data; the message says which and what to check."""


def _get(client: httpx.Client, url: str, **params: Any) -> Any:
    try:
        response = client.get(url, params=params)
    except httpx.HTTPError as exc:
        raise ReportError(f"{url}: {exc} (is the stack up? make stack-status)") from None
    if response.status_code != 200:
        raise ReportError(f"{url}: HTTP {response.status_code}: {response.text[:200]}")
    return response.json()


def latency_percentiles(
    client: httpx.Client, backends: Backends, service: str, window: str
) -> dict[str, dict[str, float]]:
    """{pipeline: {p50, p95, p99}} of turn latency over ``window``."""
    result: dict[str, dict[str, float]] = {}
    metric = f"{sc.TURN_LATENCY_METRIC.prometheus}_bucket"
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        rate = f'increase({metric}{{job="{service}"}}[{window}])'
        query = f"histogram_quantile({q}, sum by (le, pipeline) ({rate}))"
        data = _get(client, f"{backends.prometheus}/api/v1/query", query=query)
        for series in data["data"]["result"]:
            value = float(series["value"][1])
            if value == value:  # not NaN
                result.setdefault(series["metric"].get("pipeline", "?"), {})[name] = value
    return result


def slowest_exemplar(
    client: httpx.Client, backends: Backends, service: str, since: float
) -> Exemplar | None:
    """The turn-latency exemplar with the highest value since ``since`` (Unix seconds)."""
    data = _get(
        client,
        f"{backends.prometheus}/api/v1/query_exemplars",
        query=f'{sc.TURN_LATENCY_METRIC.prometheus}_bucket{{job="{service}"}}',
        start=f"{since:.3f}",
        end=f"{time.time() + 60:.3f}",
    )
    best: Exemplar | None = None
    for series in data.get("data") or []:
        for item in series.get("exemplars", []):
            labels = item.get("labels", {})
            if "trace_id" not in labels:
                continue
            value = float(item["value"])
            if best is None or value > best.value:
                best = Exemplar(labels["trace_id"], labels.get("span_id", ""), value, labels)
    return best


def trace_span(
    client: httpx.Client, backends: Backends, trace_id: str, span_id: str
) -> dict[str, Any] | None:
    """The span ``span_id`` of trace ``trace_id`` from Jaeger's query API, tags flattened."""
    data = _get(client, f"{backends.jaeger}/api/traces/{trace_id}")
    for trace in data.get("data") or []:
        for span in trace.get("spans", []):
            if span.get("spanID") == span_id or (
                not span_id and span.get("operationName") == sc.SPAN_TURN
            ):
                tags = {t["key"]: t["value"] for t in span.get("tags", [])}
                return {
                    "name": span.get("operationName"),
                    "duration_us": span.get("duration"),
                    "tags": tags,
                }
    return None


def call_logs(
    client: httpx.Client,
    backends: Backends,
    service: str,
    call_id: str,
    since: float,
    limit: int = 20,
) -> list[tuple[str, str, str]]:
    """(time, trace id, line) of the call's log lines in Loki."""
    data = _get(
        client,
        f"{backends.loki}/loki/api/v1/query_range",
        query=f'{{service_name="{service}"}} | voice_call_id="{call_id}"',
        start=str(int(since * 1e9)),
        end=str(int((time.time() + 60) * 1e9)),
        limit=str(limit),
        direction="forward",
    )
    lines = []
    for stream in data["data"]["result"]:
        trace_id = stream["stream"].get("trace_id", "")
        for ts, line in stream["values"]:
            lines.append((ts, trace_id, line))
    return sorted(lines)[:limit]


def run_report(
    service: str = "voiceobs-demo",
    *,
    since: float | None = None,
    window: str = "15m",
    backends: Backends | None = None,
    wait_s: float = 60.0,
    console: str = CONSOLE,
) -> int:
    """Print the report; returns 0 when every step found its data, 1 otherwise.

    Its links open the trace and the call in the console (``voiceobs console``)."""
    backends = backends or Backends()
    since = since if since is not None else time.time() - 3600
    deadline = time.monotonic() + wait_s
    with httpx.Client(timeout=10.0) as client:
        try:
            percentiles: dict[str, dict[str, float]] = {}
            exemplar = None
            while time.monotonic() < deadline:  # metrics arrive every few seconds
                percentiles = latency_percentiles(client, backends, service, window)
                exemplar = slowest_exemplar(client, backends, service, since)
                if percentiles and exemplar is not None:
                    break
                time.sleep(2)
            print(f"\nTurn latency of {service} over the last {window} (Prometheus):")
            print(f"  {'pipeline':20} {'P50':>8} {'P95':>8} {'P99':>8}")
            for pipeline, q in sorted(percentiles.items()):
                cells = " ".join(
                    f"{q.get(k, float('nan')) * 1000:6.0f}ms" for k in ("p50", "p95", "p99")
                )
                flag = "  ← over the 800 ms budget" if q.get("p95", 0) > 0.8 else ""
                print(f"  {pipeline:20} {cells}{flag}")
            if exemplar is None:
                print(
                    "  no turn-latency exemplar yet: "
                    "is the Collector exporting OpenMetrics exemplars?"
                )
                return 1
            print(
                f"\nSlowest turn: {exemplar.value * 1000:.0f} ms, "
                f"exemplar trace_id={exemplar.trace_id} span_id={exemplar.span_id}"
            )
            span = None
            while time.monotonic() < deadline + 30:
                try:
                    span = trace_span(client, backends, exemplar.trace_id, exemplar.span_id)
                except ReportError:
                    span = None
                if span is not None:
                    break
                time.sleep(2)
            if span is None:
                print(f"  Jaeger has no span {exemplar.span_id} in trace {exemplar.trace_id} yet")
                return 1
            tags = span["tags"]
            call_id = str(tags.get(sc.CALL_ID, exemplar.labels.get("voice_call_id", "")))
            print(
                f"  Jaeger: {span['name']} #{tags.get(sc.TURN_NUMBER)} of call {call_id} "
                f"(tenant {tags.get(sc.TENANT)}, pipeline {tags.get(sc.PIPELINE)}), "
                f"{sc.TURN_LATENCY}={tags.get(sc.TURN_LATENCY)}"
            )
            print(f"  open it: {console}/console/#trace={exemplar.trace_id}")
            print(f"  the call: {console}/console/#call={call_id}")
            logs = call_logs(client, backends, service, call_id, since)
            print(f"\nLog lines of call {call_id} (Loki):")
            for _, trace_id, line in logs:
                print(f"  [{trace_id[:8] or '-'}] {line}")
            if not logs:
                print("  none yet")
                return 1
        except ReportError as exc:
            print(f"voiceobs report: {exc}")
            return 1
    print("\nmetric → exemplar → trace → logs: the same path as Grafana's two clicks.")
    print(f"See it in the console: voiceobs console --no-auth, then {console}/console/")
    return 0
