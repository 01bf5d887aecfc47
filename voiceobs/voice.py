"""The voice API: a call, its turns, and the STT / LLM / TTS / tool stages of each turn.

Every scope is started when created and can be used three ways: as a ``with`` block, as an
``async with`` block, or as an explicit object ended with ``end()``. Every method that marks
a moment takes an optional ``at`` (Unix time in seconds as a float, or a timezone-aware
``datetime``) for engines that replay events from an audio clock or an event bus; without it
the clock is read. That clock is the wall clock at the call's start plus the monotonic time
since, so a wall-clock step (NTP) never makes a duration negative.

On the engine's thread these objects only note timestamps and ids. When a scope ends it hands
an immutable record (:mod:`voiceobs.records`) to a transport (:mod:`voiceobs.transport`); the
export side, in another process by default, makes the spans, metric points and exemplars and
owns every piece of per-call state. A turn costs the engine a few appends. Trace and span ids
are chosen here, up front, so logs written inside a scope and outgoing ``traceparent`` headers
already carry the ids the spans will have.
"""

from __future__ import annotations

import asyncio
import numbers
import os
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
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.trace import Span, SpanKind

from voiceobs import semconv as sc
from voiceobs.currentspan import IdsSpan, context_with_span
from voiceobs.records import (
    CallClosed,
    CallEnded,
    CallStarted,
    JitterSnapshot,
    StageEnded,
    StreamRestarted,
    TurnEnded,
)

if TYPE_CHECKING:
    from voiceobs.transport import Transport

StageKind = Literal["stt", "llm", "tts", "tool"]
Clock = Callable[[], int]
Moment = float | datetime
"""A moment given with ``at=``: Unix time in seconds, or a timezone-aware ``datetime``."""
Parent = Context | Span
"""What a call may continue: an OpenTelemetry context, or a span (its trace)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS = timedelta(microseconds=1)
_monotonic_ns = time.monotonic_ns
_attach = otel_context.attach
_detach = otel_context.detach

_CALL_ID_KEY = otel_context.create_key("voice.call.id")
_new_record = tuple.__new__
"""Makes a record from its fields in one tuple: a named tuple's own constructor is a Python
function of its own, as costly as the rest of building a turn's record."""


def current_call_id(ctx: Context | None = None) -> str | None:
    """The call id of the voice scope active in ``ctx`` (default: the current context)."""
    value = otel_context.get_value(_CALL_ID_KEY, ctx)
    return value if isinstance(value, str) else None


_ids = random.Random()
"""Where trace and span ids come from: a generator of voiceobs' own, seeded from the OS, so an
engine that seeds the global ``random`` (a reproducible simulation, a test) does not make
every run's ids the same; a forked worker seeds it afresh."""
if hasattr(os, "register_at_fork"):  # Windows has no fork
    os.register_at_fork(after_in_child=_ids.seed)
_random_bits = _ids.getrandbits


def new_span_id() -> int:
    return _random_bits(64) or 1


def new_trace_id() -> int:
    return _random_bits(128) or 1


_LATEST_AT_S = 2**64 / 1e9 - 1
"""OTLP carries times as unsigned 64-bit nanoseconds (up to the year 2554)."""


def at_ns(at: Moment) -> int:
    """``at=`` as Unix nanoseconds; a clear error naming ``at`` for anything else."""
    if type(at) is float or type(at) is int:
        if 0 <= at < _LATEST_AT_S:
            return int(at * 1e9)
        raise ValueError(
            f"at must be Unix time in seconds between 0 and {_LATEST_AT_S:.0f} (OTLP's "
            f"unsigned 64-bit nanoseconds), got {at!r}"
        )
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise TypeError(
                "at: a naive datetime is ambiguous; give a timezone-aware one "
                "(datetime.now(timezone.utc)) or Unix time in seconds"
            )
        ns = (at - _EPOCH) // _NS * 1000
        if 0 <= ns < 2**64:
            return ns
        raise ValueError(f"at must be between 1970 and 2554 (OTLP's time range), got {at!r}")
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


def _texts(names: str, *values: object) -> None:
    """Refuse the first of ``values`` (named by the space-separated ``names``) that is not a
    ``str`` (a name ending in ``?`` may also be None)."""
    for name, value in zip(names.split(), values, strict=True):
        if not isinstance(value, str) and not (name.endswith("?") and value is None):
            wanted = "a str or None" if name.endswith("?") else "a str"
            raise TypeError(f"{name.rstrip('?')} must be {wanted}, got {type(value).__name__}")


_MOST_USAGE = 1e12
"""Far above any real request; far below where the running totals would overflow OTLP's
64-bit integer points."""


