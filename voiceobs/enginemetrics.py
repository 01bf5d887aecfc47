"""The export process's side of the engine's own metric collections (process metrics, the
application's instruments): rebuilt from their plain copies and exported on a thread of the
export process, so a slow or unreachable Collector never holds up the records behind them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from voiceobs.records import Dropped, EngineMetrics

BACKLOG = 12
"""Collections waiting while the exporters are slow (a minute at the default 5 s interval);
beyond, the oldest is dropped and its points counted. With the default cumulative temporality
the next collection still holds every count; only resolution is lost."""


def rebuild_metrics(record: EngineMetrics) -> MetricsData:
    """The collection the engine's reader made, as the SDK's exporters take it."""
    return MetricsData(
        resource_metrics=[
            ResourceMetrics(
                resource=Resource(attributes, resource_schema_url),
                scope_metrics=[
                    ScopeMetrics(
                        scope=InstrumentationScope(name, version, scope_schema_url, attrs),
                        metrics=list(metrics),
                        schema_url=schema_url,
                    )
                    for (name, version, scope_schema_url), attrs, schema_url, metrics in scopes
                ],
                schema_url=collection_schema_url,
            )
            for attributes, resource_schema_url, collection_schema_url, scopes in (
                record.resource_metrics
            )
        ]
    )


class EngineMetricsExport:
    """Exports each collection to every exporter, in order, on its own thread. ``count`` is
    told of each collection dropped at the backlog bound (called on the caller's thread)."""

    def __init__(
        self, exporters: Sequence[MetricExporter], count: Callable[[Dropped], None]
    ) -> None:
        self._exporters = list(exporters)
        self._count = count
        self._backlog: deque[EngineMetrics] = deque()
        self._busy = False
        self._stopped = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, record: EngineMetrics) -> None:
        if not self._exporters:
            return
        with self._changed:
            if len(self._backlog) >= BACKLOG:
                self._count(Dropped("metrics", "queue_full", self._backlog.popleft().points))
            self._backlog.append(record)
            self._changed.notify_all()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="voiceobs-engine-metrics", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._backlog and not self._stopped:
                    self._changed.wait()
                if not self._backlog:
                    return
                record = self._backlog.popleft()
                self._busy = True
            data = rebuild_metrics(record)
            for exporter in self._exporters:
                exporter.export(data)  # a guarded exporter: failures are counted, never raised
            with self._changed:
                self._busy = False
                self._changed.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every collection received so far is exported; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._backlog or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def shutdown(self, timeout_s: float) -> None:
        """Export what is waiting until the deadline, then shut the exporters down."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        for exporter in self._exporters:
            exporter.shutdown(timeout_millis=max(0.0, deadline - time.monotonic()) * 1000)
