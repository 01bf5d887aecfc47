"""The dashboard's answers, each built from backend queries in one caller's scope.

Prometheus gives the figures (recording rules of prometheus/rules/recording.yml where they
exist), Jaeger the calls and their turns, Loki the calls' log lines. A query that finds
nothing leaves its figure ``None`` and says so in ``missing``; a backend that is down raises
:class:`~voiceobs.api.backends.BackendUnavailable` unless the answer can go on without it.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from voiceobs import semconv as sc
from voiceobs.api import models as m
from voiceobs.api.backends import Backends, BackendUnavailable
from voiceobs.api.queries import Scope, counted

QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
STAGE_METRICS = {
    "eou_delay": sc.EOU_DELAY.prometheus,
    "stt": sc.STT_LATENCY.prometheus,
    "llm_ttft": sc.LLM_TTFT.prometheus,
    "tts_ttfb": sc.TTS_TTFB.prometheus,
}
CIRCUIT_NAMES: dict[int, Literal["closed", "half_open", "open"]] = {
    0: "closed",
    1: "half_open",
    2: "open",
}
SUCCESS_STATUSES = 'status=~"completed|transferred"'
STAGE_NAMES = {sc.SPAN_STT: "stt", sc.SPAN_LLM: "llm", sc.SPAN_TTS: "tts", sc.SPAN_TOOL: "tool"}


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def _by(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    """{label value: sample value} of an instant vector, NaN left out."""
    out: dict[str, float] = {}
    for series in result:
        value = _number(series["value"][1])
        if value is not None:
            out[series["metric"].get(label, "")] = value
    return out


def _scalar(result: list[dict[str, Any]]) -> float | None:
    return _number(result[0]["value"][1]) if result else None


async def _quantiles_by(
    backends: Backends, histogram: str, scope: Scope, window: str, by: str, at: float
) -> dict[str, m.Percentiles]:
    """P50/P95/P99 of ``histogram`` over ``window`` per ``by`` label, from its buckets, as
    of ``at``."""
    bucket = scope.sel(f"{histogram}_bucket")
    queries = {
        name: f"histogram_quantile({q}, sum by ({by}, le) (rate({bucket}[{window}])))"
        for name, q in QUANTILES.items()
    }
    results = await asyncio.gather(*(backends.instant(query, at) for query in queries.values()))
    out: dict[str, dict[str, float]] = {}
    for name, result in zip(queries, results, strict=True):
        for key, value in _by(result, by).items():
            out.setdefault(key, {})[name] = value
    return {key: m.Percentiles(**values) for key, values in out.items()}


async def latency(backends: Backends, scope: Scope, window: str) -> m.LatencyReport:
    """Turn latency and its parts, P50/P95/P99 per pipeline over ``window``, all as of one
    instant: a pipeline whose last turn is leaving the window is in every part or in none."""
    at = time.time()
    parts = {"turn": sc.TURN_LATENCY_METRIC.prometheus, **STAGE_METRICS}
    results = await asyncio.gather(
        *(
            _quantiles_by(backends, metric, scope, window, sc.L_PIPELINE, at)
            for metric in parts.values()
        )
    )
    per_part = dict(zip(parts, results, strict=True))
    pipelines = sorted(set().union(*(r.keys() for r in results)))
    missing = [
        f"{part}: no {parts[part]} samples in the last {window}"
        for part, values in per_part.items()
        if not values
    ]
    empty = m.Percentiles()
    rows = [
        m.PipelineLatency(pipeline=p, **{part: per_part[part].get(p, empty) for part in parts})
        for p in pipelines
    ]
    return m.LatencyReport(
        window=window, evaluated_at=at, tenant=scope.tenant, pipelines=rows, missing=missing
    )


def _month_bounds(now: datetime, months: int) -> list[tuple[str, float, float]]:
    """(YYYY-MM, start, end) of the current and previous ``months - 1`` calendar months."""
    bounds = []
    year, month = now.year, now.month
    for _ in range(months):
        start = datetime(year, month, 1, tzinfo=UTC)
        ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
        end = min(datetime(ny, nm, 1, tzinfo=UTC), now)
        bounds.append((f"{year:04d}-{month:02d}", start.timestamp(), end.timestamp()))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return bounds


async def cost(backends: Backends, scope: Scope, window: str, months: int) -> m.CostReport:
    """Spend over ``window`` per tenant, component and provider; per call; per month."""
    spent = counted(scope.sel(sc.COST.prometheus), window)
    call_cost = scope.sel(sc.CALL_COST_METRIC.prometheus + "_sum")
    call_count = scope.sel(sc.CALL_COST_METRIC.prometheus + "_count")
    call_seconds = scope.sel(sc.CALL_DURATION.prometheus + "_sum")
    queries = [
        f"sum({spent})",
        f"sum by ({sc.L_TENANT}) ({spent})",
        f"sum by ({sc.L_COMPONENT}) ({spent})",
        f"sum by ({sc.L_PROVIDER}) ({spent})",
        f"sum({counted(call_cost, window)}) / (sum({counted(call_count, window)}) > 0)",
        f"sum({counted(call_cost, window)}) / (sum({counted(call_seconds, window)}) / 60 > 0)",
    ]
    now = datetime.now(UTC)
    instant = partial(backends.instant, at=now.timestamp())
    month_queries = []
    for name, start, end in _month_bounds(now, months):
        span_s = max(int(end - start), 60)
        query = f"sum({counted(scope.sel(sc.COST.prometheus), f'{span_s}s')})"
        month_queries.append((name, backends.instant(query, at=end)))
    answers = await asyncio.gather(*(instant(q) for q in queries), *(q for _, q in month_queries))
    total, by_tenant, by_component, by_provider, per_call, per_minute = answers[:6]
    by_month = [
        m.MonthCost(month=name, usd=_scalar(result) or 0.0)
        for (name, _), result in zip(month_queries, answers[6:], strict=True)
    ]
    missing = []
    if not total:
        missing.append(f"total_usd: no {sc.COST.prometheus} samples in the last {window}")
    if not per_call:
        missing.append(f"per_call_usd: no call ended in the last {window}")
    if not per_minute:
        missing.append(f"per_call_minute_usd: no call ended in the last {window}")
    return m.CostReport(
        window=window,
        tenant=scope.tenant,
        total_usd=_scalar(total),
        per_call_usd=_scalar(per_call),
        per_call_minute_usd=_scalar(per_minute),
        by_tenant=_by(by_tenant, sc.L_TENANT),
        by_component=_by(by_component, sc.L_COMPONENT),
        by_provider=_by(by_provider, sc.L_PROVIDER),
        by_month=by_month,
        missing=missing,
    )


async def calls(backends: Backends, scope: Scope, window: str) -> m.CallsReport:
    """Calls ended over ``window``: total, per status, success rate, failure reasons."""
    ended = counted(scope.sel(sc.CALLS.prometheus), window)
    failed_calls = scope.sel(sc.CALLS.prometheus, 'status="failed"')
    failed = counted(failed_calls, window)
    instant = partial(backends.instant, at=time.time())
    by_status, reasons = await asyncio.gather(
        instant(f"sum by ({sc.L_STATUS}) ({ended})"),
        instant(f"sum by ({sc.L_FAILURE_REASON}) ({failed})"),
    )
    statuses = _by(by_status, sc.L_STATUS)
    total = sum(statuses.values())
    served = statuses.get("completed", 0.0) + statuses.get("transferred", 0.0)
    missing = [] if statuses else [f"calls: no call ended in the last {window}"]
    return m.CallsReport(
        window=window,
        tenant=scope.tenant,
        total=total,
        by_status=statuses,
        success_rate=served / total if total > 0 else None,
        failure_reasons=_by(reasons, sc.L_FAILURE_REASON),
        missing=missing,
    )


async def _ready(backends: Backends) -> dict[str, bool]:
    names = ("prometheus", "jaeger", "loki")
    states = await asyncio.gather(*(backends.ready(name) for name in names))
    return dict(zip(names, states, strict=True))


async def health(backends: Backends, scope: Scope) -> m.HealthReport:
    """Backends' readiness; workers and providers for an unscoped caller (shared machinery)."""
    ready = await _ready(backends)
    missing = [f"{name}: not ready" for name, ok in ready.items() if not ok]
    workers: list[m.WorkerHealth] = []
    providers: list[m.ProviderHealth] = []
    if scope.tenant is not None:
        missing.append("workers, providers: shared by all tenants, shown to unscoped credentials")
    elif ready["prometheus"]:
        workers, providers = await _machinery(backends, scope)
        if not workers:
            missing.append(f"workers: no process metrics of job {scope.service!r}")
    return m.HealthReport(
        status="ok" if all(ready.values()) else "degraded",
        backends=ready,
        workers=workers,
        providers=providers,
        missing=missing,
    )


