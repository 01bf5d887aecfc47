"""A voice engine under load, in its own process: ``python -m bench.engine MODE CALLS SECONDS``.

An asyncio loop runs ``CALLS`` concurrent calls. Each call takes a turn every 4 s (STT, LLM and
TTS stages with usage, awaiting simulated provider latency between their marks) and hangs up
after 5 turns, when a new call takes its place. A frame clock samples every call's inbound
jitter buffer every 20 ms (50 samples/s per call), and a probe sleeps 1 ms again and again,
recording by how much each sleep overshoots: the event-loop lag a 20 ms audio frame would see.

Modes: ``none`` (no telemetry), ``sdk`` (the plain OpenTelemetry SDK code, written the
straightforward way: spans per call/turn/stage, histograms and counters, BatchSpanProcessor and
PeriodicExportingMetricReader exporting OTLP gRPC), ``voiceobs`` (its public API only). Both
telemetry modes export where ``OTEL_EXPORTER_OTLP_ENDPOINT`` points.

After a warm-up, a measurement window starts; at its end the engine records the CPU time of its
own process and of every process below it, stops taking turns, lets open calls hang up, shuts
telemetry down, and prints one JSON object on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.cpu import children_cpu, children_delta

TURN_PERIOD_S = 4.0
TURNS_PER_CALL = 5
FRAME_S = 0.020
PROBE_SLEEP_S = 0.001
STT_S, TTFT_S, LLM_REST_S, TTFB_S = 0.10, 0.20, 0.10, 0.08
"""Simulated provider latencies inside a turn (≈ 0.5 s of a 4 s period)."""
SPANS_PER_TURN = 4  # turn + STT + LLM + TTS
TENANT, PIPELINE = "acme", "support"


@dataclass
class Counters:
    calls: int = 0
    turns: int = 0
    samples: int = 0


@dataclass
class Snapshot:
    at: float
    cpu_s: float
    children_cpu: dict[int, float]
    turns: int
    samples: int


# --- modes: what a call, a turn and a frame sample cost in each ------------------------------


class Mode:
    """A telemetry choice. ``start_call`` returns whatever the others take as the call."""

    def start_call(self, call_id: str) -> Any:
        return call_id

    def end_call(self, call: Any) -> None:
        pass

    async def turn(self, call: Any) -> None:
        await asyncio.sleep(STT_S)
        await asyncio.sleep(TTFT_S)
        await asyncio.sleep(LLM_REST_S)
        await asyncio.sleep(TTFB_S)

    def sample(self, call: Any, depth: float) -> None:
        pass

    def shutdown(self) -> bool:
        return True


class NoTelemetry(Mode):
    """The engine alone: same calls, turns, awaits and frame loop, nothing recorded."""


class PlainSdk(Mode):
    """The OpenTelemetry SDK used directly, as an engine team would write it."""

    def __init__(self) -> None:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create()
        self._trace = trace
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=5000)
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        self.tracer = self.tracer_provider.get_tracer("engine")
        meter = self.meter_provider.get_meter("engine")
        seconds = [0.05 * i for i in range(1, 41)]
        self.calls = meter.create_counter("voice.calls")
        self.active = meter.create_up_down_counter("voice.calls.active")
        self.turn_latency = meter.create_histogram(
            "voice.turn.latency", "s", explicit_bucket_boundaries_advisory=seconds
        )
        self.stage_latency = meter.create_histogram(
            "voice.stage.latency", "s", explicit_bucket_boundaries_advisory=seconds
        )
        self.turns = meter.create_counter("voice.turns")
        self.tokens = meter.create_counter("voice.llm.tokens")
        self.audio = meter.create_counter("voice.stt.audio", "s")
        self.characters = meter.create_counter("voice.tts.characters")
        self.jitter = meter.create_histogram("voice.jitter_buffer.depth", "s")
        self.labels = {"tenant": TENANT, "pipeline": PIPELINE}

    def start_call(self, call_id: str) -> Any:
        span = self.tracer.start_span(
            "voice.call", attributes={"voice.call.id": call_id, **self.labels}
        )
        self.active.add(1, self.labels)
        return (call_id, span, self._trace.set_span_in_context(span))

    def end_call(self, call: Any) -> None:
        call[1].end()
        self.active.add(-1, self.labels)
        self.calls.add(1, {**self.labels, "status": "completed"})

    async def turn(self, call: Any) -> None:
        call_id, _, context = call
        tracer, labels = self.tracer, self.labels
        ids = {"voice.call.id": call_id}
        with tracer.start_as_current_span("voice.turn", context=context, attributes=ids) as turn:
            speech_ended = time.monotonic()
            turn.add_event("voice.user_speech_ended")
            stt_labels = {**labels, "provider": "deepgram", "model": "nova-3"}
            with tracer.start_as_current_span("voice.stt", attributes=ids) as stt:
                began = time.monotonic()
                await asyncio.sleep(STT_S)
                stt.add_event("voice.first_chunk")
                self.stage_latency.record(time.monotonic() - began, stt_labels)
                self.audio.add(2.4, stt_labels)
            llm_labels = {**labels, "provider": "openai", "model": "gpt-4o-mini"}
            with tracer.start_as_current_span("voice.llm", attributes=ids) as llm:
                began = time.monotonic()
                await asyncio.sleep(TTFT_S)
                llm.add_event("voice.first_chunk")
                self.stage_latency.record(time.monotonic() - began, llm_labels)
                await asyncio.sleep(LLM_REST_S)
                llm.set_attribute("gen_ai.usage.input_tokens", 820)
                llm.set_attribute("gen_ai.usage.output_tokens", 42)
                self.tokens.add(820, {**llm_labels, "type": "input"})
                self.tokens.add(42, {**llm_labels, "type": "output"})
            tts_labels = {**labels, "provider": "cartesia", "model": "sonic-2"}
            with tracer.start_as_current_span("voice.tts", attributes=ids) as tts:
                began = time.monotonic()
                await asyncio.sleep(TTFB_S)
                tts.add_event("voice.first_chunk")
                self.stage_latency.record(time.monotonic() - began, tts_labels)
                self.characters.add(96, tts_labels)
            latency = time.monotonic() - speech_ended
            turn.add_event("voice.agent_audio_started")
            turn.set_attribute("voice.turn.latency", latency)
            self.turn_latency.record(latency, labels)
            self.turns.add(1, {**labels, "interrupted": "false"})

    def sample(self, call: Any, depth: float) -> None:
        self.jitter.record(depth, {"pipeline": PIPELINE, "direction": "inbound"})

    def shutdown(self) -> bool:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        return True


class Voiceobs(Mode):
    """voiceobs through its public API, set up as its README says."""

    def __init__(self) -> None:
        from voiceobs import setup_instrumentation

        self.obs = setup_instrumentation()

    def start_call(self, call_id: str) -> Any:
        return self.obs.call(call_id, tenant=TENANT, pipeline=PIPELINE)

    def end_call(self, call: Any) -> None:
        call.end()

    async def turn(self, call: Any) -> None:
        with call.turn() as turn:
            turn.user_speech_ended()
            with turn.stt("deepgram", "nova-3") as stt:
                await asyncio.sleep(STT_S)
                stt.final()
                stt.usage(audio_seconds=2.4)
            with turn.llm("openai", "gpt-4o-mini") as llm:
                await asyncio.sleep(TTFT_S)
                llm.first_token()
                await asyncio.sleep(LLM_REST_S)
                llm.usage(input_tokens=820, output_tokens=42)
            with turn.tts("cartesia", "sonic-2") as tts:
                await asyncio.sleep(TTFB_S)
                tts.first_byte()
                tts.usage(characters=96)
            turn.agent_audio_started()

    def sample(self, call: Any, depth: float) -> None:
        call.jitter_buffer("inbound").sample(depth)

    def shutdown(self) -> bool:
        return bool(self.obs.shutdown())


MODES: dict[str, Callable[[], Mode]] = {"none": NoTelemetry, "sdk": PlainSdk, "voiceobs": Voiceobs}


# --- the engine ----------------------------------------------------------------------------


@dataclass
class Engine:
    mode: Mode
    calls: int
    counters: Counters = field(default_factory=Counters)
    active: dict[int, Any] = field(default_factory=dict)
    lags: list[float] = field(default_factory=list)
    recording: bool = False
    stopping: bool = False

    async def slot(self, index: int) -> None:
        """One line: calls of ``TURNS_PER_CALL`` turns back to back until the engine stops."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(index * TURN_PERIOD_S / self.calls)
        number = 0
        while not self.stopping:
            call = self.mode.start_call(f"call-{index}-{number}")
            number += 1
            self.counters.calls += 1
            self.active[index] = call
            try:
                for _ in range(TURNS_PER_CALL):
                    next_turn = loop.time() + TURN_PERIOD_S
                    await self.mode.turn(call)
                    self.counters.turns += 1
                    await asyncio.sleep(max(0.0, next_turn - loop.time()))
                    if self.stopping:
                        break
            finally:
                del self.active[index]
                self.mode.end_call(call)

    async def frame_clock(self) -> None:
        """Every 20 ms, one jitter-buffer sample per active call."""
        loop = asyncio.get_running_loop()
        tick = loop.time()
        frame = 0
        while not self.stopping:
            depth = 0.02 + 0.01 * (frame % 5)
            for call in list(self.active.values()):
                self.mode.sample(call, depth)
            self.counters.samples += len(self.active)
            frame += 1
            tick += FRAME_S
            await asyncio.sleep(max(0.0, tick - loop.time()))

    async def lag_probe(self) -> None:
        clock = time.perf_counter
        while not self.stopping:
            began = clock()
            await asyncio.sleep(PROBE_SLEEP_S)
            if self.recording:
                self.lags.append(clock() - began - PROBE_SLEEP_S)

    def snapshot(self) -> Snapshot:
        return Snapshot(
            time.monotonic(), time.process_time(), children_cpu(os.getpid()),
            self.counters.turns, self.counters.samples,
        )  # fmt: skip


