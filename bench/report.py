"""Where the figures go: ``bench/results/<figure>.json`` (one file per figure, with the
machine) and docs/performance.md (method, one table of the latest run, how to reproduce) for a
run of every part; a run of some parts (``--only``) writes its files to a directory of its own
under the user's cache dir, so the tracked results stay one whole run; and a table on stdout."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.figures import TIMES, Figure
from bench.tools import VEGETA_VERSION
from stack.build import cache_root

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
DOC = BENCH_DIR.parent / "docs" / "performance.md"
PACKAGES = (
    "voiceobs",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry-instrumentation-fastapi",
    "fastapi",
    "uvicorn",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=BENCH_DIR, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--", "voiceobs") else "")


def machine(collector_version: str, wrk_version: str) -> dict[str, Any]:
    """What the figures were measured on, and the load the machine had when the run began."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions |= {"collector": collector_version, "wrk": wrk_version, "vegeta": VEGETA_VERSION}
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "commit": _commit(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def partial_results_dir(parts: list[str]) -> Path:
    """Where a run of only some parts writes: a new directory per run under the user's cache
    dir, named by the time and the parts, e.g. ``~/.cache/voiceobs/bench/<UTC time>-panels``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return cache_root() / "bench" / f"{stamp}-{'-'.join(parts)}"


def write_results(figures: list[Figure], machine_info: dict[str, Any], directory: Path) -> None:
    """One JSON file per figure; files of figures this run did not measure are removed, so the
    directory holds one run."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.json"):
        stale.unlink()
    for figure in figures:
        path = directory / f"{figure.name}.json"
        path.write_text(json.dumps(figure.as_json(machine_info), indent=2) + "\n")


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isinf(value):
        return "∞"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}".replace(",", " ")
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _met(figure: Figure) -> str:
    return {True: "met", False: "**not met**", None: ""}[figure.met]


def _ratio(figure: Figure) -> str:
    ratio = figure.ratio
    return "" if ratio is None else f"{_num(ratio)}{TIMES}"


def print_table(figures: list[Figure]) -> None:
    group = None
    for f in figures:
        if f.group != group:
            group = f.group
            print(f"\n{group}")
        baseline = "" if f.baseline is None else f"vs {_num(f.baseline)} ({f.baseline_name})"
        print(
            f"  {_num(f.value):>9} {f.unit:11} {baseline:28} {_ratio(f):>8} "
            f"{f.goal_text:9} {_met(f) or '-':11} {f.title}"
        )


def goals_summary(figures: list[Figure]) -> tuple[int, int]:
    with_goal = [f for f in figures if f.goal is not None and f.met is not None]
    return sum(1 for f in with_goal if f.met), len(with_goal)


