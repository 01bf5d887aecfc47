"""``voiceobs demo``: start the demo engine, drive it with the simulator, report, stop."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import uvicorn

from voiceobs.cost import example_rate_card_path
from voiceobs.demo.engine import create_app
from voiceobs.demo.simulator import SimOptions, SimReport, simulate
from voiceobs.settings import VoiceobsSettings
from voiceobs.setup import setup_instrumentation

DEMO_SERVICE_NAME = "voiceobs-demo"


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the main thread keeps its handlers
        pass


def run_demo(
    options: SimOptions,
    *,
    port: int = 8080,
    speed: float = 1.0,
    slowdown: float = 1.0,
) -> SimReport:
    """Run the engine on 127.0.0.1:``port`` with telemetry to the OTLP endpoint in the
    environment, drive it with ``options``, then shut everything down (bounded)."""
    os.environ.setdefault("OTEL_SERVICE_NAME", DEMO_SERVICE_NAME)
    overrides: dict[str, object] = {"service_version": "demo"}
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
        f"  {options.calls} calls at most, {options.duration_s:.0f} s at most, "
        f"{options.rate} calls/s, {options.concurrency} at once, seed {options.seed}, "
        f"speed x{speed}"
    )
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
    print(f"voiceobs demo: {report.summary()}")
    print(
        f"  telemetry {'flushed' if flushed else 'NOT fully flushed (is a collector listening?)'}"
    )
    return report
