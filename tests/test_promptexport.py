"""PromptMetricReader: every series with each full push; after a nudge, only the series that
moved, and not sooner than the gap after the previous push; a counter's zero start point
before its first push."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)

from voiceobs.promptexport import PromptMetricReader

GAP_S = 0.2
HOUR_MS = 3_600_000  # no full push during a test unless it asks for one


class RecordingExporter(MetricExporter):
    """Keeps every push: (monotonic time, {(metric, attributes): value}), a histogram's value
    being its count; and the points themselves."""

    def __init__(self, temporality: AggregationTemporality) -> None:
        super().__init__(preferred_temporality={Counter: temporality, Histogram: temporality})
        self.pushes: list[tuple[float, dict[tuple[str, frozenset[Any]], Any]]] = []
        self.points: list[list[Any]] = []
        self.pushed = threading.Condition()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        named = [
            (metric.name, point)
            for resource in metrics_data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            for point in metric.data.data_points
        ]
        points = {
            (name, frozenset((point.attributes or {}).items())): (
                point.count if isinstance(point, HistogramDataPoint) else point.value
            )
            for name, point in named
        }
        with self.pushed:
            self.points.append([point for _, point in named])
            self.pushes.append((time.monotonic(), points))
            self.pushed.notify_all()
        return MetricExportResult.SUCCESS

    def wait_for_push(self, count: int) -> dict[tuple[str, frozenset[Any]], Any]:
        with self.pushed:
            assert self.pushed.wait_for(lambda: len(self.pushes) >= count, timeout=10), (
                f"push {count} never came: {self.pushes}"
            )
            return self.pushes[count - 1][1]

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def series(tenant: str) -> tuple[str, frozenset[Any]]:
    return ("voice_turns", frozenset({("tenant", tenant)}))


def wire(
    temporality: AggregationTemporality,
    interval_ms: float = HOUR_MS,
    zero_start_scopes: tuple[str, ...] = (),
) -> tuple[RecordingExporter, PromptMetricReader, Counter, MeterProvider]:
    """A reader pushing to a recording exporter, with a counter of its meter provider (its
    meter's scope is ``test``)."""
    exporter = RecordingExporter(temporality)
    reader = PromptMetricReader(
        exporter,
        export_interval_millis=interval_ms,
        export_timeout_millis=5000,
        prompt_gap_s=GAP_S,
        zero_start_scopes=zero_start_scopes,
    )
    provider = MeterProvider(metric_readers=[reader])
    counter = provider.get_meter("test").create_counter("voice_turns")
    return exporter, reader, counter, provider


@pytest.fixture(params=[AggregationTemporality.CUMULATIVE], ids=["cumulative"])
def wired(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[RecordingExporter, PromptMetricReader, Counter]]:
    exporter, reader, counter, provider = wire(request.param)
    yield exporter, reader, counter
    provider.shutdown()


def test_a_nudge_pushes_only_the_series_that_moved(
    wired: tuple[RecordingExporter, PromptMetricReader, Counter],
) -> None:
    exporter, reader, counter = wired
    counter.add(1, {"tenant": "acme"})
    counter.add(1, {"tenant": "globex"})
    reader.force_flush()
    assert exporter.wait_for_push(1) == {series("acme"): 1, series("globex"): 1}

    counter.add(2, {"tenant": "acme"})
    reader.nudge()
    assert exporter.wait_for_push(2) == {series("acme"): 3}


def test_a_new_series_is_pushed_at_the_first_nudge(
    wired: tuple[RecordingExporter, PromptMetricReader, Counter],
) -> None:
    exporter, reader, counter = wired
    counter.add(1, {"tenant": "acme"})
    reader.nudge()
    assert exporter.wait_for_push(1) == {series("acme"): 1}


def test_the_full_push_carries_every_series_moved_or_not(
    wired: tuple[RecordingExporter, PromptMetricReader, Counter],
) -> None:
    exporter, reader, counter = wired
    counter.add(1, {"tenant": "acme"})
    counter.add(1, {"tenant": "globex"})
    reader.nudge()
    exporter.wait_for_push(1)
    reader.force_flush()
    assert exporter.wait_for_push(2) == {series("acme"): 1, series("globex"): 1}


def test_nothing_moved_nothing_pushed(
    wired: tuple[RecordingExporter, PromptMetricReader, Counter],
) -> None:
    exporter, reader, counter = wired
    counter.add(1, {"tenant": "acme"})
    reader.force_flush()
    exporter.wait_for_push(1)
    reader.nudge()
    counter.add(1, {"tenant": "globex"})  # a later change shows the nudge was seen
    time.sleep(GAP_S * 2)
    reader.nudge()
    assert exporter.wait_for_push(2) == {series("globex"): 1}
    assert len(exporter.pushes) == 2


def test_prompt_pushes_keep_the_gap_after_the_previous_push(
    wired: tuple[RecordingExporter, PromptMetricReader, Counter],
) -> None:
    exporter, reader, counter = wired
    counter.add(1, {"tenant": "acme"})
    reader.force_flush()
    for n in range(2, 5):
        counter.add(1, {"tenant": "acme"})
        reader.nudge()
        exporter.wait_for_push(n)
    times = [at for at, _ in exporter.pushes]
    assert all(later - earlier >= GAP_S * 0.95 for earlier, later in itertools.pairwise(times))


@pytest.mark.parametrize("wired", [AggregationTemporality.DELTA], indirect=True, ids=["delta"])
def test_delta_points_are_pushed_even_when_equal(
    wired: tuple[RecordingExporter, PromptMetricReader, Counter],
) -> None:
    exporter, reader, counter = wired
    counter.add(1, {"tenant": "acme"})
    reader.nudge()
    assert exporter.wait_for_push(1) == {series("acme"): 1}
    counter.add(1, {"tenant": "acme"})
    reader.nudge()
    assert exporter.wait_for_push(2) == {series("acme"): 1}


def test_shutdown_stops_the_prompt_thread_and_pushes_the_rest() -> None:
    exporter, _, counter, provider = wire(AggregationTemporality.CUMULATIVE)
    counter.add(1, {"tenant": "acme"})
    provider.shutdown()
    assert exporter.pushes[-1][1] == {series("acme"): 1}
    assert not any(
        t.name == "voiceobs-prompt-metrics" and t.is_alive() for t in threading.enumerate()
    )


def test_every_series_is_pushed_each_interval_without_a_nudge() -> None:
    exporter, _, counter, provider = wire(AggregationTemporality.CUMULATIVE, interval_ms=200)
    try:
        counter.add(1, {"tenant": "acme"})
        counter.add(1, {"tenant": "globex"})
        assert exporter.wait_for_push(1) == {series("acme"): 1, series("globex"): 1}
        assert exporter.wait_for_push(2) == {series("acme"): 1, series("globex"): 1}
    finally:
        provider.shutdown()


def test_a_counter_s_zero_start_point_goes_before_its_first_push_only() -> None:
    exporter, reader, counter, provider = wire(
        AggregationTemporality.CUMULATIVE, zero_start_scopes=("test",)
    )
    try:
        counter.add(1, {"tenant": "acme"})
        reader.force_flush()
        assert exporter.wait_for_push(1) == {series("acme"): 0}
        assert exporter.wait_for_push(2) == {series("acme"): 1}
        (start,), (first,) = exporter.points[0], exporter.points[1]
        assert start.time_unix_nano == first.start_time_unix_nano < first.time_unix_nano
        assert start.exemplars == []

        counter.add(1, {"tenant": "acme"})
        counter.add(1, {"tenant": "globex"})  # new: its start goes first, acme's does not
        reader.force_flush()
        assert exporter.wait_for_push(3) == {series("globex"): 0}
        assert exporter.wait_for_push(4) == {series("acme"): 2, series("globex"): 1}
    finally:
        provider.shutdown()


def test_a_histogram_s_zero_start_point_has_empty_buckets() -> None:
    exporter, reader, _, provider = wire(
        AggregationTemporality.CUMULATIVE, zero_start_scopes=("test",)
    )
    try:
        histogram = provider.get_meter("test").create_histogram("voice_turn_latency")
        histogram.record(0.7, {"tenant": "acme"})
        reader.force_flush()
        exporter.wait_for_push(2)
        (start,), (first,) = exporter.points[0], exporter.points[1]
        assert (start.count, start.sum, sum(start.bucket_counts)) == (0, 0, 0)
        assert start.explicit_bounds == first.explicit_bounds
        assert start.time_unix_nano == first.start_time_unix_nano
        assert (first.count, first.sum) == (1, 0.7)
    finally:
        provider.shutdown()


def test_no_zero_start_for_gauges_up_down_counters_or_scopes_not_named() -> None:
    exporter, reader, _, provider = wire(
        AggregationTemporality.CUMULATIVE, zero_start_scopes=("test",)
    )
    try:
        provider.get_meter("test").create_up_down_counter("voice_calls_active").add(3)
        provider.get_meter("test").create_gauge("voice_jitter_buffer_ms").set(40)
        provider.get_meter("other").create_counter("voice_other").add(1)
        # An observable counter's total began before its series did: its scope is not named.
        provider.get_meter("system").create_observable_counter(
            "process_cpu_time", callbacks=[lambda _: [Observation(12.5)]]
        )
        reader.force_flush()
        assert exporter.wait_for_push(1) == {
            ("voice_calls_active", frozenset()): 3,
            ("voice_jitter_buffer_ms", frozenset()): 40,
            ("voice_other", frozenset()): 1,
            ("process_cpu_time", frozenset()): 12.5,
        }
        assert len(exporter.pushes) == 1
    finally:
        provider.shutdown()


def test_no_zero_start_for_delta_points() -> None:
    exporter, reader, counter, provider = wire(
        AggregationTemporality.DELTA, zero_start_scopes=("test",)
    )
    try:
        counter.add(1, {"tenant": "acme"})
        reader.force_flush()
        assert exporter.wait_for_push(1) == {series("acme"): 1}
        assert len(exporter.pushes) == 1
    finally:
        provider.shutdown()