def _provider_key(series: dict[str, Any]) -> tuple[str, str]:
    labels = series["metric"]
    return labels.get(sc.L_PROVIDER, ""), labels.get(sc.L_COMPONENT, "")


async def _machinery(
    backends: Backends, scope: Scope
) -> tuple[list[m.WorkerHealth], list[m.ProviderHealth]]:
    instant = partial(backends.instant, at=time.time())
    memory, ratio, cpu, active, rate, errors, circuit = await asyncio.gather(
        instant(f"sum by (instance) ({scope.sel('process_memory_usage_bytes')})"),
        instant(scope.sel("job_instance:process_memory_usage_bytes:ratio_limit")),
        instant(f"avg by (instance) ({scope.sel('process_cpu_utilization_ratio')})"),
        instant(f"sum by (instance) ({scope.sel(sc.CALLS_ACTIVE.prometheus)})"),
        instant("provider_component:voice_provider_requests:rate2m"),
        instant("provider_component:voice_provider_requests:error_ratio_rate5m"),
        instant(
            f"max by (provider) ({scope.sel(sc.CIRCUIT_STATE.prometheus, tenant_label=False)})"
        ),
    )
    memory_by, ratio_by = _by(memory, "instance"), _by(ratio, "instance")
    cpu_by, active_by = _by(cpu, "instance"), _by(active, "instance")
    workers = [
        m.WorkerHealth(
            instance=instance,
            memory_bytes=memory_by.get(instance),
            memory_ratio_of_limit=ratio_by.get(instance),
            cpu_utilization=cpu_by.get(instance),
            calls_active=active_by.get(instance),
        )
        for instance in sorted(set(memory_by) | set(active_by))
    ]
    circuit_by = _by(circuit, sc.L_PROVIDER)
    error_by = {_provider_key(s): _number(s["value"][1]) for s in errors}
    providers = []
    for series in rate:
        provider, component = _provider_key(series)
        state = circuit_by.get(provider)
        providers.append(
            m.ProviderHealth(
                provider=provider,
                component=component,
                requests_per_s=_number(series["value"][1]) or 0.0,
                error_ratio=error_by.get((provider, component)),
                circuit_state=CIRCUIT_NAMES.get(int(state)) if state is not None else None,
            )
        )
    return workers, providers


