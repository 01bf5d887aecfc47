"""The Pipecat adapter on a real Pipecat pipeline of fake services: the span tree, the
histograms and the exemplars a framework-driven call produces.

The script talks as a user does: it waits for the bot to start speaking before it speaks over
a long answer, and for the bot to finish a short one before its next turn, so the turns come
out the same however busy the machine is."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    TTSStartedFrame,
    UserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import TTFBMetricsData, TTSUsageMetricsData, TurnMetricsData
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.tests.utils import SleepFrame
from pipecat.utils.errors import ErrorCategory

from tests.conftest import Telemetry, make_telemetry
from voiceobs import semconv as sc
from voiceobs.demo.pipecat_bot import (
    LLM_TOKENS,
    LLM_TTFB_S,
    TTS_TTFB_S,
    VAD_STOP_SECS,
    FakeLLMService,
    FakeTTSService,
    UserSays,
    converse,
)
from voiceobs.integrations.guard import provider_of
from voiceobs.integrations.pipecat import VoiceobsObserver


@dataclass(frozen=True)
class UntilBot:
    """A script step: wait, since the user last spoke, until the bot is ``"answering"`` (it
    speaks and its TTS has generated the whole answer, usage reported) or ``"quiet"`` (it
    spoke and stopped)."""

    event: str


class BotListener(BaseObserver):
    """The bot's answer since the last thing the user said."""

    def __init__(self) -> None:
        super().__init__(observe_every_push=False)
        self.answering = asyncio.Event()
        self.quiet = asyncio.Event()
        self._speaking = self._generated = False

    def user_spoke(self) -> None:
        self._speaking = self._generated = False
        self.answering.clear()
        self.quiet.clear()

    async def on_push_frame(self, data: FramePushed) -> None:
        if data.direction is not FrameDirection.DOWNSTREAM:
            return  # the upstream copy of a broadcast frame
        frame = data.frame
        if isinstance(frame, BotStartedSpeakingFrame):
            self._speaking = True
        elif isinstance(frame, MetricsFrame):
            self._generated |= any(isinstance(d, TTSUsageMetricsData) for d in frame.data)
        elif isinstance(frame, BotStoppedSpeakingFrame) and self._speaking:
            self.quiet.set()
        if self._speaking and self._generated:
            self.answering.set()


Step = Frame | UntilBot

SCRIPT: Sequence[Step] = (
    UserSays(text="What can you do?"),  # a long answer, spoken over by the next turn
    UntilBot("answering"),
    UserSays(text="Book a table."),
    UntilBot("quiet"),
    UserSays(text="Thanks."),
    UntilBot("quiet"),
)


async def run_call(telemetry: Telemetry, script: Sequence[Step] = SCRIPT) -> VoiceobsObserver:
    """Run the demo bot's pipeline through ``script`` with the adapter observing, then end it."""
    observer = VoiceobsObserver(telemetry.obs, "pc-1", tenant="acme", pipeline="pipecat")
    bot = BotListener()

    async def talk(worker: PipelineWorker) -> None:
        for step in script:
            if isinstance(step, UntilBot):
                await asyncio.wait_for(getattr(bot, step.event).wait(), timeout=30)
            elif isinstance(step, SleepFrame):
                await asyncio.sleep(step.sleep)
            else:
                if isinstance(step, UserSays):
                    bot.user_spoke()
                await worker.queue_frame(step)

    await converse(talk, [observer, bot])
    return observer


