"""Frameworks: the Pipecat adapter beside Pipecat's built-in tracing, on the same pipeline.

The pipeline is voiceobs' demo bot (:mod:`voiceobs.demo.pipecat_bot`: a scripted user, fake
STT, LLM and TTS services, an output transport) with its delays cut to a millisecond, driven
through one long call, one turn at a time. Each mode runs in a process of its own (Pipecat's
tracing sets the global tracer provider):

- ``bare``: the pipeline alone, the baseline both others are measured against;
- ``voiceobs``: plus :class:`voiceobs.integrations.pipecat.VoiceobsObserver` (spans, metrics,
  exemplars; exporters discard);
- ``pipecat``: plus ``enable_tracing=True`` with Pipecat's ``setup_tracing`` (a batch span
  processor whose exporter discards).

Figures: CPU per turn of the whole process (all threads) above ``bare``, over turns 1-25
and 176-200 (the median of three interleaved rounds; one in the short form), voiceobs
against Pipecat's tracing (goal ≤ 0.1 times) and voiceobs' turns 176-200 against its turns
1-25 (flat, ≤ 1.5 times); and the wall time of the final flush with nothing listening on the
OTLP endpoint (goal ≤ 5 s), beside Pipecat's tracer provider shutdown (full form only: it
blocks for its exporter's whole retry budget).

Pipecat's service spans (LLM, TTS, STT) come from decorators on the services' request methods,
which these fake services do not call: its figure here is its turn and conversation tracing
only, an underestimate, so the ratio is conservative for voiceobs.
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


async def _drive(mode: str, turns: int, dead: bool) -> dict[str, Any]:
    """One call of ``turns`` turns in ``mode``: CPU seconds of each turn, and the seconds
    the final flush took."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from pipecat.frames.frames import BotStoppedSpeakingFrame, EndFrame
    from pipecat.observers.base_observer import BaseObserver, FramePushed
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection
    from pipecat.workers.runner import WorkerRunner

    from voiceobs.demo import pipecat_bot
    from voiceobs.integrations.pipecat import VoiceobsObserver

    class Discard(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    class Pacer(BaseObserver):
        """Lets the driver start the next turn once the bot has gone quiet."""

        def __init__(self) -> None:
            super().__init__(observe_every_push=False)
            self.quiet = asyncio.Event()

        async def on_push_frame(self, data: FramePushed) -> None:
            if (
                isinstance(data.frame, BotStoppedSpeakingFrame)
                and data.direction is FrameDirection.DOWNSTREAM
            ):
                self.quiet.set()

    for name in ("LLM_TTFB_S", "TTS_TTFB_S"):
        setattr(pipecat_bot, name, 0.001)
    observers: list[BaseObserver] = []
    shutdown: Any = None
    if mode == "voiceobs":
        from voiceobs import Exporters, VoiceobsSettings, setup_instrumentation

        if dead:
            obs = setup_instrumentation(settings=VoiceobsSettings.load(), set_global=False)
        else:
            exporters = Exporters(span=Discard(), metric_readers=[InMemoryMetricReader()])
            obs = setup_instrumentation(
                settings=VoiceobsSettings.load(logs_enabled=False),
                exporters=exporters,
                set_global=False,
            )
        observers.append(VoiceobsObserver(obs, "bench-call", pipeline="bench"))
        shutdown = obs.shutdown
    elif mode == "pipecat":
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from pipecat.utils.tracing.setup import setup_tracing

        exporter = OTLPSpanExporter(insecure=True) if dead else Discard()
        setup_tracing("bench", exporter=exporter)
        shutdown = trace.get_tracer_provider().shutdown  # type: ignore[attr-defined]
    pacer = Pacer()
    worker = PipelineWorker(
        pipecat_bot.bot_pipeline(),
        observers=[*observers, pacer],
        enable_tracing=mode == "pipecat",
        cancel_on_idle_timeout=False,
        idle_timeout_secs=None,
        check_dangling_tasks=False,
    )
    started = asyncio.Event()

    async def on_started(*_: object) -> None:
        started.set()

    worker.add_event_handler("on_pipeline_started", on_started)
    per_turn: list[float] = []

    async def talk() -> None:
        await asyncio.wait_for(started.wait(), timeout=60)
        for _ in range(turns):
            pacer.quiet.clear()
            began = time.process_time()
            await worker.queue_frame(pipecat_bot.UserSays(text="Hello.", speech_s=0.001))
            await asyncio.wait_for(pacer.quiet.wait(), timeout=30)
            per_turn.append(time.process_time() - began)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), talk())
    began = time.monotonic()
    if shutdown is not None:
        shutdown()
    return {"per_turn": per_turn, "shutdown_s": time.monotonic() - began}


def _run(mode: str, turns: int, dead: bool = False) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.frameworks", "--mode", mode, f"--turns={turns}"]
    extra = {"OTEL_EXPORTER_OTLP_ENDPOINT": _dead_endpoint()} if dead else {}
    proc = subprocess.run(
        [*command, *(["--dead"] if dead else [])],
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


def _window(runs: list[list[float]], first: int) -> float:
    """CPU per turn over turns ``first``..``first + WINDOW - 1``: the median over rounds of
    each round's median."""
    window = slice(first - 1, first - 1 + WINDOW)
    return statistics.median(statistics.median(per_turn[window]) for per_turn in runs)


def measure(short: bool) -> list[Figure]:
    print("[bench] frameworks", flush=True)
    rounds = 1 if short else 3
    runs: dict[str, list[list[float]]] = {mode: [] for mode in MODES}
    for _ in range(rounds):  # interleaved, so a noisy neighbour hits every mode alike
        for mode in MODES:
            runs[mode].append(_run(mode, TURNS)["per_turn"])
    starts = (1, TURNS - WINDOW + 1)
    bare = {n: _window(runs["bare"], n) for n in starts}
    ours = {n: max(0.0, _window(runs["voiceobs"], n) - bare[n]) for n in starts}
    pipecat = {n: max(0.0, _window(runs["pipecat"], n) - bare[n]) for n in starts}
    note = (
        f"whole-process CPU per turn above the bare pipeline's ({bare[1] * 1e3:.1f} ms), median "
        f"of turns {WINDOW} at a time, {rounds} round(s); Pipecat's figure is its turn tracing "
        "only (its service spans need real service request methods)"
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
    parser.add_argument("--mode", choices=MODES, help="run one mode and print its JSON")
    parser.add_argument("--turns", type=int, default=TURNS)
    parser.add_argument("--dead", action="store_true", help="export to a dead endpoint")
    parser.add_argument("--short", action="store_true")
    args = parser.parse_args()
    if args.mode:
        from loguru import logger

        logger.remove()
        print(json.dumps(asyncio.run(_drive(args.mode, args.turns, args.dead))))
    else:
        from bench.report import print_table

        print_table(measure(args.short))
