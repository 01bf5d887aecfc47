"""The OpenTelemetry instruments behind the contract in :mod:`voiceobs.semconv`.

Histograms are recorded with ``voice_call_id`` among their attributes; the views returned
by :func:`metric_views` keep only the contract's labels on the metric point, so the call id
lands in each exemplar's filtered attributes and never becomes a Prometheus label.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.metrics import Counter, Histogram, Meter, UpDownCounter, _Gauge
from opentelemetry.sdk.metrics.view import DropAggregation, View

from voiceobs import semconv as sc
from voiceobs.semconv import MetricSpec

FRAMEWORK_METERS = ("livekit-agents",)
"""Meters of voice frameworks whose own metrics repeat what their voiceobs adapter reports
(LiveKit Agents' ``lk.agents.*`` turn latencies and usage, its ``gen_ai.*`` token counts):
with voiceobs as the global meter provider they would be exported beside ours and
double-count tokens, characters and cost."""


def metric_views() -> list[View]:
    """Views a MeterProvider needs so every voice metric carries only its contract labels,
    and framework metrics that duplicate ours are dropped."""
    return [
        View(instrument_name=spec.name, attribute_keys=set(spec.labels))
        for spec in sc.VOICE_METRICS
        if spec.labels
    ] + [View(meter_name=name, aggregation=DropAggregation()) for name in FRAMEWORK_METERS]


def _create(meter: Meter, spec: MetricSpec) -> Any:
    if spec.kind == "counter":
        return meter.create_counter(spec.name, spec.unit, spec.description)
    if spec.kind == "updowncounter":
        return meter.create_up_down_counter(spec.name, spec.unit, spec.description)
    if spec.kind == "gauge":
        return meter.create_gauge(spec.name, spec.unit, spec.description)
    return meter.create_histogram(
        spec.name,
        spec.unit,
        spec.description,
        explicit_bucket_boundaries_advisory=list(spec.buckets or ()),
    )


class Instruments:
    """One instrument per :data:`voiceobs.semconv.VOICE_METRICS` entry, created once."""

    def __init__(self, meter: Meter) -> None:
        self.calls: Counter = _create(meter, sc.CALLS)
        self.calls_active: UpDownCounter = _create(meter, sc.CALLS_ACTIVE)
        self.call_duration: Histogram = _create(meter, sc.CALL_DURATION)
        self.turn_latency: Histogram = _create(meter, sc.TURN_LATENCY_METRIC)
        self.turns: Counter = _create(meter, sc.TURNS)
        self.eou_delay: Histogram = _create(meter, sc.EOU_DELAY)
        self.stt_latency: Histogram = _create(meter, sc.STT_LATENCY)
        self.llm_ttft: Histogram = _create(meter, sc.LLM_TTFT)
        self.llm_duration: Histogram = _create(meter, sc.LLM_DURATION)
        self.tts_ttfb: Histogram = _create(meter, sc.TTS_TTFB)
        self.stream_restarts: Counter = _create(meter, sc.STREAM_RESTARTS)
        self.call_stream_restarts: Histogram = _create(meter, sc.CALL_STREAM_RESTARTS_METRIC)
        self.jitter_buffer_depth: Histogram = _create(meter, sc.JITTER_BUFFER_DEPTH)
        self.stt_audio: Counter = _create(meter, sc.STT_AUDIO)
        self.llm_tokens: Counter = _create(meter, sc.LLM_TOKENS)
        self.tts_characters: Counter = _create(meter, sc.TTS_CHARACTERS_METRIC)
        self.cost: Counter = _create(meter, sc.COST)
        self.call_cost: Histogram = _create(meter, sc.CALL_COST_METRIC)
        self.provider_requests: Counter = _create(meter, sc.PROVIDER_REQUESTS)
        self.circuit_state: _Gauge = _create(meter, sc.CIRCUIT_STATE)
        self.telemetry_dropped: Counter = _create(meter, sc.TELEMETRY_DROPPED)
        self.export_failures: Counter = _create(meter, sc.TELEMETRY_EXPORT_FAILURES)
