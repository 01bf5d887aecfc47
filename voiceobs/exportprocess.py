"""The export process: materialises the engine's records and exports them, away from the
engine's interpreter and its GIL.

Started and supervised by :class:`voiceobs.processtransport.ProcessTransport` as
``python -m voiceobs.exportprocess ACK_FD``. It reads frames (:mod:`voiceobs.channel`) on
stdin and acknowledges them on the pipe ``ACK_FD``; stdout and stderr are the engine's (the
console exporters print there). Spans and log records are exported in batches on this
process' main thread: while an export is slow, the pipe fills and the engine's bounded
buffer counts what it cannot hold, so nothing is lost without being counted. Metrics are
pushed by the SDK's periodic reader. The process ends when the engine closes the pipe (at
shutdown, or when the engine dies): it exports what it holds within the shutdown deadline,
then exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Generic, TypeVar

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from voiceobs.channel import Ack, Batch, ExportConfig, FrameReader, write_frame
from voiceobs.exportpipeline import (
    INSTRUMENTATION_SCOPE,
    env_exporters,
    exporter_names,
    init_metrics,
    materialiser_for,
    redactor_for,
)
from voiceobs.records import ExportFailed, ForeignSpan, LogLine, Record
from voiceobs.redaction import RedactingLogExporter, RedactingSpanExporter
from voiceobs.selftelemetry import GuardedLogExporter, GuardedSpanExporter, quiet_sdk_loggers

_log = logging.getLogger("voiceobs.exportprocess")

BATCH_ITEMS = 512
"""Spans or log records per export request."""
BATCH_INTERVAL_S = 1.0
"""Longest a finished item waits for its batch."""

Item = TypeVar("Item")


class Batches(Generic[Item]):
    """Finished items, exported in batches of :data:`BATCH_ITEMS` (or after
    :data:`BATCH_INTERVAL_S`) to every exporter, on the caller's thread. ``export(batch)``
    of each exporter returns True when the batch was delivered."""

    def __init__(
        self,
        exporters: Sequence[Callable[[list[Item]], bool]],
        shutdowns: Sequence[Callable[[], None]],
    ) -> None:
        self._exporters = list(exporters)
        self._shutdowns = list(shutdowns)
        self._pending: list[Item] = []
        self._oldest = 0.0
        self.delivered = True
        """False once an export failed since the last :meth:`take_delivered`."""

    def __bool__(self) -> bool:
        return bool(self._exporters)

    def add(self, item: Item) -> None:
        if not self._exporters:
            return
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(item)
        if len(self._pending) >= BATCH_ITEMS:
            self.export()

    def export_due(self) -> None:
        if self._pending and time.monotonic() - self._oldest >= BATCH_INTERVAL_S:
            self.export()

    def export(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        for export in self._exporters:
            if not export(batch):
                self.delivered = False

    def take_delivered(self) -> bool:
        delivered, self.delivered = self.delivered, True
        return delivered

    def shutdown(self) -> None:
        self.export()
        for shutdown in self._shutdowns:
            shutdown()


def span_batches(exporters: Sequence[SpanExporter]) -> Batches[ReadableSpan]:
    return Batches(
        [partial(_export_spans, exporter) for exporter in exporters],
        [exporter.shutdown for exporter in exporters],
    )


def _export_spans(exporter: SpanExporter, batch: list[ReadableSpan]) -> bool:
    return exporter.export(batch) is SpanExportResult.SUCCESS


def log_batches(exporters: Sequence[LogRecordExporter]) -> Batches[ReadableLogRecord]:
    return Batches(
        [partial(_export_logs, exporter) for exporter in exporters],
        [exporter.shutdown for exporter in exporters],
    )


def _export_logs(exporter: LogRecordExporter, batch: list[ReadableLogRecord]) -> bool:
    return exporter.export(batch) is LogRecordExportResult.SUCCESS


def _scope(scope: tuple[str, str | None, str | None]) -> InstrumentationScope:
    return InstrumentationScope(scope[0], scope[1], scope[2])


def rebuild_span(span: ForeignSpan, resource: Resource) -> ReadableSpan:
    """The span an engine-side instrumentation finished, as the SDK's exporters take it."""
    flags = TraceFlags(span.trace_flags)
    parent = (
        SpanContext(span.trace_id, span.parent_span_id, span.parent_is_remote, flags)
        if span.parent_span_id is not None
        else None
    )
    return ReadableSpan(
        name=span.name,
        context=SpanContext(span.trace_id, span.span_id, False, flags),
        parent=parent,
        resource=resource,
        attributes=span.attributes,
        events=[Event(name, attributes, timestamp) for name, timestamp, attributes in span.events],
        links=[
            Link(SpanContext(trace_id, span_id, True, TraceFlags(link_flags)), attributes)
            for trace_id, span_id, link_flags, attributes in span.links
        ],
        kind=SpanKind(span.kind),
        status=Status(StatusCode(span.status_code), span.status_description),
        start_time=span.start_ns,
        end_time=span.end_ns,
        instrumentation_scope=_scope(span.scope),
    )


