"""LiveKit Agents: turns an ``AgentSession``'s own events into the voice API.

One line in the job's entrypoint, before ``session.start``::

    from voiceobs.integrations.livekit import attach

    attach(obs, session, ctx)  # ctx: the JobContext; the call id is its room name

What it reads:

- ``conversation_item_added``, a user ``ChatMessage``: a turn from its ``metrics``
  (``started_speaking_at`` opens it, ``stopped_speaking_at`` is the speech end,
  ``end_of_turn_delay`` the end-of-turn decision, ``transcription_delay`` the STT final).
- ``speech_created``: the agent's reply to that turn, known from then on by its ``speech_id``;
  a reply nobody asked for (a greeting, ``say()``) is a turn of its own. When the reply is
  done, its assistant ``ChatMessage``'s ``started_speaking_at`` is the agent's audio start
  (or, without it, speech end plus ``e2e_latency``), and ``interrupted`` an interruption.
- ``metrics_collected``: ``LLMMetrics`` / ``TTSMetrics`` become the LLM and TTS stages of the
  turn with their ``speech_id`` (start, first token or byte, end, tokens, characters);
  ``STTMetrics`` add the audio heard to the STT stage. A reply whose component metrics never
  came gets its stages from the message's ``llm_node_ttft`` and ``tts_node_ttfb``.
- ``error``: a recoverable ``ErrorEvent`` is a stream restart of its component; one that is
  not is a failed request of that component in the newest turn. ``close`` ends the call
  (failed when it closed on an error).

Every moment is LiveKit's own Unix timestamp given with ``at=``. A failure in here never
reaches the session: it is counted in
``voiceobs_telemetry_dropped_total{signal="livekit", reason="internal_error"}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from livekit.agents import JobContext, get_job_context
from livekit.agents.llm import LLM, ChatMessage, LLMError
from livekit.agents.metrics import EOUMetrics, LLMMetrics, STTMetrics, TTSMetrics
from livekit.agents.stt import STT, STTError
from livekit.agents.tts import TTS, TTSError
from livekit.agents.voice import AgentSession, SpeechHandle
from livekit.agents.voice.events import (
    CloseEvent,
    ConversationItemAddedEvent,
    ErrorEvent,
    EventTypes,
    MetricsCollectedEvent,
    SpeechCreatedEvent,
)

from voiceobs.integrations.guard import Guard, provider_of

if TYPE_CHECKING:
    from voiceobs.setup import Instrumentation
    from voiceobs.voice import Call, Stage, StageKind, Turn

__all__ = ["LiveKitCall", "attach", "call_id_of"]

_SIGNAL = "livekit"
_MOST_EARLY = 64
"""Replies whose component metrics wait for their turn at most (a reply is usually bound
within a second of its creation)."""
_EVENTS: tuple[EventTypes, ...] = (
    "conversation_item_added",
    "speech_created",
    "metrics_collected",
    "error",
    "close",
)


def call_id_of(ctx: JobContext) -> str:
    """A job's call id: its room's name, or the job id when the room has none."""
    return ctx.room.name or ctx.job.id


def _metadata(metadata: Any, fallback: object | None) -> tuple[str, str]:
    """(provider, model) from LiveKit's metrics metadata, else from the component."""
    provider = getattr(metadata, "model_provider", None) or (
        metadata.get("model_provider") if isinstance(metadata, dict) else None
    )
    model = getattr(metadata, "model_name", None) or (
        metadata.get("model_name") if isinstance(metadata, dict) else None
    )
    if not provider and fallback is not None:
        provider = provider_of(fallback, "livekit")
    if not model and fallback is not None:
        model = getattr(fallback, "model", None)
    return (
        provider if isinstance(provider, str) and provider else "unknown",
        model if isinstance(model, str) and model and model != "unknown" else "default",
    )


