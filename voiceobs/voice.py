"""The voice API: a call, its turns, and the STT / LLM / TTS / tool stages of each turn.

Every scope is started when created and can be used three ways: as a ``with`` block, as an
``async with`` block, or as an explicit object ended with ``end()``. Every method that marks
a moment takes an optional ``at`` (Unix time in seconds as a float, or a timezone-aware
``datetime``) for engines that replay events from an audio clock or an event bus; without it
the clock is read. That clock is the wall clock at the call's start plus the monotonic time
since, so a wall-clock step (NTP) never makes a duration negative.

On the engine's thread these objects only note timestamps and ids. Spans, metric points and
exemplars are made from them by a background worker (see :mod:`voiceobs.recorder`), so a turn
costs the engine microseconds. Span ids are chosen up front, so logs written inside a scope
already carry the trace id and span id that the span will have.
"""

from __future__ import annotations

import asyncio
import math
import numbers
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext

if TYPE_CHECKING:
    from voiceobs.emitter import Emitter

StageKind = Literal["stt", "llm", "tts", "tool"]
Clock = Callable[[], int]
Moment = float | datetime
"""A moment given with ``at=``: Unix time in seconds, or a timezone-aware ``datetime``."""
Parent = Context | Span
"""What a call may continue: an OpenTelemetry context, or a span (its trace)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS = timedelta(microseconds=1)
_monotonic_ns = time.monotonic_ns

_CALL_ID_KEY = otel_context.create_key("voice.call.id")


def current_call_id(ctx: Context | None = None) -> str | None:
    """The call id of the voice scope active in ``ctx`` (default: the current context)."""
    value = otel_context.get_value(_CALL_ID_KEY, ctx)
    return value if isinstance(value, str) else None


def _new_span_id() -> int:
    return random.getrandbits(64) or 1


def at_ns(at: Moment) -> int:
    """``at=`` as Unix nanoseconds; a clear error naming ``at`` for anything else."""
    if type(at) is float or type(at) is int:
        if math.isfinite(at):
            return int(at * 1e9)
        raise ValueError(f"at must be a finite Unix time in seconds, got {at!r}")
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise TypeError(
                "at: a naive datetime is ambiguous; give a timezone-aware one "
                "(datetime.now(timezone.utc)) or Unix time in seconds"
            )
        return (at - _EPOCH) // _NS * 1000
    if isinstance(at, (int, float)) and not isinstance(at, bool):  # int and float subclasses
        return at_ns(float(at))
    raise TypeError(
        f"at must be Unix time in seconds (float) or a timezone-aware datetime, "
        f"got {type(at).__name__}"
    )


def parent_context(parent: Parent | None) -> Context | None:
    """``parent=`` as a context: a span is accepted and stands for its trace."""
    if parent is None or isinstance(parent, Context):
        return parent
    if isinstance(parent, Span):
        return trace.set_span_in_context(parent, Context())
    raise TypeError(f"parent must be an OpenTelemetry Context or Span, got {type(parent).__name__}")


def _usage_amount(name: str, value: object, integral: bool) -> None:
    """Refuse a usage amount that is not a finite number ≥ 0 (an integer if ``integral``)."""
    kind = numbers.Integral if integral else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        wanted = "an integer" if integral else "a number"
        raise TypeError(f"usage({name}=...) must be {wanted} ≥ 0, got {value!r}")
    if not (0 <= float(value) < math.inf):
        raise ValueError(f"usage({name}=...) must be finite and ≥ 0, got {value!r}")


_FLOAT_OR_INT = (float, int)


class _Scope:
    """What calls, turns and stages share: an id, a start, an end, an OTel context."""

    __slots__ = ("_anchor", "_ctx", "_token", "end_ns", "span_id", "start_ns")

    start_ns: int
    end_ns: int | None
    span_id: int
    _ctx: Context | None
    _token: object | None
    _anchor: int
    """Wall-clock minus monotonic nanoseconds at the call's start: ``now`` reads the
    monotonic clock, so durations survive a wall-clock step."""

    def _ns(self, at: Moment | None) -> int:
        return _monotonic_ns() + self._anchor if at is None else at_ns(at)

    def _trace_ids(self) -> tuple[int, int]:
        """(trace id, trace flags) of the call this scope belongs to."""
        raise NotImplementedError

    def context(self) -> Context:
        """An OpenTelemetry context whose current span is this scope's span."""
        if self._ctx is None:
            trace_id, flags = self._trace_ids()
            span = NonRecordingSpan(
                SpanContext(trace_id, self.span_id, False, trace.TraceFlags(flags))
            )
            self._ctx = trace.set_span_in_context(span, self._base_context())
        return self._ctx

    def _base_context(self) -> Context:
        """The empty context plus this call's id, shared by the call's scopes."""
        raise NotImplementedError

    def end(self, at: Moment | None = None) -> None:
        raise NotImplementedError

    @contextmanager
    def active(self) -> Iterator[Self]:
        """Make this scope current (logs inside carry its ids) without ending it on exit."""
        token = otel_context.attach(self.context())
        try:
            yield self
        finally:
            otel_context.detach(token)

    def _fail(self, exc: BaseException) -> None:
        """Record that the ``with`` block raised."""

    def __enter__(self) -> Self:
        self._token = otel_context.attach(self.context())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            self._token = None
        if exc is not None:
            self._fail(exc)
        if self.end_ns is None:
            self.end()

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class Stage(_Scope):
    """One provider step of a turn: speech-to-text, the LLM, text-to-speech, or a tool."""

    __slots__ = (
        "audio_seconds",
        "characters",
        "error_type",
        "first_chunk_ns",
        "input_tokens",
        "kind",
        "model",
        "output_tokens",
        "provider",
        "text",
        "turn",
    )

    def __init__(self, turn: Turn, kind: StageKind, provider: str, model: str, start_ns: int):
        self.turn = turn
        self.kind = kind
        self.provider = provider
        self.model = model
        self.start_ns = start_ns
        self.end_ns = None
        self.span_id = _new_span_id()
        self.first_chunk_ns: int | None = None
        self.error_type: str | None = None
        self.audio_seconds = 0.0
        self.input_tokens = 0
        self.output_tokens = 0
        self.characters = 0
        self.text: str | None = None
        self._ctx = None
        self._token = None
        self._anchor = turn._anchor

    def _trace_ids(self) -> tuple[int, int]:
        return self.turn.call.trace_id, self.turn.call.trace_flags

    def _base_context(self) -> Context:
        return self.turn.call._base_context()

    def first_chunk(self, at: Moment | None = None) -> None:
        """The first useful output: STT final transcript, LLM token, TTS audio byte."""
        if self.first_chunk_ns is None:
            self.first_chunk_ns = self._ns(at)

    final = first_chunk
    """STT: the final transcript arrived (its time after speech end is STT finalisation)."""
    first_token = first_chunk
    """LLM: the first token arrived (time to first token)."""
    first_byte = first_chunk
    """TTS: the first audio byte arrived (time to first byte)."""

    def usage(
        self,
        *,
        audio_seconds: float = 0.0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        characters: int = 0,
    ) -> None:
        """Add provider usage; it becomes usage counters and, with a rate card, cost.

        Each amount must be a finite number ≥ 0 (an int for tokens and characters); anything
        else raises ``TypeError`` (wrong type, ``None`` included) or ``ValueError`` (negative,
        infinite) naming the argument, before any amount is added.
        """
        if not (  # the common case in one expression; the checks below name the culprit
            type(input_tokens) is int
            and type(output_tokens) is int
            and type(characters) is int
            and (input_tokens | output_tokens | characters) >= 0  # none negative
            and type(audio_seconds) in _FLOAT_OR_INT
            and 0 <= audio_seconds < math.inf
        ):
            _usage_amount("audio_seconds", audio_seconds, integral=False)
            _usage_amount("input_tokens", input_tokens, integral=True)
            _usage_amount("output_tokens", output_tokens, integral=True)
            _usage_amount("characters", characters, integral=True)
        self.audio_seconds += audio_seconds
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.characters += characters

    def transcript(self, text: str) -> None:
        """The stage's text (STT transcript, LLM response); exported only when switched on."""
        self.text = text

    def fail(self, error_type: str = "error") -> None:
        """Mark the provider request failed: ``error``, ``timeout``, ``rate_limited``…"""
        self.error_type = error_type

    def _fail(self, exc: BaseException) -> None:
        if self.error_type is None:
            self.error_type = "cancelled" if isinstance(exc, asyncio.CancelledError) else "error"

    def end(self, at: Moment | None = None) -> None:
        """End the stage. One that ends after hang-up still counts in the call's cost: the
        call's record goes out when its last stage has ended."""
        if self.end_ns is not None:
            return
        self.end_ns = self._ns(at)
        call = self.turn.call
        if self.turn.end_ns is not None:  # the turn went out already: send this on its own
            call.emitter.submit_stage(self)
        call.open_stages -= 1
        if call.end_ns is not None and call.open_stages == 0:
            call.emitter.submit_call_close(call)


