"""Command line of the native stack: ``python -m stack VERB`` (see ``--help``)."""

from __future__ import annotations

import argparse
import sys

from stack import build, control, exposure
from stack.render import RenderError
from stack.services import services
from stack.settings import StackError, load


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stack", description="The native voiceobs monitoring stack."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    b = verbs.add_parser("build", help="build/install the pinned binaries (cached)")
    b.add_argument("only", nargs="*", help="services to build (default: all)")
    verbs.add_parser("up", help="start every service under supervisord and wait until ready")
    verbs.add_parser("down", help="stop every service and supervisord")
    verbs.add_parser("status", help="state, pid, RSS and readiness of each service")
    lg = verbs.add_parser("logs", help="show (or follow with -f) service logs")
    lg.add_argument("services", nargs="*")
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("-n", "--lines", type=int, default=40)
    verbs.add_parser("render", help="render prometheus.yml into the state dir")
    verbs.add_parser("validate", help="render and check every config with its own tool")
    rs = verbs.add_parser("restart", help="restart one service and wait until it is ready")
    rs.add_argument("service")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load()
    try:
        if args.verb == "build":
            build.build_all(args.only)
        elif args.verb == "up":
            control.up(settings)
        elif args.verb == "down":
            control.down(settings)
        elif args.verb == "status":
            return 0 if control.status(settings) else 3
        elif args.verb == "logs":
            control.logs(settings, args.services, args.follow, args.lines)
        elif args.verb == "render":
            control.render_configs(settings)
            print(settings.prometheus_config)
        elif args.verb == "validate":
            control.render_configs(settings)
            control.validate(settings, services(settings))
        elif args.verb == "restart":
            control.restart_service(settings, args.service)
    except (StackError, RenderError, exposure.ExposureError) as exc:
        print(f"stack {args.verb}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
