"""Session fixtures for the native-stack tests: build the binaries (cached) and run
the real stack in a temporary state directory on its standard ports."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stack import build, control  # noqa: E402
from stack.settings import StackError, StackSettings, load  # noqa: E402
from tests.stack.api_support import api_demo  # noqa: E402, F401  (one demo for the API's tests)
from tests.stack.rule_files import edited_rules, every_group_at_the_global_interval  # noqa: E402


@pytest.fixture(scope="session")
def stack_binaries() -> dict[str, Path]:
    """Every binary, built or installed once and cached across runs."""
    try:
        return build.build_all()
    except StackError as exc:
        pytest.fail(f"stack-build failed: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def stack_settings(
    tmp_path_factory: pytest.TempPathFactory, stack_binaries: dict[str, Path]
) -> StackSettings:
    """Settings for a throw-away state dir (rendered configs live there)."""
    state = tmp_path_factory.mktemp("state")
    settings = load({**os.environ, "VOICEOBS_STACK_STATE_DIR": str(state)})
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    control.render_configs(settings)
    return settings


@pytest.fixture(scope="session")
def stack(stack_settings: StackSettings) -> Iterator[StackSettings]:
    """The running native stack; stopped at the end of the session."""
    try:
        control.check_ports(stack_settings)
    except StackError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        control.up(stack_settings)
    except StackError as exc:
        control.down(stack_settings)
        pytest.fail(f"stack-up failed: {exc}", pytrace=False)
    yield stack_settings
    control.down(stack_settings)


@pytest.fixture(scope="module")
def rules_at_stack_interval(stack: StackSettings) -> Iterator[None]:
    """Every rule group evaluated at the stack's interval for this module's tests, the
    5-minute group included (see rule_files.every_group_at_the_global_interval)."""
    with edited_rules(stack, "rules-stack-interval", every_group_at_the_global_interval):
        yield


FIGURES = pytest.StashKey[list[str]]()
"""Lines the fault tests report (sent vs stored), shown at the end of the run."""


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Print a figure and keep it for the run's summary (pytest captures prints)."""
    lines = request.config.stash.setdefault(FIGURES, [])

    def say(line: str) -> None:
        print(line)
        lines.append(line)

    return say


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("faults: sent vs stored")
        for line in lines:
            terminalreporter.write_line(line)
