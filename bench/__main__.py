"""``make bench``: the benchmark suite of voiceobs, every figure beside its baseline.

Runs the engine load with event-loop lag, the engine through a Collector outage, HTTP under
load and the hot path against a private Collector, then the Collector's own throughput, the
Pipecat adapter beside Pipecat's own tracing, freshness (turn end → queryable) on the native
stack, started if it is not running, how fast every dashboard panel answers over days of
synthetic metrics (bench/panels.py) and what a log line and an engine restart cost in Loki
(bench/loki_lean.py); prints
a table; a run of every part writes ``bench/results/<figure>.json`` and docs/performance.md, a
run of some parts (``--only``) writes its figures under the user's cache dir and says where.
Exits non-zero only when the harness fails; a missed goal is a result.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from bench import (
    collector_outage,
    collector_throughput,
    engine_load,
    frameworks,
    freshness,
    http_load,
    loki_lean,
    panels,
    report,
)
from bench.collector import HarnessError, PrivateCollector
from bench.engine_load import REPO_ROOT
from bench.figures import Figure
from bench.tools import collector_binary, vegeta, wrk

PARTS = (
    "engine", "outage", "http", "hotpath", "collector", "frameworks", "freshness", "panels", "loki",
)  # fmt: skip


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--short",
        action="store_true",
        help="CI's form (~10 min): 200 calls for 15 s per mode in 3 rounds, a 20 s Collector "
        "outage, 10 s HTTP and Collector runs, 3 hot-path rounds, 3 rounds of the framework "
        "adapter (~1 min), 15 turns per freshness run, dashboard panels over a day of metrics",
    )
    parser.add_argument("--calls", help="engine loads, comma-separated (default 50,200,500)")
    parser.add_argument("--seconds", type=float, help="per engine run (default 30)")
    parser.add_argument("--http-seconds", type=float, help="per wrk and vegeta run (default 20)")
    parser.add_argument(
        "--only",
        help=f"comma-separated parts of {','.join(PARTS)}; the figures go to a directory under "
        "~/.cache/voiceobs/bench/ and bench/results and the docs are left as they are",
    )
    args = parser.parse_args(argv)
    args.calls = [
        int(n) for n in (args.calls or ("200" if args.short else "50,200,500")).split(",")
    ]
    args.seconds = args.seconds or (15.0 if args.short else 30.0)
    args.http_seconds = args.http_seconds or (10.0 if args.short else 20.0)
    args.rounds = 3 if args.short else 5
    args.collector_seconds = 10.0 if args.short else 30.0
    args.outage_seconds = 20.0 if args.short else 60.0
    args.freshness_turns = 15 if args.short else 60
    args.parts = args.only.split(",") if args.only else list(PARTS)
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    if any(n < 1 for n in args.calls) or not 6 <= args.seconds <= 600:
        parser.error("calls must be ≥ 1 and seconds between 6 and 600")
    if not 3 <= args.http_seconds <= 300:
        parser.error("--http-seconds must be between 3 and 300")
    return args


def hotpath(rounds: int) -> list[Figure]:
    """The hot-path part, in a process of its own so no other process of the suite counts."""
    print("[bench] hot path", flush=True)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.hotpath", "--json", f"--rounds={rounds}"],
        cwd=REPO_ROOT,
        env=engine_load.clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise HarnessError(f"the hot-path bench failed: {proc.stderr[-2000:]}")
    return [Figure.from_dict(d) for d in json.loads(proc.stdout.strip().splitlines()[-1])]


def _wrk_version() -> str:
    out = subprocess.run([str(wrk()), "-v"], capture_output=True, text=True, check=False)
    words = (out.stdout + out.stderr).split()
    return words[1] if len(words) > 1 else "unknown"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    collector_version = collector_binary().parent.name.split("-")[2]
    if "http" in args.parts:
        vegeta()
    machine = report.machine(collector_version, _wrk_version())
    figures: list[Figure] = []
    try:
        with PrivateCollector() as collector:
            if "engine" in args.parts:
                figures += engine_load.measure(args.calls, args.seconds, args.rounds, collector)
            if "outage" in args.parts:
                figures += collector_outage.measure(args.outage_seconds, collector)
            if "http" in args.parts:
                figures += http_load.measure(args.http_seconds, collector)
        if "hotpath" in args.parts:
            figures += hotpath(args.rounds)
        if "collector" in args.parts:
            figures += collector_throughput.measure(args.collector_seconds)
        if "frameworks" in args.parts:
            figures += frameworks.measure(args.short)
        if "freshness" in args.parts:
            figures += freshness.measure(args.freshness_turns)
        if "panels" in args.parts:
            figures += panels.measure(args.short)
        if "loki" in args.parts:
            figures += loki_lean.measure(args.short)
    except (
        HarnessError,
        panels.PanelBenchError,
        loki_lean.LokiBenchError,
        subprocess.SubprocessError,
        OSError,
    ) as exc:
        print(f"bench: harness error: {exc}", file=sys.stderr)
        return 1
    report.print_table(figures)
    whole_run = set(args.parts) == set(PARTS)
    results_dir = report.RESULTS_DIR if whole_run else report.partial_results_dir(args.parts)
    report.write_results(figures, machine, results_dir)
    how = (
        f"{'short' if args.short else 'full'} form: engine load at "
        f"{', '.join(str(n) for n in args.calls)} calls for {args.seconds:.0f} s per mode "
        f"({args.rounds} rounds at {engine_load.GOAL_CALLS}), "
        f"a Collector outage of {args.outage_seconds:.0f} s, "
        f"HTTP runs of {args.http_seconds:.0f} s, Collector throughput for "
        f"{args.collector_seconds:.0f} s, {args.freshness_turns} turns per freshness run, "
        f"dashboard panels over {(panels.SHORT if args.short else panels.FULL).days:g} d of "
        "synthetic metrics"
    )
    if whole_run:
        report.write_doc(figures, machine, how)
    else:
        how = f"{'short' if args.short else 'full'} form of {', '.join(args.parts)}"
    met, total = report.goals_summary(figures)
    print(
        f"\nbench: {met} of {total} goals met ({how}); {len(figures)} figures in "
        f"{results_dir} in {time.monotonic() - began:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
