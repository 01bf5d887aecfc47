"""The export process: materialises the engine's records and exports them, away from the
engine's interpreter and its GIL.

Started and supervised by :class:`voiceobs.processtransport.ProcessTransport` as
``python -m voiceobs.exportprocess ACK_FD``. It reads frames (:mod:`voiceobs.channel`) on
stdin and acknowledges them on the pipe ``ACK_FD``; stdout and stderr are the engine's (the
console exporters print there). Spans are exported in batches on this process' main thread: while an export is
slow, the pipe fills and the engine's bounded buffer counts what it cannot hold, so nothing is
lost without being counted. Metrics are pushed by the SDK's periodic reader. The process ends
when the engine closes the pipe (at shutdown, or when the engine dies): it exports what it
holds within the shutdown deadline, then exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from voiceobs.channel import Ack, Batch, ExportConfig, FrameReader, write_frame
from voiceobs.exportpipeline import (
    env_exporters,
    exporter_names,
    init_metrics,
    materialiser_for,
    redactor_for,
)
from voiceobs.records import ExportFailed
from voiceobs.redaction import RedactingSpanExporter
from voiceobs.selftelemetry import GuardedSpanExporter, quiet_sdk_loggers

_log = logging.getLogger("voiceobs.exportprocess")

BATCH_SPANS = 512
"""Spans per export request."""
BATCH_INTERVAL_S = 1.0
"""Longest a finished span waits for its batch."""


class SpanBatches:
    """Finished spans, exported in batches of :data:`BATCH_SPANS` (or after
    :data:`BATCH_INTERVAL_S`) to every exporter, on the caller's thread."""

    def __init__(self, exporters: Sequence[SpanExporter]) -> None:
        self._exporters = list(exporters)
        self._pending: list[ReadableSpan] = []
        self._oldest = 0.0
        self.delivered = True
        """False once an export failed since the last :meth:`take_delivered`."""

    def add(self, span: ReadableSpan) -> None:
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(span)
        if len(self._pending) >= BATCH_SPANS:
            self.export()

    def export_due(self) -> None:
        if self._pending and time.monotonic() - self._oldest >= BATCH_INTERVAL_S:
            self.export()

    def export(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        for exporter in self._exporters:
            if exporter.export(batch) is not SpanExportResult.SUCCESS:
                self.delivered = False

    def take_delivered(self) -> bool:
        delivered, self.delivered = self.delivered, True
        return delivered

    def shutdown(self) -> None:
        self.export()
        for exporter in self._exporters:
            exporter.shutdown()


def run(reader: FrameReader, ack_fd: int) -> None:
    config = reader.read()
    assert isinstance(config, ExportConfig)
    settings = config.settings
    resource = Resource(dict(config.resource or {}))
    redactor = redactor_for(settings)
    quiet_sdk_loggers()
    failures: list[ExportFailed] = []

    def count_failure(signal_name: str) -> None:
        failures.append(ExportFailed(signal_name))

    chosen = {
        signal_name: exporter_names(signal_name)
        for signal_name, wanted in (
            ("traces", settings.traces_enabled),
            ("metrics", settings.metrics_enabled),
        )
        if wanted
    }
    meter_provider, _ = init_metrics(
        settings, resource, [], env_exporters("metrics", chosen, settings), count_failure
    )
    span_exporters: list[SpanExporter] = []
    for inner in env_exporters("traces", chosen, settings):
        exporter: SpanExporter = GuardedSpanExporter(inner, count_failure)
        if redactor.active:
            exporter = RedactingSpanExporter(exporter, redactor)
        span_exporters.append(exporter)
    spans = SpanBatches(span_exporters)
    meter = (meter_provider or MeterProvider()).get_meter("voiceobs")
    materialiser = materialiser_for(
        settings,
        resource,
        spans.add if span_exporters else None,
        meter,
        redactor,
        config.rate_card,
    )
    next_second = time.monotonic() + 1.0
    try:
        while True:
            batch: Batch | None = reader.read(timeout_s=max(0.0, next_second - time.monotonic()))
            if batch is not None:
                for record in batch.records:
                    try:
                        materialiser.handle(record)
                    except Exception:
                        _log.exception("voiceobs could not record %s", type(record).__name__)
            while failures:
                materialiser.handle(failures.pop())
            if time.monotonic() >= next_second:
                next_second = time.monotonic() + 1.0
                materialiser.every_second()
                spans.export_due()
            if batch is not None:
                delivered = True
                if batch.flush:
                    spans.export()
                    flushed = meter_provider is None or meter_provider.force_flush(
                        int(settings.shutdown_timeout_s * 1000)
                    )
                    delivered = spans.take_delivered() and flushed
                write_frame(ack_fd, Ack(batch.seq, batch.flush, delivered))
    except EOFError:
        pass
    finally:
        spans.shutdown()
        if meter_provider is not None:
            meter_provider.shutdown(timeout_millis=settings.shutdown_timeout_s * 1000)


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
