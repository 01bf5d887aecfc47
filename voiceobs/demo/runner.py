"""``voiceobs demo``: start the demo engine, drive it with the simulator, report, stop."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import uvicorn

from voiceobs.cost import example_rate_card_path
from voiceobs.demo.engine import create_app
from voiceobs.demo.simulator import SimOptions, SimReport, simulate
from voiceobs.settings import VoiceobsSettings
from voiceobs.setup import setup_instrumentation
from voiceobs.voice import current_call_id

DEMO_SERVICE_NAME = "voiceobs-demo"


class _LogCounter(logging.Handler):
    """Counts the engine's log lines per call, so tests can check none went missing."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.per_call: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        call_id = current_call_id()
        if call_id is not None:
            self.per_call[call_id] += 1


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the main thread keeps its handlers
        pass


def run_demo(
    options: SimOptions,
    *,
    port: int = 8080,
    speed: float = 1.0,
    slowdown: float = 1.0,
    json_path: Path | None = None,
) -> SimReport:
    """Run the engine on 127.0.0.1:``port`` with telemetry to the OTLP endpoint in the
    environment, drive it with ``options``, then shut everything down (bounded)."""
    os.environ.setdefault("OTEL_SERVICE_NAME", DEMO_SERVICE_NAME)
    overrides: dict[str, object] = {
        "service_version": "demo",
        # A simulated turn request lasts the whole turn (seconds): it is a call, not an API
        # request, so it stays out of the HTTP latency metrics the API alerts watch.
        "excluded_urls": (*VoiceobsSettings.model_fields["excluded_urls"].default, "/turns$"),
    }
    if "VOICEOBS_RATE_CARD_PATH" not in os.environ:
        overrides["rate_card_path"] = example_rate_card_path()
    settings = VoiceobsSettings.load(**overrides)
    obs = setup_instrumentation(settings=settings)
    app = create_app(obs, seed=options.seed, speed=speed, slowdown=slowdown)
    server = _Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="demo-engine", daemon=True)
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317 (SDK default)")
    print(f"voiceobs demo: engine on http://127.0.0.1:{port}, telemetry → {endpoint}")
    print(
        f"  {options.calls} calls at most, new calls for {options.duration_s:.0f} s at most, "
        f"{options.rate} calls/s, {options.concurrency} at once, seed {options.seed}, "
        f"speed x{speed}"
    )
    counter = _LogCounter()
    engine_log = logging.getLogger("voiceobs.demo")
    engine_log.addHandler(counter)
    if engine_log.getEffectiveLevel() > logging.INFO:
        engine_log.setLevel(logging.INFO)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the demo engine did not start on 127.0.0.1:{port} (port taken?)"
                )
            time.sleep(0.05)
        report = asyncio.run(simulate(f"http://127.0.0.1:{port}", options))
    finally:
        server.should_exit = True
        thread.join(10)
        flushed = obs.shutdown()
        engine_log.removeHandler(counter)
    report.flushed = flushed
    for call in report.calls:
        call.log_lines = counter.per_call[call.call_id]
    if json_path is not None:
        json_path.write_text(json.dumps([asdict(c) for c in report.calls], indent=1))
    print(f"voiceobs demo: {report.summary()}")
    print(
        f"  telemetry {'flushed' if flushed else 'NOT fully flushed (is a collector listening?)'}"
    )
    return report
