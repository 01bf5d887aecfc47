"""Every contract metric's Prometheus name is the one remote write really produces.

The Collector's ``prometheusremotewrite`` exporter names series with
``github.com/prometheus/otlptranslator`` (v1.0.0 in the pinned Collector 0.161,
``normalizeName``): name split on characters outside ``[a-zA-Z0-9:]``; the unit's UCUM
suffix (``s`` → ``seconds``, ``By`` → ``bytes``, ``1`` → nothing, ``{annotation}`` → nothing)
unless the name already has that token; ``total`` for monotonic counters; and ``ratio`` for a
gauge whose unit is exactly ``1``. The last rule turned ``voice_provider_circuit_state`` into
``voice_provider_circuit_state_ratio``, so the alert and the dashboard that use the documented
name matched nothing. The live check is ``tests/stack/test_contract_live.py``.
"""

from __future__ import annotations

import re

import pytest

from voiceobs import semconv as sc
from voiceobs.semconv import MetricSpec

UNITS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes",
    "MiBy": "mebibytes", "GiBy": "gibibytes", "1": "", "%": "percent",
}  # fmt: skip
PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}


def _unit_token(unit: str, table: dict[str, str]) -> str:
    unit = unit.strip()
    if not unit or "{" in unit or "}" in unit:
        return ""
    return re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9:]", "_", table.get(unit, unit))).strip("_")


def remote_write_name(spec: MetricSpec) -> str:
    """What otlptranslator's ``normalizeName`` makes of ``spec`` (suffixes on, no namespace)."""
    tokens = [t for t in re.split(r"[^a-zA-Z0-9:]+", spec.name) if t]
    main, _, per = spec.unit.partition("/")
    main_token = _unit_token(main, UNITS)
    per_token = f"per_{_unit_token(per, PER_UNITS)}" if _unit_token(per, PER_UNITS) else ""
    if main_token and main_token not in tokens:
        tokens.append(main_token)
    if per_token and per_token not in tokens:
        tokens.append(per_token)
    if spec.kind == "counter":
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if spec.unit == "1" and spec.kind in ("gauge", "observable_gauge"):
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    return "_".join(tokens)


ALL_SPECS = [*sc.VOICE_METRICS, sc.PROCESS_MEMORY_LIMIT]


@pytest.mark.parametrize("spec", ALL_SPECS, ids=[s.name for s in ALL_SPECS])
def test_documented_name_is_what_remote_write_produces(spec: MetricSpec) -> None:
    assert remote_write_name(spec) == spec.prometheus


def test_the_translation_rules_reproduce_the_circuit_state_bug() -> None:
    """With the old unit ``1`` the gauge gets ``_ratio`` (what Prometheus showed)."""
    old = MetricSpec(
        "voice.provider.circuit_state", "voice_provider_circuit_state", "gauge", "1", (), ""
    )
    assert remote_write_name(old) == "voice_provider_circuit_state_ratio"
    assert remote_write_name(sc.CIRCUIT_STATE) == "voice_provider_circuit_state"


def test_no_gauge_uses_unit_one() -> None:
    """A ``1`` gauge always gets ``_ratio``; the contract's dimensionless values use an
    annotation unit (``{state}``, ``{call}``) so their names carry no surprise suffix."""
    ones = [s.name for s in ALL_SPECS if s.unit == "1"]
    assert ones == []
