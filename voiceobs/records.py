"""The records the engine side hands to the export side: immutable, plain data, picklable.

The voice API never shares a mutable object with materialisation. Each moment it needs to
report becomes one of these tuples (ids, numbers, short strings), sent through a transport:
to a thread of the engine's process, or through a pipe to the export process. The export side
owns every piece of per-call state (labels, cost, jitter-buffer cursors, open calls), keyed by
the call's span id: unique to each call, where a call id may come again (a room name, a
reused SIP Call-ID) while the previous call with it is still being recorded. This module
imports nothing of voiceobs, so both sides can share it.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class CallStarted(NamedTuple):
    """A call began. Kept by the engine side until the call ends, and sent again to an export
    process that restarted, so the call's span still goes out."""

    call_id: str
    trace_id: int
    span_id: int
    parent_span_id: int
    """0 for a root span; else the span the call continues (``parent=``)."""
    parent_is_remote: bool
    trace_flags: int
    tenant: str
    pipeline: str
    caller: str | None
    direction: str
    start_ns: int
    start_monotonic_ns: int
    link: tuple[int, int, int] | None
    """(trace id, span id, flags) of the span current when the call began without a parent."""


class StageEnded(NamedTuple):
    """A provider stage (STT, LLM, TTS, tool) ended."""

    call_span_id: int
    """The span id of the call this belongs to (:attr:`CallStarted.span_id`)."""
    turn_number: int
    turn_span_id: int
    turn_speech_end_ns: int | None
    span_id: int
    kind: str
    provider: str
    model: str
    start_ns: int
    end_ns: int
    first_chunk_ns: int | None
    error_type: str | None
    audio_seconds: float
    input_tokens: int
    output_tokens: int
    characters: int
    text: str | None


class TurnEnded(NamedTuple):
    """A turn ended, with the stages that had ended by then."""

    call_span_id: int
    """The span id of the call this belongs to (:attr:`CallStarted.span_id`)."""
    number: int
    span_id: int
    start_ns: int
    end_ns: int
    speech_end_ns: int | None
    eou_ns: int | None
    eou_provider: str
    eou_model: str
    agent_audio_ns: int | None
    interrupted_ns: int | None
    stages: tuple[StageEnded, ...]


class JitterSnapshot(NamedTuple):
    """The running totals of one call's jitter-buffer samples in one direction."""

    call_span_id: int
    """The span id of the call this belongs to (:attr:`CallStarted.span_id`)."""
    direction: str
    frames: int
    total: float


class StreamRestarted(NamedTuple):
    call_span_id: int
    """The span id of the call this belongs to (:attr:`CallStarted.span_id`)."""
    provider: str
    component: str
    reason: str
    at_ns: int


class CallEnded(NamedTuple):
    """The call hung up. ``complete``: no stage is open, so its record can go out now;
    otherwise a :class:`CallClosed` follows when its last stage ends."""

    call_span_id: int
    """The span id of the call this belongs to (:attr:`CallStarted.span_id`)."""
    end_ns: int
    status: str
    failure_reason: str
    turns: int
    restarts: int
    complete: bool


class CallClosed(NamedTuple):
    """The last stage of a hung-up call ended."""

    call_span_id: int
    """The span id of the call this belongs to (:attr:`CallStarted.span_id`)."""


class Dropped(NamedTuple):
    """Telemetry the engine side refused or lost, for ``voiceobs.telemetry.dropped``."""

    signal: str
    reason: str
    items: int


class ExportFailed(NamedTuple):
    """A batch an exporter could not deliver, for ``voiceobs.telemetry.export_failures``."""

    signal: str


class ForeignSpan(NamedTuple):
    """A span another instrumentation finished in the engine (HTTP server, httpx, the SDK
    API), as plain data for the export side to rebuild and export."""

    name: str
    trace_id: int
    span_id: int
    trace_flags: int
    parent_span_id: int | None
    parent_is_remote: bool
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: tuple[tuple[str, int, dict[str, Any]], ...]
    links: tuple[tuple[int, int, int, dict[str, Any]], ...]
    status_code: int
    status_description: str | None
    scope: tuple[str, str | None, str | None]
    """Instrumentation scope: name, version, schema URL."""


class LogLine(NamedTuple):
    """A log record emitted in the engine, as plain data."""

    timestamp: int | None
    observed_timestamp: int | None
    trace_id: int
    span_id: int
    trace_flags: int
    severity_text: str | None
    severity_number: int | None
    body: Any
    attributes: dict[str, Any]
    scope: tuple[str, str | None, str | None]


class HttpStarted(NamedTuple):
    """An HTTP request the engine began to serve."""

    method: str
    scheme: str


class HttpServed(NamedTuple):
    """An HTTP request the engine served, as the ASGI middleware noted it."""

    method: str
    route: str | None
    """The matched route's template, never the path."""
    path: str
    scheme: str
    protocol: str
    server: tuple[str, int] | None
    user_agent: str | None
    status: int
    error_type: str | None
    start_ns: int
    duration_ns: int
    trace_id: int
    span_id: int
    parent_span_id: int | None
    trace_flags: int


class CircuitState(NamedTuple):
    provider: str
    value: int


class ProviderRequest(NamedTuple):
    provider: str
    component: str
    outcome: str


class EngineMetrics(NamedTuple):
    """One collection of the engine process's own meter provider (process metrics, the
    application's instruments), for the export process to send. Per resource: its attributes,
    its schema URL, the collection's schema URL and, per instrumentation scope, (name,
    version, schema URL), its attributes, the scope's schema URL and the SDK's ``Metric``
    objects (plain frozen dataclasses)."""

    resource_metrics: tuple[Any, ...]

    @property
    def points(self) -> int:
        return sum(
            len(metric.data.data_points)
            for _, _, _, scopes in self.resource_metrics
            for _, _, _, metrics in scopes
            for metric in metrics
        )


Record = (
    CallStarted
    | TurnEnded
    | StageEnded
    | JitterSnapshot
    | StreamRestarted
    | CallEnded
    | CallClosed
    | Dropped
    | ExportFailed
    | ForeignSpan
    | LogLine
    | EngineMetrics
    | HttpStarted
    | HttpServed
    | CircuitState
    | ProviderRequest
)
