"""Who can reach the stack: the OTLP intake's bind address, its bearer token and TLS.

Closed by default, open by choice. Only the Collector's OTLP receivers may listen beyond
loopback, and only where ``VOICEOBS_STACK_OTLP_BIND`` says; Prometheus, Loki, Alertmanager,
Jaeger and the Collector's own telemetry, health, pprof and zpages stay on loopback. OTLP
bound beyond loopback must have both a bearer token and TLS, unless
``VOICEOBS_STACK_OTLP_INSECURE=true`` says the network itself is trusted (a private link, or
a proxy that terminates TLS and checks tokens).

Auth and TLS reach the Collector as a generated config overlay (``--config collector/config.yaml
--config <overlay>``), so ``collector/config.yaml`` stays the one shared pipeline. Both stacks
use this module: the native one through ``stack.settings`` and ``stack.control``; the Docker
one through ``python3 stack/exposure.py docker OVERLAY`` in ``monitor.mk`` (stdlib only, so it
runs outside the project's virtualenv).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

OTLP_BIND_ENV = "VOICEOBS_STACK_OTLP_BIND"
"""Host the OTLP receivers (4317 gRPC, 4318 HTTP) listen on, or publish on in Docker
(default ``127.0.0.1``). Nothing else follows it."""

OTLP_AUTH_ENV = "VOICEOBS_STACK_OTLP_AUTH"
"""``none`` (default) or ``bearer``: senders must present ``Authorization: Bearer <token>``
with a token listed in ``<secrets>/otlp/token`` (one per line; generated when missing)."""

OTLP_TLS_ENV = "VOICEOBS_STACK_OTLP_TLS"
"""``true`` serves OTLP over TLS with ``<secrets>/otlp/tls.crt`` and ``tls.key`` (default
``false``)."""

OTLP_INSECURE_ENV = "VOICEOBS_STACK_OTLP_INSECURE"
"""``true`` allows OTLP beyond loopback without token or TLS (default ``false``)."""

LIFECYCLE_ENV = "VOICEOBS_STACK_ENABLE_LIFECYCLE"
"""``true`` turns on Prometheus' ``/-/reload`` and ``/-/quit`` (default ``false``: reload
with SIGHUP, as ``make monitor-reload`` and ``stack.control.reload`` do)."""

SECRETS_DIR_ENV = "VOICEOBS_STACK_SECRETS_DIR"
"""Directory of the stack's secrets; OTLP's are in its ``otlp/`` subdirectory."""

AUTH_EXTENSION = "bearertokenauth/otlp"
"""The authenticator's component id in the overlay."""

# What the overlay reads: the Collector's own file-path variables, set by each stack.
TOKEN_FILE_VAR = "COLLECTOR_OTLP_TOKEN_FILE"
CERT_FILE_VAR = "COLLECTOR_OTLP_TLS_CERT_FILE"
KEY_FILE_VAR = "COLLECTOR_OTLP_TLS_KEY_FILE"
SECRET_FILES = {TOKEN_FILE_VAR: "token", CERT_FILE_VAR: "tls.crt", KEY_FILE_VAR: "tls.key"}
"""Each variable's file name inside ``<secrets>/otlp/``."""

LOOPBACK = "127.0.0.1"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


class ExposureError(ValueError):
    """A setting that would open the stack further than the rules allow; names the setting."""


