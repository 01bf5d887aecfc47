"""Spans and log records made in the engine by others (the HTTP server, httpx, the SDK API,
Python logging), and the engine's own metric collections, handed to the export process as
plain records instead of being encoded and sent from the engine's process.

Used in place of the SDK's batch processors and metric exporters when the export process
runs: the engine's tracer and logger providers keep ids, sampling and context (so log lines
and outgoing ``traceparent`` headers carry them at once), its meter provider keeps the
instruments and collects them, and each finished item costs the engine a copy of its fields
and an append. Redaction, batching, encoding and OTLP happen in the export process.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import (
    OTLPMetricExporterMixin,
)
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from voiceobs.records import EngineMetrics, ForeignSpan, LogLine
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


def engine_metrics(data: MetricsData) -> EngineMetrics:
    """The plain-data copy of one collection (resources and scopes hold locks, metrics not)."""
    return EngineMetrics(
        tuple(
            (
                dict(rm.resource.attributes),
                rm.resource.schema_url,
                rm.schema_url,
                tuple(
                    (_scope(sm.scope), dict(sm.scope.attributes or {}), sm.schema_url, sm.metrics)
                    for sm in rm.scope_metrics
                ),
            )
            for rm in data.resource_metrics
        )
    )


class HandoverMetricExporter(MetricExporter, OTLPMetricExporterMixin):
    """Sends each collection of the engine's meter provider to the transport. It asks the
    reader for the temporality and aggregation the SDK's OTLP metric exporters prefer
    (``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE``, ``..._DEFAULT_HISTOGRAM_AGGREGATION``),
    as the one in the export process would, without loading gRPC into the engine."""

    def __init__(self, transport: Transport) -> None:
        self._common_configuration()
        self._transport = transport

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self._transport.send(engine_metrics(metrics_data))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """The instrumentation flushes the transport."""
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """The transport is shut down with the instrumentation."""