def _usage_amount(name: str, value: object, integral: bool) -> None:
    """Refuse a usage amount that is not a finite number ≥ 0 (an integer if ``integral``)."""
    kind = numbers.Integral if integral else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        wanted = "an integer" if integral else "a number"
        raise TypeError(f"usage({name}=...) must be {wanted} ≥ 0, got {value!r}")
    if not (0 <= float(value) <= _MOST_USAGE):
        raise ValueError(f"usage({name}=...) must be between 0 and 1e12, got {value!r}")


_FLOAT_OR_INT = (float, int)
_NO_DIRECTION = object()
"""A call's latest jitter-buffer direction before the first: no argument is this object."""


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
        ctx = self._ctx
        if ctx is None:
            trace_id, flags = self._trace_ids()
            span = IdsSpan(trace_id, self.span_id, flags)
            ctx = self._ctx = context_with_span(self._base_context(), span)
        return ctx

    def _base_context(self) -> Context:
        """The empty context plus this call's id, shared by the call's scopes."""
        raise NotImplementedError

    def end(self, at: Moment | None = None) -> None:
        raise NotImplementedError

    @contextmanager
    def active(self) -> Iterator[Self]:
        """Make this scope current (logs inside carry its ids) without ending it on exit."""
        token = _attach(self.context())
        try:
            yield self
        finally:
            _detach(token)

    def _fail(self, exc: BaseException) -> None:
        """Record that the ``with`` block raised."""

    def __enter__(self) -> Self:
        self._token = _attach(self.context())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _detach(self._token)  # type: ignore[arg-type]
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
        if not (type(kind) is str and type(provider) is str and type(model) is str):
            _texts("kind provider model", kind, provider, model)
        self.turn = turn
        self.kind = kind
        self.provider = provider
        self.model = model
        self.start_ns = start_ns
        self.end_ns = None
        self.span_id = new_span_id()
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

        Each amount must be a number between 0 and 1e12 (an int for tokens and characters);
        anything else raises ``TypeError`` (wrong type, ``None`` included) or ``ValueError``
        (negative, infinite, absurdly large) naming the argument, before any amount is added.
        """
        if not (  # the common case in one expression; the checks below name the culprit
            type(input_tokens) is int
            and type(output_tokens) is int
            and type(characters) is int
            and 0 <= input_tokens <= _MOST_USAGE
            and 0 <= output_tokens <= _MOST_USAGE
            and 0 <= characters <= _MOST_USAGE
            and type(audio_seconds) in _FLOAT_OR_INT
            and 0 <= audio_seconds <= _MOST_USAGE
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
        _texts("text", text)
        self.text = text

    def fail(self, error_type: str = "error") -> None:
        """Mark the provider request failed: ``error``, ``timeout``, ``rate_limited``…"""
        _texts("error_type", error_type)
        self.error_type = error_type

    def _fail(self, exc: BaseException) -> None:
        if self.error_type is None:
            self.error_type = "cancelled" if isinstance(exc, asyncio.CancelledError) else "error"

    def end(self, at: Moment | None = None) -> None:
        """End the stage. One that ends after hang-up still counts in the call's cost: the
        call's record goes out when its last stage has ended."""
        if self.end_ns is None:
            self._end(self._ns(at))

    def _end(self, end_ns: int) -> None:
        """End the stage, not ended yet, at ``end_ns`` (Unix nanoseconds)."""
        self.end_ns = end_ns
        turn = self.turn
        call = turn.call
        if turn.end_ns is not None:  # the turn went out already: send this on its own
            call.transport.send(self._record(end_ns))
        call.open_stages -= 1
        if call.end_ns is not None and call.open_stages == 0:
            call.transport.send_kept(CallClosed(call.span_id))

    def _record(self, end_ns: int) -> StageEnded:
        turn = self.turn
        return _new_record(
            StageEnded,
            (
                turn.call.span_id,
                turn.number,
                turn.span_id,
                turn.speech_end_ns,
                self.span_id,
                self.kind,
                self.provider,
                self.model,
                self.start_ns,
                end_ns,
                self.first_chunk_ns,
                self.error_type,
                self.audio_seconds,
                self.input_tokens,
                self.output_tokens,
                self.characters,
                self.text,
            ),
        )


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
    )

    def __init__(self, call: Call, number: int, start_ns: int) -> None:
        self.call = call
        self.number = number
        self.start_ns = start_ns
        self.end_ns = None
        self.span_id = new_span_id()
        self.speech_end_ns: int | None = None
        self.eou_ns: int | None = None
        self.eou_provider = "vad"
        self.eou_model = "default"
        self.agent_audio_ns: int | None = None
        self.interrupted_ns: int | None = None
        self.stages: list[Stage] = []
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
        _texts("provider model", provider, model)
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
        return self._stage(kind, provider, model, self._ns(at))

    def _stage(self, kind: StageKind, provider: str, model: str, start_ns: int) -> Stage:
        """Start a stage at ``start_ns`` (Unix nanoseconds)."""
        stage = Stage(self, kind, provider, model, start_ns)
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
        call = self.call
        if self in call._open_turns:
            call._open_turns.remove(self)
        call.transport.send(
            _new_record(
                TurnEnded,
                (
                    call.span_id,
                    self.number,
                    self.span_id,
                    self.start_ns,
                    end_ns,
                    self.speech_end_ns,
                    self.eou_ns,
                    self.eou_provider,
                    self.eou_model,
                    self.agent_audio_ns,
                    self.interrupted_ns,
                    tuple(
                        [
                            stage._record(stage.end_ns)
                            for stage in self.stages
                            if stage.end_ns is not None  # ended by now: sent with the turn
                        ]
                    ),
                ),
            )
        )
        # A stage still open sends its own record. Letting go of the stages leaves no
        # reference cycle (a stage knows its turn), so a turn and its stages are freed as
        # soon as the engine drops them, not by the garbage collector, whose passes would
        # stall the engine's loop.
        self.stages = []