async def overview(backends: Backends, scope: Scope) -> m.DashboardMetrics:
    """The live figures over the last 5 minutes, per pipeline and in total."""
    calls_total = scope.sel(sc.CALLS.prometheus)
    failed = scope.sel(sc.CALLS.prometheus, 'status="failed"')
    served = scope.sel(sc.CALLS.prometheus, SUCCESS_STATUSES)
    active = scope.sel(sc.CALLS_ACTIVE.prometheus)
    # The recording rules' turn-latency quantiles: per pipeline when unscoped, per tenant and
    # pipeline (the caller's tenant) when scoped.
    at = time.time()
    instant = partial(backends.instant, at=at)
    level = "job_pipeline" if scope.tenant is None else "job_tenant_pipeline"
    rule_quantiles = [
        instant(scope.sel(f"{level}:voice_turn_latency_seconds:{name}_rate5m"))
        for name in QUANTILES
    ]
    answers: list[Any] = await asyncio.gather(
        instant(f"sum by (pipeline) ({active})"),
        instant(f"sum by (pipeline) (rate({calls_total}[5m])) * 60"),
        instant(f"sum by (pipeline) (rate({failed}[5m]))"
                         f" / (sum by (pipeline) (rate({calls_total}[5m])) > 0)"),
        instant(f"sum(rate({served}[5m])) / (sum(rate({calls_total}[5m])) > 0)"),
        instant(f"sum(rate({failed}[5m])) / (sum(rate({calls_total}[5m])) > 0)"),
        instant(f"sum(rate({scope.sel(sc.COST.prometheus)}[5m])) * 60"),
        instant(
            f"sum(rate({scope.sel(sc.CALL_COST_METRIC.prometheus + '_sum')}[5m]))"
            f" / (sum(rate({scope.sel(sc.CALL_DURATION.prometheus + '_sum')}[5m])) / 60 > 0)"
        ),
        _quantiles_by(backends, sc.TURN_LATENCY_METRIC.prometheus, scope, "5m", "job", at),
        *rule_quantiles,
    )  # fmt: skip
    active_by, rate_by, errors_by = (_by(a, sc.L_PIPELINE) for a in answers[:3])
    success, error, cost_rate, cost_per_minute = (_scalar(a) for a in answers[3:7])
    total_latency: dict[str, m.Percentiles] = answers[7]
    per_pipeline: dict[str, dict[str, float]] = {}
    for name, result in zip(QUANTILES, answers[8:], strict=True):
        for pipeline, value in _by(result, sc.L_PIPELINE).items():
            per_pipeline.setdefault(pipeline, {})[name] = value
    pipelines = sorted(set(active_by) | set(rate_by) | set(per_pipeline))
    missing = []
    if not per_pipeline:
        missing.append("turn_latency per pipeline: no recorded turn latency in the last 5m")
    if cost_rate is None:
        missing.append(f"cost_per_minute_usd: no {sc.COST.prometheus} samples in the last 5m")
    if success is None:
        missing.append("success_rate, error_rate: no call ended in the last 5m")
    return m.DashboardMetrics(
        generated_at=at,
        tenant=scope.tenant,
        calls_active=sum(active_by.values()),
        calls_per_minute=sum(rate_by.values()),
        success_rate=success,
        error_rate=error,
        turn_latency=total_latency.get(scope.service, m.Percentiles()),
        cost_per_minute_usd=cost_rate,
        cost_per_call_minute_usd=cost_per_minute,
        pipelines=[
            m.PipelineOverview(
                pipeline=p,
                turn_latency=m.Percentiles(**per_pipeline.get(p, {})),
                calls_active=active_by.get(p, 0.0),
                calls_per_minute=rate_by.get(p, 0.0),
                error_rate=errors_by.get(p),
            )
            for p in pipelines
        ],
        missing=missing,
    )


