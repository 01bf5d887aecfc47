"""Zero start points: a counter's first increment visible to ``rate()`` and ``increase()``.

Prometheus computes an increase from two samples of a series. A counter that first appears
with value 1 has one sample, so its first increment is invisible: the first failed call of a
kind, the first dropped span and the first refused credential count for nothing on a rate
panel or in an alert. Prometheus' own remedy (created-timestamp zero ingestion) needs a
protocol that carries a start time to its storage; remote write 1.0 does not.

A cumulative point carries its series' start time, and the series was zero then. So before
a cumulative series is pushed for the first time, a point of value zero stamped with that
start time is pushed. The SDK starts a synchronous instrument's series at the collection
before its first measurement, so the two samples are about one push apart.

Only series that count from zero at their start may have one: synchronous monotonic
counters and histograms. An observable counter reports a total that was already counting
before its series started (process CPU time), and a zero there would show the whole total
as one burst; an up-down counter is not a counter. Callers name the instrumentation scopes
whose monotonic sums and histograms are all synchronous.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    MetricsData,
    NumberDataPoint,
    Sum,
)


def _zero(point: Any) -> Any:
    """``point`` as it was at its start time: nothing counted, no exemplars."""
    if isinstance(point, HistogramDataPoint):
        return dataclasses.replace(
            point,
            time_unix_nano=point.start_time_unix_nano,
            count=0,
            sum=0,
            bucket_counts=[0] * len(point.bucket_counts),
            min=0,
            max=0,
            exemplars=[],
        )
    assert isinstance(point, NumberDataPoint)
    value = 0.0 if isinstance(point.value, float) else 0
    return dataclasses.replace(
        point, time_unix_nano=point.start_time_unix_nano, value=value, exemplars=[]
    )


def _counts_from_zero(data: Any) -> bool:
    counts = isinstance(data, Histogram) or (isinstance(data, Sum) and data.is_monotonic)
    return counts and data.aggregation_temporality == AggregationTemporality.CUMULATIVE


def zero_start_points(
    metrics_data: MetricsData,
    scopes: Collection[str],
    is_new: Callable[[str, str, Any], bool],
) -> MetricsData | None:
    """A zero point at its start time for each point of ``metrics_data`` in ``scopes`` that
    counts from zero and for which ``is_new(scope, metric, point)`` holds; None when there
    is none. A point whose start time is not before its own time gets none."""
    resources = []
    for resource_metrics in metrics_data.resource_metrics:
        scope_list = []
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope.name
            if scope not in scopes:
                continue
            kept = []
            for metric in scope_metrics.metrics:
                data: Any = metric.data
                if not _counts_from_zero(data):
                    continue
                zeros = [
                    _zero(point)
                    for point in data.data_points
                    if 0 < point.start_time_unix_nano < point.time_unix_nano
                    and is_new(scope, metric.name, point)
                ]
                if zeros:
                    kept.append(
                        dataclasses.replace(
                            metric, data=dataclasses.replace(data, data_points=zeros)
                        )
                    )
            if kept:
                scope_list.append(dataclasses.replace(scope_metrics, metrics=kept))
        if scope_list:
            resources.append(dataclasses.replace(resource_metrics, scope_metrics=scope_list))
    return MetricsData(resource_metrics=resources) if resources else None
