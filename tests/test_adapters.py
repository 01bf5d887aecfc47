"""The event adapter: dict events become the same telemetry; bad events are rejected."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.conftest import Telemetry, make_telemetry
from voiceobs import semconv as sc
from voiceobs.adapters import (
    EVENT_FIELDS,
    EXPIRE_PER_EVENT,
    MAX_OPEN_CALLS,
    REASONS,
    EventAdapter,
)

T0 = 1_800_000_000.0


def events(call_id: str = "ev-1") -> list[dict[str, Any]]:
    return [
        {"schema": "voiceobs.event/v1", "type": "call.started", "call_id": call_id, "ts": T0,
         "tenant": "acme", "pipeline": "support", "caller": "+1 415 555 0100"},
        {"type": "turn.started", "call_id": call_id, "ts": T0 + 1},
        {"type": "stage.started", "call_id": call_id, "ts": T0 + 1, "stage": "stt", "provider": "deepgram", "model": "nova-3"},
        {"type": "user.speech_ended", "call_id": call_id, "ts": T0 + 2},
        {"type": "eou.detected", "call_id": call_id, "ts": T0 + 2.1},
        {"type": "stage.first_chunk", "call_id": call_id, "ts": T0 + 2.15, "stage": "stt"},
        {"type": "stage.usage", "call_id": call_id, "stage": "stt", "audio_seconds": 1.0},
        {"type": "stage.ended", "call_id": call_id, "ts": T0 + 2.15, "stage": "stt"},
        {"type": "stage.started", "call_id": call_id, "ts": T0 + 2.15, "stage": "llm", "provider": "openai"},
        {"type": "stage.first_chunk", "call_id": call_id, "ts": T0 + 2.4, "stage": "llm"},
        {"type": "stage.ended", "call_id": call_id, "ts": T0 + 2.9, "stage": "llm", "error": "timeout"},
        {"type": "agent.audio_started", "call_id": call_id, "ts": T0 + 2.6},
        {"type": "jitter.sample", "call_id": call_id, "depth_s": 0.04},
        {"type": "stream.restarted", "call_id": call_id, "provider": "deepgram", "component": "stt", "reason": "network"},
        {"type": "turn.interrupted", "call_id": call_id, "ts": T0 + 3},
        {"type": "turn.ended", "call_id": call_id, "ts": T0 + 3},
        {"type": "provider.circuit", "provider": "openai", "state": "half_open"},
        {"type": "call.ended", "call_id": call_id, "ts": T0 + 4, "status": "completed"},
    ]  # fmt: skip


def test_a_call_told_as_events_becomes_spans_and_metrics(telemetry: Telemetry) -> None:
    adapter = telemetry.obs.events
    results = [adapter.handle(e) for e in events()]
    assert all(r.accepted for r in results), [r for r in results if not r.accepted]
    turn = telemetry.span(sc.SPAN_TURN)
    assert turn.attributes[sc.TURN_LATENCY] == pytest.approx(0.6)
    assert turn.attributes[sc.TURN_INTERRUPTED] is True
    assert telemetry.span(sc.SPAN_LLM).attributes[sc.ERROR_TYPE] == "timeout"
    assert telemetry.span(sc.SPAN_CALL).attributes[sc.CALL_ID] == "ev-1"
    assert adapter.open_calls == 0
    metrics = telemetry.metrics()
    assert metrics[sc.CIRCUIT_STATE.name].data.data_points[0].value == 1


@pytest.mark.parametrize(
    ("event", "reason", "detail"),
    [
        ("not a dict", "invalid_event", "an event is a mapping"),
        (
            {"schema": "voiceobs.event/v9", "type": "turn.started", "call_id": "x"},
            "unsupported_schema",
            "v9",
        ),
        ({"type": "call.exploded", "call_id": "x"}, "unknown_type", "call.exploded"),
        ({"type": "turn.started"}, "missing_field", "'call_id'"),
        ({"type": "turn.started", "call_id": "nobody"}, "unknown_call", "names no open call"),
        ({"type": "call.started", "call_id": "x", "ts": "yesterday"}, "bad_value", "'ts'"),
        ({"type": "call.started", "call_id": "x", "colour": "red"}, "unknown_field", "colour"),
        (
            {"type": "stream.restarted", "call_id": "x", "provider": "p"},
            "missing_field",
            "'component'",
        ),
        (
            {"type": "jitter.sample", "call_id": "x", "depth_s": -1},
            "bad_value",
            "'depth_s' must be a number from 0",
        ),
        ({"type": "turn.started", "call_id": "x", "ts": float("nan")}, "bad_value", "'ts'"),
        ({"type": "turn.started", "call_id": "x", "ts": 1e300}, "bad_value", "0 < ts < 9e+09"),
        (
            {"type": "stage.usage", "call_id": "x", "stage": "llm", "input_tokens": 2**70},
            "bad_value",
            "'input_tokens' must be an integer from 0 to 1e+12",
        ),
        (
            {"type": "stage.usage", "call_id": "x", "stage": "llm", "audio_seconds": float("inf")},
            "bad_value",
            "'audio_seconds'",
        ),
        ({"type": "turn.ended", "call_id": "x", 1: 2, None: 3}, "unknown_field", "allowed"),
        ({"type": "provider.circuit", "provider": "p", "state": "melted"}, "bad_value", "melted"),
    ],
)
def test_bad_events_are_rejected_with_a_reason_and_counted(
    telemetry: Telemetry, event: Any, reason: str, detail: str
) -> None:
    result = telemetry.obs.events.handle(event)
    assert not result.accepted
    assert result.reason == reason
    assert detail in result.detail
    (dropped,) = telemetry.metrics()[sc.TELEMETRY_DROPPED.name].data.data_points
    assert dropped.attributes == {sc.L_SIGNAL: "events", sc.L_REASON: reason}
    assert dropped.value == 1


def test_out_of_order_events_are_rejected_not_raised(telemetry: Telemetry) -> None:
    adapter = telemetry.obs.events
    assert adapter.handle({"type": "call.started", "call_id": "o-1"}).accepted
    assert (
        adapter.handle({"type": "agent.audio_started", "call_id": "o-1"}).reason == "no_open_turn"
    )
    assert adapter.handle({"type": "turn.started", "call_id": "o-1"}).accepted
    assert (
        adapter.handle({"type": "stage.ended", "call_id": "o-1", "stage": "tts"}).reason
        == "no_open_stage"
    )
    assert (
        adapter.handle(
            {"type": "stage.started", "call_id": "o-1", "stage": "asr", "provider": "p"}
        ).reason
        == "bad_value"
    )
    assert adapter.handle({"type": "call.started", "call_id": "o-1"}).reason == "duplicate_call"
    assert adapter.rejected == {
        "no_open_turn": 1,
        "no_open_stage": 1,
        "bad_value": 1,
        "duplicate_call": 1,
    }


class FakeClock:
    """The adapter's monotonic clock, moved by hand so expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _point(telemetry: Telemetry, metric: str, **labels: str) -> float:
    points = telemetry.metrics()[metric].data.data_points
    return sum(p.value for p in points if all(p.attributes.get(k) == v for k, v in labels.items()))


