"""Pipecat: an observer that turns a pipeline's frames into the voice API.

One observer per call::

    from voiceobs.integrations.pipecat import VoiceobsObserver

    worker = PipelineWorker(pipeline, observers=[VoiceobsObserver(obs, call_id)])

What it reads (each frame once: the upstream copy of a broadcast frame is skipped):

- ``UserStartedSpeakingFrame`` opens a turn; ``VADUserStoppedSpeakingFrame``'s timestamp minus
  its ``stop_secs`` is the user's speech end (the turn-latency clock starts);
  ``UserStoppedSpeakingFrame`` is the end-of-turn decision.
- ``TranscriptionFrame``: the STT stage (from the turn's start to its last final transcript
  before the LLM answers).
- ``LLMFullResponseStartFrame`` / first ``LLMTextFrame`` / ``LLMFullResponseEndFrame``: the LLM
  stage and its first token; ``TTSStartedFrame`` / first ``TTSAudioRawFrame`` /
  ``TTSStoppedFrame``: the TTS stage and its first byte; ``FunctionCallInProgressFrame`` /
  ``FunctionCallResultFrame``: a tool stage.
- ``BotStartedSpeakingFrame``: the agent's audio start (the turn-latency clock stops).
- ``InterruptionFrame`` while the bot speaks: the turn it speaks in was interrupted (Pipecat
  broadcasts one on every user turn start, spoken over or not).
- ``MetricsFrame``: TTFB (the stage's first chunk), processing time (the stage's end) and
  usage (LLM tokens, TTS characters, STT audio seconds), matched to the reporting service's
  stage of the open turn.
- ``ErrorFrame``: the reporting service's open stage failed (``rate_limited`` when Pipecat
  says the provider rate-limited it, else ``error``); a fatal one fails the call.
- ``EndFrame`` / ``CancelFrame``: the call ends.

Provider and model come from the service that pushed the frame: the provider from its module
(``pipecat.services.<provider>``) or class name, the model from ``settings.model``.

Observers run on their own queue, behind the pipeline, so every moment is the frame's own
timestamp (the pipeline clock when it was pushed, as Unix nanoseconds). A failure
in here never reaches the pipeline: it is counted in
``voiceobs_telemetry_dropped_total{signal="pipecat", reason="internal_error"}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    FunctionCallCancelFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import (
    LLMUsageMetricsData,
    MetricsData,
    ProcessingMetricsData,
    STTUsageMetricsData,
    TTFBMetricsData,
    TTSUsageMetricsData,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import LLMService
from pipecat.services.stt_service import STTService
from pipecat.services.tts_service import TTSService
from pipecat.utils.errors import ErrorCategory

from voiceobs.integrations.guard import Guard, provider_of
from voiceobs.voice import at_ns

if TYPE_CHECKING:
    from voiceobs.setup import Instrumentation
    from voiceobs.voice import Call, Parent, Stage, StageKind, Turn

__all__ = ["VoiceobsObserver"]

_SIGNAL = "pipecat"


def _kind_of(processor: object) -> StageKind | None:
    """The stage kind a service's metrics and errors belong to."""
    if isinstance(processor, LLMService):
        return "llm"
    if isinstance(processor, TTSService):
        return "tts"
    if isinstance(processor, STTService):
        return "stt"
    return None


_LONGEST_S = 86_400.0
"""A service's measured duration above a day is a broken measure, not a slow provider."""


def _duration_ns(seconds: object) -> int:
    """A service's measured duration (TTFB, processing time) in nanoseconds; a clear error
    for anything but a number of seconds between 0 and a day."""
    if (type(seconds) is float or type(seconds) is int) and 0 <= seconds <= _LONGEST_S:
        return int(seconds * 1e9)
    raise ValueError(f"a service's measured duration must be 0 to {_LONGEST_S:.0f} s: {seconds!r}")


def _model_of(processor: object) -> str:
    model = getattr(getattr(processor, "settings", None), "model", None)
    return model if isinstance(model, str) and model else "default"


