"""Engine load with event-loop lag: bench/engine.py in each mode, one process per run, all
exporting to the private Collector; figures are ratios to the no-telemetry run of the same
suite run. At the goal load the modes run in several rounds, in turn, and the figures are the
rounds' medians (the lag maximum the worst of them): one 10-30 s window per mode moved by
more than the goal on this kind of machine."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.collector import SIGNALS, HarnessError, PrivateCollector, deltas
from bench.figures import Figure, Goal, percentile

MODES = ("none", "sdk", "voiceobs")
GOAL_CALLS = 200
"""The load the issue's goals are stated at; other loads are reported without goals."""
REPO_ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the caller's OpenTelemetry or voiceobs settings, so every run
    measures the defaults; ``extra`` sets what the run needs."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("OTEL_")
        and not (key.startswith("VOICEOBS_") and not key.startswith("VOICEOBS_STACK_"))
    }
    env.update(extra)
    return env


def dropped(collector: PrivateCollector, service: str) -> float:
    """What ``service`` said it dropped: ``voiceobs.telemetry.dropped`` (all reasons) plus the
    SDK span processor's errors (queue full…), as the Collector received them."""
    counted = collector.engine_metric("voiceobs_telemetry_dropped_total", service) or 0.0
    failed = collector.engine_metric(
        "otel_sdk_processor_span_processed_total", service, label="error_type"
    )
    return counted + (failed or 0.0)


def run_engine(
    mode: str,
    calls: int,
    seconds: float,
    collector: PrivateCollector,
    endpoint: str | None = None,
    service: str | None = None,
) -> dict[str, Any]:
    """One engine process; its own figures plus what the Collector saw of it. It exports to
    ``endpoint`` (default: the Collector) as ``service`` (default: from mode and calls)."""
    service = service or f"bench-engine-{mode}-{calls}"
    env = clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint or collector.endpoint_grpc,
        OTEL_SERVICE_NAME=service,
    )
    counts_before = collector.counts()
    collector_cpu = collector.cpu_seconds()
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.engine", mode, str(calls), str(seconds)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 90,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise HarnessError(f"engine {mode} with {calls} calls failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    time.sleep(1.0)  # the Collector's last batch goes through its pipeline
    result["wall_s"] = time.monotonic() - began
    result["collector"] = deltas(counts_before, collector.counts())
    result["collector_cpu_s"] = collector.cpu_seconds() - collector_cpu
    result["turns_counted"] = collector.engine_metric("voice_turns_total", service) or 0.0
    if mode != "none" and not result["turns_counted"]:
        raise HarnessError(f"the Collector has no voice_turns_total from {service}")
    result["dropped"] = dropped(collector, service)
    result["stderr"] = proc.stderr[-2000:]
    return result


def summary(run: dict[str, Any]) -> dict[str, float]:
    window = run["window_s"]
    lags = run["lags_s"]
    return {
        "cpu": 100 * run["engine_cpu_s"] / window,
        "total_cpu": 100 * (run["engine_cpu_s"] + run["children_cpu_s"]) / window,
        "p50": 1e3 * percentile(lags, 50),
        "p99": 1e3 * percentile(lags, 99),
        "max": 1e3 * max(lags),
        "per_turn_us": 1e6 * (run["engine_cpu_s"] + run["children_cpu_s"]) / run["turns"],
    }


def combined(rounds: list[dict[str, Any]]) -> dict[str, float]:
    """One mode's rounds as one: the median of each round's CPU, lag p50 and p99 and CPU per
    turn, the worst lag of any round."""
    each = [summary(run) for run in rounds]
    merged = {key: statistics.median(s[key] for s in each) for key in each[0]}
    merged["max"] = max(s["max"] for s in each)
    return merged


def total(rounds: list[dict[str, Any]], key: str) -> float:
    return float(sum(run[key] for run in rounds))


