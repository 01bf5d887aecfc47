"""Frameworks: the Pipecat adapter beside Pipecat's built-in tracing, on the same pipeline.

The pipeline is voiceobs' demo bot (:mod:`voiceobs.demo.pipecat_bot`: a scripted user, fake
STT, LLM and TTS services that go through Pipecat's own traced paths, an output transport)
with its delays cut to a millisecond. One call of 200 turns runs once, recording every frame
pushed; the recording is then replayed, turn by turn, into observers and into fresh copies of
the three services (set up outside a pipeline, so what they push goes nowhere), so every lane
sees exactly the same frames and the difference is theirs alone (a live pipeline's own CPU
varies by more than the figures measured here). Each instrumented mode runs in a process of
its own (Pipecat's tracing sets the global tracer provider), beside a ``bare`` lane in the
same process, turn by turn, so a neighbour's load hits both alike:

- ``bare``: Pipecat's turn-tracking observer and the services untraced: the baseline;
- ``voiceobs``: plus :class:`voiceobs.integrations.pipecat.VoiceobsObserver`, in voiceobs'
  default mode: the engine's process only records, its export process materialises spans,
  metric points and exemplars and exports them;
- ``pipecat``: plus what ``enable_tracing=True`` adds: ``UserBotLatencyObserver`` and
  ``TurnTraceObserver`` after Pipecat's ``setup_tracing``, and the services traced (the STT,
  LLM and TTS spans of ``@traced_stt`` / ``@traced_llm`` / ``@traced_tts``; the LLM span
  carries the whole conversation, so it grows with the turns).

Both export OTLP/gRPC to a receiver in the parent process that keeps nothing
(:mod:`bench.otlp_sink`), so each pays its encoding and sending as a user does.

Figures: the engine's process CPU per turn above ``bare`` (the lane's loop-thread time, plus,
for the instrumented lane, the process's other threads and the flush that ends each window
of 25 turns), over turns 1-25 and 176-200, voiceobs against Pipecat's tracing (goal ≤ 0.1
times) and voiceobs' turns 176-200 against its turns 1-25 (flat, ≤ 1.5 times); the loop
thread's share; the CPU of all voiceobs' processes (its export process added, read with
psutil over the whole replay) against Pipecat's; and the wall time of the final flush of a
live 20-turn call with nothing listening on the OTLP endpoint (goal ≤ 5 s), beside Pipecat's
tracer provider shutdown (full form only: it waits out its exporter's retries).

Not counted: Pipecat's delivery to each observer (every frame a processor handles and every
first push go through a queue and a task wake-up per observer), which the adapter needs once and
Pipecat's tracing twice: it adds about as much to each observer whatever the observer does, so
counting it would raise both figures and bring the ratio toward 0.5 (docs/integrations.md has
the measured cost); and voiceobs' costs that come with time rather than turns (the engine's own
metrics, collected once an interval; the shipper thread's wake-ups), which a replay compresses
away.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from bench.engine_load import REPO_ROOT, clean_env
from bench.figures import Figure, Goal
from bench.otlp_sink import DiscardingSink
from stack.control import free_port

TURNS = 200
WINDOW = 25
MODES = ("voiceobs", "pipecat")


def _dead_endpoint() -> str:
    """A loopback port nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


async def _record(
    turns: int, observers: Sequence[Any] = (), enable_tracing: bool = False
) -> list[list[Any]]:
    """The frames a live call of ``turns`` turns (with ``observers``) tells an observer about,
    turn by turn; each turn starts once the bot has gone quiet."""
    from pipecat.frames.frames import BotStoppedSpeakingFrame
    from pipecat.observers.base_observer import BaseObserver, FramePushed
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection

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

    async def talk(worker: PipelineWorker) -> None:
        for _ in range(turns):
            recorder.quiet.clear()
            await worker.queue_frame(pipecat_bot.UserSays(text="Hello.", speech_s=0.001))
            await asyncio.wait_for(recorder.quiet.wait(), timeout=30)

    await pipecat_bot.converse(
        talk, [*observers, recorder], enable_tracing=enable_tracing, check_dangling_tasks=False
    )
    recorded: list[list[Any]] = recorder.turns
    recorded[-2].extend(recorded.pop())  # the EndFrame belongs to the last turn
    return recorded


