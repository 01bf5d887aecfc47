"""The event adapter: voice telemetry from engine events published as plain dicts.

Schema ``voiceobs.event/v1`` (documented in docs/events.md). Every event is a mapping with

- ``schema``: ``"voiceobs.event/v1"`` (optional; other versions are rejected),
- ``type``: one of :data:`EVENT_FIELDS`,
- ``call_id``: the call's id (string),
- ``ts``: optional Unix time in seconds (float) of the moment; default: when handled,

plus the fields its type lists. :meth:`EventAdapter.handle` never raises: a malformed or
unknown event is rejected with a reason and a detail naming the field and what it allows,
counted in ``voiceobs_telemetry_dropped_total{signal="events", reason=…}``, and logged once
per reason. A call that no event mentions for ``call_expiry_s`` (its ``call.ended`` was lost)
is ended as ``abandoned`` and counted, so lost ends never pile up.
"""

from __future__ import annotations

import logging
import math
import reprlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard, cast

from voiceobs import semconv as sc
from voiceobs.voice import Call, Stage, StageKind, Turn

if TYPE_CHECKING:
    from voiceobs.setup import Instrumentation

SCHEMA = "voiceobs.event/v1"
MAX_OPEN_CALLS = 10_000
EXPIRE_PER_EVENT = 16
"""Most silent calls one event ends, so a backlog (after an outage) never stalls the engine."""
MAX_NUMBER = 1e12
"""Largest usage count, duration or depth an event may carry."""
MAX_TS = 9e9
"""Latest ``ts`` accepted (Unix seconds, year 2255): later ones overflow span timestamps."""

_log = logging.getLogger("voiceobs.events")
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_show = _repr.repr
"""A short, never-raising repr of a value for rejection details."""

_STR, _NUM, _INT = (str,), (int, float), (int,)
_Spec = dict[str, tuple[tuple[type, ...], bool]]
_STAGE: _Spec = {"stage": (_STR, True), "stage_id": (_STR, False)}
_COMMON = ("schema", "type", "call_id", "ts")

# type -> {field: (allowed python types, required)}
EVENT_FIELDS: dict[str, _Spec] = {
    "call.started": {
        "tenant": (_STR, False),
        "pipeline": (_STR, False),
        "caller": (_STR, False),
        "direction": (_STR, False),
    },
    "call.ended": {"status": (_STR, False), "failure_reason": (_STR, False)},
    "turn.started": {},
    "user.speech_ended": {},
    "eou.detected": {"provider": (_STR, False), "model": (_STR, False)},
    "stage.started": {**_STAGE, "provider": (_STR, True), "model": (_STR, False)},
    "stage.first_chunk": _STAGE,
    "stage.usage": {
        **_STAGE,
        "audio_seconds": (_NUM, False),
        "input_tokens": (_INT, False),
        "output_tokens": (_INT, False),
        "characters": (_INT, False),
    },
    "stage.ended": {**_STAGE, "error": (_STR, False)},
    "agent.audio_started": {},
    "turn.interrupted": {},
    "turn.ended": {},
    "stream.restarted": {
        "provider": (_STR, True),
        "component": (_STR, True),
        "reason": (_STR, True),
    },
    "jitter.sample": {"direction": (_STR, False), "depth_s": (_NUM, True)},
    "provider.circuit": {"provider": (_STR, True), "state": (_STR, True)},
}
STAGE_KINDS = frozenset(sc.COMPONENTS)
_ALLOWED = {kind: frozenset((*_COMMON, *spec)) for kind, spec in EVENT_FIELDS.items()}
REASONS = (
    "invalid_event",
    "unsupported_schema",
    "unknown_type",
    "unknown_field",
    "missing_field",
    "bad_value",
    "unknown_call",
    "duplicate_call",
    "too_many_calls",
    "no_open_turn",
    "no_open_stage",
    "stage_already_open",
    "internal_error",
)
"""Every reason an event can be rejected for."""
EXPIRED_REASON = "call_expired"
"""The ``reason`` under which calls ended by expiry are counted."""