class Turn(_Scope):
    """One exchange: the user speaks, the agent answers.

    Turn latency runs from :meth:`user_speech_ended` to :meth:`agent_audio_started`.
    """

    __slots__ = (
        "agent_audio_ns",
        "call",
        "eou_model",
        "eou_ns",
        "eou_provider",
        "interrupted_ns",
        "number",
        "speech_end_ns",
        "stages",
        "stages_done",
    )

    def __init__(self, call: Call, number: int, start_ns: int) -> None:
        self.call = call
        self.number = number
        self.start_ns = start_ns
        self.end_ns = None
        self.span_id = _new_span_id()
        self.speech_end_ns: int | None = None
        self.eou_ns: int | None = None
        self.eou_provider = "vad"
        self.eou_model = "default"
        self.agent_audio_ns: int | None = None
        self.interrupted_ns: int | None = None
        self.stages: list[Stage] = []
        self.stages_done: list[Stage] = []  # ended by the time the turn ended: sent with it
        self._ctx = None
        self._token = None
        self._anchor = call._anchor

    def _trace_ids(self) -> tuple[int, int]:
        return self.call.trace_id, self.call.trace_flags

    def _base_context(self) -> Context:
        return self.call._base_context()

    def user_speech_ended(self, at: Moment | None = None) -> None:
        """The VAD / turn detector saw the user stop speaking: turn latency starts here."""
        self.speech_end_ns = self._ns(at)

    def eou_detected(
        self, at: Moment | None = None, *, provider: str = "vad", model: str = "default"
    ) -> None:
        """The end-of-utterance decision was made (its delay after speech end is EOU delay)."""
        self.eou_ns = self._ns(at)
        self.eou_provider = provider
        self.eou_model = model

    def agent_audio_started(self, at: Moment | None = None) -> None:
        """The agent's first audio was played out: turn latency ends here."""
        if self.agent_audio_ns is None:
            self.agent_audio_ns = self._ns(at)

    def interrupt(self, at: Moment | None = None) -> None:
        """The user barged in over the agent."""
        if self.interrupted_ns is None:
            self.interrupted_ns = self._ns(at)

    def stage(
        self, kind: StageKind, provider: str, model: str = "default", at: Moment | None = None
    ) -> Stage:
        """Start a stage of any kind; :meth:`stt`, :meth:`llm`, :meth:`tts`, :meth:`tool` are
        shorthands."""
        stage = Stage(self, kind, provider, model, self._ns(at))
        self.stages.append(stage)
        self.call.open_stages += 1
        return stage

    def stt(self, provider: str, model: str = "default", *, at: Moment | None = None) -> Stage:
        return self.stage("stt", provider, model, at)

    def llm(self, provider: str, model: str = "default", *, at: Moment | None = None) -> Stage:
        return self.stage("llm", provider, model, at)

    def tts(self, provider: str, model: str = "default", *, at: Moment | None = None) -> Stage:
        return self.stage("tts", provider, model, at)

    def tool(self, name: str, *, at: Moment | None = None) -> Stage:
        return self.stage("tool", name, "default", at)

    @property
    def latency(self) -> float | None:
        """Turn latency in seconds, once both ends are known."""
        if self.speech_end_ns is None or self.agent_audio_ns is None:
            return None
        return (self.agent_audio_ns - self.speech_end_ns) / 1e9

    def end(self, at: Moment | None = None) -> None:
        if self.end_ns is not None:
            return
        self._end(self._ns(at))

    def _end(self, end_ns: int) -> None:
        self.end_ns = end_ns
        self.stages_done = [stage for stage in self.stages if stage.end_ns is not None]
        self.call.emitter.submit_turn(self)