async def _standalone_services(tracing: bool, tracing_context: Any) -> dict[type, Any]:
    """The bot's three services, set up outside any pipeline (what they push goes nowhere),
    by class, with Pipecat's tracing on or off as ``PipelineWorker(enable_tracing=...)``
    sets it."""
    from pipecat.clocks.system_clock import SystemClock
    from pipecat.processors.frame_processor import FrameProcessorSetup
    from pipecat.utils.asyncio.task_manager import TaskManager

    from voiceobs.demo import pipecat_bot

    setup = FrameProcessorSetup(
        clock=SystemClock(),
        task_manager=TaskManager(loop=asyncio.get_running_loop()),
        enable_tracing=tracing,
        tracing_context=tracing_context,
        pipeline_worker=None,  # type: ignore[arg-type]  # no worker: no pipeline
    )
    services = [
        pipecat_bot.FakeSTTService(),
        pipecat_bot.FakeLLMService(),
        pipecat_bot.FakeTTSService(),
    ]
    for service in services:
        await service.setup(setup)
    return {type(service): service for service in services}


async def _replay(mode: str, turns: int) -> dict[str, Any]:
    """CPU seconds per turn of each window of turns, the recording replayed into two lanes
    turn by turn (taking turns at going first): ``bare`` (Pipecat's turn tracking, services
    untraced) and ``mode``'s (the same plus voiceobs' observer, or plus Pipecat's tracing
    observers with the services traced). Paired in one process, so a neighbour's load hits
    both alike. Each lane's figures: its loop-thread time, and that plus (instrumented lane
    only) the process's other threads and the flush ending each window; and, over the whole
    run, the child processes' (voiceobs' export process)."""
    from pipecat.observers.base_observer import BaseObserver
    from pipecat.observers.turn_tracking_observer import TurnTrackingObserver
    from pipecat.utils.tracing.tracing_context import TracingContext

    from bench.cpu import children_cpu, children_delta

    recorded = await _record(turns)
    tracker = TurnTrackingObserver()
    observers: list[BaseObserver] = [tracker]
    tracing_context = TracingContext()
    settle: Any = lambda: None  # noqa: E731
    if mode == "voiceobs":
        from voiceobs import VoiceobsSettings, setup_instrumentation
        from voiceobs.integrations.pipecat import VoiceobsObserver

        obs = setup_instrumentation(
            settings=VoiceobsSettings.load(queue_size=1_000_000), set_global=False
        )
        observers.append(VoiceobsObserver(obs, "bench-call", pipeline="bench"))
        # The records, exported by the export process; not the engine's own metrics, which
        # a forced flush would collect once a window (they are collected once an interval,
        # whatever the turns).
        settle = partial(obs.transport.flush, 60.0)
    else:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from pipecat.observers.user_bot_latency_observer import UserBotLatencyObserver
        from pipecat.utils.tracing.setup import setup_tracing
        from pipecat.utils.tracing.turn_trace_observer import TurnTraceObserver

        setup_tracing("bench", exporter=OTLPSpanExporter(insecure=True))
        latency = UserBotLatencyObserver()
        tracing = TurnTraceObserver(
            tracker,
            latency_tracker=latency,
            conversation_id="bench",
            tracing_context=tracing_context,
        )
        observers += [latency, tracing]
        settle = trace.get_tracer_provider().force_flush  # type: ignore[attr-defined]
    lanes = {
        "bare": ([TurnTrackingObserver()], await _standalone_services(False, TracingContext())),
        mode: (observers, await _standalone_services(mode == "pipecat", tracing_context)),
    }
    settle()  # voiceobs' export process is up (started by the call's first record)
    result: dict[str, Any] = {f"{lane}_{key}": [] for lane in lanes for key in ("cpu", "loop")}
    children_before = children_cpu(os.getpid())
    for first in range(0, turns, WINDOW):
        loop_s = dict.fromkeys(lanes, 0.0)
        process_began, main_began = time.process_time(), time.thread_time()
        for number, turn in enumerate(recorded[first : first + WINDOW]):
            order = list(lanes) if number % 2 else list(reversed(lanes))
            for lane in order:
                lane_observers, services = lanes[lane]
                lane_began = time.thread_time()
                for data in turn:
                    for observer in lane_observers:
                        await observer.on_push_frame(data)
                    service = services.get(type(data.destination))
                    if service is not None:
                        await service.process_frame(data.frame, data.direction)
                loop_s[lane] += time.thread_time() - lane_began
        settle_began = time.thread_time()
        settle()
        main_s = time.thread_time() - main_began
        settle_s = time.thread_time() - settle_began
        # The other threads (voiceobs' shipper, Pipecat's span processor, gRPC's) and the
        # flush are the instrumented lane's: the bare lane starts no thread and has nothing
        # to flush. The loop thread's own time between lanes is the harness's, no lane's.
        other_threads_s = time.process_time() - process_began - main_s
        mode_extra_s = other_threads_s + settle_s
        for lane, extra_s in (("bare", 0.0), (mode, mode_extra_s)):
            result[f"{lane}_loop"].append(loop_s[lane] / WINDOW)
            result[f"{lane}_cpu"].append((loop_s[lane] + extra_s) / WINDOW)
    result["children"] = children_delta(children_before, children_cpu(os.getpid())) / turns
    return result


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


