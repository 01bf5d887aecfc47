"""Prompt metric pushes: a turn reaches Prometheus about a second after it ended, not a whole
export interval later, without pushing every series every second.

:class:`PromptMetricReader` pushes like the SDK's periodic reader (every series, every
``metric_export_interval_ms``), with one addition: after :meth:`~PromptMetricReader.nudge`
(the export process nudges it when voice records arrive), it pushes the series whose value
changed since they were last pushed, ``metric_prompt_export_ms`` after the previous push at
the soonest. An idle engine therefore pushes as before; a busy one pushes what moved about
once a second, and what stood still (process metrics, the series of quiet tenants) only with
the full push.

Only cumulative points are left out when unchanged: Prometheus keeps a series' last sample
for five minutes, far longer than the full push's interval, so nothing reads older. Delta
points (``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta``) are always pushed: two
equal deltas are two increments.

Before a counter or histogram of ``zero_start_scopes`` is pushed for the first time, its
zero start point goes (:mod:`voiceobs.startpoints`), so that its first increment counts.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Collection, Hashable
from typing import Any

from opentelemetry.sdk.metrics import MetricsTimeoutError
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricReader,
    MetricsData,
)

from voiceobs.startpoints import zero_start_points

_log = logging.getLogger(__name__)

_PointKey = tuple[str, str, frozenset[tuple[str, Any]]]


def _signature(point: Any) -> Hashable:
    """What a point's value is, for telling whether it moved: a number's value, a
    histogram's count and sum."""
    value: Hashable | None = getattr(point, "value", None)
    if value is not None:
        return value
    return (point.count, point.sum)


def _attributes(point: Any) -> frozenset[tuple[str, Any]]:
    return frozenset(
        (k, tuple(v) if isinstance(v, list) else v) for k, v in (point.attributes or {}).items()
    )


class PromptMetricReader(MetricReader):
    """Every series every ``export_interval_millis``; after a :meth:`nudge`, the series that
    changed, ``prompt_gap_s`` after the previous push at the soonest (never when it is
    ``math.inf``: the zero start points are all it adds then). One thread collects
    and pushes, and a flush waits for it, so a series' samples leave in time order
    (Prometheus refuses an older sample after a newer one)."""

    def __init__(
        self,
        exporter: MetricExporter,
        *,
        export_interval_millis: float,
        export_timeout_millis: float,
        prompt_gap_s: float,
        zero_start_scopes: Collection[str] = (),
    ) -> None:
        super().__init__(
            preferred_temporality=exporter._preferred_temporality,
            preferred_aggregation=exporter._preferred_aggregation,
        )
        self._exporter = exporter
        self._interval_s = export_interval_millis / 1000
        self._timeout_millis = export_timeout_millis
        self._prompt_gap_s = prompt_gap_s
        self._zero_start_scopes = frozenset(zero_start_scopes)
        self._pushed: dict[_PointKey, Hashable] = {}
        self._pushing = threading.RLock()  # one collection and push at a time
        self._changed_only = False
        self._nudged = False
        self._last_push = time.monotonic()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="voiceobs-prompt-metrics", daemon=True
        )
        self._thread.start()

    def nudge(self) -> None:
        """Something changed: push what moved as soon as the gap since the last push allows."""
        if self._prompt_gap_s == math.inf:
            return
        self._nudged = True
        self._wake.set()

    def _run(self) -> None:
        next_full = time.monotonic() + self._interval_s
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= next_full:
                self._push(changed_only=False)
                next_full = time.monotonic() + self._interval_s
            elif self._nudged and now >= self._last_push + self._prompt_gap_s:
                self._nudged = False
                self._push(changed_only=True)
            now = time.monotonic()
            wake_at = next_full
            if self._nudged:
                wake_at = min(wake_at, self._last_push + self._prompt_gap_s)
            self._wake.wait(max(0.0, wake_at - now))
            self._wake.clear()
        self._push(changed_only=False)  # what is left, at shutdown

    def _push(self, *, changed_only: bool) -> None:
        with self._pushing:
            self._changed_only = changed_only
            try:
                self.collect(timeout_millis=self._timeout_millis)
            except MetricsTimeoutError:  # what did not go now goes with the next push
                _log.warning("voiceobs: a metric collection timed out")
            finally:
                self._changed_only = False

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        with self._pushing:
            data = self._changed(metrics_data) if self._changed_only else metrics_data
            starts = zero_start_points(metrics_data, self._zero_start_scopes, self._is_new)
            self._remember(metrics_data)
            self._last_push = time.monotonic()
            for batch in (starts, data):  # a series' start before its first point
                if batch is None:
                    continue
                try:
                    self._exporter.export(batch, timeout_millis=timeout_millis)
                except Exception:  # the exporter counts its failures; this one raised instead
                    _log.exception("voiceobs: exporting metrics failed")

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        with self._pushing:
            super().force_flush(timeout_millis=timeout_millis)
        return self._exporter.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._stopping.is_set():
            return
        deadline = time.monotonic() + timeout_millis / 1000
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=timeout_millis / 1000)
        self._exporter.shutdown(timeout_millis=max(0.0, deadline - time.monotonic()) * 1000)

    def _is_new(self, scope: str, metric: str, point: Any) -> bool:
        return (scope, metric, _attributes(point)) not in self._pushed

    def _remember(self, metrics_data: MetricsData) -> None:
        for resource_metrics in metrics_data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    for point in metric.data.data_points:
                        key = (scope_metrics.scope.name, metric.name, _attributes(point))
                        self._pushed[key] = _signature(point)

    def _changed(self, metrics_data: MetricsData) -> MetricsData | None:
        """``metrics_data`` without the cumulative points that did not move since they were
        last pushed; None when nothing is left."""
        resources = []
        for resource_metrics in metrics_data.resource_metrics:
            scopes = []
            for scope_metrics in resource_metrics.scope_metrics:
                kept_metrics = []
                for metric in scope_metrics.metrics:
                    data: Any = metric.data  # Sum, Gauge, Histogram or ExponentialHistogram
                    cumulative = (
                        getattr(data, "aggregation_temporality", AggregationTemporality.CUMULATIVE)
                        == AggregationTemporality.CUMULATIVE
                    )
                    points = [
                        point
                        for point in data.data_points
                        if not cumulative
                        or self._pushed.get(
                            (scope_metrics.scope.name, metric.name, _attributes(point))
                        )
                        != _signature(point)
                    ]
                    if points:
                        kept_metrics.append(
                            dataclasses.replace(
                                metric, data=dataclasses.replace(data, data_points=points)
                            )
                        )
                if kept_metrics:
                    scopes.append(dataclasses.replace(scope_metrics, metrics=kept_metrics))
            if scopes:
                resources.append(dataclasses.replace(resource_metrics, scope_metrics=scopes))
        return MetricsData(resource_metrics=resources) if resources else None
