"""Spans and log records made in the engine by others (the HTTP server, httpx, the SDK API,
Python logging) handed to the export process as plain records, instead of being encoded and
sent from the engine's process.

Used in place of the SDK's batch processors when the export process runs: the engine's
tracer and logger providers keep ids, sampling and context (so log lines and outgoing
``traceparent`` headers carry them at once), and each finished item costs the engine a copy
of its fields and an append. Redaction, batching and OTLP happen in the export process.
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from voiceobs.records import ForeignSpan, LogLine
from voiceobs.transport import Transport


def _scope(scope: InstrumentationScope | None) -> tuple[str, str | None, str | None]:
    if scope is None:
        return ("", None, None)
    return (scope.name, scope.version, scope.schema_url)


def foreign_span(span: ReadableSpan) -> ForeignSpan | None:
    """The plain-data copy of a finished span; None for one without a context."""
    context = span.context
    if context is None:
        return None
    parent = span.parent
    return ForeignSpan(
        span.name,
        context.trace_id,
        context.span_id,
        int(context.trace_flags),
        parent.span_id if parent is not None else None,
        bool(parent is not None and parent.is_remote),
        span.kind.value,
        span.start_time or 0,
        span.end_time or 0,
        dict(span.attributes or {}),
        tuple((e.name, e.timestamp, dict(e.attributes or {})) for e in span.events),
        tuple(
            (
                link.context.trace_id,
                link.context.span_id,
                int(link.context.trace_flags),
                dict(link.attributes or {}),
            )
            for link in span.links
        ),
        span.status.status_code.value,
        span.status.description,
        _scope(span.instrumentation_scope),
    )


class HandoverSpanProcessor(SpanProcessor):
    """Sends each sampled span that ends to the transport."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            record = foreign_span(span)
            if record is not None:
                self._transport.send(record)

    def shutdown(self) -> None:
        """The transport is shut down with the instrumentation."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """The instrumentation flushes the transport."""
        return True


class HandoverLogProcessor(LogRecordProcessor):
    """Sends each log record emitted to the transport."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        record = log_record.log_record
        self._transport.send(
            LogLine(
                record.timestamp,
                record.observed_timestamp,
                record.trace_id or 0,
                record.span_id or 0,
                int(record.trace_flags or 0),
                record.severity_text,
                record.severity_number.value if record.severity_number is not None else None,
                record.body,
                dict(record.attributes or {}),
                _scope(log_record.instrumentation_scope),
            )
        )

    def shutdown(self) -> None:
        """The transport is shut down with the instrumentation."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """The instrumentation flushes the transport."""
        return True
