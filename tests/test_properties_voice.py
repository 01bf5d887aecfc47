"""Property tests of the voice API's arguments: random values and random orders of calls give
either what the engine asked for or the documented ``TypeError``/``ValueError`` naming the
argument, at the call. Nothing fails later on the export side, and everything exported can be
encoded as OTLP (one bad value must not cost a whole batch)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from tests.conftest import make_telemetry
from voiceobs import semconv as sc

_scalar = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=4)
)
_anything = _scalar | st.lists(_scalar, max_size=2) | st.dictionaries(st.text(max_size=3), _scalar)
_text = st.text(max_size=40) | st.sampled_from(["", "deepgram", "gpt-4o-mini", "+1 415 555 0134"])
_moment = (
    st.none()
    | st.floats(min_value=1.6e9, max_value=1.9e9)
    | st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7))]) | st.none(),
    )
    | _anything
)


@st.composite
def _mostly(draw: st.DrawFn, good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
    """``good`` seven times in eight, so that enough calls start to exercise what follows."""
    return draw(bad) if draw(st.integers(0, 7)) == 0 else draw(good)


_mostly_text = _mostly(_text, _anything)
_mostly_moment = _mostly(st.none(), _moment)
_amount = (
    st.integers(min_value=0, max_value=5000) | st.floats(min_value=0, max_value=60) | _anything
)

_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("turn"), _moment),
        st.tuples(st.just("speech_ended"), _moment),
        st.tuples(st.just("eou"), _moment, _text | _anything, _text | _anything),
        st.tuples(st.just("audio_started"), _moment),
        st.tuples(st.just("interrupt"), _moment),
        st.tuples(
            st.just("stage"),
            st.sampled_from(["stt", "llm", "tts", "tool"]) | _text | _anything,
            _text | _anything,
            _text | _anything,
            _moment,
        ),
        st.tuples(st.just("first_chunk"), _moment),
        st.tuples(st.just("usage"), _amount, _amount, _amount, _amount),
        st.tuples(st.just("transcript"), _text | _anything),
        st.tuples(st.just("stage_fail"), _text | _anything),
        st.tuples(st.just("stage_end"), _moment),
        st.tuples(st.just("turn_end"), _moment),
        st.tuples(
            st.just("restart"), _text | _anything, _text | _anything, _text | _anything, _moment
        ),
        st.tuples(st.just("jitter"), st.sampled_from(["inbound", "outbound"]) | _anything, _amount),
        st.tuples(st.just("call_fail"), _text | _anything, _text | _anything),
    ),
    max_size=12,
)


def _apply(call: Any, steps: list[tuple[Any, ...]]) -> None:
    """Each step against the latest turn and stage; only the documented errors may come out."""
    turn: Any = None
    stage: Any = None
    for step in steps:
        name, *args = step
        try:
            if name == "turn":
                turn, stage = call.turn(at=args[0]), None
            elif name == "restart":
                call.stream_restart(args[0], args[1], args[2], at=args[3])
            elif name == "jitter":
                call.jitter_buffer(args[0]).sample(args[1])
            elif name == "call_fail":
                call.fail(args[0], args[1])
            elif turn is None:
                continue
            elif name == "speech_ended":
                turn.user_speech_ended(at=args[0])
            elif name == "eou":
                turn.eou_detected(args[0], provider=args[1], model=args[2])
            elif name == "audio_started":
                turn.agent_audio_started(at=args[0])
            elif name == "interrupt":
                turn.interrupt(at=args[0])
            elif name == "stage":
                stage = turn.stage(args[0], args[1], args[2], at=args[3])
            elif name == "turn_end":
                turn.end(at=args[0])
            elif stage is None:
                continue
            elif name == "first_chunk":
                stage.first_chunk(at=args[0])
            elif name == "usage":
                stage.usage(
                    audio_seconds=args[0],
                    input_tokens=args[1],
                    output_tokens=args[2],
                    characters=args[3],
                )
            elif name == "transcript":
                stage.transcript(args[0])
            elif name == "stage_fail":
                stage.fail(args[0])
            elif name == "stage_end":
                stage.end(at=args[0])
        except (TypeError, ValueError) as exc:
            assert str(exc), f"{name}: an error without a message"


def test_random_arguments_raise_only_documented_errors_and_always_export(
    caplog: pytest.LogCaptureFixture,
) -> None:
    telemetry = make_telemetry(export_transcripts=True, label_limit=20)
    caplog.set_level(logging.WARNING, logger="voiceobs")
    calls = 0
    waiting: list[Any] = []  # hung up with a stage never ended: recorded after a grace

    @given(
        call_id=_mostly_text,
        tenant=_mostly_text,
        pipeline=_mostly_text,
        caller=st.one_of(st.none(), _mostly_text),
        direction=st.one_of(st.sampled_from(["inbound", "outbound"]), _mostly_text),
        start=_mostly_moment,
        steps=_STEPS,
        end=_moment,
        status=st.none() | st.sampled_from(sc.CALL_STATUSES) | _text | _anything,
    )
    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    def run(**drawn: Any) -> None:
        nonlocal calls
        try:
            call = telemetry.obs.call(
                drawn["call_id"],
                tenant=drawn["tenant"],
                pipeline=drawn["pipeline"],
                caller=drawn["caller"],
                direction=drawn["direction"],
                at=drawn["start"],
            )
        except (TypeError, ValueError) as exc:
            assert str(exc)
            return
        calls += 1
        _apply(call, drawn["steps"])
        try:
            call.end(at=drawn["end"], status=drawn["status"])
        except (TypeError, ValueError):
            call.end()  # a bad end leaves the call open: the engine hangs up again
        if call.open_stages:
            waiting.append(call)

    run()
    telemetry.flush()
    materialiser = telemetry.obs.materialiser
    for call in waiting:  # their grace (60 s at most) passes now
        materialiser._calls[call.span_id].seen_ns -= 61 * 10**9
    telemetry.obs.transport.recorder.submit(lambda _: materialiser.every_second(), None)
    spans = telemetry.finished_spans()
    metrics = telemetry.reader.get_metrics_data()
    dropped = telemetry.metrics().get(sc.TELEMETRY_DROPPED.name)
    not_ended = sum(
        point.value
        for point in (dropped.data.data_points if dropped else ())
        if (point.attributes or {}).get(sc.L_REASON) == "stage_not_ended"
    )
    telemetry.obs.shutdown()
    assert calls > 50, "too few calls got past their arguments to test anything"
    assert not [r for r in caplog.records if "could not record" in r.getMessage()]
    encode_spans(spans)  # raises on a value OTLP cannot carry
    assert metrics is not None
    encode_metrics(metrics)
    call_spans = [s for s in spans if s.name == sc.SPAN_CALL]
    assert len(call_spans) == calls
    assert not_ended == len(waiting)
