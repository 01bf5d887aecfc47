"""Hot path: voiceobs against the straightforward OpenTelemetry SDK code, in this process.

The cost per turn and per jitter-buffer sample on the engine's thread, each as a ratio to a
baseline measured in the same run (same machine, same SDK), and the disabled mode's cost.
The per-frame sample is measured both ways the README allows: on a buffer held by the engine,
and as ``call.jitter_buffer(direction).sample(depth)`` on every frame.
Goals: a turn ≤ 50 µs, a frame sample ≤ 1 µs, disabled mode near zero, ``shutdown()``
with no Collector listening done within its deadline (ratio to ``shutdown_timeout_s`` ≤ 1.05),
the cost of a turn flat over a call of 500 turns and nothing held per call once it ended.

Part of ``make bench`` (``python -m bench.hotpath`` alone). Exporters discard what they get, in
background threads as in production, so only the engine-thread cost is compared; the
whole-process figure counts every thread and every child process.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from bench.cpu import children_cpu, children_delta
from bench.figures import Figure, Goal
from stack.control import free_port
from voiceobs import Exporters, VoiceobsSettings, setup_instrumentation
from voiceobs.semconv import STAGE_LATENCY_BUCKETS, TURN_LATENCY_BUCKETS


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def per_op(fn: Callable[[], None], n: int, rounds: int = 5) -> float:
    """Median CPU seconds per call of ``fn`` on the calling thread (``thread_time``: time
    spent waiting for the GIL while background threads work is not the caller's cost)."""
    results = []
    for _ in range(rounds):
        began = time.thread_time()
        for _ in range(n):
            fn()
        results.append((time.thread_time() - began) / n)
    return statistics.median(results)


def total_cpu(fn: Callable[[], None], n: int, settle: Callable[[], None]) -> float:
    """CPU seconds per call of ``fn`` of this process and its children, background
    materialisation and export included."""
    me = os.getpid()
    began, children = time.process_time(), children_cpu(me)
    for _ in range(n):
        fn()
    settle()
    spent = time.process_time() - began + children_delta(children, children_cpu(me))
    return spent / n


Ops = tuple[Callable[[], None], Callable[[], None], Callable[[], None], Callable[[], None]]
"""A turn, a frame sample on a held buffer, a frame sample looked up per frame, a settle."""


def sdk_baseline() -> Ops:
    """A turn and a frame sample written the straightforward SDK way."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=100_000))
    tracer = provider.get_tracer("baseline")
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("baseline")
    latency = meter.create_histogram(
        "turn", "s", explicit_bucket_boundaries_advisory=TURN_LATENCY_BUCKETS
    )
    stage = meter.create_histogram(
        "stage", "s", explicit_bucket_boundaries_advisory=STAGE_LATENCY_BUCKETS
    )
    jitter = meter.create_histogram("jitter", "s")
    turns = meter.create_counter("turns")
    labels = {"tenant": "acme", "pipeline": "support"}
    call = tracer.start_span("voice.call")
    ctx = trace.set_span_in_context(call)

    def turn() -> None:
        with tracer.start_as_current_span(
            "voice.turn", context=ctx, attributes={"voice.call.id": "c"}
        ) as t:
            t.add_event("user_speech_ended")
            for name in ("voice.stt", "voice.llm", "voice.tts"):
                with tracer.start_as_current_span(
                    name, attributes={"gen_ai.provider.name": "p"}
                ) as s:
                    s.add_event("first_chunk")
                stage.record(0.2, {**labels, "provider": "p", "model": "m"})
            latency.record(0.6, labels)
            turns.add(1, {**labels, "interrupted": "false"})

    def sample() -> None:
        jitter.record(0.04, {"pipeline": "support", "direction": "inbound"})

    def settle() -> None:
        provider.force_flush(60_000)

    return turn, sample, sample, settle


def voiceobs_ops(enabled: bool) -> Ops:
    settings = VoiceobsSettings.load(enabled=enabled, logs_enabled=False, queue_size=1_000_000)
    obs = setup_instrumentation(
        settings=settings,
        exporters=Exporters(span=Discard(), metric_readers=[InMemoryMetricReader()]),
        set_global=False,
    )
    call = obs.call("bench-call", tenant="acme", pipeline="support")
    buffer = call.jitter_buffer("inbound")

    def turn() -> None:
        with call.turn() as t:
            t.user_speech_ended()
            with t.stt("deepgram", "nova-3") as s:
                s.final()
                s.usage(audio_seconds=1.0)
            with t.llm("openai", "gpt-4o-mini") as s:
                s.first_token()
                s.usage(input_tokens=100, output_tokens=10)
            with t.tts("cartesia", "sonic-2") as s:
                s.first_byte()
            t.agent_audio_started()

    def sample() -> None:
        buffer.sample(0.04)

    def sample_looked_up() -> None:
        call.jitter_buffer("inbound").sample(0.04)

    def settle() -> None:
        """Let the background work finish before the next measurement."""
        obs.force_flush(60)

    return turn, sample, sample_looked_up, settle


def long_call(rounds: int, block: int = 100, turns: int = 500) -> tuple[float, float]:
    """CPU seconds per turn of this process (background materialisation included) over the
    first and over the last ``block`` turns of one call of ``turns`` turns; medians of
    ``rounds`` calls."""
    first, last = [], []
    for _ in range(rounds):
        turn, _, _, settle = voiceobs_ops(True)
        first.append(total_cpu(turn, block, settle))
        for _ in range(turns - 2 * block):
            turn()
        settle()
        last.append(total_cpu(turn, block, settle))
    return statistics.median(first), statistics.median(last)


def retained_per_call(calls: int = 400, warmup: int = 200) -> float:
    """Bytes still allocated per call after ``calls`` calls of 3 turns with jitter samples
    came and went (Python allocations, ``tracemalloc``), after a warm-up of ``warmup``."""
    obs = setup_instrumentation(
        settings=VoiceobsSettings.load(logs_enabled=False),
        exporters=Exporters(span=Discard(), metric_readers=[InMemoryMetricReader()]),
        set_global=False,
    )

    def one(call_id: str) -> None:
        with obs.call(call_id, tenant="acme", pipeline="support") as call:
            for _ in range(3):
                with call.turn() as turn:
                    turn.user_speech_ended()
                    with turn.llm("openai", "gpt-4o-mini") as llm:
                        llm.first_token()
                    turn.agent_audio_started()
                call.jitter_buffer("inbound").sample(0.04)

    def allocated() -> int:
        obs.force_flush(60)
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    for index in range(warmup):
        one(f"warm-{index}")
    tracemalloc.start()
    try:
        before = allocated()
        for index in range(calls):
            one(f"measured-{index}")
        after = allocated()
    finally:
        tracemalloc.stop()
        obs.shutdown()
    return max(0.0, (after - before) / calls)


def shutdown_with_dead_collector(timeout_s: float) -> float:
    """Wall seconds ``shutdown()`` takes when nothing listens on the OTLP endpoint, after a
    call, a turn and a log line are waiting to be exported."""
    dead = f"http://127.0.0.1:{free_port()}"
    saved = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = dead
    try:
        settings = VoiceobsSettings.load(shutdown_timeout_s=timeout_s)
        obs = setup_instrumentation(settings=settings, set_global=False)
    finally:
        if saved is None:
            del os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]
        else:
            os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = saved
    with obs.call("bench-dead-collector") as call, call.turn():
        pass
    began = time.monotonic()
    obs.shutdown()
    return time.monotonic() - began


def measure(rounds: int = 5) -> list[Figure]:
    group = "Hot path, engine thread"
    base_turn, base_sample, _, base_settle = sdk_baseline()
    our_turn, our_sample, our_looked_up, settle = voiceobs_ops(True)
    off_turn, off_sample, off_looked_up, _ = voiceobs_ops(False)
    rows = [
        ("turn", "a turn (4 spans, events, metrics)", 2000, base_turn, our_turn, off_turn, 50),
        (
            "sample-held",
            "a jitter-buffer sample on a held buffer (per frame)",
            200_000,
            base_sample,
            our_sample,
            off_sample,
            1,
        ),
        (
            "sample-looked-up",
            "call.jitter_buffer(d).sample() (per frame)",
            200_000,
            base_sample,
            our_looked_up,
            off_looked_up,
            1,
        ),
    ]
    figures = []
    for key, title, n, base, ours, off, goal_us in rows:
        b = per_op(base, n, rounds)
        o = per_op(ours, n, rounds)
        settle()
        d = per_op(off, n, rounds)
        figures += [
            Figure(
                f"hotpath-{key}",
                group,
                f"CPU per op on the engine's thread, {title}, voiceobs vs SDK code",
                o * 1e6,
                "µs",
                baseline=b * 1e6,
                baseline_name="sdk",
                goal=Goal("<=", goal_us, on_ratio=False),
                note=f"thread_time, median of {rounds} rounds",
            ),
            Figure(
                f"hotpath-{key}-disabled",
                group,
                f"CPU per op on the engine's thread, {title}, VOICEOBS_ENABLED=false",
                d * 1e6,
                "µs",
                baseline=o * 1e6,
                baseline_name="voiceobs enabled",
            ),
        ]
    n = 2000
    base_total = total_cpu(base_turn, n, base_settle)
    our_total = total_cpu(our_turn, n, settle)
    figures.append(
        Figure(
            "hotpath-turn-whole-process",
            group,
            "CPU per turn of the whole process and its children (background export included), "
            "voiceobs vs SDK code",
            our_total * 1e6,
            "µs",
            baseline=base_total * 1e6,
            baseline_name="sdk",
            note="exporters discard; no network",
        )
    )
    first, last = long_call(rounds)
    figures.append(
        Figure(
            "hotpath-turn-500",
            "Long calls",
            "CPU per turn of the whole process, turns 401-500 of one call vs its turns 1-100",
            last * 1e6,
            "µs",
            baseline=first * 1e6,
            baseline_name="turns 1-100",
            goal=Goal("<=", 1.2),
            note=f"median of {rounds} calls of 500 turns; exporters discard",
        )
    )
    figures.append(
        Figure(
            "hotpath-memory-per-call",
            "Long calls",
            "Python memory still held per ended call (3 turns, samples), after 400 calls",
            retained_per_call(),
            "bytes",
            goal=Goal("<=", 64, on_ratio=False),
            note="tracemalloc, after a warm-up of 200 calls",
        )
    )
    deadline = 5.0
    figures.append(
        Figure(
            "hotpath-shutdown-dead-collector",
            "Shutdown",
            "shutdown() with no Collector listening, a call, a turn and a log line waiting",
            shutdown_with_dead_collector(deadline),
            "s",
            baseline=deadline,
            baseline_name="shutdown_timeout_s",
            goal=Goal("<=", 1.05),
            note="the ratio allows the last export's own clean-up",
        )
    )
    return figures


if __name__ == "__main__":
    import argparse
    import json

    from bench.report import print_table

    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure (median)")
    args = parser.parse_args()
    measured = measure(args.rounds)
    if args.json:
        print(json.dumps([figure.as_dict() for figure in measured]))
    else:
        print_table(measured)
