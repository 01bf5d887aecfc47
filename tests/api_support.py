"""Credentials and settings shared by the dashboard API's tests."""

from __future__ import annotations

import socket
from pathlib import Path

from voiceobs.api import ApiSettings

VIEWER_KEY = "viewer-key-0123456789"
ADMIN_KEY = "admin-key-0123456789ab"
ACME_KEY = "acme-viewer-key-012345"
SECRET = "s" * 40


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def settings(tmp_path: Path, **extra: object) -> ApiSettings:
    keys = tmp_path / "keys"
    keys.write_text(
        f"# key role [tenant]\n{VIEWER_KEY} viewer\n{ADMIN_KEY} admin\n{ACME_KEY} viewer acme\n"
    )
    dead = _dead_url()
    values: dict[str, object] = {
        "api_keys_file": keys,
        "prometheus_url": dead,
        "jaeger_url": dead,
        "loki_url": dead,
        "audit_log": tmp_path / "audit.jsonl",
        "backend_timeout_s": 1.0,
    }
    values.update(extra)
    return ApiSettings(**values)  # type: ignore[arg-type]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
