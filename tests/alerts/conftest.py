"""Fixtures for the alerting tests: the Prometheus tools, or a clear failure without them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stack.build import go_binaries  # noqa: E402
from stack.settings import StackError  # noqa: E402


@pytest.fixture(scope="session")
def prometheus() -> Path:
    """The native stack's Prometheus (the Docker image's version), built once with Go."""
    try:
        return go_binaries()["prometheus"].build()
    except StackError as exc:
        pytest.fail(f"building Prometheus failed: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def promtool(prometheus: Path) -> str:
    """promtool of the same build, beside the prometheus binary."""
    return str(prometheus.with_name("promtool"))


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