class JitterBuffer:
    """Jitter-buffer depth samples of one call and direction: the per-audio-frame hot path.

    A call has one per direction (:meth:`Call.jitter_buffer` hands back the same object each
    time). :meth:`sample` only adds to two numbers; the transport reads the running totals
    once a second and the export side turns the difference into one histogram point (the mean
    depth of that second's frames).
    """

    __slots__ = ("call_id", "call_span_id", "count", "direction", "sent_count", "total")

    def __init__(self, call_id: str, call_span_id: int, direction: str) -> None:
        self.call_id = call_id
        self.call_span_id = call_span_id
        self.direction = direction
        self.count = 0
        self.total = 0.0
        self.sent_count = 0
        """Frames covered by the latest snapshot; written by the transport only."""

    def sample(self, depth_s: float) -> None:
        """The buffer holds ``depth_s`` seconds of audio now (call once per frame)."""
        self.count += 1
        self.total += depth_s

    def snapshot(self) -> JitterSnapshot | None:
        """The running totals, or None when no frame came since the latest snapshot."""
        count, total = self.count, self.total
        if count == self.sent_count:
            return None
        self.sent_count = count
        return JitterSnapshot(self.call_span_id, self.direction, count, total)


class Call(_Scope):
    """One phone or WebRTC call: the root span of its trace.

    Its start and its end are never dropped, even when the transport's buffer is full (turns
    and samples may be, counted). Its record (span, duration, cost) goes out once it has hung
    up and its last stage has ended (a stage never ended is waited for 60 s at most); a call
    whose end never comes is closed as ``abandoned`` once ``call_expiry_s`` passed without
    news of it.
    """

    __slots__ = (
        "__weakref__",
        "_base",
        "_buffer_of",
        "_last_buffer",
        "_last_direction",
        "_open_turns",
        "call_id",
        "caller",
        "direction",
        "ended",
        "failure_reason",
        "open_stages",
        "pipeline",
        "restarts",
        "started",
        "status",
        "tenant",
        "trace_flags",
        "trace_id",
        "transport",
        "turn_count",
    )

    def __init__(
        self,
        transport: Transport,
        call_id: str,
        tenant: str,
        pipeline: str,
        caller: str | None,
        direction: str,
        start_ns: int,
        clock: Clock,
        parent: Parent | None,
        sampler: Sampler | None,
    ) -> None:
        if not (
            type(call_id) is str
            and type(tenant) is str
            and type(pipeline) is str
            and type(direction) is str
            and (caller is None or type(caller) is str)
        ):
            _texts(
                "call_id tenant pipeline caller? direction",
                call_id,
                tenant,
                pipeline,
                caller,
                direction,
            )
        parent_ctx = parent_context(parent)  # a bad parent raises before anything starts
        self.transport = transport
        self.call_id = call_id
        self.tenant = tenant
        self.pipeline = pipeline
        self.caller = caller
        self.direction = direction
        self._anchor = clock() - _monotonic_ns()
        self._base: Context | None = None
        self.start_ns = start_ns
        self.end_ns = None
        self.status = "completed"
        self.failure_reason = "none"
        self.turn_count = 0
        self._open_turns: list[Turn] = []
        self.restarts = 0
        self._buffer_of: dict[str, JitterBuffer] = {}  # direction -> its one buffer
        self._last_direction: object = _NO_DIRECTION
        self._last_buffer: JitterBuffer | None = None
        self.open_stages = 0  # started and not yet ended, across all turns
        self._ctx = None
        self._token = None
        self.span_id = new_span_id()
        self.ended: CallEnded | None = None
        self.started = self._start_record(parent_ctx, sampler)
        self.trace_id = self.started.trace_id
        self.trace_flags = self.started.trace_flags
        transport.send_kept(self.started)

    def _start_record(self, parent_ctx: Context | None, sampler: Sampler | None) -> CallStarted:
        """The call's ids: its trace (the parent's, or a new one), the sampling decision,
        and a link to the span current at the start when there is no parent."""
        parent = trace.get_current_span(parent_ctx).get_span_context() if parent_ctx else None
        link = None
        if parent is not None and parent.is_valid:
            trace_id, parent_span_id, remote = parent.trace_id, parent.span_id, parent.is_remote
        else:
            trace_id, parent_span_id, remote = new_trace_id(), 0, False
            current = trace.get_current_span().get_span_context()
            if parent_ctx is None and current.is_valid:
                link = (current.trace_id, current.span_id, int(current.trace_flags))
        if sampler is None:
            flags = int(parent.trace_flags) if parent is not None and parent.is_valid else 0
        else:
            decision = sampler.should_sample(
                parent_ctx, trace_id, sc.SPAN_CALL, SpanKind.SERVER
            ).decision
            flags = 1 if decision is Decision.RECORD_AND_SAMPLE else 0
        return CallStarted(
            self.call_id,
            trace_id,
            self.span_id,
            parent_span_id,
            remote,
            flags,
            self.tenant,
            self.pipeline,
            self.caller,
            self.direction,
            self.start_ns,
            self.start_ns - self._anchor,
            link,
        )

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
        return self._turn(self._ns(at))

    def _turn(self, start_ns: int) -> Turn:
        """Start the next turn at ``start_ns`` (Unix nanoseconds)."""
        self.turn_count += 1
        turn = Turn(self, self.turn_count, start_ns)
        self._open_turns.append(turn)
        return turn

    def stream_restart(
        self, provider: str, component: str, reason: str, *, at: Moment | None = None
    ) -> None:
        """A streaming connection (STT, TTS…) had to be re-opened."""
        _texts("provider component reason", provider, component, reason)
        self.restarts += 1
        self.transport.send(
            StreamRestarted(self.span_id, provider, component, reason, self._ns(at))
        )

    def jitter_buffer(self, direction: str = "inbound") -> JitterBuffer:
        """This call's jitter-buffer sampler for ``direction``: made on first use, then the
        same object every time, so ``call.jitter_buffer(d).sample(depth)`` per audio frame
        allocates nothing."""
        if direction is self._last_direction:  # per frame: no lookup in another object
            return self._last_buffer  # type: ignore[return-value]
        buffer = self._buffer_of.get(direction)
        if buffer is None:
            _texts("direction", direction)
            buffer = self._buffer_of[direction] = JitterBuffer(
                self.call_id, self.span_id, direction
            )
            if self.end_ns is None:
                self.transport.watch(buffer)
        self._last_direction = direction
        self._last_buffer = buffer
        return buffer

    @property
    def buffers(self) -> tuple[JitterBuffer, ...]:
        """The call's jitter buffers, one per direction sampled so far."""
        return tuple(self._buffer_of.copy().values())

    def fail(self, reason: str, status: str = "failed") -> None:
        """Set the call's outcome to failed (it is still ended by :meth:`end`)."""
        _texts("reason status", reason, status)
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
        if status is not None or failure_reason is not None:
            _texts("status? failure_reason?", status, failure_reason)
        if status is not None:
            self.status = status
        if failure_reason is not None:
            self.failure_reason = failure_reason
        for turn in list(self._open_turns):
            turn._end(end_ns)
        self.end_ns = end_ns
        transport = self.transport
        for buffer in self._buffer_of.values():
            transport.unwatch(buffer)
            snapshot = buffer.snapshot()
            if snapshot is not None:
                transport.send(snapshot)
        complete = self.open_stages == 0
        self.ended = CallEnded(
            self.span_id,
            end_ns,
            self.status,
            self.failure_reason,
            self.turn_count,
            self.restarts,
            complete,
        )
        transport.send_kept(self.ended)


def now_ns() -> int:
    """The default clock: Unix time in nanoseconds."""
    return time.time_ns()
