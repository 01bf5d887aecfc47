"""The export process: materialises the engine's records and exports them, away from the
engine's interpreter and its GIL.

Started and supervised by :class:`voiceobs.processtransport.ProcessTransport` as
``python -m voiceobs.exportprocess ACK_FD``. It reads frames (:mod:`voiceobs.channel`) on
stdin and acknowledges them on the pipe ``ACK_FD``; stdout and stderr are the engine's (the
console exporters print there). Spans and log records go through the SDK's batch
processors, the voice metrics through its periodic reader, and the collections of the
engine's own meter provider through :mod:`voiceobs.enginemetrics`; this process, not the
engine's, counts the SDK's own pipeline metrics (queue drops, export results). The process
ends when the engine closes the pipe (at shutdown, or when the engine dies): it exports what
it holds within the shutdown deadline, then exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time

from opentelemetry import metrics
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import (
    ReadWriteLogRecord,
)
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SynchronousMultiSpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from voiceobs.channel import Ack, Batch, ExportConfig, FrameReader, unpack, write_frame
from voiceobs.enginemetrics import EngineMetricsExport
from voiceobs.exportpipeline import (
    INSTRUMENTATION_SCOPE,
    env_exporters,
    exporter_names,
    init_metrics,
    materialiser_for,
    periodic_readers,
    redactor_for,
    sdk_self_metrics,
)
from voiceobs.promptexport import PromptMetricReader
from voiceobs.records import Dropped, EngineMetrics, ExportFailed, ForeignSpan, LogLine, Record
from voiceobs.redaction import RedactingLogExporter, RedactingSpanExporter
from voiceobs.selftelemetry import (
    GuardedLogExporter,
    GuardedMetricExporter,
    GuardedSpanExporter,
    quiet_sdk_loggers,
)

_log = logging.getLogger("voiceobs.exportprocess")

BATCH_DELAY_MS = 500
"""How long a span or log record waits here for its batch. The SDK's defaults (5 s for spans,
1 s for log records) save the engine's CPU; this process is not the engine, so it exports
sooner and a turn is queryable sooner. ``OTEL_BSP_SCHEDULE_DELAY`` and
``OTEL_BLRP_SCHEDULE_DELAY`` still win."""


def _batch_delay_ms(variable: str) -> int | None:
    """``None`` (the SDK reads ``variable``) when the user set it, else ``BATCH_DELAY_MS``."""
    return None if os.environ.get(variable) else BATCH_DELAY_MS


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


def rebuild_log(line: LogLine, resource: Resource) -> ReadWriteLogRecord:
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
    return ReadWriteLogRecord(
        log_record=record, resource=resource, instrumentation_scope=_scope(line.scope)
    )


class ExportSide:
    """The pipeline the engine's settings describe: the materialiser for voice records, and
    the SDK's batch processors (with its own pipeline metrics) for every span and log record,
    voice or handed over."""

    def __init__(self, config: ExportConfig) -> None:
        settings = self.settings = config.settings
        self.resource = Resource(dict(config.resource or {}))
        redactor = redactor_for(settings)
        self._failures: list[ExportFailed] = []
        self._drops: list[Dropped] = []
        self.failed_exports = 0
        chosen = {
            name: exporter_names(name)
            for name, wanted in (
                ("traces", settings.traces_enabled),
                ("metrics", settings.metrics_enabled),
                ("logs", settings.logs_enabled),
            )
            if wanted
        }
        self.spans = SynchronousMultiSpanProcessor()  # type: ignore[no-untyped-call]
        self.logs: list[BatchLogRecordProcessor] = []  # one per log exporter
        with sdk_self_metrics():
            readers = periodic_readers(
                settings, env_exporters("metrics", chosen, settings), self._failed, prompt=True
            )
            # Nudged when voice records arrive, so a turn's series are pushed within a second.
            self._prompt_readers = [r for r in readers if isinstance(r, PromptMetricReader)]
            self._voice_activity = False
            self.meter_provider, _ = init_metrics(
                settings, self.resource, readers, [], self._failed
            )
            if self.meter_provider is not None:
                # This process is voiceobs's own: the OTLP exporters count their results
                # (otel_sdk_exporter_*) through the global provider.
                metrics.set_meter_provider(self.meter_provider)
            for inner in env_exporters("traces", chosen, settings):
                span_exporter: SpanExporter = GuardedSpanExporter(inner, self._failed)
                if redactor.active:
                    span_exporter = RedactingSpanExporter(span_exporter, redactor)
                self.spans.add_span_processor(
                    BatchSpanProcessor(
                        span_exporter,
                        schedule_delay_millis=_batch_delay_ms("OTEL_BSP_SCHEDULE_DELAY"),
                        meter_provider=self.meter_provider,
                    )
                )
            for inner_log in env_exporters("logs", chosen, settings):
                log_exporter: LogRecordExporter = GuardedLogExporter(inner_log, self._failed)
                if redactor.active:
                    log_exporter = RedactingLogExporter(log_exporter, redactor)
                self.logs.append(
                    BatchLogRecordProcessor(
                        log_exporter,
                        schedule_delay_millis=_batch_delay_ms("OTEL_BLRP_SCHEDULE_DELAY"),
                        meter_provider=self.meter_provider,
                    )
                )
            self.engine_metrics = EngineMetricsExport(
                [
                    GuardedMetricExporter(exporter, self._failed)
                    for exporter in env_exporters("metrics", chosen, settings)
                ],
                self._drops.append,
            )
        meter = (self.meter_provider or MeterProvider()).get_meter(INSTRUMENTATION_SCOPE)
        self.materialiser = materialiser_for(
            settings,
            self.resource,
            self.spans.on_end if chosen.get("traces") else None,
            meter,
            redactor,
            config.rate_card,
        )

    def _failed(self, signal_name: str) -> None:
        """An exporter's failure (on an export thread), counted by the main thread."""
        self._failures.append(ExportFailed(signal_name))

    def handle(self, record: Record) -> None:
        if isinstance(record, ForeignSpan):
            self.spans.on_end(rebuild_span(record, self.resource))
        elif isinstance(record, LogLine):
            line = rebuild_log(record, self.resource)
            for processor in self.logs:
                processor.on_emit(line)
        elif isinstance(record, EngineMetrics):
            self.engine_metrics.add(record)
        else:
            self.materialiser.handle(record)
            self._voice_activity = True
        self.count_failures()

    def push_changed_metrics(self) -> None:
        """After voice records, ask for a prompt push of the series they moved."""
        if self._voice_activity:
            self._voice_activity = False
            for reader in self._prompt_readers:
                reader.nudge()

    def count_failures(self) -> None:
        while self._failures:
            self.failed_exports += 1
            self.materialiser.handle(self._failures.pop())
        while self._drops:
            self.materialiser.handle(self._drops.pop())

    def flush(self) -> bool:
        """Export everything now; True if nothing failed to export since the last flush."""
        before = self.failed_exports
        timeout_ms = int(self.settings.shutdown_timeout_s * 1000)
        done = bool(self.spans.force_flush(timeout_ms))
        done = all([bool(logs.force_flush(timeout_ms)) for logs in self.logs]) and done
        done = self.engine_metrics.flush(self.settings.shutdown_timeout_s) and done
        self.count_failures()
        metrics = self.meter_provider is None or self.meter_provider.force_flush(timeout_ms)
        self.count_failures()
        return done and metrics and self.failed_exports == before

    def shutdown(self) -> None:
        self.engine_metrics.shutdown(self.settings.shutdown_timeout_s)
        self.spans.shutdown()
        for logs in self.logs:
            logs.shutdown()  # type: ignore[no-untyped-call]
        if self.meter_provider is not None:
            self.meter_provider.shutdown(timeout_millis=self.settings.shutdown_timeout_s * 1000)


