"""``voiceobs demo --engine pipecat``: the simulated calls run through a real Pipecat pipeline
of fake services (:mod:`voiceobs.demo.pipecat_bot`), reported by the Pipecat adapter.

Each call is its own ``PipelineWorker``; the user's turns are scripted from the same seeded
options as the HTTP demo (a quarter of the questions get a long answer the next turn
speaks over). Turn latency for the summary comes from Pipecat's own ``SpeakingObserver``,
independently of what voiceobs records.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

from loguru import logger
from pipecat.observers.speaking_observer import SpeakingObserver, SpeechEvent, SpeechEventKind
from pipecat.pipeline.worker import PipelineWorker

from voiceobs.cost import example_rate_card_path
from voiceobs.demo.pipecat_bot import UserSays, converse
from voiceobs.demo.simulator import TENANTS, UTTERANCES, CallResult, SimOptions, SimReport
from voiceobs.integrations.pipecat import VoiceobsObserver
from voiceobs.settings import VoiceobsSettings
from voiceobs.setup import Instrumentation, setup_instrumentation

DEMO_SERVICE_NAME = "voiceobs-demo-pipecat"
"""Its own service name: `voiceobs report` walks the HTTP demo's calls, logs included."""
PIPELINE = "pipecat"
PAUSE_S = (0.2, 0.5)
"""Silence between the bot's answer and the user's next turn."""
BARGE_IN_S = 0.3
"""How long into a long answer the user speaks over it."""


class _Latencies:
    """Turn latencies as Pipecat's SpeakingObserver sees them: user speech end to bot
    speech start."""

    def __init__(self, observer: SpeakingObserver) -> None:
        self.values: list[float] = []
        self._speech_end: float | None = None
        observer.add_event_handler("on_speech_event", self._on_event)

    async def _on_event(self, _: SpeakingObserver, event: SpeechEvent) -> None:
        if event.kind is SpeechEventKind.USER_SPEECH_STOPPED:
            self._speech_end = event.timestamp
        elif event.kind is SpeechEventKind.BOT_SPEECH_STARTED and self._speech_end is not None:
            self.values.append(event.timestamp - self._speech_end)
            self._speech_end = None


async def _one_call(
    obs: Instrumentation, index: int, seed: float, options: SimOptions
) -> CallResult:
    rng = random.Random(seed)
    tenant = rng.choice(TENANTS)
    call_id = f"{options.call_prefix}-{options.seed}-{index:05d}"
    observer = VoiceobsObserver(obs, call_id, tenant=tenant, pipeline=PIPELINE)
    speaking = SpeakingObserver()
    latencies = _Latencies(speaking)
    result = CallResult(call_id, observer.call.trace_id_hex, tenant, PIPELINE)

    async def talk(worker: PipelineWorker) -> None:
        turns = rng.randint(options.turns_min, options.turns_max)
        for number in range(turns):
            long_answer = number < turns - 1 and rng.random() < 0.25
            text = rng.choice(UTTERANCES).format(n=rng.randint(0, 9999))
            result.turns += 1
            await worker.queue_frame(UserSays(text=text + ("?" if long_answer else ".")))
            if long_answer:
                result.interrupted += 1
                await asyncio.sleep(BARGE_IN_S + 0.1)
            else:
                await asyncio.sleep(0.15 + rng.uniform(*PAUSE_S))

    # Many calls share the loop: another call's tasks are not this one's dangling tasks.
    await converse(talk, [observer, speaking], check_dangling_tasks=False)
    result.latencies = latencies.values
    return result


async def _simulate(obs: Instrumentation, options: SimOptions) -> SimReport:
    rng = random.Random(options.seed)
    seeds = [rng.random() for _ in range(options.calls)]
    limit = asyncio.Semaphore(options.concurrency)
    deadline = time.monotonic() + options.duration_s
    began = time.monotonic()
    results: list[CallResult] = []

    async def run(index: int) -> None:
        async with limit:
            if time.monotonic() < deadline:
                results.append(await _one_call(obs, index, seeds[index], options))

    tasks = []
    for index in range(options.calls):
        if time.monotonic() >= deadline:
            break
        tasks.append(asyncio.create_task(run(index)))
        await asyncio.sleep(1.0 / options.rate)
    await asyncio.gather(*tasks)
    return SimReport(results, time.monotonic() - began)


def run_pipecat_demo(options: SimOptions, *, json_path: Path | None = None) -> SimReport:
    """Run ``options``' calls through Pipecat pipelines with telemetry to the OTLP endpoint
    in the environment, then shut down (bounded)."""
    os.environ.setdefault("OTEL_SERVICE_NAME", DEMO_SERVICE_NAME)
    logger.remove()  # Pipecat logs every frame link at DEBUG
    logger.add(sys.stderr, level="WARNING")
    overrides: dict[str, object] = {"service_version": "demo"}
    if "VOICEOBS_RATE_CARD_PATH" not in os.environ:
        overrides["rate_card_path"] = example_rate_card_path()
    obs = setup_instrumentation(settings=VoiceobsSettings.load(**overrides))
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317 (SDK default)")
    print(f"voiceobs demo: Pipecat pipelines of fake services, telemetry → {endpoint}")
    try:
        report = asyncio.run(_simulate(obs, options))
    finally:
        flushed = obs.shutdown()
    report.flushed = flushed
    if json_path is not None:
        json_path.write_text(json.dumps([asdict(c) for c in report.calls], indent=1))
    print(f"voiceobs demo: {report.summary()}")
    print(
        f"  telemetry {'flushed' if flushed else 'NOT fully flushed (is a collector listening?)'}"
    )
    return report