@dataclass(frozen=True, slots=True)
class EventResult:
    """What became of one event: accepted, or rejected with a reason and a detail."""

    accepted: bool
    reason: str = ""
    detail: str = ""


ACCEPTED = EventResult(True)


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_StageKey = tuple[str, str | None]
"""A stage of the open turn: its kind and its ``stage_id`` (None when the engine gave none)."""


@dataclass(slots=True)
class _CallState:
    """What the adapter keeps of one open call: the call, its open turn and stages."""

    call: Call
    last_seen: float
    """When an event last named this call, on the adapter's clock."""
    turn: Turn | None = None
    stages: dict[_StageKey, Stage] = field(default_factory=dict)
    """The open turn's open stages."""
    ended: dict[_StageKey, Stage] = field(default_factory=dict)
    """The open turn's ended stages, by key (the last one), for usage that comes after."""

    def new_turn(self, turn: Turn | None) -> None:
        self.turn, self.stages, self.ended = turn, {}, {}


class EventAdapter:
    """Feeds ``voiceobs.event/v1`` dicts into the voice API; safe to call from any thread.

    ``clock`` (monotonic seconds) measures how long a call has been silent; tests inject one.
    """

    def __init__(
        self, instrumentation: Instrumentation, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._obs = instrumentation
        self._clock = clock
        self._expiry_s = instrumentation.settings.call_expiry_s
        # least recently heard from first, so expiry only ever looks at the head
        self._calls: OrderedDict[str, _CallState] = OrderedDict()
        self._next_expiry = -math.inf
        """No call can expire before this (the head's last event plus ``call_expiry_s``)."""
        self._lock = threading.Lock()
        self._logged: set[str] = set()
        self.rejected: dict[str, int] = {}
        """Rejected events by reason since start."""
        self.expired = 0
        """Calls ended as ``abandoned`` because no event named them for ``call_expiry_s``."""

    def handle(self, event: object) -> EventResult:
        """Apply one event; returns whether it was accepted, and why not."""
        try:
            with self._lock:
                now = self._clock()
                self._expire(now)
                self._apply(event, now)
            return ACCEPTED
        except _Rejected as rejected:
            return self._reject(rejected.reason, rejected.detail)
        except Exception as exc:  # never into the engine
            return self._reject("internal_error", _show(exc))

    def _reject(self, reason: str, detail: str) -> EventResult:
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
            first = reason not in self._logged
            self._logged.add(reason)
        self._obs.transport.count_dropped("events", reason)
        if first:
            _log.warning(
                "voiceobs: event rejected (%s): %s (logged once per reason)", reason, detail
            )
        return EventResult(False, reason, detail)

    def _expire(self, now: float) -> None:
        """End calls silent for ``call_expiry_s``, at most :data:`EXPIRE_PER_EVENT`. They sit
        at the head, and none can expire before the head's last event plus the expiry, so an
        event usually costs one comparison."""
        if now < self._next_expiry:
            return
        for _ in range(EXPIRE_PER_EVENT):
            if not self._calls:
                return
            call_id, state = next(iter(self._calls.items()))
            self._next_expiry = state.last_seen + self._expiry_s
            if now < self._next_expiry:
                return
            self._end_expired(call_id, state)

    def _end_expired(self, call_id: str, state: _CallState) -> None:
        del self._calls[call_id]
        self.expired += 1
        self._obs.transport.count_dropped("events", EXPIRED_REASON)
        state.call.end(status="abandoned")  # now, as the voice API's own expiry does

    def _open_call(self, call_id: str, now: float) -> _CallState | None:
        """The call's state; None if it has none or is past its expiry (then it ends now,
        though the head has not reached it yet)."""
        state = self._calls.get(call_id)
        if state is not None and now >= state.last_seen + self._expiry_s:
            self._end_expired(call_id, state)
            return None
        return state

    def _apply(self, event: object, now: float) -> None:
        fields = _validate(event)
        kind, call_id, at = fields["type"], fields.get("call_id", ""), fields.get("ts")
        if kind == "provider.circuit":
            if fields["state"] not in sc.CIRCUIT_STATES:
                raise _Rejected(
                    "bad_value",
                    f"provider.circuit: 'state' is {_show(fields['state'])}; "
                    f"allowed: {', '.join(sc.CIRCUIT_STATES)}",
                )
            self._obs.circuit_state(fields["provider"], fields["state"])
            return
        if kind == "call.started":
            self._start_call(call_id, fields, at, now)
            return
        state = self._open_call(call_id, now)
        if state is None:
            raise _Rejected(
                "unknown_call",
                f"{kind}: 'call_id' {_show(call_id)} names no open call; send call.started "
                f"first (a call no event names for {self._expiry_s:g} s expires)",
            )
        state.last_seen = now
        self._calls.move_to_end(call_id)
        call = state.call
        if kind == "call.ended":
            del self._calls[call_id]
            call.end(at, status=fields.get("status"), failure_reason=fields.get("failure_reason"))
        elif kind == "turn.started":
            if state.turn is not None:
                state.turn.end(at)
            state.new_turn(call.turn(at))
        elif kind == "stream.restarted":
            call.stream_restart(fields["provider"], fields["component"], fields["reason"], at=at)
        elif kind == "jitter.sample":
            call.jitter_buffer(fields.get("direction", "inbound")).sample(float(fields["depth_s"]))
        else:
            self._turn_event(state, kind, fields, at)

    def _start_call(
        self, call_id: str, fields: Mapping[str, Any], at: float | None, now: float
    ) -> None:
        if self._open_call(call_id, now) is not None:
            raise _Rejected(
                "duplicate_call",
                f"call.started: 'call_id' {_show(call_id)} is already open; "
                "a call id is reused only after its call.ended",
            )
        if len(self._calls) >= MAX_OPEN_CALLS:
            raise _Rejected(
                "too_many_calls",
                f"call.started: {MAX_OPEN_CALLS} calls are open, the most allowed; end some "
                f"(calls no event names for {self._expiry_s:g} s expire)",
            )
        call = self._obs.call(
            call_id,
            tenant=fields.get("tenant", "default"),
            pipeline=fields.get("pipeline", "default"),
            caller=fields.get("caller"),
            direction=fields.get("direction", "inbound"),
            at=at,
        )
        self._calls[call_id] = _CallState(call, now)

    def _turn_event(
        self, state: _CallState, kind: str, fields: Mapping[str, Any], at: float | None
    ) -> None:
        turn = state.turn
        if turn is None:
            raise _Rejected(
                "no_open_turn",
                f"{kind}: call {_show(state.call.call_id)} has no open turn; "
                "send turn.started first",
            )
        if kind == "user.speech_ended":
            turn.user_speech_ended(at)
        elif kind == "eou.detected":
            turn.eou_detected(
                at, provider=fields.get("provider", "vad"), model=fields.get("model", "default")
            )
        elif kind == "agent.audio_started":
            turn.agent_audio_started(at)
        elif kind == "turn.interrupted":
            turn.interrupt(at)
        elif kind == "turn.ended":
            turn.end(at)
            state.new_turn(None)
        elif kind == "stage.started":
            self._start_stage(state, turn, fields, at)
        else:
            self._stage_event(state, kind, fields, at)

    def _start_stage(
        self, state: _CallState, turn: Turn, fields: Mapping[str, Any], at: float | None
    ) -> None:
        key = _stage_key(fields)
        if key in state.stages:
            raise _Rejected(
                "stage_already_open",
                f"stage.started: {_describe(key)} is already open in this turn; give stages "
                "that run at the same time distinct 'stage_id' values",
            )
        state.stages[key] = turn.stage(
            cast(StageKind, key[0]), fields["provider"], fields.get("model", "default"), at
        )

    def _stage_event(
        self, state: _CallState, kind: str, fields: Mapping[str, Any], at: float | None
    ) -> None:
        key = _stage_key(fields)
        stage = state.stages.get(key)
        if stage is None and kind != "stage.ended":  # usage may trail the stage's end
            stage = state.ended.get(key)
        if stage is None:
            raise _Rejected(
                "no_open_stage",
                f"{kind}: {_describe(key)} is not open in this turn; send stage.started "
                "with the same 'stage' and 'stage_id' first",
            )
        if kind == "stage.first_chunk":
            stage.first_chunk(at)
        elif kind == "stage.usage":
            stage.usage(
                audio_seconds=float(fields.get("audio_seconds", 0.0)),
                input_tokens=fields.get("input_tokens", 0),
                output_tokens=fields.get("output_tokens", 0),
                characters=fields.get("characters", 0),
            )
        else:  # stage.ended
            if fields.get("error"):
                stage.fail(fields["error"])
            stage.end(at)
            state.ended[key] = state.stages.pop(key)

    @property
    def open_calls(self) -> int:
        """Calls started and neither ended nor expired."""
        return len(self._calls)


def _stage_key(fields: Mapping[str, Any]) -> _StageKey:
    name = fields["stage"]
    if name not in STAGE_KINDS:
        raise _Rejected(
            "bad_value",
            f"{fields['type']}: 'stage' is {_show(name)}; allowed: {', '.join(sc.COMPONENTS)}",
        )
    return name, fields.get("stage_id")


def _describe(key: _StageKey) -> str:
    kind, stage_id = key
    return f"stage {kind!r}" + (f" with stage_id {_show(stage_id)}" if stage_id else "")


def _validate(event: object) -> dict[str, Any]:
    """The event as a dict, or :class:`_Rejected` naming the first bad field."""
    if not isinstance(event, Mapping):
        raise _Rejected(
            "invalid_event", f"an event is a mapping (dict), got {type(event).__name__}"
        )
    schema = event.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise _Rejected("unsupported_schema", f"'schema' is {_show(schema)}; supported: {SCHEMA}")
    kind = event.get("type")
    if not isinstance(kind, str) or kind not in EVENT_FIELDS:
        raise _Rejected(
            "unknown_type", f"'type' is {_show(kind)}; allowed: {', '.join(EVENT_FIELDS)}"
        )
    spec, allowed = EVENT_FIELDS[kind], _ALLOWED[kind]
    call_id = event.get("call_id")
    if kind != "provider.circuit" and (not isinstance(call_id, str) or not call_id):
        raise _Rejected(
            "missing_field", f"{kind}: 'call_id' must be a non-empty string, got {_show(call_id)}"
        )
    ts = event.get("ts")
    if ts is not None and not (_is_number(ts) and 0 < ts < MAX_TS):
        raise _Rejected(
            "bad_value",
            f"{kind}: 'ts' must be Unix time in seconds (0 < ts < {MAX_TS:g}), got {_show(ts)}",
        )
    if not allowed.issuperset(event):
        unknown = sorted(_show(name) for name in event if name not in allowed)
        raise _Rejected(
            "unknown_field",
            f"{kind}: unknown field(s) {', '.join(unknown[:5])}"
            f"{' …' if len(unknown) > 5 else ''}; allowed: {', '.join((*_COMMON, *spec))}",
        )
    for name, (types, required) in spec.items():
        value = event.get(name)
        if value is None:
            if required:
                raise _Rejected("missing_field", f"{kind}: '{name}' is required")
        elif types is _STR:
            if not isinstance(value, str):
                raise _Rejected(
                    "bad_value", f"{kind}: '{name}' must be a string, got {_show(value)}"
                )
        elif not (_is_number(value) and isinstance(value, types) and 0 <= value <= MAX_NUMBER):
            wanted = "an integer" if types is _INT else "a number"
            raise _Rejected(
                "bad_value",
                f"{kind}: '{name}' must be {wanted} from 0 to {MAX_NUMBER:g}, got {_show(value)}",
            )
    return {name: value for name, value in event.items() if value is not None}  # None: absent


def _is_number(value: object) -> TypeGuard[float]:
    """An int or float, bool excepted; range checks after it also reject NaN and infinity."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
