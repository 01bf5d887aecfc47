"""HTTP under load: bench/http_app.py in each mode, saturated by ``wrk``, let go idle (an
export process catches up), then driven at a fixed rate by ``vegeta``; figures are ratios to
the plain run of the same suite run.

On a 2-core machine the server, the load client and the Collector (plus any export process
voiceobs starts) share the cores; the CPU each took is reported beside the figures.
"""

from __future__ import annotations

import json
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.collector import HarnessError, PrivateCollector, deltas
from bench.cpu import process_cpu, tree_cpu
from bench.engine_load import REPO_ROOT, clean_env, dropped
from bench.figures import Figure, Goal
from bench.tools import vegeta, wrk

MODES = ("plain", "voiceobs", "stock")
PORT = 28080
URL = f"http://127.0.0.1:{PORT}/ping"
CONNECTIONS = 16
RATE = 1000
WARMUP_S = 2
SETTLE_MAX_S = 30.0
"""Longest wait for the server's processes to go idle after the saturation run."""
IDLE_SHARE = 0.10
"""Below this share of a core over half a second, the server's processes are idle (an export
process still pushes a few metric points a second)."""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Usage:
    """CPU seconds taken so far by the server (and its children), by the server's process
    alone, the load clients this process started and waited for, and the Collector."""

    server: float
    engine: float
    clients: float
    collector: float
    at: float


def _usage(server_pid: int, collector: PrivateCollector) -> Usage:
    clients = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Usage(
        tree_cpu(server_pid),
        process_cpu(server_pid),
        clients.ru_utime + clients.ru_stime,
        collector.cpu_seconds(),
        time.monotonic(),
    )


def _settle(server_pid: int) -> float:
    """Wait until the server and its children go idle: an export process catches up with
    what the saturation run left it (seconds of work at ~5 000 req/s), so the fixed-rate run
    measures the steady state at its rate, not that backlog competing for the cores. Seconds
    waited."""
    began = time.monotonic()
    cpu = tree_cpu(server_pid)
    while time.monotonic() - began < SETTLE_MAX_S:
        time.sleep(0.5)
        now = tree_cpu(server_pid)
        if now - cpu < IDLE_SHARE * 0.5:
            break
        cpu = now
    return time.monotonic() - began


