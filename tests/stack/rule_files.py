"""The live stack's rule files, swapped for an edited copy while a test needs it.

Prometheus reads ``rules/*.yml`` beside its rendered config (a link to prometheus/rules);
``edited_rules`` points that link at an edited copy, reloads Prometheus, and puts the link
back (and reloads again) when the block ends.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from stack import control
from stack.settings import StackSettings


@contextmanager
def edited_rules(stack: StackSettings, name: str, edit: Callable[[Path], None]) -> Iterator[None]:
    """The stack's rules as ``edit`` leaves a copy of them (in the state dir's ``name``)."""
    link = stack.prometheus_config.parent / "rules"
    source = Path(os.readlink(link))
    copy = stack.prometheus_config.parent / name
    shutil.copytree(source, copy, dirs_exist_ok=True)
    edit(copy)
    link.unlink()
    link.symlink_to(copy, target_is_directory=True)
    control.reload(stack, "prometheus")  # SIGHUP: the lifecycle endpoints are off
    try:
        yield
    finally:
        link.unlink()
        link.symlink_to(source, target_is_directory=True)
        control.reload(stack, "prometheus")


def every_group_at_the_global_interval(rules: Path) -> None:
    """Drop each group's own ``interval``, so every group is evaluated at the stack's
    evaluation interval (15 s): the 5-minute group's series then follow a demo within
    seconds instead of up to 5 minutes. Its expressions are untouched, so each sample is
    still one 5-minute window's increase; but the windows overlap, so a panel's sum over a
    range is about 20 times what the 5-minute group gives. Tests using this check that
    panels show the demo's data; tests/grafana/test_panel_truth.py checks the sums at the
    group's own interval."""
    for path in rules.glob("*.yml"):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in doc["groups"]:
            group.pop("interval", None)
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