class _TurnState:
    """One turn and the stages the frames opened in it."""

    __slots__ = ("bot_stopped_ns", "last_final_ns", "stages", "stt", "tools", "turn")

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.stt: Stage | None = None
        self.last_final_ns: int | None = None
        self.stages: dict[str, tuple[Stage, object]] = {}
        """The latest LLM / TTS stage and the processor that opened it, by kind."""
        self.tools: dict[str, Stage] = {}
        self.bot_stopped_ns: int | None = None

    def open_stage(self, kind: StageKind) -> Stage | None:
        entry = self.stages.get(kind)
        if entry is None or entry[0].end_ns is not None:
            return None
        return entry[0]

    def end_stt(self) -> None:
        """The STT stage ends with the last final transcript heard so far."""
        stt, last_final_ns = self.stt, self.last_final_ns
        if stt is not None and stt.end_ns is None and last_final_ns is not None:
            if stt.first_chunk_ns is None:
                stt.first_chunk_ns = last_final_ns
            stt._end(last_final_ns)

    def close(self, at_ns: int) -> None:
        """End what is still open at ``at_ns``, then the turn itself."""
        self.end_stt()
        if self.stt is not None and self.stt.end_ns is None:
            self.stt._end(at_ns)
        for stage, _ in self.stages.values():
            if stage.end_ns is None:
                stage._end(at_ns)
        for tool in self.tools.values():
            if tool.end_ns is None:
                tool._end(at_ns)
        self.turn._end(at_ns)


_Handler = Callable[..., None]
"""A method taking (frame of its class, Unix nanoseconds, source processor)."""
_MetricHandler = Callable[..., None]
"""A method taking (metrics data of its class, Unix nanoseconds, source processor)."""
_UPSTREAM = FrameDirection.UPSTREAM
"""Read once: an enum member read through its class costs as much as the rest of a skip."""
_H = TypeVar("_H")


