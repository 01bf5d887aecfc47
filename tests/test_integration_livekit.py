"""The LiveKit adapter on a real AgentSession with small fake STT/LLM/TTS/VAD: three user
turns, the second one interrupted, then the session closes. One session (about 5 s) feeds
every assertion here."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from livekit.agents import Agent, AgentSession
from livekit.agents.llm import ChatMessage, LLMError
from livekit.agents.metrics import EOUMetrics
from livekit.agents.tts import TTSError
from livekit.agents.voice import SpeechHandle
from livekit.agents.voice.events import (
    CloseEvent,
    CloseReason,
    ConversationItemAddedEvent,
    ErrorEvent,
    MetricsCollectedEvent,
    SpeechCreatedEvent,
)
from opentelemetry.sdk.metrics.export import Metric
from opentelemetry.sdk.trace import ReadableSpan

from tests.conftest import Telemetry, make_telemetry
from tests.livekit_fakes import (
    COMPLETION_TOKENS,
    LLM_TTFT_S,
    MIN_SILENCE_S,
    PROMPT_TOKENS,
    STT_DELAY_S,
    TTS_TTFB_S,
    FakeAudioInput,
    FakeAudioOutput,
    FakeLLM,
    FakeSTT,
    FakeTTS,
    FakeVAD,
    Reply,
    Speech,
)
from voiceobs import semconv as sc
from voiceobs.integrations.livekit import attach

T0 = 1_800_000_000.0
SCRIPT = [
    Speech(0.1, 0.5, "Hello"),
    Speech(1.6, 2.0, "Tell me a story"),
    Speech(3.0, 3.5, "Stop please"),  # over the story, which lasts 3 s
]
REPLIES = {
    "Hello": Reply("Hi there.", 0.5),
    "Tell me a story": Reply("Once upon a time there was a fox.", 3.0),
    "Stop please": Reply("Okay.", 0.3),
}


async def _run_session(telemetry: Telemetry) -> AgentSession[Any]:
    stt = FakeSTT(SCRIPT)
    session: AgentSession[Any] = AgentSession(
        vad=FakeVAD(SCRIPT),
        stt=stt,
        llm=FakeLLM(REPLIES),
        tts=FakeTTS(REPLIES),
        turn_handling={
            "turn_detection": None,
            "endpointing": {"min_delay": 0.2, "max_delay": 1.0},
            "interruption": {"mode": "vad", "min_duration": 0.2},
        },
        aec_warmup_duration=None,
        user_away_timeout=None,
    )
    attach(telemetry.obs, session, call_id="lk-room-1", tenant="acme", pipeline="livekit")
    session.input.audio = FakeAudioInput()
    session.output.audio = FakeAudioOutput()
    await session.start(Agent(instructions="Answer briefly."))
    await stt.done.wait()
    await asyncio.sleep(0.6)
    session.emit(  # a provider's stream dropped and was re-opened
        "error",
        ErrorEvent(
            error=LLMError(
                timestamp=time.time(),
                label="fake",
                error=ConnectionError("reset"),
                recoverable=True,
            ),
            source=session.llm,
        ),
    )
    await session.aclose()
    return session


@pytest.fixture(scope="module")
def telemetry() -> Iterator[Telemetry]:
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith(("VOICEOBS_", "OTEL_")) and not name.startswith("OTEL_PYTHON_SDK"):
                env.delenv(name)
        t = make_telemetry()
        asyncio.run(_run_session(t))
        yield t
        t.obs.shutdown()


def _spans(telemetry: Telemetry, name: str) -> list[ReadableSpan]:
    found = [s for s in telemetry.finished_spans() if s.name == name]
    return sorted(found, key=lambda s: s.start_time or 0)


@pytest.fixture(scope="module")
def metrics(telemetry: Telemetry) -> dict[str, Metric]:
    """One collection for every test: exemplars reset on each."""
    return telemetry.metrics()


def _points(metrics: dict[str, Metric], name: str) -> list[Any]:
    return list(metrics[name].data.data_points)


def test_each_user_turn_is_a_turn_with_stt_llm_and_tts(telemetry: Telemetry) -> None:
    call = telemetry.span(sc.SPAN_CALL)
    assert call.attributes[sc.CALL_ID] == "lk-room-1"
    turns = _spans(telemetry, sc.SPAN_TURN)
    assert [t.attributes[sc.TURN_NUMBER] for t in turns] == [1, 2, 3]
    for turn in turns:
        assert turn.parent is not None and turn.parent.span_id == call.context.span_id
    for name in (sc.SPAN_STT, sc.SPAN_LLM, sc.SPAN_TTS):
        stages = _spans(telemetry, name)
        assert len(stages) == 3, name
        for stage, turn in zip(stages, turns, strict=True):
            assert stage.parent is not None and stage.parent.span_id == turn.context.span_id


def test_component_metrics_join_their_turn_by_speech_id(
    telemetry: Telemetry, metrics: dict[str, Metric]
) -> None:
    for llm in _spans(telemetry, sc.SPAN_LLM):
        assert llm.attributes[sc.GEN_AI_PROVIDER] == "openai"
        assert llm.attributes[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
        assert llm.attributes[sc.GEN_AI_INPUT_TOKENS] == PROMPT_TOKENS
        assert llm.attributes[sc.GEN_AI_OUTPUT_TOKENS] == COMPLETION_TOKENS
        assert LLM_TTFT_S <= llm.attributes[sc.STAGE_TTFC] < LLM_TTFT_S + 0.5
    tts = _spans(telemetry, sc.SPAN_TTS)
    assert [s.attributes[sc.TTS_CHARACTERS] for s in tts] == [
        len(r.text) + 1
        for r in REPLIES.values()  # the LLM's chunks end in a space
    ]
    assert {s.attributes[sc.GEN_AI_PROVIDER] for s in tts} == {"cartesia"}
    stt = _spans(telemetry, sc.SPAN_STT)
    assert {
        (s.attributes[sc.GEN_AI_PROVIDER], s.attributes[sc.GEN_AI_REQUEST_MODEL]) for s in stt
    } == {("deepgram", "nova-3")}
    (tokens,) = [
        p for p in _points(metrics, sc.LLM_TOKENS.name) if p.attributes[sc.L_TYPE] == "input"
    ]
    assert tokens.value == 3 * PROMPT_TOKENS


def test_turn_latency_comes_from_the_chat_messages(
    telemetry: Telemetry, metrics: dict[str, Metric]
) -> None:
    turns = _spans(telemetry, sc.SPAN_TURN)
    # The reply is generated pre-emptively, before the end-of-turn decision, but played
    # only after it.
    for turn in turns:
        eou_delay = turn.attributes[sc.TURN_EOU_DELAY]
        assert 0 < eou_delay < MIN_SILENCE_S + 1.0
        floor = max(eou_delay, LLM_TTFT_S + TTS_TTFB_S)
        assert floor <= turn.attributes[sc.TURN_LATENCY] < floor + 1.0
    (stt_latency,) = _points(metrics, sc.STT_LATENCY.name)
    assert stt_latency.count == 3 and stt_latency.min >= STT_DELAY_S * 0.9
    (point,) = _points(metrics, sc.TURN_LATENCY_METRIC.name)
    assert point.count == 3
    assert point.exemplars
    for exemplar in point.exemplars:
        assert exemplar.span_id in {t.context.span_id for t in turns}
        assert exemplar.filtered_attributes == {sc.EXEMPLAR_CALL_ID: "lk-room-1"}


def test_the_interrupted_reply_marks_its_turn(
    telemetry: Telemetry, metrics: dict[str, Metric]
) -> None:
    turns = _spans(telemetry, sc.SPAN_TURN)
    assert [t.attributes[sc.TURN_INTERRUPTED] for t in turns] == [False, True, False]
    counted = {p.attributes[sc.L_INTERRUPTED]: p.value for p in _points(metrics, sc.TURNS.name)}
    assert counted == {"true": 1, "false": 2}


def test_a_recoverable_error_is_a_stream_restart_and_close_ends_the_call(
    telemetry: Telemetry,
    metrics: dict[str, Metric],
) -> None:
    (restarts,) = _points(metrics, sc.STREAM_RESTARTS.name)
    assert restarts.value == 1
    assert dict(restarts.attributes) == {
        sc.L_PIPELINE: "livekit",
        sc.L_PROVIDER: "openai",
        sc.L_COMPONENT: "llm",
        sc.L_REASON: "ConnectionError",
    }
    (calls,) = _points(metrics, sc.CALLS.name)
    assert calls.value == 1 and calls.attributes[sc.L_STATUS] == "completed"
    assert sc.TELEMETRY_DROPPED.name not in metrics


async def test_attach_outside_a_job_needs_a_call_id(telemetry: Telemetry) -> None:
    with pytest.raises(ValueError, match="call_id"):
        attach(telemetry.obs, AgentSession())


def test_livekits_own_metrics_do_not_double_count_ours() -> None:
    t = make_telemetry()
    try:
        assert t.obs.meter_provider is not None
        # what livekit.agents.telemetry.otel_metrics records when ours is the global provider
        meter = t.obs.meter_provider.get_meter("livekit-agents")
        meter.create_counter("lk.agents.usage.llm_input_tokens").add(80)
        meter.create_histogram("gen_ai.client.token.usage").record(80)
        own = t.obs.meter_provider.get_meter("engine")
        own.create_counter("engine.requests").add(1)
        names = set(t.metrics())
        assert "engine.requests" in names
        assert not names & {"lk.agents.usage.llm_input_tokens", "gen_ai.client.token.usage"}
    finally:
        t.obs.shutdown()


async def test_an_unrecoverable_error_fails_a_request_and_closing_on_it_fails_the_call() -> None:
    t = make_telemetry()
    try:
        session: AgentSession[Any] = AgentSession(tts=FakeTTS(REPLIES))
        attach(t.obs, session, call_id="lk-room-2", pipeline="livekit")
        user = ChatMessage(role="user", content=["Hello"], metrics={"started_speaking_at": T0})
        session.emit("conversation_item_added", ConversationItemAddedEvent(item=user))
        error = TTSError(timestamp=T0 + 1, label="fake", error=TimeoutError(), recoverable=False)
        session.emit("error", ErrorEvent(error=error, source=session.tts, created_at=T0 + 1))
        session.emit(
            "close",
            CloseEvent(reason=CloseReason.ERROR, error=error, created_at=T0 + 2),
        )
        tts = t.span(sc.SPAN_TTS)
        assert tts.attributes[sc.ERROR_TYPE] == "error"
        assert tts.attributes[sc.GEN_AI_PROVIDER] == "cartesia"
        call = t.span(sc.SPAN_CALL)
        assert call.attributes[sc.CALL_STATUS] == "failed"
        assert call.attributes[sc.CALL_FAILURE_REASON] == "tts_error"
        assert call.end_time == int((T0 + 2) * 1e9)
    finally:
        t.obs.shutdown()


async def test_disabled_voiceobs_listens_to_nothing() -> None:
    t = make_telemetry(enabled=False)
    try:
        session: AgentSession[Any] = AgentSession()
        reported = attach(t.obs, session, call_id="lk-room-3")
        user = ChatMessage(role="user", content=["Hello"], metrics={"started_speaking_at": T0})
        session.emit("conversation_item_added", ConversationItemAddedEvent(item=user))
        assert reported._open == [], "a disabled call's stand-in reached the mapping"
    finally:
        t.obs.shutdown()


async def test_a_reply_done_after_the_next_user_turn_stays_in_its_own_turn() -> None:
    t = make_telemetry()
    try:
        session: AgentSession[Any] = AgentSession()
        attach(t.obs, session, call_id="lk-room-4")
        reply = SpeechHandle.create()
        session.emit(
            "speech_created",
            SpeechCreatedEvent(user_initiated=False, source="generate_reply", speech_handle=reply),
        )
        eou = EOUMetrics(
            timestamp=T0 + 1,
            end_of_utterance_delay=0.2,
            transcription_delay=0.1,
            on_user_turn_completed_delay=0.0,
            speech_id=reply.id,
        )
        session.emit("metrics_collected", MetricsCollectedEvent(metrics=eou))
        for start in (T0, T0 + 3):  # the second turn starts before the first reply is done
            said = {"started_speaking_at": start, "stopped_speaking_at": start + 0.5}
            user = ChatMessage(role="user", content=["Hi"], metrics=said)
            session.emit("conversation_item_added", ConversationItemAddedEvent(item=user))
        spoken = {"started_speaking_at": T0 + 1.0, "stopped_speaking_at": T0 + 3.1}
        reply._item_added(
            [ChatMessage(role="assistant", content=["Hello"], interrupted=True, metrics=spoken)]
        )
        reply._mark_done()
        await asyncio.sleep(0.05)
        session.emit("close", CloseEvent(reason=CloseReason.USER_INITIATED, created_at=T0 + 4))
        first, second = _spans(t, sc.SPAN_TURN)  # and no third one for the late reply
        assert first.attributes[sc.TURN_INTERRUPTED] is True
        assert first.attributes[sc.TURN_LATENCY] == pytest.approx(0.5, abs=1e-6)
        assert first.end_time == int((T0 + 3.1) * 1e9)  # when the reply stopped, not before
        assert second.attributes[sc.TURN_INTERRUPTED] is False
    finally:
        t.obs.shutdown()
