"""Render a config template whose placeholders are ``${NAME:-default}`` (or
``${NAME}``, which must then be set) from environment variables.

Prometheus and Alertmanager do not expand environment variables, so their
addresses live in templates rendered by this one function, for the native stack
(defaults: 127.0.0.1 addresses) and the Docker stack (service names in env).
Other ``$`` uses (``$1``, ``${1}`` in relabel rules) and comment lines are left
alone.

Usage: ``python stack/render.py TEMPLATE OUTPUT`` (values from the environment).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

_PLACEHOLDER = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?::-(?P<default>[^}]*))?\}")


class RenderError(ValueError):
    """A placeholder without a default whose variable is not set."""


def render(template: str, env: Mapping[str, str]) -> str:
    """Replace each placeholder with its variable's value, else its default."""
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group("name"), match.group("default")
        value = env.get(name)
        if value:
            return value
        if default is not None:
            return default
        missing.append(name)
        return match.group(0)

    # Comment lines are copied as they are: they document the placeholders.
    result = "".join(
        line if line.lstrip().startswith("#") else _PLACEHOLDER.sub(substitute, line)
        for line in template.splitlines(keepends=True)
    )
    if missing:
        raise RenderError(f"unset variables without a default: {', '.join(sorted(set(missing)))}")
    return result


def render_file(template: Path, output: Path, env: Mapping[str, str]) -> Path:
    """Render ``template`` into ``output`` (written atomically) and return it."""
    text = render(template.read_text(encoding="utf-8"), env)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(
        f"# GENERATED from {template.name} by stack/render.py; edit the template.\n{text}",
        encoding="utf-8",
    )
    tmp.replace(output)
    return output


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python stack/render.py TEMPLATE OUTPUT", file=sys.stderr)
        return 2
    try:
        render_file(Path(args[0]), Path(args[1]), os.environ)
    except (OSError, RenderError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