class VoiceobsObserver(BaseObserver):
    """Reports one Pipecat call to voiceobs: pass it in the pipeline's ``observers``.

    The call starts when the observer is made (``observer.call`` is its voice-API call, for
    logs or ``traceparent`` headers) and ends with the pipeline's ``EndFrame`` or
    ``CancelFrame``. The keyword arguments are :meth:`Instrumentation.call`'s.

    Every moment is the frame's own, in Unix nanoseconds on the call's clock, and goes into
    the voice API's objects as it is: the pipeline clock's integer nanoseconds need neither
    a conversion to seconds nor the checks a user's ``at=`` gets. What a frame carries from
    elsewhere is checked: the VAD's stop time as ``at=``, a service's measured durations as
    0 to a day of seconds, counted from its stage's start in integer nanoseconds.
    """

    def __init__(
        self,
        obs: Instrumentation,
        call_id: str,
        *,
        tenant: str = "default",
        pipeline: str = "default",
        caller: str | None = None,
        direction: str = "inbound",
        parent: Parent | None = None,
    ) -> None:
        super().__init__(observe_every_push=False)
        self.call: Call = obs.call(
            call_id,
            tenant=tenant,
            pipeline=pipeline,
            caller=caller,
            direction=direction,
            parent=parent,
        )
        self._guard = Guard(obs.transport, _SIGNAL)
        self._enabled = obs.settings.enabled
        """Disabled (``VOICEOBS_ENABLED=false``): every frame is ignored at once."""
        self._zero_ns: int | None = None
        """Unix nanoseconds at the pipeline clock's zero."""
        self._turn: _TurnState | None = None
        self._interrupted_candidate: _TurnState | None = None
        """The turn the bot still speaks in after the user took the floor."""
        self._bot_speaking = False
        self._providers: dict[int, str] = {}
        self._kinds: dict[int, StageKind | None] = {}

    # --- Pipecat's side ------------------------------------------------------------------
    async def on_push_frame(self, data: FramePushed) -> None:
        # Called for every frame pushed anywhere in the pipeline (every audio chunk too): one
        # dictionary lookup decides, and a frame it does not read costs nothing more.
        if not self._enabled:
            return
        frame = data.frame
        try:
            handler = _frame_handler_of[frame.__class__]
        except KeyError:
            handler = _frame_handler_of[frame.__class__] = _resolve(frame.__class__, _HANDLERS)
        if handler is None:
            return
        if data.direction is _UPSTREAM and frame.broadcast_sibling_id is not None:
            return  # a broadcast frame's second copy
        zero_ns, timestamp = self._zero_ns, data.timestamp
        try:
            if zero_ns is not None and type(timestamp) is int and timestamp > 0:
                handler(self, frame, zero_ns + timestamp, data.source)
            else:
                handler(self, frame, self._unix_ns(data), data.source)
        except Exception:
            self._guard.failed(type(frame).__name__)

    def _unix_ns(self, data: FramePushed) -> int:
        """The frame's push time (pipeline clock) as Unix nanoseconds on the call's clock
        (the common case is inlined in :meth:`on_push_frame`)."""
        if self._zero_ns is None:
            source: FrameProcessor = data.source
            try:
                pipeline_now = int(source.get_clock().get_time())
            except Exception:  # a processor without a clock yet: its frames carry 0
                return self.call.now_ns()
            self._zero_ns = self.call.now_ns() - pipeline_now
        if data.timestamp <= 0:
            return self.call.now_ns()
        return self._zero_ns + int(data.timestamp)

    def _kind(self, processor: object) -> StageKind | None:
        key = id(processor)
        try:
            return self._kinds[key]
        except KeyError:
            kind = self._kinds[key] = _kind_of(processor)
            return kind

    def _provider(self, processor: object) -> str:
        key = id(processor)
        provider = self._providers.get(key)
        if provider is None:
            provider = self._providers[key] = provider_of(processor, "pipecat")
        return provider

    # --- turns ---------------------------------------------------------------------------
    def _user_started(self, frame: Frame, at: int, source: object) -> None:
        previous = self._turn
        if previous is not None:
            if self._bot_speaking:
                self._close_candidate(at)
                self._interrupted_candidate = previous  # ended when the bot goes quiet
            else:
                previous.close(previous.bot_stopped_ns or at)
        self._turn = _TurnState(self.call._turn(at))

    def _close_candidate(self, at: int) -> None:
        candidate = self._interrupted_candidate
        if candidate is not None:
            self._interrupted_candidate = None
            candidate.close(at)

    def _vad_stopped(self, frame: VADUserStoppedSpeakingFrame, at: int, source: object) -> None:
        state = self._turn
        if state is None or state.turn.agent_audio_ns is not None:
            return  # speech that did not make a turn, heard while the bot answers
        state.turn.speech_end_ns = at_ns(frame.timestamp - frame.stop_secs)

    def _user_stopped(self, frame: Frame, at: int, source: object) -> None:
        state = self._turn
        if state is not None and state.turn.agent_audio_ns is None:
            state.turn.eou_ns = at  # the end-of-utterance decision

    def _bot_started(self, frame: Frame, at: int, source: object) -> None:
        self._bot_speaking = True
        state = self._turn
        if state is not None and state.turn.agent_audio_ns is None:
            state.turn.agent_audio_ns = at

    def _bot_stopped(self, frame: Frame, at: int, source: object) -> None:
        self._bot_speaking = False
        if self._turn is not None:
            self._turn.bot_stopped_ns = at
        self._close_candidate(at)

    def _interruption(self, frame: Frame, at: int, source: object) -> None:
        if not self._bot_speaking:
            return  # broadcast on every user turn start; only over the bot is it one
        state = self._interrupted_candidate or self._turn
        if state is not None:
            if state.turn.interrupted_ns is None:
                state.turn.interrupted_ns = at
            for stage, _ in state.stages.values():
                if stage.end_ns is None:
                    stage._end(at)

    def _end(self, frame: Frame, at: int, source: object) -> None:
        self._close_candidate(at)
        if self._turn is not None:
            self._turn.close(at)
            self._turn = None
        self.call.end(at=at / 1e9)

    # --- stages --------------------------------------------------------------------------
    def _transcription(self, frame: Frame, at: int, source: object) -> None:
        state = self._turn
        if state is None:
            return
        if state.stt is None or state.stt.end_ns is not None:
            state.stt = self._new_stt(state, source)
        state.last_final_ns = at

    def _new_stt(self, state: _TurnState, source: object) -> Stage:
        """``source``'s STT stage of the turn: from the turn's start, as the user's speech is
        transcribed while it is heard."""
        turn = state.turn
        return turn._stage("stt", self._provider(source), _model_of(source), turn.start_ns)

    def _start_stage(self, kind: StageKind, at: int, source: object) -> None:
        state = self._turn
        if state is None:
            return
        state.end_stt()
        if state.open_stage(kind) is None:
            stage = state.turn._stage(kind, self._provider(source), _model_of(source), at)
            state.stages[kind] = (stage, source)

    def _llm_started(self, frame: Frame, at: int, source: object) -> None:
        self._start_stage("llm", at, source)

    def _tts_started(self, frame: Frame, at: int, source: object) -> None:
        self._start_stage("tts", at, source)

    def _first_chunk(self, kind: StageKind, at: int) -> None:
        # Once per LLM token and TTS audio chunk: the open stage is looked up in place.
        state = self._turn
        entry = state.stages.get(kind) if state is not None else None
        if entry is not None:
            stage = entry[0]
            if stage.first_chunk_ns is None and stage.end_ns is None:
                stage.first_chunk_ns = at

    def _llm_text(self, frame: Frame, at: int, source: object) -> None:
        self._first_chunk("llm", at)

    def _tts_audio(self, frame: Frame, at: int, source: object) -> None:
        self._first_chunk("tts", at)

    def _stage_ended(self, kind: StageKind, at: int) -> None:
        state = self._turn
        if state is not None:
            stage = state.open_stage(kind)
            if stage is not None:
                stage._end(at)

    def _llm_ended(self, frame: Frame, at: int, source: object) -> None:
        self._stage_ended("llm", at)

    def _tts_stopped(self, frame: Frame, at: int, source: object) -> None:
        self._stage_ended("tts", at)

    def _tool_started(self, frame: FunctionCallInProgressFrame, at: int, source: object) -> None:
        state = self._turn
        if state is not None and frame.tool_call_id not in state.tools:
            name = frame.function_name
            state.tools[frame.tool_call_id] = state.turn._stage("tool", name, "default", at)

    def _tool_ended(
        self,
        frame: FunctionCallResultFrame | FunctionCallCancelFrame,
        at: int,
        source: object,
    ) -> None:
        for state in (self._turn, self._interrupted_candidate):
            tool = state.tools.get(frame.tool_call_id) if state is not None else None
            if tool is not None and tool.end_ns is None:
                if isinstance(frame, FunctionCallCancelFrame):
                    tool.fail("cancelled")
                tool._end(at)

    # --- what services report --------------------------------------------------------------
    def _service_stage(self, kind: StageKind, source: object, at: int) -> Stage | None:
        """The reporting service's latest stage of the open turn; made (zero-length) when
        the turn has none, so usage reported outside any stage still counts."""
        state = self._turn
        if state is None:
            return None
        if kind == "stt":
            if state.stt is None:
                state.stt = self._new_stt(state, source)
            return state.stt
        entry = state.stages.get(kind)
        if entry is not None:
            return entry[0]
        stage = state.turn._stage(kind, self._provider(source), _model_of(source), at)
        stage._end(at)
        state.stages[kind] = (stage, source)
        return stage

    def _metrics(self, frame: MetricsFrame, at: int, source: object) -> None:
        for data in frame.data:
            try:
                handler = _metric_handler_of[data.__class__]
            except KeyError:
                handler = _metric_handler_of[data.__class__] = _resolve(
                    data.__class__, _METRIC_HANDLERS
                )
            if handler is not None:
                handler(self, data, at, source)

    def _llm_usage(self, data: LLMUsageMetricsData, at: int, source: object) -> None:
        stage = self._service_stage("llm", source, at)
        if stage is not None:
            tokens = data.value
            stage.usage(input_tokens=tokens.prompt_tokens, output_tokens=tokens.completion_tokens)

    def _tts_usage(self, data: TTSUsageMetricsData, at: int, source: object) -> None:
        stage = self._service_stage("tts", source, at)
        if stage is not None:
            stage.usage(characters=data.value)

    def _stt_usage(self, data: STTUsageMetricsData, at: int, source: object) -> None:
        stage = self._service_stage("stt", source, at)
        if stage is not None:
            stage.usage(audio_seconds=data.value.audio_seconds)

    def _service_open_stage(self, source: object) -> Stage | None:
        """The open LLM or TTS stage of the current turn that ``source`` started; None for
        an STT service (its TTFB runs from speech end, not from its stage's start), whose
        stage is not among them."""
        state = self._turn
        if state is not None:
            for stage, opened_by in state.stages.values():
                if opened_by is source:
                    return stage if stage.end_ns is None else None
        return None

    def _ttfb(self, data: TTFBMetricsData, at: int, source: object) -> None:
        """The service's own measure of its open stage's first chunk, from the stage's start."""
        stage = self._service_open_stage(source)
        if stage is not None and stage.first_chunk_ns is None:
            stage.first_chunk_ns = stage.start_ns + _duration_ns(data.value)

    def _processing(self, data: ProcessingMetricsData, at: int, source: object) -> None:
        """The service's own measure of its open stage's end, from the stage's start."""
        stage = self._service_open_stage(source)
        if stage is not None:
            stage._end(stage.start_ns + _duration_ns(data.value))

    def _error(self, frame: ErrorFrame, at: int, source: object) -> None:
        service = frame.processor if frame.processor is not None else source
        kind = self._kind(service)
        if kind is None:
            return
        state = self._turn
        stage = (state.stt if kind == "stt" else state.open_stage(kind)) if state else None
        if stage is not None and stage.end_ns is None:
            stage.fail("rate_limited" if frame.category is ErrorCategory.RATE_LIMIT else "error")
        if frame.fatal:
            self.call.fail(f"{kind}_error")


