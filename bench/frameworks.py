"""Frameworks: the Pipecat adapter beside Pipecat's built-in tracing, on the same pipeline.

The pipeline is voiceobs' demo bot (:mod:`voiceobs.demo.pipecat_bot`: a scripted user, fake
STT, LLM and TTS services, an output transport) with its delays cut to a millisecond. One call
of 200 turns runs once, recording every frame the observers are told about; the recording is
then replayed, turn by turn, into each mode's observers, so every mode sees exactly the same
frames and the difference is theirs alone (a live pipeline's own CPU varies by more than the
figures measured here). Each mode runs in a process of its own (Pipecat's tracing sets the
global tracer provider):

- ``bare``: Pipecat's turn-tracking observer, there with or without tracing: the baseline;
- ``voiceobs``: plus :class:`voiceobs.integrations.pipecat.VoiceobsObserver` (spans, metrics,
  exemplars, materialised in this process; exporters discard);
- ``pipecat``: plus what ``enable_tracing=True`` adds, ``UserBotLatencyObserver`` and
  ``TurnTraceObserver``, after Pipecat's ``setup_tracing`` (a batch span processor whose
  exporter discards).

Figures: CPU of the whole process (all threads; each window of 25 turns ends with a flush so
background export counts) per turn above ``bare``, over turns 1-25 and 176-200, voiceobs
against Pipecat's tracing (goal ≤ 0.1 times) and voiceobs' turns 176-200 against its turns
1-25 (flat, ≤ 1.5 times); and the wall time of the final flush of a live 20-turn call with
nothing listening on the OTLP endpoint (goal ≤ 5 s), beside Pipecat's tracer provider shutdown
(full form only: it waits out its exporter's retries).

Not counted: Pipecat's delivery to each observer (a queue and a task wake-up per frame), which
the adapter pays once and Pipecat's tracing twice; and Pipecat's service spans (LLM, TTS,
STT), which come from decorators on real services' request methods the fake services do not
call. Both leave Pipecat's figure an underestimate, so the ratio is conservative.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.engine_load import REPO_ROOT, clean_env
from bench.figures import Figure, Goal

TURNS = 200
WINDOW = 25
MODES = ("bare", "voiceobs", "pipecat")


def _dead_endpoint() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def _record(
    turns: int, observers: Sequence[Any] = (), enable_tracing: bool = False
) -> list[list[Any]]:
    """The frames a live call of ``turns`` turns (with ``observers``) tells an observer about,
    turn by turn; each turn starts once the bot has gone quiet."""
    from pipecat.frames.frames import BotStoppedSpeakingFrame, EndFrame
    from pipecat.observers.base_observer import BaseObserver, FramePushed
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection
    from pipecat.workers.runner import WorkerRunner

    from voiceobs.demo import pipecat_bot

    class Recorder(BaseObserver):
        def __init__(self) -> None:
            super().__init__(observe_every_push=False)
            self.turns: list[list[FramePushed]] = [[]]
            self.quiet = asyncio.Event()

        async def on_push_frame(self, data: FramePushed) -> None:
            self.turns[-1].append(data)
            if (
                isinstance(data.frame, BotStoppedSpeakingFrame)
                and data.direction is FrameDirection.DOWNSTREAM
            ):
                self.turns.append([])
                self.quiet.set()

    for name in ("LLM_TTFB_S", "TTS_TTFB_S"):
        setattr(pipecat_bot, name, 0.001)
    recorder = Recorder()
    worker = PipelineWorker(
        pipecat_bot.bot_pipeline(),
        observers=[*observers, recorder],
        enable_tracing=enable_tracing,
        cancel_on_idle_timeout=False,
        idle_timeout_secs=None,
        check_dangling_tasks=False,
    )
    started = asyncio.Event()

    async def on_started(*_: object) -> None:
        started.set()

    worker.add_event_handler("on_pipeline_started", on_started)

    async def talk() -> None:
        await asyncio.wait_for(started.wait(), timeout=60)
        for _ in range(turns):
            recorder.quiet.clear()
            await worker.queue_frame(pipecat_bot.UserSays(text="Hello.", speech_s=0.001))
            await asyncio.wait_for(recorder.quiet.wait(), timeout=30)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), talk())
    recorded: list[list[Any]] = recorder.turns
    recorded[-2].extend(recorded.pop())  # the EndFrame belongs to the last turn
    return recorded


async def _replay(mode: str, turns: int) -> dict[str, Any]:
    """CPU seconds per turn of each window of turns, replayed into ``mode``'s observers."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from pipecat.observers.base_observer import BaseObserver
    from pipecat.observers.turn_tracking_observer import TurnTrackingObserver

    class Discard(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    recorded = await _record(turns)
    tracker = TurnTrackingObserver()
    observers: list[BaseObserver] = [tracker]
    settle: Any = lambda: None  # noqa: E731
    if mode == "voiceobs":
        from voiceobs import Exporters, VoiceobsSettings, setup_instrumentation
        from voiceobs.integrations.pipecat import VoiceobsObserver

        exporters = Exporters(span=Discard(), metric_readers=[InMemoryMetricReader()])
        obs = setup_instrumentation(
            settings=VoiceobsSettings.load(logs_enabled=False, queue_size=1_000_000),
            exporters=exporters,
            set_global=False,
        )
        observers.append(VoiceobsObserver(obs, "bench-call", pipeline="bench"))
        settle = obs.force_flush
    elif mode == "pipecat":
        from opentelemetry import trace
        from pipecat.observers.user_bot_latency_observer import UserBotLatencyObserver
        from pipecat.utils.tracing.setup import setup_tracing
        from pipecat.utils.tracing.tracing_context import TracingContext
        from pipecat.utils.tracing.turn_trace_observer import TurnTraceObserver

        setup_tracing("bench", exporter=Discard())
        latency = UserBotLatencyObserver()
        tracing = TurnTraceObserver(
            tracker,
            latency_tracker=latency,
            conversation_id="bench",
            tracing_context=TracingContext(),
        )
        observers += [latency, tracing]
        settle = trace.get_tracer_provider().force_flush  # type: ignore[attr-defined]
    windows, loop = [], []
    for first in range(0, turns, WINDOW):
        began, began_loop = time.process_time(), time.thread_time()
        for turn in recorded[first : first + WINDOW]:
            for data in turn:
                for observer in observers:
                    await observer.on_push_frame(data)
        loop.append((time.thread_time() - began_loop) / WINDOW)
        settle()
        windows.append((time.process_time() - began) / WINDOW)
    return {"windows": windows, "loop": loop}


async def _shutdown_after_call(mode: str, turns: int) -> dict[str, Any]:
    """Wall seconds of the final flush after a live call, OTLP to the (dead) endpoint in the
    environment."""
    if mode == "voiceobs":
        from voiceobs import VoiceobsSettings, setup_instrumentation
        from voiceobs.integrations.pipecat import VoiceobsObserver

        obs = setup_instrumentation(settings=VoiceobsSettings.load(), set_global=False)
        await _record(turns, [VoiceobsObserver(obs, "bench-call", pipeline="bench")])
        shutdown = obs.shutdown
    else:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from pipecat.utils.tracing.setup import setup_tracing

        setup_tracing("bench", exporter=OTLPSpanExporter(insecure=True))
        await _record(turns, enable_tracing=True)
        shutdown = trace.get_tracer_provider().shutdown  # type: ignore[attr-defined]
    began = time.monotonic()
    shutdown()
    return {"shutdown_s": time.monotonic() - began}


def _run(mode: str, turns: int, dead: bool = False) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.frameworks", "--mode", mode, f"--turns={turns}"]
    command += ["--dead"] if dead else []
    extra = {"OTEL_EXPORTER_OTLP_ENDPOINT": _dead_endpoint()} if dead else {}
    proc = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=clean_env(**extra),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        from bench.collector import HarnessError

        raise HarnessError(f"the frameworks bench ({mode}) failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def measure(short: bool) -> list[Figure]:
    print("[bench] frameworks", flush=True)
    rounds = 1 if short else 3
    runs: dict[str, list[dict[str, list[float]]]] = {mode: [] for mode in MODES}
    for _ in range(rounds):  # interleaved, so a noisy neighbour hits every mode alike
        for mode in MODES:
            runs[mode].append(_run(mode, TURNS))

    def per_turn(mode: str, window: int, key: str = "windows") -> float:
        return statistics.median(r[key][window] for r in runs[mode])

    loop_ours = per_turn("voiceobs", -1, "loop") - per_turn("bare", -1, "loop")
    loop_pipecat = per_turn("pipecat", -1, "loop") - per_turn("bare", -1, "loop")

    last = TURNS // WINDOW - 1
    starts = (1, TURNS - WINDOW + 1)
    ours = {
        n: max(0.0, per_turn("voiceobs", w) - per_turn("bare", w))
        for n, w in zip(starts, (0, last), strict=True)
    }
    pipecat = {
        n: max(0.0, per_turn("pipecat", w) - per_turn("bare", w))
        for n, w in zip(starts, (0, last), strict=True)
    }
    note = (
        f"whole-process CPU per turn above Pipecat's turn tracking alone, the same recorded "
        f"frames replayed, median of {rounds} round(s); Pipecat's figure is its turn tracing "
        "only (its service spans need real service request methods), observer delivery apart"
    )
    figures = [
        Figure(
            f"frameworks-pipecat-cpu-turn-{n + WINDOW - 1}",
            "Frameworks",
            f"Pipecat adapter: CPU per turn, turns {n}-{n + WINDOW - 1}, vs Pipecat's tracing",
            ours[n] * 1e6,
            "µs",
            baseline=pipecat[n] * 1e6,
            baseline_name="Pipecat tracing",
            goal=Goal("<=", 0.1),
            note=note,
        )
        for n in starts
    ]
    figures.append(
        Figure(
            "frameworks-pipecat-loop-cpu-turn-200",
            "Frameworks",
            f"Pipecat adapter: CPU per turn on the pipeline's event loop, turns {starts[1]}-"
            f"{TURNS}, vs Pipecat's tracing",
            max(0.0, loop_ours) * 1e6,
            "µs",
            baseline=max(0.0, loop_pipecat) * 1e6,
            baseline_name="Pipecat tracing",
            note="the observers' own work on the loop thread; materialisation and export run "
            "in other threads (in another process with voiceobs' default export process)",
        )
    )
    figures.append(
        Figure(
            "frameworks-pipecat-cpu-flat",
            "Frameworks",
            f"Pipecat adapter: CPU per turn, turns {starts[1]}-{TURNS} vs 1-{WINDOW}",
            ours[starts[1]] * 1e6,
            "µs",
            baseline=ours[1] * 1e6,
            baseline_name=f"turns 1-{WINDOW}",
            goal=Goal("<=", 1.5),
            note=note,
        )
    )
    ours_shutdown = _run("voiceobs", 20, dead=True)["shutdown_s"]
    theirs = None if short else _run("pipecat", 20, dead=True)["shutdown_s"]
    figures.append(
        Figure(
            "frameworks-pipecat-shutdown-dead-endpoint",
            "Frameworks",
            "Pipecat adapter: final flush after a 20-turn call, nothing listening on OTLP",
            ours_shutdown,
            "s",
            baseline=theirs,
            baseline_name=None if theirs is None else "Pipecat tracing's shutdown",
            goal=Goal("<=", 5.0, on_ratio=False),
            note="Pipecat's own shutdown is measured in the full form only (it waits out its "
            "exporter's retries)",
        )
    )
    return figures


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.frameworks", description=__doc__)
    parser.add_argument("--mode", choices=MODES, help="replay into one mode, print its JSON")
    parser.add_argument("--turns", type=int, default=TURNS)
    parser.add_argument("--dead", action="store_true", help="a live call, OTLP to a dead endpoint")
    parser.add_argument("--short", action="store_true")
    args = parser.parse_args()
    if args.mode:
        from loguru import logger

        logger.remove()
        run = (
            _shutdown_after_call(args.mode, args.turns)
            if args.dead
            else _replay(args.mode, args.turns)
        )
        print(json.dumps(asyncio.run(run)))
    else:
        from bench.report import print_table

        print_table(measure(args.short))
