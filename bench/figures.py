"""A benchmark figure: a value beside its baseline from the same run, the ratio, and the goal.

Every part of the suite returns a list of :class:`Figure`; :mod:`bench.report` writes each one to
``bench/results/<name>.json`` and all of them to docs/performance.md.
"""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass
from typing import Any

TIMES = "\N{MULTIPLICATION SIGN}"
_COMPARE = {"<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class Goal:
    """``value`` (or the ratio to the baseline, when ``on_ratio``) compared with ``limit``."""

    op: str
    limit: float
    on_ratio: bool = True

    def text(self, unit: str) -> str:
        sign = "≤" if self.op == "<=" else "≥"
        if self.on_ratio:
            return f"{sign} {self.limit:g}{TIMES}"
        return f"{sign} {self.limit:g} {unit}"


@dataclass(frozen=True)
class Figure:
    """One measured figure. ``baseline`` is the value it is compared with (same run)."""

    name: str
    group: str
    title: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str | None = None
    goal: Goal | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None:
            return None
        if self.baseline == 0:
            return None if self.value == 0 else math.inf
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        """Whether the goal is met; ``None`` without a goal or when the ratio is undefined."""
        if self.goal is None:
            return None
        measured = self.ratio if self.goal.on_ratio else self.value
        if measured is None:
            return None
        return bool(_COMPARE[self.goal.op](measured, self.goal.limit))

    def as_dict(self) -> dict[str, Any]:
        """Its fields, for passing between processes (:meth:`from_dict` reads them back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Figure:
        goal = data.get("goal")
        return cls(**{**data, "goal": None if goal is None else Goal(**goal)})

    def as_json(self, machine: dict[str, Any]) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "figure": self.name,
            "group": self.group,
            "title": self.title,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "ratio": None if ratio is None or math.isinf(ratio) else ratio,
            "goal": None if self.goal is None else {**asdict(self.goal), "text": self.goal_text},
            "met": self.met,
            "note": self.note,
            "machine": machine,
        }

    @property
    def goal_text(self) -> str:
        return "" if self.goal is None else self.goal.text(self.unit)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; ``values`` need not be sorted."""
    if not values:
        raise ValueError("no values to take a percentile of")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