async def call_volume(backends: Backends, scope: Scope, hours: int) -> m.CallVolume:
    """Calls ended per step (60 steps) over the last ``hours``, one series per status."""
    step_s = max(60, hours * 3600 // 60)
    end = time.time()
    query = f"sum by (status) ({counted(scope.sel(sc.CALLS.prometheus), f'{step_s}s')})"
    result = await backends.range(query, end - hours * 3600, end, step_s)
    series = [
        m.VolumeSeries(
            status=s["metric"].get(sc.L_STATUS, ""),
            points=[(float(t), v) for t, raw in s["values"] if (v := _number(raw)) is not None],
        )
        for s in result
    ]
    missing = [] if series else [f"series: no call ended in the last {hours} h"]
    return m.CallVolume(
        hours=hours, step_s=step_s, tenant=scope.tenant, series=series, missing=missing
    )


# Jaeger --------------------------------------------------------------------------------------


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def _parent(span: dict[str, Any]) -> str | None:
    for ref in span.get("references") or []:
        if ref.get("refType") == "CHILD_OF":
            return str(ref["spanID"])
    return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _summary(trace: dict[str, Any]) -> m.CallSummary | None:
    root = next((s for s in trace.get("spans", []) if s.get("operationName") == sc.SPAN_CALL), None)
    if root is None:
        return None
    tags = _tags(root)
    turns = sum(1 for s in trace["spans"] if s.get("operationName") == sc.SPAN_TURN)
    return m.CallSummary(
        call_id=str(tags.get(sc.CALL_ID, "")),
        trace_id=str(root["traceID"]),
        tenant=_text(tags.get(sc.TENANT)),
        pipeline=_text(tags.get(sc.PIPELINE)),
        status=_text(tags.get(sc.CALL_STATUS)),
        failure_reason=_text(tags.get(sc.CALL_FAILURE_REASON)),
        started_at=root["startTime"] / 1e6,
        duration_s=root["duration"] / 1e6,
        turns=int(tags.get(sc.CALL_TURNS, turns)),
        cost_usd=_number(tags.get(sc.CALL_COST)),
    )


async def recent_activity(
    backends: Backends, scope: Scope, hours: int, limit: int
) -> m.RecentActivity:
    """The latest ended calls from Jaeger, newest first."""
    now = time.time()
    traces = await backends.find_traces(
        scope.service,
        operation=sc.SPAN_CALL,
        tags=scope.jaeger_tags(),
        start=now - hours * 3600,
        end=now + 60,
        limit=limit,
    )
    summaries = [s for t in traces if (s := _summary(t)) and scope.owns(s.tenant)]
    summaries.sort(key=lambda s: s.started_at, reverse=True)
    missing = [] if summaries else [f"calls: no call ended in the last {hours} h"]
    return m.RecentActivity(tenant=scope.tenant, calls=summaries[:limit], missing=missing)


def _owned_trace(trace: dict[str, Any] | None, scope: Scope) -> dict[str, Any] | None:
    """The trace if every span with a tenant belongs to the caller's scope, else None."""
    if trace is None:
        return None
    tenants = {_tags(s).get(sc.TENANT) for s in trace.get("spans", [])} - {None}
    return trace if all(scope.owns(t) for t in tenants) else None


def _event_us(span: dict[str, Any], name: str) -> int | None:
    """When the span's event ``name`` happened (Jaeger keeps events as logs), in µs."""
    for log in span.get("logs") or []:
        if any(f.get("key") == "event" and f.get("value") == name for f in log.get("fields", [])):
            return int(log["timestamp"])
    return None


def _stt_finalisation(turn: dict[str, Any], stt: dict[str, Any] | None) -> float | None:
    """Final transcript after the user stopped speaking, as the STT latency metric measures."""
    speech_end = _event_us(turn, sc.EVENT_USER_SPEECH_ENDED)
    final = _event_us(stt, sc.EVENT_FIRST_CHUNK) if stt else None
    if speech_end is None or final is None:
        return None
    return max(0.0, (final - speech_end) / 1e6)


def _turns(spans: list[dict[str, Any]], call_start_us: int) -> list[m.Turn]:
    children: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        parent = _parent(span)
        if parent:
            children.setdefault(parent, []).append(span)
    turns = []
    for span in spans:
        if span.get("operationName") != sc.SPAN_TURN:
            continue
        tags = _tags(span)
        kids = children.get(span["spanID"], [])
        stt = next((c for c in kids if c.get("operationName") == sc.SPAN_STT), None)
        stages = [
            m.Stage(
                name=STAGE_NAMES[child["operationName"]],
                span_id=child["spanID"],
                provider=_text(_tags(child).get(sc.GEN_AI_PROVIDER)),
                model=_text(_tags(child).get(sc.GEN_AI_REQUEST_MODEL)),
                start_offset_s=(child["startTime"] - span["startTime"]) / 1e6,
                duration_s=child["duration"] / 1e6,
                time_to_first_chunk_s=_number(_tags(child).get(sc.STAGE_TTFC)),
                error=_text(_tags(child).get(sc.ERROR_TYPE)),
            )
            for child in sorted(children.get(span["spanID"], []), key=lambda c: c["startTime"])
            if child.get("operationName") in STAGE_NAMES
        ]
        turns.append(
            m.Turn(
                number=int(tags.get(sc.TURN_NUMBER, 0)),
                span_id=span["spanID"],
                start_offset_s=(span["startTime"] - call_start_us) / 1e6,
                duration_s=span["duration"] / 1e6,
                latency_s=_number(tags.get(sc.TURN_LATENCY)),
                eou_delay_s=_number(tags.get(sc.TURN_EOU_DELAY)),
                stt_finalisation_s=_stt_finalisation(span, stt),
                interrupted=bool(tags.get(sc.TURN_INTERRUPTED, False)),
                stages=stages,
            )
        )
    return sorted(turns, key=lambda t: t.number)


async def call_detail(backends: Backends, scope: Scope, call_id: str) -> m.CallDetail | None:
    """One call: its turns from its trace, its log lines from Loki, cost and status.

    None when Jaeger holds no trace of that call in the caller's scope (an unknown call and
    another tenant's call look the same). Loki down gives the call without logs, said so.
    """
    now = time.time()
    found = await backends.find_traces(
        scope.service,
        operation=None,
        tags=scope.jaeger_tags(**{sc.CALL_ID: call_id}),
        start=now - 7 * 86400,
        end=now + 60,
        limit=1,
    )
    if not found:
        return None
    trace = _owned_trace(await backends.trace(found[0]["traceID"]), scope)
    if trace is None:
        return None
    spans = trace["spans"]
    root = next((s for s in spans if s.get("operationName") == sc.SPAN_CALL), None)
    missing = []
    if root is None:  # the call still runs: its root span is exported when it ends
        missing.append("status, cost_usd: the call has not ended (its voice.call span is absent)")
    first = root or min(spans, key=lambda s: s["startTime"])
    start_us = int(first["startTime"])
    end_us = max(s["startTime"] + s["duration"] for s in spans)
    tags = _tags(root) if root else _tags(first)
    logs: list[m.LogLine] = []
    try:
        streams = await backends.logs(
            scope.call_logs(call_id), start=start_us / 1e6 - 60, end=end_us / 1e6 + 300
        )
        logs = _log_lines(streams)
    except BackendUnavailable as exc:
        missing.append(f"logs: {exc}")
    if not logs and not any(item.startswith("logs") for item in missing):
        missing.append("logs: Loki holds no line of this call")
    return m.CallDetail(
        call_id=call_id,
        trace_id=str(first["traceID"]),
        tenant=_text(tags.get(sc.TENANT)),
        pipeline=_text(tags.get(sc.PIPELINE)),
        status=_text(tags.get(sc.CALL_STATUS)) if root else None,
        failure_reason=_text(tags.get(sc.CALL_FAILURE_REASON)) if root else None,
        started_at=start_us / 1e6,
        duration_s=(end_us - start_us) / 1e6,
        cost_usd=_number(tags.get(sc.CALL_COST)) if root else None,
        turns=_turns(spans, start_us),
        logs=logs,
        missing=missing,
    )


def _log_lines(streams: list[dict[str, Any]]) -> list[m.LogLine]:
    lines = []
    for stream in streams:
        labels = stream.get("stream", {})
        for ts, line in stream.get("values", []):
            lines.append(
                m.LogLine(
                    time=int(ts) / 1e9,
                    severity=labels.get("detected_level") or labels.get("severity_text"),
                    trace_id=labels.get("trace_id") or None,
                    span_id=labels.get("span_id") or None,
                    line=line,
                )
            )
    return sorted(lines, key=lambda line: line.time)


async def trace_view(backends: Backends, scope: Scope, trace_id: str) -> m.TraceView | None:
    """Every span of one trace with its attributes; None if absent or out of scope."""
    trace = _owned_trace(await backends.trace(trace_id.lower()), scope)
    if trace is None:
        return None
    spans = sorted(trace["spans"], key=lambda s: s["startTime"])
    start_us = spans[0]["startTime"]
    call_ids = {_tags(s).get(sc.CALL_ID) for s in spans} - {None}
    return m.TraceView(
        trace_id=trace_id.lower(),
        call_id=_text(next(iter(call_ids))) if call_ids else None,
        spans=[
            m.SpanView(
                span_id=s["spanID"],
                parent_span_id=_parent(s),
                name=s["operationName"],
                start_offset_s=(s["startTime"] - start_us) / 1e6,
                duration_s=s["duration"] / 1e6,
                attributes={
                    k: v for k, v in _tags(s).items() if isinstance(v, str | int | float | bool)
                },
            )
            for s in spans
        ],
    )


async def slowest_turns(
    backends: Backends, scope: Scope, window: str, seconds: int, limit: int
) -> m.SlowestTurns:
    """The slowest turns over ``window``, from the turn-latency histogram's exemplars."""
    now = time.time()
    series = await backends.exemplars(
        scope.sel(sc.TURN_LATENCY_METRIC.prometheus + "_bucket"), now - seconds, now + 60
    )
    turns = []
    for s in series:
        labels = s.get("seriesLabels", {})
        if not scope.owns(labels.get(sc.L_TENANT)):
            continue
        for item in s.get("exemplars", []):
            ex = item.get("labels", {})
            value = _number(item.get("value"))
            if "trace_id" in ex and value is not None:
                turns.append(
                    m.SlowTurn(
                        latency_s=value,
                        trace_id=ex["trace_id"],
                        span_id=ex.get("span_id", ""),
                        call_id=ex.get(sc.EXEMPLAR_CALL_ID),
                        tenant=labels.get(sc.L_TENANT),
                        pipeline=labels.get(sc.L_PIPELINE),
                        at=float(item.get("timestamp", 0.0)),
                    )
                )
    turns.sort(key=lambda t: t.latency_s, reverse=True)
    missing = [] if turns else [f"turns: no turn-latency exemplar in the last {window}"]
    return m.SlowestTurns(window=window, tenant=scope.tenant, turns=turns[:limit], missing=missing)