def _run(mode: str, turns: int, endpoint: str, dead: bool = False) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.frameworks", "--mode", mode, f"--turns={turns}"]
    command += ["--dead"] if dead else []
    extra = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
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
    rounds = 3 if short else 5
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with DiscardingSink() as sink:
        for _ in range(rounds):  # interleaved, so a noisy neighbour hits every mode alike
            for mode in MODES:
                runs[mode].append(_run(mode, TURNS, sink.endpoint))

    def above_bare(mode: str, window: int, key: str = "cpu") -> float:
        """Median over the rounds of ``mode``'s CPU per turn in ``window`` above the bare
        lane's of the same run."""
        return max(
            0.0,
            statistics.median(
                r[f"{mode}_{key}"][window] - r[f"bare_{key}"][window] for r in runs[mode]
            ),
        )

    last = TURNS // WINDOW - 1
    starts = (1, TURNS - WINDOW + 1)
    ours = {n: above_bare("voiceobs", w) for n, w in zip(starts, (0, last), strict=True)}
    pipecat = {n: above_bare("pipecat", w) for n, w in zip(starts, (0, last), strict=True)}
    export = statistics.median(r["children"] for r in runs["voiceobs"])
    engine_all = statistics.mean(above_bare("voiceobs", w) for w in range(last + 1))
    pipecat_all = statistics.mean(above_bare("pipecat", w) for w in range(last + 1))
    note = (
        f"CPU per turn of the engine's process (all its threads; each window of {WINDOW} turns "
        "ends with a flush) above Pipecat's turn tracking alone, the same recorded frames "
        f"replayed into the observers and the services, median of {rounds} round(s); voiceobs "
        "in its default mode (materialised and exported by its export process), Pipecat's "
        "tracing with its service spans, both exporting OTLP to a receiver that keeps nothing"
    )
    figures = [
        Figure(
            f"frameworks-pipecat-cpu-turn-{n + WINDOW - 1}",
            "Frameworks",
            f"Pipecat adapter: engine-process CPU per turn, turns {n}-{n + WINDOW - 1}, vs "
            "Pipecat's tracing",
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
            above_bare("voiceobs", last, "loop") * 1e6,
            "µs",
            baseline=above_bare("pipecat", last, "loop") * 1e6,
            baseline_name="Pipecat tracing",
            note="the observers' and services' work on the loop thread, above turn tracking",
        )
    )
    figures.append(
        Figure(
            "frameworks-pipecat-cpu-all-processes",
            "Frameworks",
            f"Pipecat adapter: CPU per turn of all voiceobs' processes (engine + export "
            f"process), turns 1-{TURNS}, vs Pipecat's tracing",
            (engine_all + export) * 1e6,
            "µs",
            baseline=pipecat_all * 1e6,
            baseline_name="Pipecat tracing",
            note=f"the export process's share: {export * 1e6:.0f} µs per turn (outside the "
            "engine's process: spans, metric points, exemplars, OTLP encoding and sending)",
        )
    )
    figures.append(
        Figure(
            "frameworks-pipecat-cpu-flat",
            "Frameworks",
            f"Pipecat adapter: engine-process CPU per turn, turns {starts[1]}-{TURNS} vs "
            f"1-{WINDOW}",
            ours[starts[1]] * 1e6,
            "µs",
            baseline=ours[1] * 1e6,
            baseline_name=f"turns 1-{WINDOW}",
            goal=Goal("<=", 1.5),
            note=note,
        )
    )
    ours_shutdown = _run("voiceobs", 20, _dead_endpoint(), dead=True)["shutdown_s"]
    theirs = None if short else _run("pipecat", 20, _dead_endpoint(), dead=True)["shutdown_s"]
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