class JitterBuffer:
    """Jitter-buffer depth samples of one call and direction: the per-audio-frame hot path.

    A call has one per direction (:meth:`Call.jitter_buffer` hands back the same object each
    time). :meth:`sample` only adds to two numbers; the background worker turns them into one
    histogram point per second (the mean depth of that second's frames).
    """

    __slots__ = ("call", "count", "direction", "seen_count", "seen_total", "total")

    def __init__(self, call: Call, direction: str) -> None:
        self.call = call
        self.direction = direction
        self.count = 0
        self.total = 0.0
        self.seen_count = 0  # worker-side cursor
        self.seen_total = 0.0

    def sample(self, depth_s: float) -> None:
        """The buffer holds ``depth_s`` seconds of audio now (call once per frame)."""
        self.count += 1
        self.total += depth_s


class Call(_Scope):
    """One phone or WebRTC call: the root span of its trace.

    Its start and its end are never dropped, even when the recorder's queue is full (turns
    and samples may be, counted). Its record (span, duration, cost) goes out once it has hung
    up and its last stage has ended (a stage never ended is waited for 60 s at most); a call
    whose end never comes is closed as ``abandoned`` once ``call_expiry_s`` passed without a
    new turn.
    """

    __slots__ = (
        "_base",
        "_buffer_of",
        "active_monotonic_ns",
        "call_id",
        "caller",
        "cost_usd",
        "direction",
        "emitter",
        "failure_reason",
        "metric_labels",
        "open_stages",
        "pipeline",
        "restarts",
        "span",
        "status",
        "tenant",
        "trace_flags",
        "trace_id",
        "turns",
    )

    def __init__(
        self,
        emitter: Emitter,
        call_id: str,
        tenant: str,
        pipeline: str,
        caller: str | None,
        direction: str,
        start_ns: int,
        clock: Clock,
        parent: Parent | None,
    ) -> None:
        parent_ctx = parent_context(parent)  # a bad parent raises before anything starts
        self.emitter = emitter
        self.call_id = call_id
        self.tenant = tenant
        self.pipeline = pipeline
        self.caller = caller
        self.direction = direction
        self.active_monotonic_ns = _monotonic_ns()  # latest start, turn or hang-up: expiry
        self._anchor = clock() - self.active_monotonic_ns
        self._base: Context | None = None
        self.start_ns = start_ns
        self.end_ns = None
        self.status = "completed"
        self.failure_reason = "none"
        self.turns: list[Turn] = []
        self.restarts = 0
        self.cost_usd = 0.0  # summed by the worker
        self.metric_labels: dict[str, str] = {}  # bounded tenant/pipeline, set by the worker
        self._buffer_of: dict[str, JitterBuffer] = {}  # direction -> its one buffer
        self.open_stages = 0  # started and not yet ended, across all turns
        self._ctx = None
        self._token = None
        self.span = emitter.start_call_span(self, parent_ctx)
        span_context = self.span.get_span_context()
        self.trace_id = span_context.trace_id
        self.span_id = span_context.span_id
        self.trace_flags = int(span_context.trace_flags)

    def _trace_ids(self) -> tuple[int, int]:
        return self.trace_id, self.trace_flags

    def _base_context(self) -> Context:
        if self._base is None:
            self._base = otel_context.set_value(_CALL_ID_KEY, self.call_id, Context())
        return self._base

    @property
    def trace_id_hex(self) -> str:
        return f"{self.trace_id:032x}"

    @property
    def start_monotonic_ns(self) -> int:
        """The call's start on the monotonic clock (:func:`time.monotonic_ns`), for ages."""
        return self.start_ns - self._anchor

    def now_ns(self) -> int:
        """Now on this call's clock: Unix nanoseconds that never step backwards."""
        return _monotonic_ns() + self._anchor

    def turn(self, at: Moment | None = None) -> Turn:
        """Start the next turn (numbered from 1)."""
        turn = Turn(self, len(self.turns) + 1, self._ns(at))
        self.turns.append(turn)
        self.active_monotonic_ns = _monotonic_ns()
        return turn

    def stream_restart(
        self, provider: str, component: str, reason: str, *, at: Moment | None = None
    ) -> None:
        """A streaming connection (STT, TTS…) had to be re-opened."""
        self.restarts += 1
        self.emitter.submit_restart((self, provider, component, reason, self._ns(at)))

    def jitter_buffer(self, direction: str = "inbound") -> JitterBuffer:
        """This call's jitter-buffer sampler for ``direction``: made on first use, then the
        same object every time, so ``call.jitter_buffer(d).sample(depth)`` per audio frame
        allocates nothing."""
        buffer = self._buffer_of.get(direction)
        if buffer is None:
            buffer = self._buffer_of[direction] = JitterBuffer(self, direction)
        return buffer

    @property
    def buffers(self) -> tuple[JitterBuffer, ...]:
        """The call's jitter buffers, one per direction sampled so far (a snapshot: the
        worker reads it while the engine may add a direction)."""
        return tuple(self._buffer_of.copy().values())

    def fail(self, reason: str, status: str = "failed") -> None:
        """Set the call's outcome to failed (it is still ended by :meth:`end`)."""
        self.status = status
        self.failure_reason = reason

    def _fail(self, exc: BaseException) -> None:
        if self.status != "completed":
            return
        if isinstance(exc, asyncio.CancelledError):
            self.fail("none", status="abandoned")
        else:
            self.fail("internal_error")

    def end(
        self,
        at: Moment | None = None,
        *,
        status: str | None = None,
        failure_reason: str | None = None,
    ) -> None:
        """Hang up: open turns end now and the call stops counting as active; its span and
        per-call metrics go out now, or when its last open stage ends."""
        if self.end_ns is not None:
            return
        end_ns = self._ns(at)
        if status is not None:
            self.status = status
        if failure_reason is not None:
            self.failure_reason = failure_reason
        for turn in self.turns:
            if turn.end_ns is None:
                turn._end(end_ns)
        self.end_ns = end_ns
        self.active_monotonic_ns = _monotonic_ns()
        if self.open_stages == 0:
            self.emitter.submit_call_close(self)
        else:
            self.emitter.submit_hang_up(self)


def now_ns() -> int:
    """The default clock: Unix time in nanoseconds."""
    return time.time_ns()