def _shares(before: Usage, after: Usage) -> dict[str, float]:
    """% of one core each part took between two usages."""
    wall = after.at - before.at
    return {
        "server": 100 * (after.server - before.server) / wall,
        "client": 100 * (after.clients - before.clients) / wall,
        "collector": 100 * (after.collector - before.collector) / wall,
    }


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise HarnessError(f"wrk printed a latency I cannot read: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(seconds: float) -> dict[str, float]:
    """``wrk`` with one thread and 16 connections: requests/s, p99 (ms), requests, errors."""
    out = subprocess.run(
        [str(wrk()), "-t1", f"-c{CONNECTIONS}", f"-d{seconds:.0f}s", "--latency", URL],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    if not (rps and p99 and total):
        raise HarnessError(f"wrk printed no figures:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    failed = int(errors.group(1)) if errors else 0
    if socket_errors:
        failed += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return {
        "rps": float(rps.group(1)),
        "p99_ms": _ms(p99.group(1)),
        "requests": float(total.group(1)),
        "errors": float(failed),
    }


def run_vegeta(seconds: float) -> dict[str, float]:
    """``vegeta`` at ``RATE`` requests/s: p99 (ms), requests, success ratio, achieved rate."""
    with tempfile.NamedTemporaryFile(suffix=".bin") as results:
        subprocess.run(
            [str(vegeta()), "attack", f"-rate={RATE}/1s", f"-duration={seconds:.0f}s",
             "-timeout=5s", f"-output={results.name}"],
            input=f"GET {URL}\n",
            text=True,
            timeout=seconds + 30,
            check=True,
        )  # fmt: skip
        report = json.loads(
            subprocess.run(
                [str(vegeta()), "report", "-type=json", results.name],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
        )
    return {
        "p99_ms": report["latencies"]["99th"] / 1e6,
        "requests": float(report["requests"]),
        "success": float(report["success"]),
        "rate": float(report["rate"]),
    }


def _wait_ready(proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HarnessError(f"the HTTP server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(URL, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise HarnessError(f"the HTTP server did not answer in 30 s: {log.read_text()[-2000:]}")


def run_mode(mode: str, seconds: float, collector: PrivateCollector) -> dict[str, Any]:
    """Start the server in ``mode``, saturate it, then drive it at a fixed rate; stop it."""
    service = f"bench-http-{mode}"
    env = clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint_grpc, OTEL_SERVICE_NAME=service)
    counts = collector.counts()
    with tempfile.NamedTemporaryFile(prefix="bench-http-", suffix=".log") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.http_app", mode, str(PORT)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(proc, Path(log.name))
            warm = run_wrk(WARMUP_S)
            before = _usage(proc.pid, collector)
            saturated = run_wrk(seconds)
            middle = _usage(proc.pid, collector)
            settle_s = _settle(proc.pid)
            settled = _usage(proc.pid, collector)
            fixed = run_vegeta(seconds)
            after = _usage(proc.pid, collector)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        time.sleep(1.0)  # the Collector's last batch goes through its pipeline
        served = warm["requests"] + saturated["requests"] + fixed["requests"]
        return {
            "wrk": saturated,
            "vegeta": fixed,
            "wrk_cpu": _shares(before, middle),
            "vegeta_cpu": _shares(settled, after),
            "settle_s": settle_s,
            "server_cpu_per_request_us": 1e6
            * (after.server - settled.server)
            / max(1.0, fixed["requests"]),
            "engine_cpu_per_request_us": 1e6
            * (after.engine - settled.engine)
            / max(1.0, fixed["requests"]),
            # the catching up after the saturation run is the saturated requests' cost
            "saturated_cpu_per_request_us": 1e6
            * (settled.server - before.server)
            / max(1.0, saturated["requests"]),
            "served": served,
            "collector": deltas(counts, collector.counts()),
            "dropped": dropped(collector, service),
        }


def figures_for(runs: dict[str, dict[str, Any]]) -> list[Figure]:
    group = "HTTP, uvicorn one worker, trivial route"
    plain = runs["plain"]
    figures: list[Figure] = []

    def add(key: str, title: str, value: float, unit: str, **kw: Any) -> None:
        figures.append(Figure(f"http-{key}", group, title, value, unit, **kw))

    labels = {"plain": "plain", "voiceobs": "voiceobs", "stock": "stock FastAPIInstrumentor"}
    for mode, label in labels.items():
        run = runs[mode]
        ours = mode == "voiceobs"
        base: dict[str, Any] = {} if mode == "plain" else {"baseline_name": "plain"}
        add(
            f"{mode}-wrk-rps",
            f"throughput at saturation (wrk, {CONNECTIONS} connections), {label}",
            run["wrk"]["rps"],
            "req/s",
            **({} if not base else {**base, "baseline": plain["wrk"]["rps"]}),
            goal=Goal(">=", 0.85) if ours else None,
            note=f"{run['wrk']['errors']:.0f} errors",
        )
        add(
            f"{mode}-wrk-p99",
            f"latency p99 at saturation, {label}",
            run["wrk"]["p99_ms"],
            "ms",
            **({} if not base else {**base, "baseline": plain["wrk"]["p99_ms"]}),
        )
        add(
            f"{mode}-rate-p99",
            f"latency p99 at {RATE} req/s (vegeta), {label}",
            run["vegeta"]["p99_ms"],
            "ms",
            **({} if not base else {**base, "baseline": plain["vegeta"]["p99_ms"]}),
            goal=Goal("<=", 1.3) if ours else None,
            note=f"{run['vegeta']['rate']:.0f} req/s sent, "
            f"{100 * run['vegeta']['success']:.2f} % answered 2xx; started "
            f"{run['settle_s']:.1f} s after the saturation run, once the server's processes "
            "were idle",
        )
        add(
            f"{mode}-wrk-cpu-per-request",
            f"server process CPU per request at saturation (children included), {label}",
            run["saturated_cpu_per_request_us"],
            "µs",
            **({} if not base else {**base, "baseline": plain["saturated_cpu_per_request_us"]}),
        )
        kept_up = run["vegeta"]["success"] >= 0.99
        add(
            f"{mode}-rate-cpu-per-request",
            f"server process CPU per request at {RATE} req/s (children included), {label}",
            run["server_cpu_per_request_us"],
            "µs",
            **({} if not base else {**base, "baseline": plain["server_cpu_per_request_us"]}),
            note="" if kept_up else f"the server did not keep up with {RATE} req/s",
        )
        add(
            f"{mode}-rate-engine-cpu-per-request",
            f"server process CPU per request at {RATE} req/s (its own process only), {label}",
            run["engine_cpu_per_request_us"],
            "µs",
            **({} if not base else {**base, "baseline": plain["engine_cpu_per_request_us"]}),
            goal=Goal("<=", 1.15) if ours else None,
            note="" if kept_up else f"the server did not keep up with {RATE} req/s",
        )
        if mode != "plain":
            add(
                f"{mode}-spans-per-request",
                f"spans the Collector received per request served, {label}",
                run["collector"]["accepted_spans"] / run["served"],
                "spans",
                note=f"{run['served']:.0f} requests, "
                f"{run['collector']['accepted_spans']:.0f} spans",
                goal=Goal(">=", 1.0, on_ratio=False) if ours else None,
            )
            add(
                f"{mode}-dropped",
                f"telemetry the server counted as dropped, {label}",
                run["dropped"],
                "items",
                note="voiceobs.telemetry.dropped + SDK span-processor errors",
                goal=Goal("<=", 0, on_ratio=False) if ours else None,
            )
        for phase in ("wrk", "vegeta"):
            shares = run[f"{phase}_cpu"]
            add(
                f"{mode}-{phase}-cpu-shares",
                f"CPU during the {phase} run, server / load client / Collector, {label}",
                shares["server"] + shares["client"] + shares["collector"],
                "% of a core",
                note=f"server {shares['server']:.0f} %, {phase} {shares['client']:.0f} %, "
                f"Collector {shares['collector']:.0f} %",
            )
    return figures


def measure(seconds: float, collector: PrivateCollector) -> list[Figure]:
    runs = {}
    for mode in MODES:
        print(f"[bench] HTTP: {mode}, wrk {seconds:.0f} s + vegeta {seconds:.0f} s", flush=True)
        runs[mode] = run_mode(mode, seconds, collector)
    return figures_for(runs)
