"""Property tests: random and malformed events never raise and every rejection is counted."""

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_telemetry
from voiceobs.adapters import EVENT_FIELDS, REASONS

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
_fields = sorted(
    ({f for spec in EVENT_FIELDS.values() for f in spec} | {"schema", "ts"}) - {"type", "call_id"}
)
_event = st.fixed_dictionaries(
    {
        "type": st.sampled_from(sorted(EVENT_FIELDS)) | _json,
        "call_id": st.sampled_from(["a", "b"]) | _json,
    },
    optional={
        f: _json | st.sampled_from(["stt", "llm", "tts", "tool", "voiceobs.event/v1", 1.0])
        for f in _fields
    },
)


_BATCH = 10
"""Events per example: drawing a batch costs hypothesis far less than drawing one event per
example, so 10 000 events take half the time."""


def test_random_events_never_raise_and_every_rejection_is_counted() -> None:
    """>= 10 000 near-valid and arbitrary events: results only, known reasons, counts match."""
    t = make_telemetry()
    rejected: Counter[str] = Counter()
    handled = 0

    @settings(
        max_examples=10_000 // _BATCH,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(st.one_of(_event, _json), min_size=_BATCH, max_size=_BATCH))
    def run(events: list[Any]) -> None:
        nonlocal handled
        for event in events:
            result = t.obs.events.handle(event)
            handled += 1
            if not result.accepted:
                assert result.reason in REASONS, result
                assert result.reason != "internal_error", (event, result.detail)
                rejected[result.reason] += 1

    try:
        run()
        assert handled >= 10_000
        counted = Counter[str]()
        for point in t.metrics()["voiceobs.telemetry.dropped"].data.data_points:
            if point.attributes.get("signal") == "events" and point.attributes["reason"] in REASONS:
                counted[str(point.attributes["reason"])] += int(point.value)
        assert counted == rejected
    finally:
        t.obs.shutdown()