async def run(mode_name: str, calls: int, seconds: float, warmup: float) -> dict[str, Any]:
    built = time.process_time()
    mode = MODES[mode_name]()
    setup_cpu = time.process_time() - built
    engine = Engine(mode, calls)
    background: list[Awaitable[None]] = [engine.frame_clock(), engine.lag_probe()]
    tasks = [asyncio.create_task(c) for c in background]
    slots = [asyncio.create_task(engine.slot(i)) for i in range(calls)]
    await asyncio.sleep(warmup)
    before = engine.snapshot()
    engine.recording = True
    await asyncio.sleep(seconds - warmup)
    engine.recording = False
    after = engine.snapshot()
    engine.stopping = True
    await asyncio.gather(*slots, *tasks)
    began = time.monotonic()
    shut_down = mode.shutdown()
    shutdown_s = time.monotonic() - began
    window = after.at - before.at
    me = psutil.Process()
    return {
        "mode": mode_name,
        "calls": calls,
        "window_s": window,
        "engine_cpu_s": after.cpu_s - before.cpu_s,
        "children_cpu_s": children_delta(before.children_cpu, after.children_cpu),
        "children": len(after.children_cpu),
        "setup_cpu_s": setup_cpu,
        "turns": after.turns - before.turns,
        "samples": after.samples - before.samples,
        "lags_s": engine.lags,
        "calls_total": engine.counters.calls,
        "turns_total": engine.counters.turns,
        "spans_made": engine.counters.calls + SPANS_PER_TURN * engine.counters.turns,
        "rss_mb": me.memory_info().rss / 2**20,
        "shutdown_s": shutdown_s,
        "shutdown_ok": shut_down,
    }


def main(argv: list[str]) -> None:
    mode_name, calls, seconds = argv[0], int(argv[1]), float(argv[2])
    warmup = min(5.0, seconds / 3)
    result = asyncio.run(run(mode_name, calls, seconds, warmup))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