_HANDLERS: tuple[tuple[type[Frame], _Handler], ...] = (
    (UserStartedSpeakingFrame, VoiceobsObserver._user_started),
    (VADUserStoppedSpeakingFrame, VoiceobsObserver._vad_stopped),
    (UserStoppedSpeakingFrame, VoiceobsObserver._user_stopped),
    (TranscriptionFrame, VoiceobsObserver._transcription),
    (LLMFullResponseStartFrame, VoiceobsObserver._llm_started),
    (LLMTextFrame, VoiceobsObserver._llm_text),
    (LLMFullResponseEndFrame, VoiceobsObserver._llm_ended),
    (TTSStartedFrame, VoiceobsObserver._tts_started),
    (TTSAudioRawFrame, VoiceobsObserver._tts_audio),
    (TTSStoppedFrame, VoiceobsObserver._tts_stopped),
    (FunctionCallInProgressFrame, VoiceobsObserver._tool_started),
    (FunctionCallResultFrame, VoiceobsObserver._tool_ended),
    (FunctionCallCancelFrame, VoiceobsObserver._tool_ended),
    (BotStartedSpeakingFrame, VoiceobsObserver._bot_started),
    (BotStoppedSpeakingFrame, VoiceobsObserver._bot_stopped),
    (InterruptionFrame, VoiceobsObserver._interruption),
    (MetricsFrame, VoiceobsObserver._metrics),
    (ErrorFrame, VoiceobsObserver._error),
    (EndFrame, VoiceobsObserver._end),
    (CancelFrame, VoiceobsObserver._end),
)


_frame_handler_of: dict[type, _Handler | None] = dict(_HANDLERS)
"""Each frame class's handler (None: a frame the observer does not read), resolved once;
the mapped classes themselves from the start."""

_METRIC_HANDLERS: tuple[tuple[type[MetricsData], _MetricHandler], ...] = (
    (LLMUsageMetricsData, VoiceobsObserver._llm_usage),
    (TTSUsageMetricsData, VoiceobsObserver._tts_usage),
    (STTUsageMetricsData, VoiceobsObserver._stt_usage),
    (TTFBMetricsData, VoiceobsObserver._ttfb),
    (ProcessingMetricsData, VoiceobsObserver._processing),
)
_metric_handler_of: dict[type, _MetricHandler | None] = dict(_METRIC_HANDLERS)
"""Each metrics class's handler, resolved once (``isinstance`` on Pydantic classes is slow);
the mapped classes themselves from the start."""


def _resolve(cls: type, handlers: tuple[tuple[type, _H], ...]) -> _H | None:
    """The handler for ``cls``: its own, or its nearest mapped base class's."""
    for base in cls.__mro__:
        for mapped, handler in handlers:
            if base is mapped:
                return handler
    return None