class _TurnState:
    """A turn, the stages made for it so far, and the latest moment known of it."""

    __slots__ = ("last_s", "llm_seen", "replies", "stt", "tts_seen", "turn")

    def __init__(self, turn: Turn, start_s: float) -> None:
        self.turn = turn
        self.stt: Stage | None = None
        self.llm_seen = False
        self.tts_seen = False
        self.last_s = start_s
        self.replies = 0
        """Replies bound to this turn and not done yet: it stays open for them."""

    def saw(self, at: float) -> None:
        self.last_s = max(self.last_s, at)


class LiveKitCall:
    """One ``AgentSession`` reported as one call; made by :func:`attach`."""

    def __init__(self, obs: Instrumentation, session: AgentSession[Any], call: Call) -> None:
        self.call = call
        """The voice-API call, for logs or ``traceparent`` headers."""
        self._session = session
        self._guard = Guard(obs.transport, _SIGNAL)
        self._open: list[_TurnState] = []
        self._turn_of: dict[str, _TurnState] = {}
        """Replies (by speech id) whose turn is known, until they are done."""
        self._created_at: dict[str, float] = {}
        """Replies not done yet, and when each was created."""
        self._early: dict[str, list[LLMMetrics | TTSMetrics]] = {}
        """Component metrics of replies whose turn is not known yet (a reply generated
        pre-emptively starts before its user turn is committed)."""
        self._answering: str | None = None
        """The reply the end-of-turn metrics named for the user turn about to be added."""
        self._stt_audio_s = 0.0
        """STT audio reported before the turn it belongs to."""
        self._handlers = {name: self._guarded(name) for name in _EVENTS}
        if not obs.settings.enabled:  # VOICEOBS_ENABLED=false: listen to nothing
            self._handlers.clear()
        for name, handler in self._handlers.items():
            session.on(name, handler)

    def detach(self) -> None:
        """Stop listening (the call ends with the session's ``close`` event, or with
        ``call.end()``)."""
        for name, handler in self._handlers.items():
            self._session.off(name, handler)

    def _guarded(self, name: EventTypes) -> Any:
        method = getattr(self, f"_on_{name}")

        def handler(event: Any) -> None:
            try:
                method(event)
            except Exception:
                self._guard.failed(name)

        return handler

    # --- turns -----------------------------------------------------------------------------
    def _on_conversation_item_added(self, event: ConversationItemAddedEvent) -> None:
        item = event.item
        if not isinstance(item, ChatMessage) or item.role != "user":
            return
        metrics = item.metrics
        start = metrics.get("started_speaking_at") or item.created_at
        self._close_turns()
        state = self._new_turn(start)
        turn = state.turn
        stop = metrics.get("stopped_speaking_at")
        if stop is not None:
            turn.user_speech_ended(at=stop)
            state.saw(stop)
            eou_delay = metrics.get("end_of_turn_delay")
            if eou_delay is not None:
                turn.eou_detected(at=stop + eou_delay)
        provider, model = _metadata(metrics.get("stt_metadata"), self._session.stt)
        stt = state.stt = turn.stt(provider, model, at=start)
        delay = metrics.get("transcription_delay")
        if stop is not None and delay is not None:
            stt.final(at=stop + delay)
            stt.end(at=stop + delay)
            state.saw(stop + delay)
        if self._stt_audio_s:
            stt.usage(audio_seconds=self._stt_audio_s)
            self._stt_audio_s = 0.0
        if self._answering is not None:
            self._bind(self._answering, state)
            self._answering = None

    def _new_turn(self, start: float) -> _TurnState:
        state = _TurnState(self.call.turn(at=start), start)
        self._open.append(state)
        return state

    def _bind(self, speech_id: str, state: _TurnState) -> None:
        """The reply ``speech_id`` answers ``state``'s turn: its early metrics join it."""
        self._turn_of[speech_id] = state
        state.replies += 1
        for metrics in self._early.pop(speech_id, ()):
            self._component(state, metrics)

    def _close_turns(self, *, all_of_them: bool = False) -> None:
        """End the open turns at the latest moment known of each; one whose reply is still
        playing ends when that reply is done (unless ``all_of_them``)."""
        still_open = []
        for state in self._open:
            if state.replies and not all_of_them:
                still_open.append(state)
            else:
                self._end(state)
        self._open = still_open

    @staticmethod
    def _end(state: _TurnState) -> None:
        if state.stt is not None:
            state.stt.end(at=state.last_s)
        state.turn.end(at=state.last_s)

    def _on_speech_created(self, event: SpeechCreatedEvent) -> None:
        handle = event.speech_handle
        self._created_at[handle.id] = event.created_at
        handle.add_done_callback(self._guarded_done)

    def _guarded_done(self, handle: SpeechHandle) -> None:
        try:
            self._speech_done(handle)
        except Exception:
            self._guard.failed("speech_done")

    def _speech_done(self, handle: SpeechHandle) -> None:
        created_at = self._created_at.pop(handle.id, None)
        state = self._turn_of.pop(handle.id, None)
        if state is None:
            if created_at is None or self.call.end_ns is not None:
                return
            # nobody's turn named it: the agent spoke unprompted (a greeting, say())
            state = self._new_turn(created_at)
            self._bind(handle.id, state)
            del self._turn_of[handle.id]
        state.replies -= 1
        for item in handle.chat_items:
            if isinstance(item, ChatMessage) and item.role == "assistant":
                self._reply(state, item)
        if not state.replies and state.turn.end_ns is None and self._open[-1] is not state:
            self._open.remove(state)  # a newer turn began while this reply played
            self._end(state)

    def _reply(self, state: _TurnState, message: ChatMessage) -> None:
        metrics = message.metrics
        turn = state.turn
        started = metrics.get("started_speaking_at")
        if started is None and turn.speech_end_ns is not None and "e2e_latency" in metrics:
            started = turn.speech_end_ns / 1e9 + metrics["e2e_latency"]
        if started is not None:
            turn.agent_audio_started(at=started)
            state.saw(started)
        stopped = metrics.get("stopped_speaking_at")
        if stopped is not None:
            state.saw(stopped)
        if message.interrupted:
            turn.interrupt(at=stopped if stopped is not None else state.last_s)
        self._node_stages(state, message)

    def _node_stages(self, state: _TurnState, message: ChatMessage) -> None:
        """Stages from the reply's node timings, when no component metrics came for it."""
        metrics = message.metrics
        llm_ttft = metrics.get("llm_node_ttft")
        tts_ttfb = metrics.get("tts_node_ttfb")
        reply_start = message.created_at
        if not state.llm_seen and llm_ttft is not None:
            provider, model = _metadata(metrics.get("llm_metadata"), self._session.llm)
            llm = state.turn.llm(provider, model, at=reply_start)
            llm.first_token(at=reply_start + llm_ttft)
            llm.end(at=reply_start + llm_ttft)
        if not state.tts_seen and tts_ttfb is not None:
            provider, model = _metadata(metrics.get("tts_metadata"), self._session.tts)
            tts_start = reply_start + (llm_ttft or 0.0)
            tts = state.turn.tts(provider, model, at=tts_start)
            tts.first_byte(at=tts_start + tts_ttfb)
            tts.end(at=tts_start + tts_ttfb)

    # --- components ---------------------------------------------------------------------------
    def _on_metrics_collected(self, event: MetricsCollectedEvent) -> None:
        metrics = event.metrics
        if isinstance(metrics, (LLMMetrics, TTSMetrics)):
            speech_id = metrics.speech_id
            if speech_id is None:
                return
            state = self._turn_of.get(speech_id)
            if state is not None:
                self._component(state, metrics)
            elif speech_id in self._created_at:
                if len(self._early) < _MOST_EARLY or speech_id in self._early:
                    self._early.setdefault(speech_id, []).append(metrics)
                else:
                    self._guard.dropped("unmatched_reply")
        elif isinstance(metrics, EOUMetrics):
            self._answering = metrics.speech_id
        elif isinstance(metrics, STTMetrics):
            self._stt_usage(metrics.audio_duration)

    def _component(self, state: _TurnState, metrics: LLMMetrics | TTSMetrics) -> None:
        if isinstance(metrics, LLMMetrics):
            state.llm_seen = True
            stage = self._stage(state, "llm", metrics, self._session.llm, metrics.ttft)
            stage.usage(input_tokens=metrics.prompt_tokens, output_tokens=metrics.completion_tokens)
        else:
            state.tts_seen = True
            stage = self._stage(state, "tts", metrics, self._session.tts, metrics.ttfb)
            stage.usage(characters=metrics.characters_count)

    def _stage(
        self,
        state: _TurnState,
        kind: StageKind,
        metrics: LLMMetrics | TTSMetrics,
        component: object | None,
        first_chunk_s: float,
    ) -> Stage:
        """A stage from a component's request metrics: they are reported at its end."""
        end = metrics.timestamp
        start = end - metrics.duration
        provider, model = _metadata(metrics.metadata, component)
        stage = state.turn.stage(kind, provider, model, at=start)
        if first_chunk_s >= 0:
            stage.first_chunk(at=start + first_chunk_s)
        if metrics.cancelled:
            stage.fail("cancelled")
        stage.end(at=end)
        state.saw(end)
        return stage

    def _stt_usage(self, audio_s: float) -> None:
        if audio_s <= 0:
            return
        state = self._open[-1] if self._open else None
        if state is not None and state.stt is not None:
            state.stt.usage(audio_seconds=audio_s)
        else:
            self._stt_audio_s += audio_s

    def _on_error(self, event: ErrorEvent) -> None:
        error, source = event.error, event.source
        kind: StageKind | None = (
            "llm"
            if isinstance(error, LLMError) or isinstance(source, LLM)
            else "tts"
            if isinstance(error, TTSError) or isinstance(source, TTS)
            else "stt"
            if isinstance(error, STTError) or isinstance(source, STT)
            else None
        )
        if kind is None:
            return
        provider, model = _metadata(None, source)
        at = event.created_at
        if getattr(error, "recoverable", False):
            reason = type(getattr(error, "error", error)).__name__
            self.call.stream_restart(provider, kind, reason, at=at)
        elif self._open:  # the request failed: no metrics will come for it
            stage = self._open[-1].turn.stage(kind, provider, model, at=at)
            stage.fail("error")
            stage.end(at=at)

    def _on_close(self, event: CloseEvent) -> None:
        self._close_turns(all_of_them=True)
        self._turn_of.clear()
        self._early.clear()
        self._created_at.clear()
        if event.error is not None:
            kind = (
                "llm"
                if isinstance(event.error, LLMError)
                else "tts"
                if isinstance(event.error, TTSError)
                else "stt"
                if isinstance(event.error, STTError)
                else "internal"
            )
            self.call.fail(f"{kind}_error")
        self.call.end(at=event.created_at)
        self.detach()


def attach(
    obs: Instrumentation,
    session: AgentSession[Any],
    job: JobContext | None = None,
    *,
    call_id: str | None = None,
    tenant: str = "default",
    pipeline: str = "default",
    caller: str | None = None,
    direction: str = "inbound",
) -> LiveKitCall:
    """Report ``session`` to voiceobs as one call; attach before ``session.start``.

    The call id is ``call_id`` when given, else the job's room name (or job id): ``job``, or
    the job this runs in. The other keyword arguments are :meth:`Instrumentation.call`'s.
    """
    if call_id is None:
        if job is None:
            try:
                job = get_job_context()
            except RuntimeError:
                raise ValueError(
                    "call_id: give one, or attach inside a LiveKit job (its room name is used)"
                ) from None
        call_id = call_id_of(job)
    call = obs.call(call_id, tenant=tenant, pipeline=pipeline, caller=caller, direction=direction)
    return LiveKitCall(obs, session, call)
