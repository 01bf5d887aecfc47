"""A private Collector's environment for tests that run our built Collector on their own:
every listener of collector/config.yaml on a free port, built from nothing but PATH, so that
neither a running stack's ports nor a machine's stack settings (VOICEOBS_STACK_*,
COLLECTOR_*) can move it. One place to extend when the shared config reads a new address."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

LISTENERS = ("grpc", "http", "scrape", "self", "health", "pprof", "zpages", "stage")
"""The ports it gets: OTLP gRPC/HTTP, the Prometheus exporter, its own telemetry, health
check, pprof, zpages and the metrics' remote-write stage."""


BIND_FAILED = "address already in use"
"""What a Collector logs when a port chosen for it was taken before it bound it: another
process on the machine may take any free port between the choice and the bind, so
``start_private_collector`` starts it again on new ports when its log says this."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports: all are held while they are chosen, so the
    kernel cannot hand out one twice."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def private_collector_env(
    state: Path, *, traces: str, logs: str, remote_write: str
) -> tuple[dict[str, str], dict[str, int]]:
    """The environment and the ports (keyed as ``LISTENERS``); ``traces`` is the Jaeger and
    Tempo OTLP/gRPC address, ``logs`` Loki's OTLP URL, ``remote_write`` Prometheus' URL."""
    ports = dict(zip(LISTENERS, free_ports(len(LISTENERS)), strict=True))
    env = {
        "PATH": os.environ["PATH"],
        "COLLECTOR_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports['grpc']}",
        "COLLECTOR_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports['http']}",
        "COLLECTOR_PROMETHEUS_ENDPOINT": f"127.0.0.1:{ports['scrape']}",
        "COLLECTOR_TELEMETRY_HOST": "127.0.0.1",
        "COLLECTOR_TELEMETRY_PORT": str(ports["self"]),
        "COLLECTOR_HEALTH_ENDPOINT": f"127.0.0.1:{ports['health']}",
        "COLLECTOR_PPROF_ENDPOINT": f"127.0.0.1:{ports['pprof']}",
        "COLLECTOR_ZPAGES_ENDPOINT": f"127.0.0.1:{ports['zpages']}",
        "COLLECTOR_REMOTE_WRITE_STAGE_ENDPOINT": f"127.0.0.1:{ports['stage']}",
        "COLLECTOR_STORAGE_DIR": str(state / "queue"),
        "JAEGER_OTLP_ENDPOINT": traces,
        "TEMPO_OTLP_ENDPOINT": traces,
        "LOKI_OTLP_ENDPOINT": logs,
        "PROMETHEUS_REMOTE_WRITE_ENDPOINT": remote_write,
    }
    return env, ports


def start_private_collector(
    command: list[str],
    state: Path,
    *,
    traces: str,
    logs: str,
    remote_write: str,
    extra_env: dict[str, str],
    attempts: int = 3,
) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """The Collector started from ``command`` on free ports (``private_collector_env`` plus
    ``extra_env``) and healthy; started again on new ports when one chosen for it was taken
    by another process before it could bind it. Fails the test with the Collector's log."""
    for attempt in range(1, attempts + 1):
        run = state / f"run{attempt}"
        run.mkdir()
        env, ports = private_collector_env(run, traces=traces, logs=logs, remote_write=remote_write)
        env.update(extra_env)
        log_path = run / "collector.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{ports['health']}/", timeout=1).close()
                return proc, ports
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log_text = log_path.read_text()
        if BIND_FAILED not in log_text or attempt == attempts:
            pytest.fail(f"Collector did not start:\n{log_text[-3000:]}")
    raise AssertionError("unreachable: the last attempt returns or fails")