def figures_for(calls: int, runs: dict[str, list[dict[str, Any]]]) -> list[Figure]:
    """Figures of one load (``calls``) from its rounds of the three modes: medians over the
    rounds, the worst lag of any, and what any round lost."""
    group = f"Engine load, {calls} calls"
    at_goal = calls == GOAL_CALLS
    s = {mode: combined(rounds) for mode, rounds in runs.items()}
    none = s["none"]
    rounds_note = f"median of {len(runs['none'])} rounds" if len(runs["none"]) > 1 else ""
    figures: list[Figure] = []

    def add(key: str, title: str, value: float, unit: str, **kw: Any) -> None:
        kw.setdefault("note", rounds_note)
        figures.append(Figure(f"engine-{calls}-{key}", group, title, value, unit, **kw))

    add("none-cpu", "engine process CPU, no telemetry", none["cpu"], "% of a core")
    add("none-lag-p50", "loop lag p50, no telemetry", none["p50"], "ms")
    add("none-lag-p99", "loop lag p99, no telemetry", none["p99"], "ms")
    add("none-lag-max", "loop lag max, no telemetry", none["max"], "ms")
    for mode in ("sdk", "voiceobs"):
        m = s[mode]
        label = "plain SDK code" if mode == "sdk" else "voiceobs"
        goals = at_goal and mode == "voiceobs"
        add(
            f"{mode}-cpu",
            f"engine process CPU, {label}",
            m["cpu"],
            "% of a core",
            baseline=none["cpu"],
            baseline_name="none",
        )
        add(
            f"{mode}-cpu-added",
            f"telemetry CPU added to the engine process, {label}",
            m["cpu"] - none["cpu"],
            "% of a core",
            goal=Goal("<=", 1.0, on_ratio=False) if goals else None,
        )
        add(
            f"{mode}-total-cpu-added",
            f"telemetry CPU added, engine + its child processes ({runs[mode][0]['children']}), "
            f"{label}",
            m["total_cpu"] - none["cpu"],
            "% of a core",
        )
        add(
            f"{mode}-lag-p50",
            f"loop lag p50, {label}",
            m["p50"],
            "ms",
            baseline=none["p50"],
            baseline_name="none",
        )
        add(
            f"{mode}-lag-p99",
            f"loop lag p99, {label}",
            m["p99"],
            "ms",
            baseline=none["p99"],
            baseline_name="none",
            goal=Goal("<=", 1.2) if goals else None,
        )
        add(
            f"{mode}-lag-max",
            f"loop lag max, {label}",
            m["max"],
            "ms",
            baseline=none["max"],
            baseline_name="none",
            goal=Goal("<=", 5.0, on_ratio=False) if goals else None,
        )
        rounds = runs[mode]
        made = total(rounds, "spans_made")
        accepted = sum(run["collector"]["accepted_spans"] for run in rounds)
        add(
            f"{mode}-spans-lost",
            f"spans made but not received by the Collector, {label}",
            made - accepted,
            "spans",
            note=f"{made:.0f} made, {accepted:.0f} received",
            goal=Goal("<=", 0, on_ratio=False) if goals else None,
        )
        refused = sum(run["collector"][f"refused_{s}"] for run in rounds for s in SIGNALS)
        add(
            f"{mode}-refused",
            f"items the Collector refused, {label}",
            refused,
            "items",
            goal=Goal("<=", 0, on_ratio=False) if goals else None,
        )
    for mode in ("sdk", "voiceobs"):
        made, counted = total(runs[mode], "turns_total"), total(runs[mode], "turns_counted")
        add(
            f"{mode}-turns-uncounted",
            f"turns made but missing from voice_turns_total at the Collector, {mode}",
            made - counted,
            "turns",
            note=f"{made:.0f} made, {counted:.0f} counted",
            goal=Goal("<=", 0, on_ratio=False) if at_goal and mode == "voiceobs" else None,
        )
    add(
        "voiceobs-dropped",
        "voiceobs.telemetry.dropped + SDK span-processor errors (all reasons), voiceobs",
        total(runs["voiceobs"], "dropped"),
        "items",
        goal=Goal("<=", 0, on_ratio=False) if at_goal else None,
    )
    sdk_turn = s["sdk"]["per_turn_us"] - none["per_turn_us"]
    add(
        "voiceobs-cpu-per-turn",
        "telemetry CPU per turn of every process voiceobs runs (frames included), "
        "voiceobs vs plain SDK code",
        s["voiceobs"]["per_turn_us"] - none["per_turn_us"],
        "µs",
        baseline=sdk_turn,
        baseline_name="sdk",
        goal=Goal("<=", 0.5) if at_goal else None,
    )
    for mode in ("sdk", "voiceobs"):
        add(
            f"{mode}-rss",
            f"engine process memory (RSS) at the end of the run, {mode}",
            statistics.median(run["rss_mb"] for run in runs[mode]),
            "MiB",
            baseline=statistics.median(run["rss_mb"] for run in runs["none"]),
            baseline_name="none",
        )
    add(
        "voiceobs-shutdown",
        "shutdown() after the load, voiceobs",
        max(run["shutdown_s"] for run in runs["voiceobs"]),
        "s",
        note="the slowest round; returned "
        + str(all(run["shutdown_ok"] for run in runs["voiceobs"])),
    )
    for mode in MODES:
        add(
            f"{mode}-collector-cpu",
            f"Collector CPU over the run, {mode}",
            100 * total(runs[mode], "collector_cpu_s") / total(runs[mode], "wall_s"),
            "% of a core",
        )
    return figures


def measure(
    calls_list: list[int], seconds: float, rounds: int, collector: PrivateCollector
) -> list[Figure]:
    """Each load in turn; the goal load in ``rounds`` rounds of the three modes, each round in
    another order, so a slow spell of the machine falls on every mode alike."""
    figures: list[Figure] = []
    for calls in calls_list:
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        for number in range(rounds if calls == GOAL_CALLS else 1):
            for mode in MODES[number % 3 :] + MODES[: number % 3]:
                print(
                    f"[bench] engine load: {calls} calls, mode {mode}, {seconds:.0f} s, "
                    f"round {number + 1}",
                    flush=True,
                )
                service = f"bench-engine-{mode}-{calls}-{number + 1}"
                runs[mode].append(run_engine(mode, calls, seconds, collector, service=service))
        figures += figures_for(calls, runs)
    return figures
