"""Freshness: from the end of a turn until it can be queried in each backend of the native
stack (Jaeger: the turn's trace; Loki: the log line written inside the turn; Prometheus: the
turn counted in ``voice_turns_total``).

An engine process (``python -m bench.freshness --engine``) makes one call with one turn a
second and prints, for each, its trace id, log marker and the wall-clock time the turn ended.
The bench polls the three backends every 100 ms and records when each turn first answers.
The engine runs twice: with the defaults (every series every 5 s, and the series a turn moved
pushed about a second after it), and with full pushes only (``VOICEOBS_METRIC_PROMPT_EXPORT_MS=0``),
the baseline that shows what the prompt push buys. The stack is started if it is not running
(and stopped again afterwards)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.collector import HarnessError
from bench.engine_load import REPO_ROOT, clean_env
from bench.figures import Figure, Goal, percentile
from voiceobs.semconv import SPAN_TURN

POLL_S = 0.1
WAIT_S = 30.0
"""How long after the last turn a backend may take before the bench gives up on it."""
GOAL_P95_S = 2.0
BACKENDS = ("jaeger", "loki", "prometheus")
RUNS = {"default": {}, "full-pushes-only": {"VOICEOBS_METRIC_PROMPT_EXPORT_MS": "0"}}
"""Engine settings of each run: the defaults (the goal applies to them), and every metric
series pushed every interval with no prompt push in between (a baseline)."""


# --- the engine ----------------------------------------------------------------------------


def engine(turns: int, interval_s: float) -> None:
    """One call with one turn every ``interval_s``; a JSON line per turn on stdout."""
    from voiceobs import setup_instrumentation

    obs = setup_instrumentation()
    log = logging.getLogger("bench.freshness")
    log.setLevel(logging.INFO)
    for index in range(turns):
        marker = uuid.uuid4().hex
        with obs.call(f"fresh-{marker[:12]}", tenant="bench", pipeline="freshness") as call:
            with call.turn() as turn:
                turn.user_speech_ended()
                log.info("freshness marker %s", marker)
                turn.agent_audio_started()
            trace_id = f"{call.trace_id:032x}"
        ended = time.time()
        line = {"index": index, "trace_id": trace_id, "marker": marker, "ended": ended}
        print(json.dumps(line), flush=True)
        time.sleep(max(0.0, ended + interval_s - time.time()))
    obs.shutdown()


# --- the bench ----------------------------------------------------------------------------


@dataclass
class Turn:
    index: int
    trace_id: str
    marker: str
    ended: float
    seen: dict[str, float] = field(default_factory=dict)
    """Backend → seconds from the turn's end until it first answered."""


def _get(url: str, params: dict[str, str] | None = None) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}{query}", timeout=5) as resp:
        return json.load(resp)


class Probes:
    """One poller per backend; each marks the turns it can see."""

    def __init__(self, stack: Any, service: str) -> None:
        self.stack = stack
        self.service = service
        self.turns: list[Turn] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.deadline = float("inf")
        """Set when the engine finished: pollers give up on what they have not seen by then."""

    def _jaeger(self, pending: list[Turn]) -> set[int]:
        found = set()
        for turn in pending:
            url = self.stack.url("jaeger", "query HTTP API", f"/api/traces/{turn.trace_id}")
            try:
                data = _get(url)["data"]
            except OSError:  # 404 until stored
                continue
            names = {span["operationName"] for trace in data for span in trace["spans"]}
            if SPAN_TURN in names:
                found.add(turn.index)
        return found

    def _loki(self, pending: list[Turn]) -> set[int]:
        url = self.stack.url("loki", "HTTP API", "/loki/api/v1/query_range")
        start = min(t.ended for t in pending) - 60
        query = f'{{service_name="{self.service}"}} |= "freshness marker"'
        params = {"query": query, "start": f"{start:.0f}000000000", "limit": "5000"}
        lines = "\n".join(
            value[1] for stream in _get(url, params)["data"]["result"] for value in stream["values"]
        )
        return {t.index for t in pending if t.marker in lines}

    def _prometheus(self, pending: list[Turn]) -> set[int]:
        url = self.stack.url("prometheus", "web/API", "/api/v1/query")
        result = _get(url, {"query": f'sum(voice_turns_total{{job="{self.service}"}})'})
        rows = result["data"]["result"]
        counted = float(rows[0]["value"][1]) if rows else 0.0
        return {t.index for t in pending if t.index < counted}

    def poll(self, backend: str) -> None:
        probe: Callable[[list[Turn]], set[int]] = getattr(self, f"_{backend}")
        while True:
            finished = self.done.is_set()
            with self.lock:
                pending = [t for t in self.turns if backend not in t.seen]
            if pending:
                try:
                    found = probe(pending)
                except (OSError, ValueError, KeyError):
                    found = set()
                now = time.time()
                with self.lock:
                    for turn in pending:
                        if turn.index in found:
                            turn.seen[backend] = now - turn.ended
            elif finished:
                return
            if finished and time.time() > self.deadline:
                return
            time.sleep(POLL_S)