METHOD = """\
## Method

Every figure is measured beside its baseline in the same run, on the same machine, and
reported as a ratio to it; goals are stated on those ratios (or on absolute values where the
issue states them so). A missed goal is a result, not a failure: `make bench` fails only when
the harness itself cannot run. Only voiceobs' public API is used (`setup_instrumentation`,
`obs.call()`, `call.turn()`, `turn.stt/llm/tts`, `call.jitter_buffer(d).sample()`,
`obs.shutdown()`, `setup_instrumentation(app)`), so the suite measures whatever design the
library has when it runs.

- **Collector.** Every mode exports OTLP/gRPC to a private Collector (the stack's own
  build, version above) started from `bench/collector.yaml` on 127.0.0.1:24317/24318; it keeps
  nothing (debug exporter, basic verbosity), counts what its receivers accept and refuse
  (`otelcol_receiver_accepted_*` / `refused_*` on :28888) and serves the engines' own
  metrics on :28889, where voiceobs' `voiceobs_telemetry_dropped_total` and
  `voice_turns_total` are read back. The native stack is never started.
- **Engine load** (`bench/engine.py`, one process per run): an asyncio loop with N
  concurrent calls, each taking a turn every 4 s (STT 100 ms, LLM 200 ms to first token and
  100 ms more, TTS 80 ms to first byte, with usage) and hanging up after 5 turns, when a new
  call takes its place; a frame clock samples each call's inbound jitter buffer every 20 ms
  (50 samples/s per call); a probe sleeps 1 ms again and again and records the overshoot (the
  event-loop lag an audio frame would see). Modes: `none` (no telemetry), `sdk` (the plain
  OpenTelemetry SDK code written the straightforward way: spans per call/turn/stage,
  histograms and counters, BatchSpanProcessor + OTLP gRPC exporter,
  PeriodicExportingMetricReader every 5 s), `voiceobs` (`setup_instrumentation()`, defaults).
  After a warm-up (5 s, or a third of the run) the window opens; at its end the engine reads
  its own process CPU (all threads) and that of every process below it, then stops taking
  turns, lets its calls hang up, shuts telemetry down and exits. Spans made (1 per call + 4
  per turn) are compared with the spans the Collector accepted, turns made with the final
  `voice_turns_total`. At 200 calls (the goals' load) the three modes run in 3 rounds (short
  form) or 5 (full), each round in another order; a figure is the median of the rounds, the
  lag maximum the worst round's, and spans or turns lost are summed over the rounds. Other
  loads run once.
- **Collector unreachable** (`bench/collector_outage.py`): `voiceobs` at 200 calls exports
  through a TCP relay in the bench process; in one run the relay passes everything, in the
  other it refuses connections and cuts the open ones from 7 s after start for the outage
  (20 s short, 60 s full), then passes again, and 15 s of window follow. Loop lag and engine
  CPU of the outage run are set beside the run without one; the spans that never reached the
  Collector are set against the SDK span processor's and exporter's error counts
  (`otel_sdk_processor_span_processed_total`, `otel_sdk_exporter_span_exported_total` with
  `error_type`) that the export process sent after the outage.
- **HTTP** (`bench/http_app.py`): uvicorn, one worker, one trivial async FastAPI route; modes
  plain / voiceobs (`setup_instrumentation(app)`) / stock `FastAPIInstrumentor` with the SDK
  exporting OTLP. Each mode is warmed up by 2 s of `wrk`, saturated by `wrk` (one thread, 16
  connections), let go idle (below 10 % of a core, 30 s at most: voiceobs' export process
  catches up with the saturation run's records, which counts as the saturated requests'
  CPU), then driven at 1 000 req/s by `vegeta` (fixed rate, open model), the steady state at
  that rate. Server CPU is that of its process and its children; the load clients' CPU is
  their rusage, the Collector's from /proc.
- **Hot path** (`bench/hotpath.py`, its own process): CPU per operation on the engine's
  thread (`thread_time`, median of 5 rounds) against the same operation in plain SDK code,
  the disabled mode, whole-process CPU per turn (all threads and child processes), and
  `shutdown()` against a dead Collector. Long calls: whole-process CPU per turn over turns
  401-500 of one call against its turns 1-100, and the Python memory (`tracemalloc`) still
  held per call after 400 calls of 3 turns came and went.
- **Collector throughput** (`bench/collector_throughput.py`): one Collector with the stack's
  own `collector/config.yaml` (memory_limiter, filter, resource, scrub, redaction, transform)
  whose exporters `bench/collector-throughput.yaml` swaps for one that keeps nothing (so no
  disk queue),
  takes 20 000 spans/s and 20 000 log records/s over OTLP/HTTP from pre-encoded batches of
  500 voiceobs-shaped turn spans and call logs (a phone number in each for the redaction
  rules); every item sent must be accepted and exported (none refused, none rejected). The
  rate is the items accepted over the load's schedule (batches x interval); if the Collector
  held the sender back so that its last batch went out more than one interval (25 ms) late,
  over the schedule plus that delay. The sender's sleep jitter stays within an interval;
  the latency of the last answer is not counted.
- **Frameworks** (`bench/frameworks.py`): the Pipecat adapter beside Pipecat's built-in
  tracing (its turn spans and the STT, LLM and TTS spans of its service decorators), both fed
  the same recorded frames of one 200-turn call, each paired turn by turn with an
  uninstrumented lane in its own process, both exporting OTLP to a receiver that keeps
  nothing: the engine's process CPU per turn above the bare lane at turns 1-25 and 176-200
  (voiceobs in its default mode, its export process reported apart and in the all-processes
  figure), and the final flush with nothing listening (full form only for Pipecat's side).
- **Freshness** (`bench/freshness.py`): on the native stack (started if it is not running),
  an engine process makes one call with one turn a second and logs a line inside each turn;
  three pollers, one per backend, ask every 100 ms until each turn answers: its trace in
  Jaeger (the `voice.turn` span), its line in Loki, its count in Prometheus
  (`voice_turns_total` of the run's own `job`). The figure is the time from the turn's end to
  the first answer, with the defaults (the goal applies to them) and, as a baseline, with
  every series pushed only every 5 s (`VOICEOBS_METRIC_PROMPT_EXPORT_MS=0`, no prompt push of
  the series a turn moved). Beside them, what the prompt push costs: the samples Prometheus
  stored for each run's service, per turn. A turn that never answers within 30 s fails the
  run.
"""