def flag(env: Mapping[str, str], name: str) -> bool:
    """A boolean setting; anything but a recognised word is an error naming the variable."""
    value = (env.get(name) or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ExposureError(f"{name}={env.get(name)!r}: use true or false")


def auth(env: Mapping[str, str]) -> str:
    value = (env.get(OTLP_AUTH_ENV) or "none").strip().lower()
    if value not in ("none", "bearer"):
        raise ExposureError(f"{OTLP_AUTH_ENV}={env.get(OTLP_AUTH_ENV)!r}: use none or bearer")
    return value


def otlp_bind(env: Mapping[str, str]) -> str:
    return (env.get(OTLP_BIND_ENV) or LOOPBACK).strip()


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; an empty host or 0.0.0.0 means every interface."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def check_otlp(env: Mapping[str, str], host: str | None = None) -> None:
    """Refuse OTLP beyond loopback without both token and TLS, unless explicitly insecure."""
    host = otlp_bind(env) if host is None else host
    use_auth, use_tls = auth(env) == "bearer", flag(env, OTLP_TLS_ENV)
    insecure = flag(env, OTLP_INSECURE_ENV)
    if is_loopback(host) or insecure or (use_auth and use_tls):
        return
    missing = [f"{OTLP_AUTH_ENV}=bearer"] if not use_auth else []
    missing += [f"{OTLP_TLS_ENV}=true"] if not use_tls else []
    raise ExposureError(
        f"OTLP would listen on {host!r} beyond loopback without {' and '.join(missing)} "
        f"(docs/security.md); set {OTLP_INSECURE_ENV}=true only if the network itself is "
        "trusted"
    )


def _base_extensions(config_text: str) -> list[str]:
    """The ``service.extensions`` flow list of the shared Collector config."""
    match = re.search(r"^service:\n(?:[ \t].*\n|\n)*?  extensions: \[([^\]]*)\]", config_text, re.M)
    if match is None:
        raise ExposureError("collector/config.yaml: no `service: extensions: [...]` flow list")
    return [item.strip() for item in match.group(1).split(",") if item.strip()]


def collector_overlay(env: Mapping[str, str], base_config: Path) -> dict[str, object]:
    """The config merged over ``base_config``: the authenticator and TLS on both OTLP
    protocols, as the settings ask. Files are named by the ``COLLECTOR_OTLP_*_FILE``
    variables, so one overlay serves native paths and container paths alike."""
    overlay: dict[str, object] = {}
    protocol: dict[str, object] = {}
    if auth(env) == "bearer":
        overlay["extensions"] = {AUTH_EXTENSION: {"filename": f"${{env:{TOKEN_FILE_VAR}}}"}}
        extensions = _base_extensions(base_config.read_text(encoding="utf-8"))
        overlay["service"] = {"extensions": [*extensions, AUTH_EXTENSION]}
        protocol["auth"] = {"authenticator": AUTH_EXTENSION}
    if flag(env, OTLP_TLS_ENV):
        protocol["tls"] = {
            "cert_file": f"${{env:{CERT_FILE_VAR}}}",
            "key_file": f"${{env:{KEY_FILE_VAR}}}",
            "min_version": "1.2",
        }
    if protocol:
        overlay["receivers"] = {"otlp": {"protocols": {"grpc": protocol, "http": protocol}}}
    return overlay


def write_overlay(env: Mapping[str, str], base_config: Path, output: Path) -> Path:
    """Check the rules and write the overlay (JSON, which YAML reads) atomically."""
    check_otlp(env)
    flag(env, LIFECYCLE_ENV)
    overlay = collector_overlay(env, base_config)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    header = (
        "# GENERATED by stack/exposure.py from the VOICEOBS_STACK_OTLP_* settings; "
        "merged over collector/config.yaml.\n"
    )
    tmp.write_text(header + json.dumps(overlay, indent=2) + "\n", encoding="utf-8")
    tmp.replace(output)
    return output


def secret_paths(secrets_dir: Path) -> dict[str, str]:
    """The ``COLLECTOR_OTLP_*_FILE`` variables for files in ``<secrets_dir>/otlp/``."""
    return {var: str(secrets_dir / "otlp" / name) for var, name in SECRET_FILES.items()}


def prepare_secrets(env: Mapping[str, str]) -> list[str]:
    """Create a token when bearer auth is on and none exists (mode 0600); check that TLS
    files exist when TLS is on. Returns what a person should be told."""
    notes: list[str] = []
    if auth(env) == "bearer":
        token = Path(env[TOKEN_FILE_VAR])
        if not token.is_file() or not token.read_text(encoding="utf-8").strip():
            token.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(os.urandom(24).hex() + "\n")
            notes.append(f"generated an OTLP bearer token in {token}")
        notes.append(
            f"OTLP senders: OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20$(cat {token})"
        )
    if flag(env, OTLP_TLS_ENV):
        missing = [env[v] for v in (CERT_FILE_VAR, KEY_FILE_VAR) if not Path(env[v]).is_file()]
        if missing:
            raise ExposureError(
                f"{OTLP_TLS_ENV}=true but {', '.join(missing)} missing: put the certificate "
                "and its key there (PEM), or set the COLLECTOR_OTLP_TLS_*_FILE variables"
            )
    return notes


def main(argv: list[str] | None = None) -> int:
    """``exposure.py docker OVERLAY``: check the settings and write the Docker overlay."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "docker":
        print("usage: python3 stack/exposure.py docker OVERLAY", file=sys.stderr)
        return 2
    base = Path(__file__).resolve().parent.parent / "collector" / "config.yaml"
    try:
        write_overlay(os.environ, base, Path(args[1]))
    except (OSError, ExposureError) as exc:
        print(f"exposure: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
