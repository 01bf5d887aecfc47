"""Telemetry about the telemetry: failed exports are counted and logged once per outage.

The SDK's exporters log a warning on every retry; with no collector listening that is a
warning every few seconds. :class:`ExportGuard` wraps each exporter, counts failed batches in
``voiceobs_telemetry_export_failures_total{signal}`` and logs once when a signal starts
failing and once when it recovers. :class:`OnceFilter` lets each distinct SDK warning through
only the first time. Queue drops are counted by the SDK itself (its ``otel.sdk.*`` metrics).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

_log = logging.getLogger("voiceobs.export")
R = TypeVar("R")

SDK_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.sdk.metrics._internal.export",
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.sdk._logs._internal.export",
)
"""Loggers of the SDK that repeat themselves while a backend is unreachable."""


_VARYING = re.compile(r"[0-9.:%\[\]]+")


class OnceFilter(logging.Filter):
    """Passes each kind of message of a logger once (numbers and addresses ignored when
    comparing); counts what it holds back."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, _VARYING.sub("", str(record.msg))[:48])
        if key in self._seen:
            self.suppressed += 1
            return False
        self._seen.add(key)
        return True


class _Health:
    """Per-signal export state shared by the guards: counts failures, logs transitions."""

    def __init__(self, signal: str, count: Callable[[str], None]) -> None:
        self.signal = signal
        self._count = count
        self._failing = False
        self._lock = threading.Lock()

    def result(self, ok: bool, detail: str = "") -> None:
        with self._lock:
            if ok and self._failing:
                self._failing = False
                _log.warning("voiceobs: %s export recovered", self.signal)
            elif not ok and not self._failing:
                self._failing = True
                _log.warning(
                    "voiceobs: %s export is failing%s; the engine carries on, failures are "
                    "counted in voiceobs_telemetry_export_failures_total (logged once per outage)",
                    self.signal,
                    f" ({detail})" if detail else "",
                )
        if not ok:
            self._count(self.signal)

    def run(self, export: Callable[[], R], success: R, failure: R) -> R:
        """Run one export: an exception or a non-success result counts as a failure."""
        try:
            result = export()
        except Exception as exc:
            self.result(False, repr(exc))
            return failure
        self.result(result is success)
        return result


class GuardedSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, count: Callable[[str], None]) -> None:
        self._inner = inner
        self._health = _Health("traces", count)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok, failed = SpanExportResult.SUCCESS, SpanExportResult.FAILURE
        return self._health.run(lambda: self._inner.export(spans), ok, failed)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class GuardedLogExporter(LogRecordExporter):
    def __init__(self, inner: LogRecordExporter, count: Callable[[str], None]) -> None:
        self._inner = inner
        self._health = _Health("logs", count)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        ok, failed = LogRecordExportResult.SUCCESS, LogRecordExportResult.FAILURE
        return self._health.run(lambda: self._inner.export(batch), ok, failed)

    def shutdown(self) -> None:
        self._inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class GuardedMetricExporter(MetricExporter):
    def __init__(self, inner: MetricExporter, count: Callable[[str], None]) -> None:
        # The reader asks its exporter for temporality and aggregation preferences.
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._health = _Health("metrics", count)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        ok, failed = MetricExportResult.SUCCESS, MetricExportResult.FAILURE
        return self._health.run(
            lambda: self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs),
            ok,
            failed,
        )

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)


def quiet_sdk_loggers() -> tuple[OnceFilter, Callable[[], None]]:
    """Install one :class:`OnceFilter` on the SDK's noisy loggers; returns it and an undo."""
    once = OnceFilter()
    loggers = [logging.getLogger(name) for name in SDK_LOGGERS]
    for logger in loggers:
        logger.addFilter(once)

    def undo() -> None:
        for logger in loggers:
            logger.removeFilter(once)

    return once, undo
