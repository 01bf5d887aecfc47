"""Small offline fakes for a real LiveKit ``AgentSession``: a scripted user (VAD and streaming
STT on one timeline from the first audio frame), an LLM that answers each transcript, a
streaming TTS that speaks for a set time, and audio I/O that plays out in real time. Each
names the provider and model it stands in for, so the example rate card prices the calls.
(livekit-agents' own fakes live in its repository's tests, not in its wheel.)"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.agents import APIConnectOptions, utils
from livekit.agents.llm import (
    LLM,
    ChatChunk,
    ChatContext,
    ChatMessage,
    ChoiceDelta,
    CompletionUsage,
    LLMStream,
)
from livekit.agents.stt import (
    STT,
    RecognizeStream,
    SpeechData,
    SpeechEvent,
    SpeechEventType,
    STTCapabilities,
)
from livekit.agents.tts import TTS, AudioEmitter, ChunkedStream, SynthesizeStream, TTSCapabilities
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS
from livekit.agents.vad import VAD, VADCapabilities, VADEvent, VADEventType, VADStream
from livekit.agents.voice.io import AudioInput, AudioOutput, AudioOutputCapabilities

MIN_SILENCE_S = 0.2
STT_DELAY_S = 0.1
LLM_TTFT_S = 0.05
TTS_TTFB_S = 0.04
PROMPT_TOKENS, COMPLETION_TOKENS = 80, 7


@dataclass
class Speech:
    start: float
    end: float
    text: str


@dataclass
class Reply:
    text: str
    audio_s: float


class FakeVAD(VAD):
    def __init__(self, script: list[Speech]) -> None:
        super().__init__(capabilities=VADCapabilities(update_interval=0.05))
        self.script = script

    @property
    def model(self) -> str:
        return "fake-vad"

    @property
    def provider(self) -> str:
        return "fakevad"

    def stream(self) -> VADStream:
        return _VADStream(self)


class _VADStream(VADStream):
    async def _main_task(self) -> None:
        assert isinstance(self._vad, FakeVAD)
        async for frame in self._input_ch:
            if isinstance(frame, rtc.AudioFrame):
                break
        origin = time.perf_counter()
        for speech in self._vad.script:
            await _until(origin, speech.start + 0.05)
            self._send(VADEventType.START_OF_SPEECH, origin, speech)
            while time.perf_counter() - origin < speech.end + MIN_SILENCE_S - 0.1:
                await asyncio.sleep(0.05)
                self._send(VADEventType.INFERENCE_DONE, origin, speech)
            await _until(origin, speech.end + MIN_SILENCE_S)
            self._send(VADEventType.END_OF_SPEECH, origin, speech)
        async for _ in self._input_ch:
            pass

    def _send(self, kind: VADEventType, origin: float, speech: Speech) -> None:
        now = time.perf_counter() - origin
        self._event_ch.send_nowait(
            VADEvent(
                type=kind,
                samples_index=0,
                timestamp=now,
                speech_duration=min(now, speech.end) - speech.start,
                silence_duration=max(0.0, now - speech.end),
                raw_accumulated_speech=max(0.0, min(now, speech.end) - speech.start),
                raw_accumulated_silence=max(0.0, now - speech.end),
            )
        )


async def _until(origin: float, at: float) -> None:
    delay = at - (time.perf_counter() - origin)
    if delay > 0:
        await asyncio.sleep(delay)


class FakeSTT(STT):
    def __init__(self, script: list[Speech]) -> None:
        super().__init__(capabilities=STTCapabilities(streaming=True, interim_results=False))
        self.script = script
        self.done = asyncio.Event()

    @property
    def model(self) -> str:
        return "nova-3"

    @property
    def provider(self) -> str:
        return "deepgram"

    async def _recognize_impl(self, buffer: Any, *, language: Any, conn_options: Any) -> Any:
        raise NotImplementedError("the fake STT only streams")

    def stream(
        self, *, language: Any = None, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> RecognizeStream:
        return _STTStream(stt=self, conn_options=conn_options)


class _STTStream(RecognizeStream):
    async def _run(self) -> None:
        stt = self._stt
        assert isinstance(stt, FakeSTT)
        await self._input_ch.recv()
        origin = time.perf_counter()
        for speech in stt.script:
            await _until(origin, speech.end + STT_DELAY_S)
            self._event_ch.send_nowait(
                SpeechEvent(
                    type=SpeechEventType.FINAL_TRANSCRIPT,
                    alternatives=[SpeechData(text=speech.text, language="en")],
                )
            )
        stt.done.set()
        async for _ in self._input_ch:
            pass


class FakeLLM(LLM):
    def __init__(self, replies: dict[str, Reply]) -> None:
        super().__init__()
        self.replies = replies

    @property
    def model(self) -> str:
        return "gpt-4o-mini"

    @property
    def provider(self) -> str:
        return "openai"

    def chat(self, *, chat_ctx: ChatContext, tools: Any = None, **_: Any) -> LLMStream:
        conn = _.get("conn_options", DEFAULT_API_CONNECT_OPTIONS)
        return _LLMStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn)


class _LLMStream(LLMStream):
    async def _run(self) -> None:
        llm = self._llm
        assert isinstance(llm, FakeLLM)
        last = self.chat_ctx.items[-1]
        heard = last.text_content if isinstance(last, ChatMessage) else None
        reply = llm.replies.get(heard or "")
        if reply is None:
            return
        await asyncio.sleep(LLM_TTFT_S)
        for word in reply.text.split(" "):
            self._event_ch.send_nowait(
                ChatChunk(id="fake", delta=ChoiceDelta(role="assistant", content=word + " "))
            )
        usage = CompletionUsage(
            completion_tokens=COMPLETION_TOKENS,
            prompt_tokens=PROMPT_TOKENS,
            total_tokens=PROMPT_TOKENS + COMPLETION_TOKENS,
        )
        self._event_ch.send_nowait(ChatChunk(id="fake", usage=usage))


class FakeTTS(TTS):
    def __init__(self, replies: dict[str, Reply]) -> None:
        super().__init__(
            capabilities=TTSCapabilities(streaming=True), sample_rate=16000, num_channels=1
        )
        self.audio_of = {r.text: r.audio_s for r in replies.values()}

    @property
    def model(self) -> str:
        return "sonic-2"

    @property
    def provider(self) -> str:
        return "cartesia"

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> ChunkedStream:
        raise NotImplementedError("the fake TTS only streams")

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> SynthesizeStream:
        return _TTSStream(tts=self, conn_options=conn_options)


class _TTSStream(SynthesizeStream):
    async def _run(self, output_emitter: AudioEmitter) -> None:
        tts = self._tts
        assert isinstance(tts, FakeTTS)
        output_emitter.initialize(
            request_id=utils.shortuuid("fake_tts_"),
            sample_rate=16000,
            num_channels=1,
            mime_type="audio/pcm",
            stream=True,
        )
        text = ""
        async for data in self._input_ch:
            if isinstance(data, str):
                text += data
                continue
            if not text.strip():
                continue
            self._mark_started()
            audio_s = next((s for t, s in tts.audio_of.items() if t.startswith(text.strip())), 0.3)
            text = ""
            await asyncio.sleep(TTS_TTFB_S)
            output_emitter.start_segment(segment_id=utils.shortuuid("seg_"))
            samples = int(16000 * audio_s)
            for start in range(0, samples, 1600):
                output_emitter.push(b"\x00\x00" * min(1600, samples - start))
            output_emitter.flush()


class FakeAudioInput(AudioInput):
    def __init__(self) -> None:
        super().__init__(label="fake")
        self._frames = utils.aio.Chan[rtc.AudioFrame]()
        self._frames.send_nowait(rtc.AudioFrame(b"\x00\x00" * 1600, 16000, 1, 1600))

    async def __anext__(self) -> rtc.AudioFrame:
        return await self._frames.__anext__()


class FakeAudioOutput(AudioOutput):
    """Plays out in real time: started at the first frame, finished after the audio's
    length, cut short by ``clear_buffer`` (an interruption)."""

    def __init__(self) -> None:
        super().__init__(
            label="fake", next_in_chain=None, capabilities=AudioOutputCapabilities(pause=False)
        )
        self._pushed = 0.0
        self._started: float | None = None
        self._finish: asyncio.TimerHandle | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        self._pushed += frame.duration
        if self._started is None:
            self._started = time.time()
            self.on_playback_started(created_at=self._started)

    def flush(self) -> None:
        super().flush()
        if not self._pushed or self._started is None:
            return
        pushed = self._pushed
        delay = max(0.0, pushed - (time.time() - self._started))
        self._finish = asyncio.get_event_loop().call_later(delay, self._finished, pushed, False)

    def clear_buffer(self) -> None:
        if not self._pushed or self._started is None:
            return
        if self._finish is not None:
            self._finish.cancel()
        self._finished(min(self._pushed, time.time() - self._started), True)

    def _finished(self, position: float, interrupted: bool) -> None:
        self._pushed, self._started, self._finish = 0.0, None, None
        self.on_playback_finished(
            playback_position=position, interrupted=interrupted, synchronized_transcript=None
        )
