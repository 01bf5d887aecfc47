"""The ``voiceobs`` command: ``demo``, ``report``, ``console`` and ``version``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from voiceobs.settings import SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voiceobs", description="voice AI observability")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the demo engine and call simulator (bounded)")
    demo.add_argument(
        "--calls", type=int, default=60, help="calls to simulate at most (default 60)"
    )
    demo.add_argument(
        "--duration", type=float, default=90.0, help="seconds to run at most (default 90)"
    )
    demo.add_argument("--rate", type=float, default=1.0, help="new calls per second (default 1)")
    demo.add_argument("--concurrency", type=int, default=8, help="calls at once (default 8)")
    demo.add_argument("--turns", default="2-7", help="turns per call, MIN-MAX (default 2-7)")
    demo.add_argument("--seed", type=int, default=1, help="random seed, for reproducible runs")
    demo.add_argument(
        "--speed", type=float, default=1.0, help="time compression (default 1 = real time)"
    )
    demo.add_argument("--slow", action="store_true", help="slow LLMs down: turn P95 above 800 ms")
    demo.add_argument(
        "--port", type=int, default=8080, help="engine port on 127.0.0.1 (default 8080)"
    )
    demo.add_argument("--prefix", default="demo", help="call id prefix (default demo)")
    demo.add_argument(
        "--engine",
        choices=("http", "pipecat"),
        default="http",
        help="http: the demo engine over HTTP (default); pipecat: a real Pipecat pipeline of "
        "fake services (needs voiceobs[pipecat])",
    )
    demo.add_argument("--json", type=Path, help="write each call's outcome to this JSON file")
    report = sub.add_parser("report", help="walk metric → exemplar → trace → logs on the stack")
    report.add_argument(
        "--service", default="voiceobs-demo", help="service.name (default voiceobs-demo)"
    )
    report.add_argument(
        "--window", default="15m", help="PromQL range for percentiles (default 15m)"
    )
    report.add_argument("--prometheus", default="http://127.0.0.1:9090")
    report.add_argument("--jaeger", default="http://127.0.0.1:16686")
    report.add_argument("--loki", default="http://127.0.0.1:3100")
    report.add_argument(
        "--console", default="http://127.0.0.1:8900", help="where `voiceobs console` serves"
    )
    console = sub.add_parser(
        "console", help="serve the dashboard API and the console page (VOICEOBS_API_* settings)"
    )
    console.add_argument("--host", help="bind address (default 127.0.0.1)")
    console.add_argument("--port", type=int, help="port (default 8900)")
    console.add_argument("--service", help="the engine's service.name (default voiceobs-demo)")
    console.add_argument(
        "--no-auth", action="store_true", help="serve without credentials (loopback binds only)"
    )
    sub.add_parser("version", help="print the version")
    return parser


def _turns(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise ValueError(f"--turns: {text!r} is not MIN-MAX, e.g. 2-7") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        from voiceobs import __version__

        print(__version__)
        return 0
    if args.command == "console":
        return _console(args)
    if args.command == "report":
        from voiceobs.report import Backends, run_report

        return run_report(
            args.service,
            window=args.window,
            backends=Backends(args.prometheus, args.jaeger, args.loki),
            console=args.console.rstrip("/"),
        )
    from voiceobs.demo.runner import run_demo
    from voiceobs.demo.simulator import SimOptions

    try:
        turns_min, turns_max = _turns(args.turns)
        if not 0 < args.speed <= 1000:
            raise ValueError("--speed: must be between 0 and 1000")
        if not 1024 <= args.port <= 65535:
            raise ValueError("--port: must be between 1024 and 65535")
        options = SimOptions(
            calls=args.calls,
            duration_s=args.duration,
            rate=args.rate,
            concurrency=args.concurrency,
            turns_min=turns_min,
            turns_max=turns_max,
            seed=args.seed,
            call_prefix=args.prefix,
        )
        if args.engine == "pipecat":
            from voiceobs.demo.pipecat_engine import run_pipecat_demo

            report = run_pipecat_demo(options, json_path=args.json)
        else:
            report = run_demo(
                options,
                port=args.port,
                speed=args.speed,
                slowdown=2.5 if args.slow else 1.0,
                json_path=args.json,
            )
    except (ValueError, SettingsError) as exc:
        print(f"voiceobs: {exc}", file=sys.stderr)
        return 2
    if not report.flushed:  # the demo's purpose is to feed the stack: say it did not
        print("voiceobs demo: telemetry did not reach the collector", file=sys.stderr)
        return 1
    return 0


def _console(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from voiceobs.api.server import ConsoleConfigError, serve
    from voiceobs.api.settings import ApiSettings

    overrides = {"host": args.host, "port": args.port, "service": args.service}
    if args.no_auth:
        overrides["auth"] = "off"
    try:
        settings = ApiSettings(**{k: v for k, v in overrides.items() if v is not None})
        serve(settings)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"voiceobs console: {fields}", file=sys.stderr)
        return 2
    except (ConsoleConfigError, ValueError) as exc:
        print(f"voiceobs console: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