def _competition(figures: list[Figure]) -> str:
    shares = [f for f in figures if f.name.endswith("-cpu-shares")]
    if not shares:
        return ""
    lines = [
        "## What competes for the cores",
        "",
        f"The machine has {os.cpu_count()} cores. During the HTTP runs the server (with any "
        "export process it starts), the load client and the Collector share them; the "
        "engine-load runs share them with the Collector only. CPU each took, in % of one core:",
        "",
    ]
    cores = os.cpu_count() or 1
    lines += [
        f"- {f.title}: {f.note}; free: {max(0.0, 100 * cores - f.value):.0f} %" for f in shares
    ]
    collector = [f for f in figures if f.name.endswith("-collector-cpu")]
    if collector:
        worst = max(collector, key=lambda f: f.value)
        lines.append(
            f"- the Collector during the engine-load runs: at most {_num(worst.value)} % "
            f"of a core ({worst.title.rsplit(', ', 1)[-1]}, {worst.group.lower()})"
        )
    return "\n".join(lines) + "\n"


def render_doc(figures: list[Figure], machine_info: dict[str, Any], how: str) -> str:
    met, total = goals_summary(figures)
    versions = ", ".join(f"{k} {v}" for k, v in machine_info["versions"].items())
    rows = [
        "| part | figure | value | baseline | ratio | goal | |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        baseline = "" if f.baseline is None else f"{_num(f.baseline)} ({f.baseline_name})"
        title = f.title + (f" — {f.note}" if f.note else "")
        rows.append(
            f"| {f.group} | {title} | {_num(f.value)} {f.unit} | {baseline} | {_ratio(f)} "
            f"| {f.goal_text} | {_met(f)} |"
        )
    load = " / ".join(str(x) for x in machine_info["load_average_at_start"])
    return f"""# Performance

Generated by `make bench` (bench/report.py) from its latest run; every figure is also in
`bench/results/<figure>.json`. Do not edit by hand: rerun the suite.

**Latest run:** {machine_info["date"]}, {how}; commit {machine_info["commit"]}.
**Machine:** {machine_info["cpu"]}, {machine_info["cores"]} cores, \
{machine_info["memory_gib"]} GiB, {machine_info["os"]}, Python {machine_info["python"]};
load average {load} when the run began (the figures of a shared machine are noisy: compare
ratios, not absolute values, and rerun before drawing conclusions from one run).
**Versions:** {versions}.

**Goals:** {met} of {total} met in this run.

{METHOD}
## Results

{chr(10).join(rows)}

{_competition(figures)}
## How to reproduce

```bash
make bench                     # full: 50, 200 and 500 calls, 30 s per mode (~10 min)
make bench BENCH_ARGS=--short  # CI's form: 200 calls, 15 s per mode, 10 s HTTP runs (~4 min)
.venv/bin/python -m bench -h   # every option (calls, durations, parts)
.venv/bin/python -m bench --only panels  # some parts: figures under ~/.cache/voiceobs/bench/
```

Everything the suite runs is installed on first use: the Collector (built by
`python -m stack build`, cached), `wrk` (Debian package) and `vegeta` v{VEGETA_VERSION} (built
from the Go module proxy into `~/.cache/voiceobs/bin/`). Every load is bounded in calls and
seconds. The figures of this page come from one run.
"""


def write_doc(figures: list[Figure], machine_info: dict[str, Any], how: str) -> None:
    DOC.write_text(render_doc(figures, machine_info, how))