def test_calls_whose_end_was_lost_expire_and_free_their_slots() -> None:
    telemetry = make_telemetry(queue_size=100_000)  # room for every record this test makes
    clock = FakeClock()
    adapter = EventAdapter(telemetry.obs, clock=clock)
    try:
        for n in range(MAX_OPEN_CALLS):  # call.ended lost for every one of them
            started = adapter.handle({"type": "call.started", "call_id": f"lost-{n}"})
            assert started.accepted
        assert adapter.handle({"type": "call.started", "call_id": "new"}).reason == "too_many_calls"
        clock.now += telemetry.obs.settings.call_expiry_s
        assert adapter.handle({"type": "call.started", "call_id": "new"}).accepted
        assert adapter.expired == EXPIRE_PER_EVENT  # a bounded share of the backlog per event
        late = adapter.handle({"type": "turn.started", "call_id": f"lost-{MAX_OPEN_CALLS - 1}"})
        assert late.reason == "unknown_call"  # expired, though the backlog had not reached it
        while adapter.open_calls > 1:
            assert adapter.handle(
                {"type": "jitter.sample", "call_id": "new", "depth_s": 0}
            ).accepted
        assert adapter.expired == MAX_OPEN_CALLS
        assert telemetry.obs.transport.recorder.flush(
            60.0
        )  # 10 000 calls' spans and points to write
        abandoned = _point(telemetry, sc.CALLS.name, **{sc.L_STATUS: "abandoned"})
        expired = _point(
            telemetry,
            sc.TELEMETRY_DROPPED.name,
            **{sc.L_SIGNAL: "events", sc.L_REASON: "call_expired"},
        )
        assert (abandoned, expired) == (MAX_OPEN_CALLS, MAX_OPEN_CALLS)
    finally:
        telemetry.obs.shutdown()


def test_a_call_expires_after_its_last_event_not_its_start(telemetry: Telemetry) -> None:
    clock = FakeClock()
    adapter = EventAdapter(telemetry.obs, clock=clock)
    expiry = telemetry.obs.settings.call_expiry_s
    for call_id in ("quiet", "busy"):
        assert adapter.handle({"type": "call.started", "call_id": call_id}).accepted
    clock.now += expiry - 1
    assert adapter.handle({"type": "turn.started", "call_id": "busy"}).accepted
    clock.now += 1
    assert adapter.handle({"type": "turn.started", "call_id": "quiet"}).reason == "unknown_call"
    assert adapter.handle({"type": "call.ended", "call_id": "busy"}).accepted
    assert adapter.expired == 1
    quiet = telemetry.span(sc.SPAN_CALL, **{sc.CALL_ID: "quiet"})
    assert quiet.attributes[sc.CALL_STATUS] == "abandoned"


def stage(kind: str, stage_name: str, call_id: str = "p-1", **fields: Any) -> dict[str, Any]:
    return {"type": kind, "call_id": call_id, "stage": stage_name, **fields}


