"""Join the application's own OpenTelemetry pipeline instead of building a second one.

An engine run under ``opentelemetry-instrument`` (or one that set up the SDK itself) already
has global SDK tracer and logger providers, with the processors and exporters its
``OTEL_*`` variables chose. voiceobs then sends its spans and log records through *those*
processors: exported once, by the application's exporters, batched with everything else.
It keeps its own provider in front of them only for what the shared one cannot do per
instrumentation: preset span ids, the text-length limit and redaction, which runs (as always)
on an export thread before anything reaches the application's processors.

Metrics are not shared: views cannot be added to a meter provider after it is built, and
without voiceobs' views every voice metric would carry the call id as a label. voiceobs'
meter provider takes the shared resource instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import _logs as logs_api
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


def global_sdk_providers() -> tuple[TracerProvider | None, LoggerProvider | None]:
    """The SDK tracer and logger providers the application set globally, if any."""
    tracer_provider = trace.get_tracer_provider()
    logger_provider = logs_api.get_logger_provider()
    return (
        tracer_provider if isinstance(tracer_provider, TracerProvider) else None,
        logger_provider if isinstance(logger_provider, LoggerProvider) else None,
    )


class SpansToProvider(SpanExporter):
    """Exports by handing each finished span to another tracer provider's span processors."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        # Private, stable since SDK 1.0: the SDK has no public way to submit a finished span.
        self._processor: Any = provider._active_span_processor

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self._processor.on_end(span)
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._provider.force_flush(timeout_millis))

    def shutdown(self) -> None:
        """The shared provider is the application's: flushed, never shut down."""
        self._provider.force_flush()


class LogsToProvider(LogRecordExporter):
    """Exports by handing each log record to another logger provider's processors."""

    def __init__(self, provider: LoggerProvider) -> None:
        self._provider = provider
        # Private, like the span processor above: no public way to submit a finished record.
        self._processor: Any = provider._multi_log_record_processor

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        for item in batch:
            self._processor.on_emit(
                ReadWriteLogRecord(
                    log_record=item.log_record,
                    resource=item.resource,
                    instrumentation_scope=item.instrumentation_scope,
                )
            )
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._provider.force_flush(timeout_millis))

    def shutdown(self) -> None:
        """The shared provider is the application's: flushed, never shut down."""
        self._provider.force_flush()
