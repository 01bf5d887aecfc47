"""The Docker stack's alertmanager.yml: the repository's, with the local webhook made reachable.

Inside the Alertmanager container 127.0.0.1 is the container itself, so the native stack's
webhook address (``http://127.0.0.1:5001/alerts``, where the end-to-end tests and local
integrations listen) reaches nothing there. ``make monitor-render`` writes a copy whose webhook
URL is ``VOICEOBS_STACK_ALERT_WEBHOOK_URL`` (default: port 5001 of the Docker host) and whose
template path is absolute; every other line, secret files included, is the repository's.

Usage: ``python stack/alertmanager_docker.py SOURCE OUTPUT`` (the URL from the environment).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

WEBHOOK_ENV = "VOICEOBS_STACK_ALERT_WEBHOOK_URL"
NATIVE_WEBHOOK_URL = "http://127.0.0.1:5001/alerts"
DOCKER_WEBHOOK_URL = "http://host.docker.internal:5001/alerts"
TEMPLATES = "templates/*.tmpl"
DOCKER_TEMPLATES = "/etc/alertmanager/templates/*.tmpl"  # the repository's alertmanager/


class AlertmanagerConfigError(ValueError):
    """The setting or the source file cannot give a valid Docker configuration."""


def webhook_url(env: Mapping[str, str]) -> str:
    """The webhook URL for the Docker stack: the setting, checked, or the host's port 5001."""
    url = env.get(WEBHOOK_ENV) or DOCKER_WEBHOOK_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c in url for c in "'\n"):
        raise AlertmanagerConfigError(
            f"{WEBHOOK_ENV}={url!r}: want an http:// or https:// URL with a host "
            f"(no quote or newline), e.g. {DOCKER_WEBHOOK_URL}"
        )
    return url


def docker_config(source: str, env: Mapping[str, str]) -> str:
    """``source`` (alertmanager/alertmanager.yml) with the Docker webhook URL and template path."""
    replacements = {
        f"url: {NATIVE_WEBHOOK_URL}": f"url: '{webhook_url(env)}'",
        f"- {TEMPLATES}": f"- {DOCKER_TEMPLATES}",
    }
    for old, new in replacements.items():
        if source.count(old) != 1:
            raise AlertmanagerConfigError(f"alertmanager.yml must contain `{old}` exactly once")
        source = source.replace(old, new)
    return source


def write(source: Path, output: Path, env: Mapping[str, str]) -> Path:
    """Render ``source`` into ``output`` (replaced atomically: the container mounts its folder)."""
    text = docker_config(source.read_text(encoding="utf-8"), env)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.tmp")
    header = f"# GENERATED from {source.name} by stack/alertmanager_docker.py; edit the source.\n"
    partial.write_text(header + text, encoding="utf-8")
    partial.replace(output)
    return output


def main(args: list[str]) -> int:
    if len(args) != 2:
        print("usage: python stack/alertmanager_docker.py SOURCE OUTPUT", file=sys.stderr)
        return 2
    try:
        write(Path(args[0]), Path(args[1]), os.environ)
    except (AlertmanagerConfigError, OSError) as exc:
        print(f"alertmanager_docker: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
