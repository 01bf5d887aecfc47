"""The recording rules (prometheus/rules/*.yml) as data: each rule's name, expression, the
labels it keeps and how often its group is evaluated.

A recorded name is ``level:metric:operation`` and its level lists the labels kept, joined by
``_``; a label whose own name holds ``_`` (``failure_reason``) is read as one label, not two.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import yaml

from voiceobs import semconv

RULES = Path(__file__).resolve().parents[1] / "prometheus" / "rules"
_UNIT_S = {"s": 1, "m": 60, "h": 3600}
# Labels whose names contain "_": every label a voiceobs series carries, by semconv.
_JOINED = tuple(
    value
    for name, value in vars(semconv).items()
    if name.startswith("L_") and isinstance(value, str) and "_" in value
)


class RecordingRule(NamedTuple):
    record: str
    expr: str
    interval_s: int | None
    """The group's own evaluation interval; None: Prometheus' global evaluation_interval."""

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels the name's level keeps, e.g. job_tenant_pipeline → job, tenant, pipeline."""
        return level_labels(self.record)


def level_labels(record: str) -> tuple[str, ...]:
    level = record.split(":")[0]
    if not level:
        return ()
    for joined in _JOINED:
        level = level.replace(joined, joined.replace("_", "\0"))
    return tuple(part.replace("\0", "_") for part in level.split("_"))


def _seconds(duration: str) -> int:
    return int(duration[:-1]) * _UNIT_S[duration[-1]]


def iter_recording_rules(rules: Path = RULES) -> Iterator[RecordingRule]:
    """Every recording rule, in file and group order (a rule may read the ones before it)."""
    for path in sorted(rules.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            interval = _seconds(group["interval"]) if "interval" in group else None
            for rule in group["rules"]:
                if "record" in rule:
                    yield RecordingRule(rule["record"], rule["expr"], interval)
