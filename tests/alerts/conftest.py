"""Fixtures for the alerting tests: the Prometheus tools, or a clear failure without them."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stack.build import go_binaries  # noqa: E402
from stack.settings import StackError  # noqa: E402


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH: install it with `apt-get install -y {package}` "
            "(`make test` does) and run the tests again.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool (Debian package `prometheus`)."""
    return _tool("promtool", "prometheus")


@pytest.fixture(scope="session")
def alertmanager() -> Path:
    """The native stack's Alertmanager (the Docker image's version), built once with Go."""
    try:
        return go_binaries()["alertmanager"].build()
    except StackError as exc:
        pytest.fail(f"building Alertmanager failed: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def amtool(alertmanager: Path) -> str:
    """amtool of the same build, beside the alertmanager binary."""
    return str(alertmanager.with_name("amtool"))
