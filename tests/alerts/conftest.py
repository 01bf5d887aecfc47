"""Fixtures for the alerting tests: the Prometheus tools, or a clear failure without them."""

from __future__ import annotations

import shutil

import pytest


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
def amtool() -> str:
    """Path of amtool (Debian package `prometheus-alertmanager`)."""
    return _tool("amtool", "prometheus-alertmanager")
