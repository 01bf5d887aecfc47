"""A Pipecat pipeline of fake services, offline: the user, STT, LLM, TTS and the output
transport answer each other with the frames the real ones push, with small real delays.

Used by ``voiceobs demo --engine pipecat``, the adapter's tests and the bench. The services
subclass Pipecat's own ``STTService`` / ``LLMService`` / ``TTSService``, so the adapter reads
the model where it does on a real service (``settings.model``); each names the provider it
stands in for (``provider``), so the example rate card prices the demo's calls.

They also go through Pipecat's own traced paths as its real services do, so a pipeline run
with ``enable_tracing=True`` makes Pipecat's service spans: ``run_stt`` carries
``@traced_stt`` (the STT span follows the pushed frames, closed by a finalised transcript),
``_process_context`` carries ``@traced_llm`` (the LLM span holds the whole conversation's
context, which grows by a user and an assistant message per turn) and ``run_tts`` carries
``@traced_tts`` (the TTS span lives from ``create_audio_context`` to the audio context's
removal, one context per response as the streaming TTS services open).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    Frame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    SystemFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import (
    LLMTokenUsage,
    LLMUsageMetricsData,
    ProcessingMetricsData,
    STTUsage,
    STTUsageMetricsData,
    TTFBMetricsData,
    TTSUsageMetricsData,
)
from pipecat.observers.base_observer import BaseObserver
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.ai_service import AIService
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings, STTSettings, TTSSettings
from pipecat.services.stt_service import STTService
from pipecat.services.tts_service import TTSService
from pipecat.utils.tracing.service_decorators import traced_llm, traced_stt, traced_tts
from pipecat.workers.runner import WorkerRunner

VAD_STOP_SECS = 0.2
LLM_TTFB_S = 0.03
TTS_TTFB_S = 0.02
LLM_TOKENS = (120, 9)


@dataclass
class UserSays(SystemFrame):
    """The test's script: the user speaks ``text`` for ``speech_s`` seconds."""

    text: str = ""
    speech_s: float = 0.05
    barge_in: bool = field(default=False)