def test_parallel_stages_of_one_kind_are_told_apart_by_stage_id(telemetry: Telemetry) -> None:
    adapter = telemetry.obs.events
    results = [
        adapter.handle(e)
        for e in [
            {"type": "call.started", "call_id": "p-1", "ts": T0},
            {"type": "turn.started", "call_id": "p-1", "ts": T0},
            stage("stage.started", "tool", ts=T0 + 1, stage_id="a", provider="weather"),
            stage("stage.started", "tool", ts=T0 + 1, stage_id="b", provider="calendar"),
            stage("stage.ended", "tool", ts=T0 + 2, stage_id="b"),
            stage("stage.ended", "tool", ts=T0 + 4, stage_id="a", error="timeout"),
            {"type": "call.ended", "call_id": "p-1", "ts": T0 + 5},
        ]
    ]
    assert all(r.accepted for r in results), [r for r in results if not r.accepted]
    tools = {s.attributes[sc.GEN_AI_TOOL_NAME]: s for s in telemetry.finished_spans()
             if s.name.startswith(sc.SPAN_TOOL)}  # fmt: skip
    durations = {name: (s.end_time - s.start_time) / 1e9 for name, s in tools.items()}
    assert durations == {"weather": pytest.approx(3.0), "calendar": pytest.approx(1.0)}
    assert tools["weather"].attributes[sc.ERROR_TYPE] == "timeout"


def test_a_second_open_stage_without_id_is_rejected_not_replacing_the_first(
    telemetry: Telemetry,
) -> None:
    adapter = telemetry.obs.events
    for event in (
        {"type": "call.started", "call_id": "p-1", "ts": T0},
        {"type": "turn.started", "call_id": "p-1", "ts": T0},
        stage("stage.started", "tool", ts=T0 + 1, provider="weather"),
    ):
        assert adapter.handle(event).accepted
    second = adapter.handle(stage("stage.started", "tool", ts=T0 + 2, provider="calendar"))
    assert (second.reason, "'stage_id'" in second.detail) == ("stage_already_open", True)
    for event in (
        stage("stage.ended", "tool", ts=T0 + 3),
        stage("stage.usage", "tool", input_tokens=5),  # usage may come after the end
        stage("stage.started", "tool", ts=T0 + 3, provider="calendar"),  # one after the other
        stage("stage.ended", "tool", ts=T0 + 4),
        {"type": "call.ended", "call_id": "p-1", "ts": T0 + 5},
    ):
        assert adapter.handle(event).accepted, event
    tools = [s for s in telemetry.finished_spans() if s.name.startswith(sc.SPAN_TOOL)]
    assert sorted((s.attributes[sc.GEN_AI_TOOL_NAME], s.start_time) for s in tools) == [
        ("calendar", int((T0 + 3) * 1e9)),
        ("weather", int((T0 + 1) * 1e9)),
    ]
    assert adapter.rejected == {"stage_already_open": 1}


FUZZ_VALUES: list[Any] = [
    None, True, 0, -1, 7, 2**70, 0.5, float("nan"), float("inf"), 1e300, T0, "", "x",
    "stt", "tool", "completed", "open", [], {}, ["a"], {"k": 1},
]  # fmt: skip
PLAUSIBLE: list[Any] = ["stt", "llm", "tool", "a", "open", "completed", 7, 0.5]
FUZZ_TYPES: list[Any] = [*EVENT_FIELDS, "call.exploded", None, 3]
ALL_FIELDS = sorted({name for spec in EVENT_FIELDS.values() for name in spec})


def fuzz_event(rng: random.Random) -> Any:
    """A random event: mostly of a known type with that type's fields, any values."""
    kind = rng.choice(FUZZ_TYPES)
    spec = EVENT_FIELDS.get(kind, {}) if isinstance(kind, str) else {}
    names = [*spec] if spec and rng.random() < 0.7 else [*ALL_FIELDS, "ts", 1, None]
    event: dict[Any, Any] = {
        name: rng.choice(PLAUSIBLE if rng.random() < 0.7 else FUZZ_VALUES)
        for name in rng.sample(names, rng.randint(0, len(names)))
    }
    event.update(type=kind, call_id=rng.choice(["ev-1", "ev-2", "ev-1", "ev-2", 7, ""]))
    if rng.random() < 0.05:
        event["schema"] = rng.choice(["voiceobs.event/v1", "voiceobs.event/v2", None, 1])
    return event if rng.random() < 0.98 else rng.choice([None, "call.started", [event]])


def test_any_input_is_accepted_or_a_counted_rejection_naming_a_reason(
    telemetry: Telemetry,
) -> None:
    rng = random.Random(8)
    adapter = telemetry.obs.events
    results = [adapter.handle(fuzz_event(rng)) for _ in range(5000)]  # none may raise
    rejected = [r for r in results if not r.accepted]
    for result in rejected:
        assert result.reason in REASONS and result.reason != "internal_error", result
        assert result.detail, result
    assert len(rejected) < len(results)  # some got through to the voice API
    assert sum(adapter.rejected.values()) == len(rejected)
    assert _point(telemetry, sc.TELEMETRY_DROPPED.name, **{sc.L_SIGNAL: "events"}) == len(rejected)
