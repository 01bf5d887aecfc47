"""A Pipecat pipeline of fake services, offline: the user, STT, LLM, TTS and the output
transport answer each other with the frames the real ones push, with small real delays.

Used by ``voiceobs demo --engine pipecat``, the adapter's tests and the bench. The services
subclass Pipecat's own ``STTService`` / ``LLMService`` / ``TTSService``, so the adapter reads
the model where it does on a real service (``settings.model``); each names the provider it
stands in for (``provider``), so the example rate card prices the demo's calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
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
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.ai_service import AIService
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings, STTSettings, TTSSettings
from pipecat.services.stt_service import STTService
from pipecat.services.tts_service import TTSService

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

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        yield None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await AIService.process_frame(self, frame, direction)
        if isinstance(frame, InterimTranscriptionFrame):
            await self.push_frame(TranscriptionFrame(frame.text, frame.user_id, ""))
            usage = STTUsageMetricsData(processor=self.name, value=STTUsage(audio_seconds=1.5))
            await self.push_frame(MetricsFrame(data=[usage]))
            return
        await self.push_frame(frame, direction)


class FakeLLMService(LLMService):
    """Answers each final transcript (as Pipecat's user aggregator hands the LLM the context
    once the turn and its transcript are in)."""

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

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await AIService.process_frame(self, frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            await self._answer(frame.text)

    async def _answer(self, heard: str) -> None:
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


class FakeTTSService(TTSService):
    """Speaks each LLM response: started, a few audio chunks, stopped. A response ending in
    ``...`` keeps speaking until an interruption stops it."""

    provider = "cartesia"

    def __init__(self) -> None:
        super().__init__(settings=TTSSettings(model="sonic-2", voice="fake", language=None))
        self._text: list[str] = []

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
                await self.push_frame(TTSStoppedFrame())
        elif isinstance(frame, LLMFullResponseEndFrame):
            await self._speak("".join(self._text).strip())

    async def _speak(self, text: str) -> None:
        await self.push_frame(TTSStartedFrame())
        await asyncio.sleep(TTS_TTFB_S)
        ttfb = TTFBMetricsData(processor=self.name, model="sonic-2", value=TTS_TTFB_S)
        await self.push_frame(MetricsFrame(data=[ttfb]))
        for _ in range(3):
            await self.push_frame(TTSAudioRawFrame(b"\x00\x00" * 160, 16000, 1))
        usage = TTSUsageMetricsData(processor=self.name, model="sonic-2", value=len(text))
        await self.push_frame(MetricsFrame(data=[usage]))
        if not text.endswith("..."):
            self._text.clear()
            await self.push_frame(TTSStoppedFrame())


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