class FakeUser(FrameProcessor):
    """VAD and turn detection: speech start and stop, as Pipecat's user turn processor
    broadcasts them (an interruption on every turn start)."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, UserSays):
            await self.push_frame(frame, direction)
            return
        await self.push_frame(VADUserStartedSpeakingFrame(start_secs=0.2))
        await self.broadcast_frame(UserStartedSpeakingFrame)
        await self.broadcast_frame(InterruptionFrame)
        await asyncio.sleep(frame.speech_s)
        await self.push_frame(InterimTranscriptionFrame(frame.text, "user", ""))
        await self.push_frame(VADUserStoppedSpeakingFrame(stop_secs=VAD_STOP_SECS))
        await self.broadcast_frame(UserStoppedSpeakingFrame)


class FakeSTTService(STTService):
    """Finalises each interim transcript; reports the audio it heard."""

    provider = "deepgram"

    def __init__(self) -> None:
        # Pipecat's own default, named so that it does not warn once per call.
        super().__init__(settings=STTSettings(model="nova-3", language=None), ttfs_p99_latency=1.0)

    @traced_stt
    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        yield None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await AIService.process_frame(self, frame, direction)
        if isinstance(frame, InterimTranscriptionFrame):
            final = TranscriptionFrame(frame.text, frame.user_id, "", finalized=True)
            await self.push_frame(final)
            usage = STTUsageMetricsData(processor=self.name, value=STTUsage(audio_seconds=1.5))
            await self.push_frame(MetricsFrame(data=[usage]))
            return
        await self.push_frame(frame, direction)


class FakeLLMService(LLMService):
    """Answers each final transcript (as Pipecat's user aggregator hands the LLM the context
    once the turn and its transcript are in), keeping the conversation in its context."""

    provider = "openai"

    def __init__(self) -> None:
        super().__init__(
            settings=LLMSettings(
                model="gpt-4o-mini",
                system_instruction=None,
                temperature=None,
                max_tokens=None,
                top_p=None,
                top_k=None,
                frequency_penalty=None,
                presence_penalty=None,
                seed=None,
                filter_incomplete_user_turns=None,
                user_turn_completion_config=None,
            )
        )
        self.context = LLMContext()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await AIService.process_frame(self, frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            self.context.add_message({"role": "user", "content": frame.text})
            await self._process_context(self.context)

    @traced_llm
    async def _process_context(self, context: LLMContext) -> None:
        last = context.get_messages()[-1]
        heard = str(last.get("content", "")) if isinstance(last, dict) else ""
        model = "gpt-4o-mini"
        await self.push_frame(LLMFullResponseStartFrame())
        await asyncio.sleep(LLM_TTFB_S)
        ttfb = TTFBMetricsData(processor=self.name, model=model, value=LLM_TTFB_S)
        await self.push_frame(MetricsFrame(data=[ttfb]))
        answer = "Let me think about that at length..." if heard.endswith("?") else "Sure."
        for word in answer.split(" "):
            await self.push_frame(LLMTextFrame(word + " "))
        prompt, completion = LLM_TOKENS
        tokens = LLMTokenUsage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )
        processing = ProcessingMetricsData(processor=self.name, model=model, value=LLM_TTFB_S)
        usage = LLMUsageMetricsData(processor=self.name, model=model, value=tokens)
        await self.push_frame(MetricsFrame(data=[processing, usage]))
        await self.push_frame(LLMFullResponseEndFrame())
        context.add_message({"role": "assistant", "content": answer})


class FakeTTSService(TTSService):
    """Speaks each LLM response through an audio context, as Pipecat's streaming TTS services
    do: started, a few audio chunks, stopped, played out by the base class's audio-context
    task. A response ending in ``...`` keeps speaking until an interruption stops it."""

    provider = "cartesia"

    def __init__(self) -> None:
        super().__init__(settings=TTSSettings(model="sonic-2", voice="fake", language=None))
        self._text: list[str] = []
        self._context_ids = (f"fake-{n}" for n in itertools.count())
        self._speaking_in: str | None = None
        """The audio context of a response still speaking (one ending in ``...``)."""

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        yield None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await AIService.process_frame(self, frame, direction)
        if isinstance(frame, LLMTextFrame):
            self._text.append(frame.text)
            return
        await self.push_frame(frame, direction)
        if isinstance(frame, InterruptionFrame) and direction is FrameDirection.DOWNSTREAM:
            if self._text:
                self._text.clear()
                if self._speaking_in is not None:
                    await self.remove_audio_context(self._speaking_in)
                    self._speaking_in = None
                await self.push_frame(TTSStoppedFrame())
        elif isinstance(frame, LLMFullResponseEndFrame):
            await self._speak("".join(self._text).strip())

    async def _speak(self, text: str) -> None:
        context_id = next(self._context_ids)
        await self.create_audio_context(context_id)
        async for _ in self.run_tts(text, context_id):
            pass
        await self.append_to_audio_context(context_id, TTSStartedFrame())
        await asyncio.sleep(TTS_TTFB_S)
        ttfb = TTFBMetricsData(processor=self.name, model="sonic-2", value=TTS_TTFB_S)
        await self.append_to_audio_context(context_id, MetricsFrame(data=[ttfb]))
        for _ in range(3):
            chunk = TTSAudioRawFrame(b"\x00\x00" * 160, 16000, 1)
            await self.append_to_audio_context(context_id, chunk)
        usage = TTSUsageMetricsData(processor=self.name, model="sonic-2", value=len(text))
        await self.append_to_audio_context(context_id, MetricsFrame(data=[usage]))
        if text.endswith("..."):
            self._speaking_in = context_id
            return
        self._text.clear()
        await self.append_to_audio_context(context_id, TTSStoppedFrame())
        await self.remove_audio_context(context_id)


class FakeOutput(FrameProcessor):
    """The output transport: the bot speaks from its first audio until TTS stops or the
    user interrupts, broadcast as Pipecat's transports do."""

    def __init__(self) -> None:
        super().__init__()
        self.speaking = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame) and not self.speaking:
            self.speaking = True
            await self.broadcast_frame(BotStartedSpeakingFrame)
        elif (
            isinstance(frame, (TTSStoppedFrame, InterruptionFrame))
            and direction is FrameDirection.DOWNSTREAM
            and self.speaking
        ):
            self.speaking = False
            await self.broadcast_frame(BotStoppedSpeakingFrame)


def bot_pipeline() -> Pipeline:
    """The user, the three services and the output, in pipeline order."""
    services = [FakeSTTService(), FakeLLMService(), FakeTTSService()]
    return Pipeline([FakeUser(), *services, FakeOutput()])


async def converse(
    talk: Callable[[PipelineWorker], Awaitable[None]],
    observers: Sequence[BaseObserver] = (),
    *,
    enable_tracing: bool = False,
    check_dangling_tasks: bool = True,
) -> None:
    """One call through :func:`bot_pipeline` with ``observers``: once the pipeline has
    started, ``talk(worker)`` plays the user's side (queues :class:`UserSays` and waits as it
    likes), then the call ends with an ``EndFrame``."""
    worker = PipelineWorker(
        bot_pipeline(),
        observers=list(observers),
        enable_tracing=enable_tracing,
        cancel_on_idle_timeout=False,
        idle_timeout_secs=None,
        check_dangling_tasks=check_dangling_tasks,
    )
    started = asyncio.Event()

    async def on_started(*_: object) -> None:
        started.set()

    worker.add_event_handler("on_pipeline_started", on_started)

    async def user() -> None:
        await asyncio.wait_for(started.wait(), timeout=30)
        await talk(worker)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), user())