def run(stack: Any, name: str, turns: int) -> tuple[list[Turn], int]:
    """The run's turns, each with when it answered in each backend, and the samples
    Prometheus stored for the run."""
    service = f"bench-freshness-{name}-{uuid.uuid4().hex[:6]}"
    env = clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{stack.env['COLLECTOR_OTLP_GRPC_ENDPOINT']}",
        OTEL_SERVICE_NAME=service,
        **RUNS[name],
    )
    probes = Probes(stack, service)
    pollers = [threading.Thread(target=probes.poll, args=(b,), daemon=True) for b in BACKENDS]
    for poller in pollers:
        poller.start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.freshness", "--engine", str(turns)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        data = json.loads(line)
        with probes.lock:
            probes.turns.append(Turn(**data))
    _, stderr = proc.communicate(timeout=60)
    probes.deadline = time.time() + WAIT_S
    probes.done.set()
    for poller in pollers:
        poller.join(timeout=WAIT_S + 30)
    if proc.returncode != 0 or len(probes.turns) != turns:
        raise HarnessError(f"freshness engine {name} failed: {stderr[-2000:]}")
    return probes.turns, stored_samples(stack, service)


def stored_samples(stack: Any, service: str) -> int:
    """The samples Prometheus stored for the run's service (its ``job``), every series."""
    url = stack.url("prometheus", "web/API", "/api/v1/query")
    # The raw samples, counted here: count_over_time drops the metric name, and series that
    # differ only by it would clash.
    rows = _get(url, {"query": f'{{job="{service}"}}[30m]'})["data"]["result"]
    samples = sum(len(row["values"]) for row in rows)
    if not samples:
        raise HarnessError(f"Prometheus stored no sample of {service}")
    return samples


def figures_for(runs: dict[str, tuple[list[Turn], int]]) -> list[Figure]:
    figures = []
    for name, (turns, _) in runs.items():
        settings = ", ".join(f"{k}={v}" for k, v in RUNS[name].items()) or "defaults"
        for backend in BACKENDS:
            delays = [t.seen[backend] for t in turns if backend in t.seen]
            if len(delays) < len(turns):  # not late: lost
                raise HarnessError(
                    f"freshness {name}: {len(turns) - len(delays)} of {len(turns)} turns never"
                    f" became queryable in {backend} within {WAIT_S:.0f} s"
                )
            figures.append(
                Figure(
                    name=f"freshness-{name}-{backend}-p95",
                    group="Freshness, turn end → queryable",
                    title=f"p95 until the turn is queryable in {backend}, {settings}",
                    value=percentile(delays, 95),
                    unit="s",
                    goal=Goal("<=", GOAL_P95_S, on_ratio=False) if name == "default" else None,
                    note=f"{len(turns)} turns; median {percentile(delays, 50):.2f} s, max"
                    f" {max(delays):.2f} s",
                )
            )
    turns, samples = runs["default"]
    baseline_turns, baseline_samples = runs["full-pushes-only"]
    figures.append(
        Figure(
            name="freshness-prometheus-samples-per-turn",
            group="Freshness, turn end → queryable",
            title="what the prompt push costs: samples Prometheus stored per turn, defaults",
            value=samples / len(turns),
            unit="samples",
            baseline=baseline_samples / len(baseline_turns),
            baseline_name="full pushes only",
            note="every series of the run's service, the engine's process metrics included; one"
            " call with a turn a second",
        )
    )
    return figures


def measure(turns: int) -> list[Figure]:
    from stack import control
    from stack.settings import StackError, load

    stack = load()
    started_here = control.supervisord_pid(stack) is None
    print(f"[bench] freshness: {turns} turns per run on the native stack", flush=True)
    try:
        control.up(stack)
        try:
            runs = {name: run(stack, name, turns) for name in RUNS}
        finally:
            if started_here:
                control.down(stack)
    except StackError as exc:
        raise HarnessError(f"the native stack: {exc}") from None
    return figures_for(runs)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--engine"]:
        engine(int(sys.argv[2]), 1.0)
    else:
        for figure in measure(int(sys.argv[1]) if len(sys.argv) > 1 else 20):
            print(figure)