def _by_number(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    found = [s for s in spans if s.name == name]
    return sorted(found, key=lambda s: s.start_time or 0)


def _points(telemetry: Telemetry, name: str) -> list[Any]:
    return list(telemetry.metrics()[name].data.data_points)


async def test_each_user_turn_is_a_turn_span_with_its_three_stages(telemetry: Telemetry) -> None:
    observer = await run_call(telemetry)
    spans = telemetry.finished_spans()
    call = telemetry.span(sc.SPAN_CALL)
    assert call.context.trace_id == observer.call.trace_id
    assert call.attributes[sc.TENANT] == "acme"
    turns = _by_number(spans, sc.SPAN_TURN)
    assert [t.attributes[sc.TURN_NUMBER] for t in turns] == [1, 2, 3]
    for turn in turns:
        assert turn.parent is not None and turn.parent.span_id == call.context.span_id
    for name in (sc.SPAN_STT, sc.SPAN_LLM, sc.SPAN_TTS):
        stages = _by_number(spans, name)
        assert len(stages) == 3, name
        for stage, turn in zip(stages, turns, strict=True):
            assert stage.parent is not None and stage.parent.span_id == turn.context.span_id
            assert turn.start_time <= stage.start_time <= stage.end_time <= turn.end_time


async def test_provider_model_and_usage_come_from_the_services(telemetry: Telemetry) -> None:
    await run_call(telemetry)
    spans = telemetry.finished_spans()
    stt, llm, tts = (_by_number(spans, n)[1] for n in (sc.SPAN_STT, sc.SPAN_LLM, sc.SPAN_TTS))
    named = {
        (s.attributes[sc.GEN_AI_PROVIDER], s.attributes[sc.GEN_AI_REQUEST_MODEL])
        for s in (stt, llm, tts)
    }
    assert named == {("deepgram", "nova-3"), ("openai", "gpt-4o-mini"), ("cartesia", "sonic-2")}
    assert stt.attributes[sc.STT_AUDIO_SECONDS] == 1.5
    assert (
        llm.attributes[sc.GEN_AI_INPUT_TOKENS],
        llm.attributes[sc.GEN_AI_OUTPUT_TOKENS],
    ) == LLM_TOKENS
    assert tts.attributes[sc.TTS_CHARACTERS] == len("Sure.")


async def test_service_ttfb_metrics_place_the_first_chunk(telemetry: Telemetry) -> None:
    await run_call(telemetry)
    spans = telemetry.finished_spans()
    for llm in _by_number(spans, sc.SPAN_LLM):
        assert llm.attributes[sc.STAGE_TTFC] == pytest.approx(LLM_TTFB_S, abs=1e-6)
    for tts in _by_number(spans, sc.SPAN_TTS)[1:]:  # the first one was spoken over
        assert tts.attributes[sc.STAGE_TTFC] == pytest.approx(TTS_TTFB_S, abs=1e-6)
    (ttft,) = _points(telemetry, sc.LLM_TTFT.name)
    assert ttft.count == 3 and ttft.sum == pytest.approx(3 * LLM_TTFB_S, abs=1e-5)


async def test_turn_latency_runs_from_vad_speech_end_to_bot_speech(telemetry: Telemetry) -> None:
    await run_call(telemetry)
    turns = _by_number(telemetry.finished_spans(), sc.SPAN_TURN)
    # The VAD confirmed the stop stop_secs after the user went quiet: the clock starts then.
    floor = VAD_STOP_SECS + LLM_TTFB_S + TTS_TTFB_S
    for turn in turns:
        assert floor <= turn.attributes[sc.TURN_LATENCY] < floor + 1.0
    (point,) = _points(telemetry, sc.TURN_LATENCY_METRIC.name)
    assert isinstance(point, HistogramDataPoint) and point.count == 3
    exemplar_spans = {e.span_id for e in point.exemplars}
    assert exemplar_spans <= {t.context.span_id for t in turns} and exemplar_spans
    for exemplar in point.exemplars:
        assert exemplar.trace_id == turns[0].context.trace_id
        assert exemplar.filtered_attributes == {sc.EXEMPLAR_CALL_ID: "pc-1"}


async def test_only_an_interruption_over_the_bot_counts(telemetry: Telemetry) -> None:
    await run_call(telemetry)
    turns = _by_number(telemetry.finished_spans(), sc.SPAN_TURN)
    # Pipecat broadcasts an InterruptionFrame on each of the three turn starts (twice each);
    # only the second turn started while the bot was still speaking.
    assert [t.attributes[sc.TURN_INTERRUPTED] for t in turns] == [True, False, False]
    counted = {p.attributes[sc.L_INTERRUPTED]: p.value for p in _points(telemetry, sc.TURNS.name)}
    assert counted == {"true": 1, "false": 2}
    first_tts = _by_number(telemetry.finished_spans(), sc.SPAN_TTS)[0]
    assert first_tts.end_time <= turns[0].end_time


async def test_the_pipeline_end_ends_the_call(telemetry: Telemetry) -> None:
    await run_call(telemetry)
    (calls,) = _points(telemetry, sc.CALLS.name)
    assert isinstance(calls, NumberDataPoint) and calls.value == 1
    assert calls.attributes[sc.L_STATUS] == "completed"
    call = telemetry.span(sc.SPAN_CALL)
    assert call.attributes[sc.CALL_TURNS] == 3
    assert sc.TELEMETRY_DROPPED.name not in telemetry.metrics()


async def test_a_frame_the_adapter_cannot_map_is_counted_never_raised(
    telemetry: Telemetry,
) -> None:
    broken = VADUserStoppedSpeakingFrame(stop_secs=5.0, timestamp=1.0)  # before 1970
    script = (UserSays(text="Hello."), SleepFrame(0.05), broken, UntilBot("quiet"))
    await run_call(telemetry, script)
    (dropped,) = _points(telemetry, sc.TELEMETRY_DROPPED.name)
    assert dict(dropped.attributes) == {sc.L_SIGNAL: "pipecat", sc.L_REASON: "internal_error"}
    assert dropped.value == 1
    assert len(_by_number(telemetry.finished_spans(), sc.SPAN_TURN)) == 1


def test_provider_is_the_service_package_or_class_name() -> None:
    openai = OpenAILLMService.__new__(OpenAILLMService)
    assert provider_of(openai, "pipecat") == "openai"

    class DeepgramSTTService:
        pass

    assert provider_of(DeepgramSTTService(), "pipecat") == "deepgram"

    class WrappedService:
        provider = "elevenlabs"

    assert provider_of(WrappedService(), "pipecat") == "elevenlabs"


async def test_disabled_voiceobs_ignores_every_frame(caplog: pytest.LogCaptureFixture) -> None:
    t = make_telemetry(enabled=False)
    try:
        await run_call(t, (UserSays(text="Hello."), UntilBot("quiet")))
        failures = [r for r in caplog.records if r.name == "voiceobs.integrations"]
        assert failures == [], "a disabled call's stand-in reached the mapping"
    finally:
        t.obs.shutdown()


Push = Callable[..., Awaitable[None]]


def pusher(observer: VoiceobsObserver) -> Push:
    """Tell ``observer`` of frames directly, as Pipecat would: ``push(source, frame,
    upstream=False)``, stamped 0 (the observer's own clock)."""

    async def push(source: FrameProcessor, frame: Frame, upstream: bool = False) -> None:
        direction = FrameDirection.UPSTREAM if upstream else FrameDirection.DOWNSTREAM
        await observer.on_push_frame(FramePushed(source, source, frame, direction, 0))

    return push


async def test_a_service_error_fails_its_open_stage_and_a_fatal_one_the_call(
    telemetry: Telemetry,
) -> None:
    user, llm = FrameProcessor(), FakeLLMService()
    push = pusher(VoiceobsObserver(telemetry.obs, "pc-err", tenant="acme", pipeline="pipecat"))
    await push(user, UserStartedSpeakingFrame())
    await push(llm, LLMFullResponseStartFrame())
    await push(  # a metrics datum the adapter does not read: ignored, not a failure
        llm,
        MetricsFrame(
            data=[
                TurnMetricsData(
                    processor="turn", is_complete=True, probability=0.9, e2e_processing_time_ms=12.0
                )
            ]
        ),
    )
    await push(llm, ErrorFrame("the provider refused", fatal=True), upstream=True)
    await push(user, EndFrame())
    (stage,) = _by_number(telemetry.finished_spans(), sc.SPAN_LLM)
    assert stage.attributes[sc.ERROR_TYPE] == "error"
    call = telemetry.span(sc.SPAN_CALL)
    assert call.attributes[sc.CALL_STATUS] == "failed"
    assert sc.TELEMETRY_DROPPED.name not in telemetry.metrics()


async def test_a_rate_limited_service_counts_as_rate_limited(telemetry: Telemetry) -> None:
    user, tts = FrameProcessor(), FakeTTSService()
    push = pusher(VoiceobsObserver(telemetry.obs, "pc-429", tenant="acme", pipeline="pipecat"))
    await push(user, UserStartedSpeakingFrame())
    await push(tts, TTSStartedFrame())
    limited = ErrorFrame("429 Too Many Requests", category=ErrorCategory.RATE_LIMIT)
    await push(tts, limited, upstream=True)
    await push(user, EndFrame())
    (stage,) = _by_number(telemetry.finished_spans(), sc.SPAN_TTS)
    assert stage.attributes[sc.ERROR_TYPE] == "rate_limited"
    (requests,) = _points(telemetry, sc.PROVIDER_REQUESTS.name)
    assert dict(requests.attributes) == {
        sc.L_PROVIDER: "cartesia",
        sc.L_COMPONENT: "tts",
        sc.L_OUTCOME: "rate_limited",
    }
    assert telemetry.span(sc.SPAN_CALL).attributes[sc.CALL_STATUS] == "completed"


async def test_a_broken_service_duration_is_counted_and_leaves_the_stage_alone(
    telemetry: Telemetry,
) -> None:
    user, llm = FrameProcessor(), FakeLLMService()
    push = pusher(VoiceobsObserver(telemetry.obs, "pc-ttfb", tenant="acme", pipeline="pipecat"))
    await push(user, UserStartedSpeakingFrame())
    await push(llm, LLMFullResponseStartFrame())
    await push(llm, MetricsFrame(data=[TTFBMetricsData(processor="llm", value=-0.5)]))
    await push(llm, LLMTextFrame("Hi"))
    await push(llm, LLMFullResponseEndFrame())
    await push(user, EndFrame())
    (stage,) = _by_number(telemetry.finished_spans(), sc.SPAN_LLM)
    assert stage.attributes[sc.STAGE_TTFC] >= 0  # from the first token's frame
    (dropped,) = _points(telemetry, sc.TELEMETRY_DROPPED.name)
    assert dict(dropped.attributes) == {sc.L_SIGNAL: "pipecat", sc.L_REASON: "internal_error"}
    assert dropped.value == 1
