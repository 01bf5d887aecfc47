"""The benchmark's private Collector: the stack's Collector binary with bench/collector.yaml.

It listens on ports of its own, so it never meets the native stack's Collector, keeps nothing
(debug exporter, basic verbosity) and counts everything: its self-metrics say how many spans,
metric points and log records it accepted or refused, and its Prometheus exporter serves the
metrics the engines sent (voiceobs' drop counter among them).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psutil

from bench.cpu import process_cpu
from bench.tools import collector_binary

CONFIG = Path(__file__).with_name("collector.yaml")
OTLP_GRPC_PORT = 24317
OTLP_HTTP_PORT = 24318
TELEMETRY_PORT = 28888
METRICS_PORT = 28889
SIGNALS = ("spans", "metric_points", "log_records")

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class HarnessError(RuntimeError):
    """The benchmark itself could not run (unlike a missed goal, which is a result)."""


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus text exposition: (name, labels, value)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match:
            labels = dict(_LABEL.findall(match.group(3) or ""))
            samples.append((match.group(1), labels, float(match.group(4))))
    return samples


def _scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return parse_prometheus(response.read().decode())


def _free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the Collector binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class Ports:
    grpc: int = OTLP_GRPC_PORT
    http: int = OTLP_HTTP_PORT
    telemetry: int = TELEMETRY_PORT
    metrics: int | None = METRICS_PORT
    """The Prometheus exporter of what engines sent; ``None`` when the config has none."""


class PrivateCollector:
    """Runs the Collector for the length of a ``with`` block: bench/collector.yaml unless
    ``configs`` (merged in order) and their ``env`` and ``ports`` say otherwise."""

    def __init__(
        self,
        configs: Sequence[Path] = (CONFIG,),
        env: Mapping[str, str] | None = None,
        ports: Ports = Ports(),
    ) -> None:
        self.ports = ports
        self.endpoint_grpc = f"http://127.0.0.1:{ports.grpc}"
        self.endpoint_http = f"http://127.0.0.1:{ports.http}"
        self._configs = configs
        self._env = (
            dict(env)
            if env is not None
            else {
                "BENCH_OTLP_GRPC_PORT": str(ports.grpc),
                "BENCH_OTLP_HTTP_PORT": str(ports.http),
                "BENCH_TELEMETRY_PORT": str(ports.telemetry),
                "BENCH_METRICS_PORT": str(ports.metrics),
            }
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="bench-collector-", suffix=".log")  # noqa: SIM115

    def __enter__(self) -> PrivateCollector:
        ports = [self.ports.grpc, self.ports.http, self.ports.telemetry, self.ports.metrics]
        busy = [p for p in ports if p is not None and not _free(p)]
        if busy:
            raise HarnessError(f"the bench Collector's ports {busy} are taken on 127.0.0.1")
        command = [str(collector_binary())]
        for config in self._configs:
            command += ["--config", str(config)]
        self._proc = subprocess.Popen(
            command, env={**os.environ, **self._env}, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise HarnessError(f"the bench Collector exited: {self.log_tail()}")
            try:
                _scrape(self.ports.telemetry)
                with socket.create_connection(("127.0.0.1", self.ports.grpc), timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        raise HarnessError(f"the bench Collector did not get ready in 30 s: {self.log_tail()}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()

    def log_tail(self) -> str:
        self._log.flush()
        return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-15:])

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def cpu_seconds(self) -> float:
        return process_cpu(self.pid)

    def rss_mib(self) -> float:
        return float(psutil.Process(self.pid).memory_info().rss) / 2**20

    def counts(self) -> dict[str, float]:
        """Totals so far over all receivers and exporters: ``accepted_spans``,
        ``refused_log_records``… (receivers), ``sent_spans``, ``send_failed_spans``…
        (exporters)."""
        kinds = {
            "accepted": "receiver", "refused": "receiver",
            "sent": "exporter", "send_failed": "exporter", "enqueue_failed": "exporter",
        }  # fmt: skip
        totals = {f"{kind}_{signal}": 0.0 for kind in kinds for signal in SIGNALS}
        for name, _, value in _scrape(self.ports.telemetry):
            for kind, component in kinds.items():
                for signal in SIGNALS:
                    metric = f"otelcol_{component}_{kind}_{signal}"
                    if name in (metric, f"{metric}_total"):
                        totals[f"{kind}_{signal}"] += value
        return totals

    def engine_metric(self, name: str, job: str, label: str | None = None) -> float | None:
        """The sum over the series of metric ``name`` the engine ``job`` sent (those that have
        ``label``, when given); ``None`` when it sent no such series."""
        values = [
            value
            for sample, labels, value in _scrape(self.ports.metrics or METRICS_PORT)
            if sample == name and labels.get("job") == job and (label is None or label in labels)
        ]
        return sum(values) if values else None


def deltas(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {key: after[key] - before.get(key, 0.0) for key in after}