ACK_INTERVAL_S = 0.25
"""How often batches are acknowledged (a flush at once): each acknowledgement wakes a thread
of the engine's process, and one acknowledges every batch up to it."""


def run(reader: FrameReader, ack_fd: int) -> None:
    """Materialise and export each batch the engine sends, until it closes the pipe."""
    config = reader.read()
    assert isinstance(config, ExportConfig)
    quiet_sdk_loggers()
    side = ExportSide(config)
    next_second = time.monotonic() + 1.0
    unacked: int | None = None  # the latest batch materialised and not acknowledged yet
    ack_due = 0.0
    try:
        while True:
            wake_at = next_second if unacked is None else min(next_second, ack_due)
            batch = reader.read(timeout_s=max(0.0, wake_at - time.monotonic()))
            if isinstance(batch, Batch):
                for record in unpack(batch.records):
                    try:
                        side.handle(record)
                    except Exception:
                        _log.exception("voiceobs could not record %s", type(record).__name__)
                side.push_changed_metrics()
            now = time.monotonic()
            if now >= next_second:
                next_second = now + 1.0
                side.materialiser.every_second()
                side.count_failures()
            if isinstance(batch, Batch):
                if batch.flush:
                    write_frame(ack_fd, Ack(batch.seq, True, side.flush()))
                    unacked = None
                    continue
                if unacked is None:
                    ack_due = now + ACK_INTERVAL_S
                unacked = batch.seq
            if unacked is not None and now >= ack_due:
                write_frame(ack_fd, Ack(unacked, False, True))
                unacked = None
    except EOFError:
        pass
    finally:
        side.shutdown()


def main() -> None:
    # Ctrl-C reaches the engine's whole process group: the engine decides when this ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ack_fd = int(sys.argv[1])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with contextlib.suppress(BrokenPipeError, EOFError):  # the engine is gone
        run(FrameReader(sys.stdin.fileno()), ack_fd)


if __name__ == "__main__":
    main()
