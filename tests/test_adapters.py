"""The event adapter: dict events become the same telemetry; bad events are rejected."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Telemetry
from voiceobs import semconv as sc

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
        ({"type": "turn.started", "call_id": "nobody"}, "unknown_call", "has not started"),
        ({"type": "call.started", "call_id": "x", "ts": "yesterday"}, "bad_value", "'ts'"),
        ({"type": "call.started", "call_id": "x", "colour": "red"}, "unknown_field", "colour"),
        (
            {"type": "stream.restarted", "call_id": "x", "provider": "p"},
            "missing_field",
            "'component'",
        ),
        ({"type": "jitter.sample", "call_id": "x", "depth_s": -1}, "bad_value", "≥ 0"),
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
