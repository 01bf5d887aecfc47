"""Response bodies of the dashboard API: pydantic models, so OpenAPI carries their JSON schemas.

Seconds and US dollars everywhere. A figure the backends have no data for is ``null`` and
the ``missing`` list of the answer says why, so a partial answer is never mistaken for zero.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Missing = list[str]


class Percentiles(BaseModel):
    p50: float | None = Field(default=None, description="seconds")
    p95: float | None = Field(default=None, description="seconds")
    p99: float | None = Field(default=None, description="seconds")


class PipelineLatency(BaseModel):
    pipeline: str
    turn: Percentiles
    eou_delay: Percentiles
    stt: Percentiles
    llm_ttft: Percentiles
    tts_ttfb: Percentiles


class LatencyReport(BaseModel):
    window: str
    evaluated_at: float = Field(description="Unix seconds: the instant every query ran as of")
    tenant: str | None
    pipelines: list[PipelineLatency]
    missing: Missing = []


class MonthCost(BaseModel):
    month: str = Field(description="YYYY-MM")
    usd: float


class CostReport(BaseModel):
    window: str
    tenant: str | None
    total_usd: float | None
    per_call_usd: float | None
    per_call_minute_usd: float | None
    by_tenant: dict[str, float]
    by_component: dict[str, float]
    by_provider: dict[str, float]
    by_month: list[MonthCost]
    missing: Missing = []


class CallsReport(BaseModel):
    window: str
    tenant: str | None
    total: float
    by_status: dict[str, float]
    success_rate: float | None
    failure_reasons: dict[str, float]
    missing: Missing = []


class WorkerHealth(BaseModel):
    instance: str
    memory_bytes: float | None
    memory_ratio_of_limit: float | None
    cpu_utilization: float | None
    calls_active: float | None


class ProviderHealth(BaseModel):
    provider: str
    component: str
    requests_per_s: float
    error_ratio: float | None
    circuit_state: Literal["closed", "half_open", "open"] | None


class HealthReport(BaseModel):
    status: Literal["ok", "degraded"]
    backends: dict[str, bool]
    workers: list[WorkerHealth]
    providers: list[ProviderHealth]
    missing: Missing = []


class PipelineOverview(BaseModel):
    pipeline: str
    turn_latency: Percentiles
    calls_active: float
    calls_per_minute: float
    error_rate: float | None


class DashboardMetrics(BaseModel):
    """The live overview: what the console's first screen and the WebSocket feed show."""

    generated_at: float = Field(description="Unix seconds")
    tenant: str | None
    calls_active: float
    calls_per_minute: float
    success_rate: float | None
    error_rate: float | None
    turn_latency: Percentiles
    cost_per_minute_usd: float | None = Field(description="dollars spent per minute, now")
    cost_per_call_minute_usd: float | None
    pipelines: list[PipelineOverview]
    missing: Missing = []


class VolumeSeries(BaseModel):
    status: str
    points: list[tuple[float, float]] = Field(description="(Unix seconds, calls in the step)")


class CallVolume(BaseModel):
    hours: int
    step_s: int
    tenant: str | None
    series: list[VolumeSeries]
    missing: Missing = []


class CallSummary(BaseModel):
    call_id: str
    trace_id: str
    tenant: str | None
    pipeline: str | None
    status: str | None
    failure_reason: str | None
    started_at: float
    duration_s: float
    turns: int
    cost_usd: float | None


class RecentActivity(BaseModel):
    tenant: str | None
    calls: list[CallSummary]
    missing: Missing = []


class Stage(BaseModel):
    name: str = Field(description="stt, llm, tts or tool")
    span_id: str
    provider: str | None
    model: str | None
    start_offset_s: float = Field(description="from the turn's start")
    duration_s: float
    time_to_first_chunk_s: float | None = Field(description="STT final, LLM TTFT, TTS TTFB")
    error: str | None


class Turn(BaseModel):
    number: int
    span_id: str
    start_offset_s: float = Field(description="from the call's start")
    duration_s: float
    latency_s: float | None
    eou_delay_s: float | None
    stt_finalisation_s: float | None = Field(
        description="final transcript after the user stopped speaking"
    )
    interrupted: bool
    stages: list[Stage]


class LogLine(BaseModel):
    time: float
    severity: str | None
    trace_id: str | None
    span_id: str | None
    line: str


class CallDetail(BaseModel):
    call_id: str
    trace_id: str
    tenant: str | None
    pipeline: str | None
    status: str | None
    failure_reason: str | None
    started_at: float
    duration_s: float
    cost_usd: float | None
    turns: list[Turn]
    logs: list[LogLine]
    missing: Missing = []


class SpanView(BaseModel):
    span_id: str
    parent_span_id: str | None
    name: str
    start_offset_s: float
    duration_s: float
    attributes: dict[str, str | int | float | bool]


class TraceView(BaseModel):
    trace_id: str
    call_id: str | None
    spans: list[SpanView]


class SlowTurn(BaseModel):
    latency_s: float
    trace_id: str
    span_id: str
    call_id: str | None
    tenant: str | None
    pipeline: str | None
    at: float


class SlowestTurns(BaseModel):
    window: str
    tenant: str | None
    turns: list[SlowTurn]
    missing: Missing = []


class AuditEntry(BaseModel):
    time: float
    credential: str
    action: str
    detail: str


class CredentialsReloaded(BaseModel):
    api_keys: int
    jwt: bool


class Problem(BaseModel):
    """An error: which backend or field, and what to do."""

    detail: str
    backend: str | None = None
