"""What a log line costs in Loki, and what an engine restart costs: voiceobs' Loki config
(loki/config.yaml, with its otlp_config) against Loki's defaults (the same file without it),
in the same run.

For each config a private Loki (the stack's build, on free loopback ports, its own data
directory) takes OTLP/HTTP logs straight from the Python SDK: ``processes`` engine processes
one after the other (each restart a new service.instance.id and pid), each with the resource
voiceobs builds (``build_resource``) and ``lines`` log lines carrying a call id inside a span.
Figures: bytes Loki received per line (the line and its structured metadata, from its
distributor counters) and the streams each restart added (its series API).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from bench.figures import Figure, Goal
from stack.build import go_binaries
from stack.control import free_port
from voiceobs.settings import VoiceobsSettings
from voiceobs.setup import build_resource

REPO_ROOT = Path(__file__).resolve().parents[1]
LOKI_CONFIG = REPO_ROOT / "loki" / "config.yaml"
SERVICE = "voice-engine"


class LokiBenchError(RuntimeError):
    """A private Loki did not start or did not take the logs."""


def defaults_config() -> str:
    """loki/config.yaml without its otlp_config block: Loki's own OTLP mapping."""
    kept, skipping = [], False
    for line in LOKI_CONFIG.read_text().splitlines(keepends=True):
        if line.rstrip() == "  otlp_config:":
            skipping = True
            continue
        if skipping and line.strip() and len(line) - len(line.lstrip()) <= 2:
            skipping = False
        if not skipping:
            kept.append(line)
    if len(kept) == len(LOKI_CONFIG.read_text().splitlines()):
        raise LokiBenchError("loki/config.yaml has no limits_config.otlp_config")
    return "".join(kept)


class PrivateLoki:
    def __init__(self, config_text: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="voiceobs-loki-"))
        self.config = self.dir / "config.yaml"
        self.config.write_text(config_text)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PrivateLoki:
        env = dict(
            os.environ,
            LOKI_HTTP_PORT=str(self.port),
            LOKI_GRPC_PORT=str(free_port()),
            LOKI_DATA_DIR=str(self.dir / "data"),
        )
        binary = go_binaries()["loki"].build()
        self.proc = subprocess.Popen(
            [str(binary), f"-config.file={self.config}", "-config.expand-env=true"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.__exit__()
        raise LokiBenchError("a private Loki did not get ready in 60 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and line[len(name)] in "{ "
        )

    def bytes_per_returned_line(self) -> float:
        """Bytes of a query_range answer per line: the line with every label and metadata
        field that comes back with it (what each query, and a reader, pays)."""
        params = {
            "query": f'{{service_name="{SERVICE}"}}',
            "limit": "5000",
            "start": str(int((time.time() - 3600) * 1e9)),
        }
        url = f"{self.url}/loki/api/v1/query_range?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            streams = json.load(response)["data"]["result"]
        sizes = [
            len(json.dumps(s["stream"])) + len(line) for s in streams for _, line in s["values"]
        ]
        return sum(sizes) / len(sizes)

    def streams(self) -> int:
        params = {
            "match[]": f'{{service_name="{SERVICE}"}}',
            "start": str(int((time.time() - 3600) * 1e9)),
        }
        url = f"{self.url}/loki/api/v1/series?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return len(json.load(response)["data"])


def _one_process(loki: PrivateLoki, lines: int) -> None:
    """One engine process: voiceobs' resource, a new instance id, ``lines`` lines in a span."""
    resource = build_resource(VoiceobsSettings.load(service_version="bench")).merge(
        Resource({"service.name": SERVICE, "service.instance.id": str(uuid.uuid4())})
    )
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{loki.url}/otlp/v1/logs"))
    )
    logger = logging.getLogger(f"bench.loki.{uuid.uuid4().hex[:6]}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(LoggingHandler(logger_provider=provider))
    tracer = TracerProvider(resource=resource).get_tracer("bench")
    call_id = f"call-{uuid.uuid4()}"
    for n in range(lines):
        with tracer.start_as_current_span("voice.turn"):
            logger.info("agent replied in %d ms", 500 + n, extra={"voice.call.id": call_id})
    provider.shutdown()


def _measure(config_text: str, processes: int, lines: int) -> tuple[float, float, float]:
    """(bytes per returned line, bytes Loki counts per line, streams added per restart)."""
    with PrivateLoki(config_text) as loki:
        streams_after = []
        for _ in range(processes):
            _one_process(loki, lines)
            streams_after.append(loki.streams())
        count = loki.metric("loki_distributor_lines_received_total")
        if count != processes * lines:
            raise LokiBenchError(f"Loki took {count:g} of {processes * lines} lines")
        # Loki's own accounting: the line and its structured metadata, the resource's part
        # counted once per push rather than per line.
        received = loki.metric("loki_distributor_bytes_received_total") / count
        returned = loki.bytes_per_returned_line()
    per_restart = (streams_after[-1] - streams_after[0]) / (processes - 1)
    return returned, received, per_restart


def measure(short: bool) -> list[Figure]:
    processes, lines = (3, 50) if short else (5, 400)
    print("[bench] loki: bytes per line and streams per restart, ours vs Loki's defaults")
    ours = _measure(LOKI_CONFIG.read_text(), processes, lines)
    defaults = _measure(defaults_config(), processes, lines)
    note = f"{processes} processes of {lines} lines, voiceobs' resource (build_resource)"
    return [
        Figure(
            "loki-bytes-per-line", "Loki (OTLP logs)", "Bytes a query returns per log line",
            ours[0], "B", defaults[0], "Loki defaults", Goal("<=", 0.7), note,
        ),
        Figure(
            "loki-received-bytes-per-line", "Loki (OTLP logs)",
            "Bytes Loki counts per log line (line + structured metadata)",
            ours[1], "B", defaults[1], "Loki defaults", None, note,
        ),
        Figure(
            "loki-streams-per-restart", "Loki (OTLP logs)", "New streams per engine restart",
            ours[2], "streams", defaults[2], "Loki defaults", Goal("<=", 0, on_ratio=False), note,
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    import sys

    from bench import report

    report.print_table(measure("--short" in sys.argv))
