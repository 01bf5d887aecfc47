"""The event adapter: voice telemetry from engine events published as plain dicts.

Schema ``voiceobs.event/v1`` (documented in docs/events.md). Every event is a mapping with

- ``schema``: ``"voiceobs.event/v1"`` (optional; other versions are rejected),
- ``type``: one of :data:`EVENT_FIELDS`,
- ``call_id``: the call's id (string),
- ``ts``: optional Unix time in seconds (float) of the moment; default: when handled,

plus the fields its type lists. :meth:`EventAdapter.handle` never raises: a malformed or
unknown event is rejected with a reason, counted in
``voiceobs_telemetry_dropped_total{signal="events", reason=…}``, and logged once per reason.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from voiceobs import semconv as sc
from voiceobs.voice import Call, Stage, StageKind, Turn

if TYPE_CHECKING:
    from voiceobs.setup import Instrumentation

SCHEMA = "voiceobs.event/v1"
MAX_OPEN_CALLS = 10_000

_log = logging.getLogger("voiceobs.events")

_STR, _NUM, _INT = (str,), (int, float), (int,)

# type -> {field: (allowed python types, required)}
EVENT_FIELDS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
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
    "stage.started": {"stage": (_STR, True), "provider": (_STR, True), "model": (_STR, False)},
    "stage.first_chunk": {"stage": (_STR, True)},
    "stage.usage": {
        "stage": (_STR, True),
        "audio_seconds": (_NUM, False),
        "input_tokens": (_INT, False),
        "output_tokens": (_INT, False),
        "characters": (_INT, False),
    },
    "stage.ended": {"stage": (_STR, True), "error": (_STR, False)},
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


@dataclass(slots=True)
class _CallState:
    call: Call
    turn: Turn | None = None
    stages: dict[str, Stage] | None = None


class EventAdapter:
    """Feeds ``voiceobs.event/v1`` dicts into the voice API; safe to call from any thread."""

    def __init__(self, instrumentation: Instrumentation) -> None:
        self._obs = instrumentation
        self._calls: dict[str, _CallState] = {}
        self._lock = threading.Lock()
        self._logged: set[str] = set()
        self.rejected: dict[str, int] = {}

    def handle(self, event: object) -> EventResult:
        """Apply one event; returns whether it was accepted, and why not."""
        try:
            with self._lock:
                self._apply(event)
            return ACCEPTED
        except _Rejected as rejected:
            return self._reject(rejected.reason, rejected.detail)
        except Exception as exc:  # never into the engine
            return self._reject("internal_error", repr(exc))

    def _reject(self, reason: str, detail: str) -> EventResult:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self._obs.emitter.count_dropped("events", reason)
        if reason not in self._logged:
            self._logged.add(reason)
            _log.warning(
                "voiceobs: event rejected (%s): %s (logged once per reason)", reason, detail
            )
        return EventResult(False, reason, detail)

    def _apply(self, event: object) -> None:
        fields = _validate(event)
        kind, call_id, at = fields["type"], fields.get("call_id", ""), fields.get("ts")
        if kind == "call.started":
            if call_id in self._calls:
                raise _Rejected("duplicate_call", f"call {call_id!r} already started")
            if len(self._calls) >= MAX_OPEN_CALLS:
                raise _Rejected("too_many_calls", f"more than {MAX_OPEN_CALLS} calls open")
            call = self._obs.call(
                call_id,
                tenant=fields.get("tenant", "default"),
                pipeline=fields.get("pipeline", "default"),
                caller=fields.get("caller"),
                direction=fields.get("direction", "inbound"),
                at=at,
            )
            self._calls[call_id] = _CallState(call)
            return
        if kind == "provider.circuit":
            if fields["state"] not in sc.CIRCUIT_STATES:
                raise _Rejected(
                    "bad_value",
                    f"state {fields['state']!r}; allowed: {', '.join(sc.CIRCUIT_STATES)}",
                )
            self._obs.circuit_state(fields["provider"], fields["state"])
            return
        state = self._calls.get(call_id)
        if state is None:
            raise _Rejected("unknown_call", f"{kind} for call {call_id!r}, which has not started")
        call = state.call
        if kind == "call.ended":
            call.end(at, status=fields.get("status"), failure_reason=fields.get("failure_reason"))
            del self._calls[call_id]
        elif kind == "turn.started":
            if state.turn is not None:
                state.turn.end(at)
            state.turn, state.stages = call.turn(at), {}
        elif kind == "stream.restarted":
            call.stream_restart(fields["provider"], fields["component"], fields["reason"], at=at)
        elif kind == "jitter.sample":
            self._buffer(call, fields.get("direction", "inbound")).sample(float(fields["depth_s"]))
        else:
            self._turn_event(state, kind, fields, at)

    def _turn_event(
        self, state: _CallState, kind: str, fields: Mapping[str, Any], at: float | None
    ) -> None:
        turn = state.turn
        if turn is None or state.stages is None:
            raise _Rejected("no_open_turn", f"{kind} outside a turn (send turn.started first)")
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
            state.turn = state.stages = None
        elif kind == "stage.started":
            name = _stage_kind(fields)
            state.stages[name] = turn.stage(
                name, fields["provider"], fields.get("model", "default"), at
            )
        else:
            stage = state.stages.get(_stage_kind(fields))
            if stage is None:
                raise _Rejected(
                    "no_open_stage", f"{kind} for stage {fields['stage']!r}, which has not started"
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

    def _buffer(self, call: Call, direction: str) -> Any:
        for buffer in call.buffers:
            if buffer.direction == direction:
                return buffer
        return call.jitter_buffer(direction)

    @property
    def open_calls(self) -> int:
        return len(self._calls)


def _stage_kind(fields: Mapping[str, Any]) -> StageKind:
    name = fields["stage"]
    if name not in STAGE_KINDS:
        raise _Rejected("bad_value", f"stage {name!r}; allowed: {', '.join(sorted(STAGE_KINDS))}")
    return cast(StageKind, name)


def _validate(event: object) -> dict[str, Any]:
    if not isinstance(event, Mapping):
        raise _Rejected("invalid_event", f"an event is a mapping, got {type(event).__name__}")
    schema = event.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise _Rejected("unsupported_schema", f"schema {schema!r}; supported: {SCHEMA}")
    kind = event.get("type")
    spec = EVENT_FIELDS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise _Rejected("unknown_type", f"type {kind!r}; allowed: {', '.join(EVENT_FIELDS)}")
    call_id = event.get("call_id")
    if kind != "provider.circuit" and (not isinstance(call_id, str) or not call_id):
        raise _Rejected("missing_field", f"{kind}: 'call_id' must be a non-empty string")
    ts = event.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float)) or ts <= 0):
        raise _Rejected("bad_value", f"{kind}: 'ts' must be Unix time in seconds, got {ts!r}")
    known = {"schema", "type", "call_id", "ts", *spec}
    unknown = set(event) - known
    if unknown:
        raise _Rejected(
            "unknown_field", f"{kind}: unknown field(s) {sorted(unknown)}; allowed: {sorted(spec)}"
        )
    for name, (types, required) in spec.items():
        value = event.get(name)
        if value is None:
            if required:
                raise _Rejected("missing_field", f"{kind}: '{name}' is required")
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            wanted = "/".join(t.__name__ for t in types)
            raise _Rejected("bad_value", f"{kind}: '{name}' must be {wanted}, got {value!r}")
        if types is not _STR and cast(float, value) < 0:
            raise _Rejected("bad_value", f"{kind}: '{name}' must be ≥ 0, got {value!r}")
    return dict(event)