def rebuild_log(line: LogLine, resource: Resource) -> ReadableLogRecord:
    """A log record emitted in the engine, as the SDK's exporters take it."""
    record = LogRecord(
        timestamp=line.timestamp,
        observed_timestamp=line.observed_timestamp,
        trace_id=line.trace_id,
        span_id=line.span_id,
        trace_flags=TraceFlags(line.trace_flags),
        severity_text=line.severity_text,
        severity_number=SeverityNumber(line.severity_number)
        if line.severity_number is not None
        else None,
        body=line.body,
        attributes=line.attributes,
    )
    return ReadableLogRecord(
        log_record=record, resource=resource, instrumentation_scope=_scope(line.scope)
    )


class ExportSide:
    """The pipeline the engine's settings describe: the materialiser for voice records, and
    batches of spans and log records for everything else the engine hands over."""

    def __init__(self, config: ExportConfig) -> None:
        settings = self.settings = config.settings
        self.resource = Resource(dict(config.resource or {}))
        redactor = redactor_for(settings)
        self._failures: list[ExportFailed] = []
        chosen = {
            name: exporter_names(name)
            for name, wanted in (
                ("traces", settings.traces_enabled),
                ("metrics", settings.metrics_enabled),
                ("logs", settings.logs_enabled),
            )
            if wanted
        }
        self.meter_provider, _ = init_metrics(
            settings, self.resource, [], env_exporters("metrics", chosen, settings), self._failed
        )
        span_exporters: list[SpanExporter] = []
        for inner in env_exporters("traces", chosen, settings):
            span_exporter: SpanExporter = GuardedSpanExporter(inner, self._failed)
            if redactor.active:
                span_exporter = RedactingSpanExporter(span_exporter, redactor)
            span_exporters.append(span_exporter)
        log_exporters: list[LogRecordExporter] = []
        for inner_log in env_exporters("logs", chosen, settings):
            log_exporter: LogRecordExporter = GuardedLogExporter(inner_log, self._failed)
            if redactor.active:
                log_exporter = RedactingLogExporter(log_exporter, redactor)
            log_exporters.append(log_exporter)
        self.spans = span_batches(span_exporters)
        self.logs = log_batches(log_exporters)
        meter = (self.meter_provider or MeterProvider()).get_meter(INSTRUMENTATION_SCOPE)
        self.materialiser = materialiser_for(
            settings,
            self.resource,
            self.spans.add if self.spans else None,
            meter,
            redactor,
            config.rate_card,
        )

    def _failed(self, signal_name: str) -> None:
        """An exporter's failure (on this thread or the metric reader's), counted next."""
        self._failures.append(ExportFailed(signal_name))

    def handle(self, record: Record) -> None:
        if isinstance(record, ForeignSpan):
            self.spans.add(rebuild_span(record, self.resource))
        elif isinstance(record, LogLine):
            self.logs.add(rebuild_log(record, self.resource))
        else:
            self.materialiser.handle(record)
        while self._failures:
            self.materialiser.handle(self._failures.pop())

    def every_second(self) -> None:
        self.materialiser.every_second()
        self.spans.export_due()
        self.logs.export_due()

    def flush(self) -> bool:
        """Export everything now; True if it was all delivered since the last flush."""
        self.spans.export()
        self.logs.export()
        metrics = self.meter_provider is None or self.meter_provider.force_flush(
            int(self.settings.shutdown_timeout_s * 1000)
        )
        delivered = self.spans.take_delivered()
        delivered = self.logs.take_delivered() and delivered
        return delivered and metrics

    def shutdown(self) -> None:
        self.spans.shutdown()
        self.logs.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown(timeout_millis=self.settings.shutdown_timeout_s * 1000)


def run(reader: FrameReader, ack_fd: int) -> None:
    """Materialise and export each batch the engine sends, until it closes the pipe."""
    config = reader.read()
    assert isinstance(config, ExportConfig)
    quiet_sdk_loggers()
    side = ExportSide(config)
    next_second = time.monotonic() + 1.0
    try:
        while True:
            batch = reader.read(timeout_s=max(0.0, next_second - time.monotonic()))
            if isinstance(batch, Batch):
                for record in batch.records:
                    try:
                        side.handle(record)
                    except Exception:
                        _log.exception("voiceobs could not record %s", type(record).__name__)
            if time.monotonic() >= next_second:
                next_second = time.monotonic() + 1.0
                side.every_second()
            if isinstance(batch, Batch):
                delivered = side.flush() if batch.flush else True
                write_frame(ack_fd, Ack(batch.seq, batch.flush, delivered))
    except EOFError:
        pass
    finally:
        side.shutdown()


def main() -> None:
    # Ctrl-C reaches the engine's whole process group: the engine decides when this ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Only the engine enables the SDK's own metrics: the same names from two processes of
    # one service would collide. This process counts its losses itself.
    os.environ.pop("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", None)
    ack_fd = int(sys.argv[1])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with contextlib.suppress(BrokenPipeError, EOFError):  # the engine is gone
        run(FrameReader(sys.stdin.fileno()), ack_fd)


if __name__ == "__main__":
    main()
