"""The export side: voice records in, spans, metric points and exemplars out.

A :class:`Materialiser` owns every piece of per-call state, keyed by the call's span id (a
call id may come again while the previous call with it is still being recorded): the calls in
progress, their bounded labels, their cost, their jitter-buffer cursors, and when each call's
record may go out. It is fed the immutable records of :mod:`voiceobs.records` by one thread
(the export process's reader, or the in-process transport's worker) and never sees the
engine's objects. Spans are built with the ids the engine chose and handed straight to the
span processors: the engine already decided the sampling.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from voiceobs import semconv as sc
from voiceobs.cost import RateCard
from voiceobs.httpmaterialiser import HttpMaterialiser
from voiceobs.instruments import Instruments
from voiceobs.labels import LabelGuard, fixed
from voiceobs.records import (
    CallClosed,
    CallEnded,
    CallStarted,
    CircuitState,
    Dropped,
    ExportFailed,
    HttpServed,
    HttpStarted,
    JitterSnapshot,
    ProviderRequest,
    Record,
    StageEnded,
    StreamRestarted,
    TurnEnded,
)
from voiceobs.redaction import Redactor, truncate

_OPERATION = {
    "stt": "speech_to_text",
    "llm": "chat",
    "tts": "text_to_speech",
    "tool": "execute_tool",
}
_SPAN_NAME = {"stt": sc.SPAN_STT, "llm": sc.SPAN_LLM, "tts": sc.SPAN_TTS, "tool": sc.SPAN_TOOL}
_STAGE_GRACE_NS = 60 * 10**9
"""How long a hung-up call's record waits for a stage left open (never ended) at most."""
_UNSET = Status(StatusCode.UNSET)

SpanOut = Callable[[ReadableSpan], None]


class Labels:
    """The label guards of one voice telemetry instance."""

    def __init__(
        self,
        *,
        tenants: Iterable[str] = (),
        pipelines: Iterable[str] = (),
        providers: Iterable[str] = (),
        models: Iterable[str] = (),
        limit: int = 50,
    ) -> None:
        self.tenant = LabelGuard(sc.L_TENANT, tenants, limit)
        self.pipeline = LabelGuard(sc.L_PIPELINE, pipelines, limit)
        self.provider = LabelGuard(sc.L_PROVIDER, providers, limit)
        self.model = LabelGuard(sc.L_MODEL, models, limit)
        self.reason = LabelGuard(sc.L_REASON, (), 20)
        self.status = fixed(sc.L_STATUS, sc.CALL_STATUSES)
        self.failure = fixed(sc.L_FAILURE_REASON, sc.FAILURE_REASONS)
        self.outcome = fixed(sc.L_OUTCOME, sc.OUTCOMES)
        self.component = fixed(sc.L_COMPONENT, sc.COMPONENTS)
        self.direction = fixed(sc.L_DIRECTION, sc.DIRECTIONS)


class _CallState:
    """What the export side knows of one call in progress."""

    __slots__ = (
        "context",
        "cost_usd",
        "ended",
        "jitter",
        "labels",
        "restarts",
        "seen_ns",
        "started",
    )

    def __init__(self, started: CallStarted, labels: dict[str, str]) -> None:
        self.started = started
        self.labels = labels
        self.cost_usd = 0.0
        self.ended: CallEnded | None = None
        self.restarts: list[Event] = []
        self.jitter: dict[str, tuple[int, float]] = {}
        """Direction -> (frames, total depth) up to the latest point recorded."""
        self.seen_ns = time.monotonic_ns()
        """When the latest record of this call arrived: a call silent for
        ``call_expiry_s`` is ended as abandoned."""
        self.context = _exemplar_context(started.trace_id, started.span_id, started.trace_flags)


def _exemplar_context(trace_id: int, span_id: int, flags: int) -> Context:
    """A context whose current span is the given one: what a metric point's exemplar reads."""
    span = NonRecordingSpan(SpanContext(trace_id, span_id, False, TraceFlags(flags)))
    return set_span_in_context(span, Context())


class Materialiser:
    """Turns records into telemetry; the one owner of per-call state."""

    def __init__(
        self,
        span_out: SpanOut | None,
        resource: Resource,
        scope: InstrumentationScope,
        instruments: Instruments,
        labels: Labels,
        rate_card: RateCard,
        redactor: Redactor,
        *,
        http: HttpMaterialiser,
        export_text: bool,
        max_text_length: int,
        call_expiry_s: float = 4 * 3600.0,
    ) -> None:
        self._span_out = span_out
        self._resource = resource
        self._scope = scope
        self._m = instruments
        self._labels = labels
        self._rate_card = rate_card
        self._redactor = redactor
        self._export_text = export_text
        self._max_text = max_text_length
        self._expiry_ns = int(call_expiry_s * 1e9)
        self._calls: dict[int, _CallState] = {}
        """Calls started and not yet recorded, by the call's span id (a call id may come
        again while the previous call with it waits for its last stage). Written by the
        feeding thread only (under the lock, for the gauge callback that reads it)."""
        self._calls_lock = threading.Lock()
        self._handlers: dict[type, Callable[[Any], None]] = {
            CallStarted: self._call_started,
            TurnEnded: self._turn,
            StageEnded: self._stage,
            JitterSnapshot: self._jitter,
            StreamRestarted: self._restart,
            CallEnded: self._call_ended,
            CallClosed: self._call_closed,
            Dropped: self._dropped,
            ExportFailed: self._export_failed,
            HttpStarted: http.started,
            HttpServed: http.served,
            CircuitState: self._circuit_state,
            ProviderRequest: self._provider_request,
        }

    def handle(self, record: Record) -> None:
        """Materialise one record."""
        self._handlers[type(record)](record)

    def forget_calls(self) -> None:
        """In a forked child: the parent's calls are the parent's to record."""
        self._calls = {}
        self._calls_lock = threading.Lock()

    def calls_in_progress(self) -> list[str]:
        return [state.started.call_id for state in self._calls.values()]

    # --- helpers ------------------------------------------------------------------------------
    def _state(self, call_span_id: int) -> _CallState | None:
        state = self._calls.get(call_span_id)
        if state is not None:
            state.seen_ns = time.monotonic_ns()
        return state

    def _count_dropped(self, reason: str, count: int = 1, signal: str = "voice") -> None:
        self._m.telemetry_dropped.add(count, {sc.L_SIGNAL: signal, sc.L_REASON: reason})

    def _seconds(self, start_ns: int, end_ns: int) -> float | None:
        """A duration, or None (counted) when it is negative: only a user-given ``at=`` out
        of order can make it so, since the voice API's own clock is monotonic."""
        if end_ns < start_ns:
            self._count_dropped("negative_duration")
            return None
        return (end_ns - start_ns) / 1e9

    def _emit_span(
        self,
        name: str,
        started: CallStarted,
        span_id: int,
        parent_span_id: int,
        start_ns: int,
        end_ns: int,
        attributes: dict[str, Any],
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        events: tuple[Event, ...] | list[Event] = (),
        status: Status = _UNSET,
        parent_is_remote: bool = False,
        links: tuple[Link, ...] = (),
    ) -> None:
        """Hand a finished span to the span processors, if the engine sampled its trace."""
        if self._span_out is None or not started.trace_flags & 1:
            return
        flags = TraceFlags(started.trace_flags)
        parent = (
            SpanContext(started.trace_id, parent_span_id, parent_is_remote, flags)
            if parent_span_id
            else None
        )
        self._span_out(
            ReadableSpan(
                name=name,
                context=SpanContext(started.trace_id, span_id, False, flags),
                parent=parent,
                resource=self._resource,
                attributes=attributes,
                events=events,
                links=links,
                kind=kind,
                status=status,
                start_time=start_ns,
                end_time=end_ns,
                instrumentation_scope=self._scope,
            )
        )

    @staticmethod
    def _span_attributes(started: CallStarted) -> dict[str, Any]:
        return {
            sc.CALL_ID: started.call_id,
            sc.CONVERSATION_ID: started.call_id,
            sc.TENANT: started.tenant,
            sc.PIPELINE: started.pipeline,
        }

    # --- calls --------------------------------------------------------------------------------
    def _call_started(self, started: CallStarted) -> None:
        if started.span_id in self._calls:  # sent again after an export-process restart
            return
        labels = {
            sc.L_TENANT: self._labels.tenant(started.tenant),
            sc.L_PIPELINE: self._labels.pipeline(started.pipeline),
        }
        self._m.calls_active.add(1, labels)
        with self._calls_lock:
            self._calls[started.span_id] = _CallState(started, labels)

    def _call_ended(self, ended: CallEnded) -> None:
        """The call hung up: it stops counting as active; its count and duration go out, and
        its record too once no stage is open."""
        state = self._state(ended.call_span_id)
        if state is None or state.ended is not None:  # unknown (expired) or hung up already
            return
        self._hung_up(state, ended)
        if ended.complete:
            self._record_call(state, ended)

    def _call_closed(self, closed: CallClosed) -> None:
        state = self._state(closed.call_span_id)
        if state is not None and state.ended is not None:
            self._record_call(state, state.ended)

    def _hung_up(self, state: _CallState, ended: CallEnded) -> None:
        state.ended = ended
        started, labels = state.started, state.labels
        status = self._labels.status(ended.status)
        failure = (
            self._labels.failure(ended.failure_reason) if ended.status != "completed" else "none"
        )
        self._m.calls_active.add(-1, labels)
        self._m.calls.add(1, {**labels, sc.L_STATUS: status, sc.L_FAILURE_REASON: failure})
        duration = self._seconds(started.start_ns, ended.end_ns)
        if duration is not None:
            self._m.call_duration.record(
                duration,
                {**labels, sc.L_STATUS: status, sc.EXEMPLAR_CALL_ID: started.call_id},
                context=state.context,
            )
        self._m.call_stream_restarts.record(
            ended.restarts,
            {sc.L_PIPELINE: labels[sc.L_PIPELINE], sc.EXEMPLAR_CALL_ID: started.call_id},
            context=state.context,
        )

    def _record_call(self, state: _CallState, ended: CallEnded) -> None:
        """The call's span and cost, once all it can have is known; then its state goes."""
        started = state.started
        attributes = self._span_attributes(started)
        attributes[sc.CALL_DIRECTION] = started.direction
        if started.caller:
            attributes[sc.CALL_CALLER] = started.caller
        attributes.update(
            {
                sc.CALL_STATUS: ended.status,
                sc.CALL_FAILURE_REASON: ended.failure_reason,
                sc.CALL_TURNS: ended.turns,
                sc.CALL_STREAM_RESTARTS: ended.restarts,
                sc.CALL_COST: round(state.cost_usd, 6),
            }
        )
        link = started.link
        self._emit_span(
            sc.SPAN_CALL,
            started,
            started.span_id,
            started.parent_span_id,
            started.start_ns,
            ended.end_ns,
            attributes,
            kind=SpanKind.SERVER,
            events=state.restarts,
            status=Status(StatusCode.ERROR, ended.failure_reason)
            if ended.status == "failed"
            else _UNSET,
            parent_is_remote=started.parent_is_remote,
            links=(Link(SpanContext(link[0], link[1], False, TraceFlags(link[2]))),)
            if link
            else (),
        )
        self._m.call_cost.record(
            state.cost_usd,
            {**state.labels, sc.EXEMPLAR_CALL_ID: started.call_id},
            context=state.context,
        )
        with self._calls_lock:
            del self._calls[started.span_id]

    def observe_oldest_calls(self, _: CallbackOptions) -> Iterable[Observation]:
        """Age of the oldest call in progress per tenant and pipeline (read at collection)."""
        with self._calls_lock:
            active = [
                (state.started.start_monotonic_ns, state.labels)
                for state in self._calls.values()
                if state.ended is None
            ]
        oldest: dict[tuple[str, ...], tuple[int, dict[str, str]]] = {}
        for start, labels in active:  # start on the monotonic clock
            key = tuple(labels.values())
            if key not in oldest or start < oldest[key][0]:
                oldest[key] = (start, labels)
        now = time.monotonic_ns()
        for start, labels in oldest.values():
            yield Observation(max(0.0, (now - start) / 1e9), labels)

    def every_second(self) -> None:
        """Calls with no news for ``call_expiry_s`` are ended; hung-up calls waiting on a stage
        that was never ended are recorded without it after a grace period."""
        now = time.monotonic_ns()
        grace = min(_STAGE_GRACE_NS, self._expiry_ns)
        late = [
            state
            for state in self._calls.values()
            if now - state.seen_ns > (grace if state.ended is not None else self._expiry_ns)
        ]
        for state in late:
            self._expire(state)

    def _expire(self, state: _CallState) -> None:
        """Record a call whose end never came as ``abandoned`` now, or one whose stage never
        ended with what it has; counted either way."""
        if state.ended is not None:
            self._count_dropped("stage_not_ended")
            self._record_call(state, state.ended)
            return
        self._count_dropped("call_expired")
        started = state.started
        elapsed = max(0, time.monotonic_ns() - started.start_monotonic_ns)
        ended = CallEnded(
            started.span_id, started.start_ns + elapsed, "abandoned", "none", 0, 0, True
        )
        self._hung_up(state, ended)
        self._record_call(state, ended)

    # --- turns and stages ---------------------------------------------------------------------
    def _turn(self, turn: TurnEnded) -> None:
        state = self._state(turn.call_span_id)
        if state is None:
            self._count_dropped("unknown_call")
            return
        started, labels = state.started, state.labels
        attributes = self._span_attributes(started)
        attributes[sc.TURN_NUMBER] = turn.number
        attributes[sc.TURN_INTERRUPTED] = turn.interrupted_ns is not None
        latency = eou = None
        if turn.speech_end_ns is not None and turn.agent_audio_ns is not None:
            latency = self._seconds(turn.speech_end_ns, turn.agent_audio_ns)
        if latency is not None:
            attributes[sc.TURN_LATENCY] = latency
        if turn.eou_ns is not None and turn.speech_end_ns is not None:
            eou = self._seconds(turn.speech_end_ns, turn.eou_ns)
        if eou is not None:
            attributes[sc.TURN_EOU_DELAY] = eou
        events = [
            Event(name, timestamp=at)
            for name, at in (
                (sc.EVENT_USER_SPEECH_ENDED, turn.speech_end_ns),
                (sc.EVENT_EOU_DETECTED, turn.eou_ns),
                (sc.EVENT_AGENT_AUDIO_STARTED, turn.agent_audio_ns),
                (sc.EVENT_BARGE_IN, turn.interrupted_ns),
            )
            if at is not None
        ]
        self._emit_span(
            sc.SPAN_TURN,
            started,
            turn.span_id,
            started.span_id,
            turn.start_ns,
            turn.end_ns,
            attributes,
            events=events,
        )
        ctx = _exemplar_context(started.trace_id, turn.span_id, started.trace_flags)
        with_call = {**labels, sc.EXEMPLAR_CALL_ID: started.call_id}
        if latency is not None:
            self._m.turn_latency.record(latency, with_call, context=ctx)
        self._m.turns.add(
            1, {**labels, sc.L_INTERRUPTED: "true" if turn.interrupted_ns else "false"}
        )
        if eou is not None:
            breakdown = {
                **with_call,
                sc.L_PROVIDER: self._labels.provider(turn.eou_provider),
                sc.L_MODEL: self._labels.model(turn.eou_model),
            }
            self._m.eou_delay.record(eou, breakdown, context=ctx)
        for stage in turn.stages:
            self._stage_of(state, stage)

    def _stage(self, stage: StageEnded) -> None:
        state = self._state(stage.call_span_id)
        if state is None:
            self._count_dropped("unknown_call")
            return
        self._stage_of(state, stage)

    def _stage_of(self, state: _CallState, stage: StageEnded) -> None:
        started = state.started
        attributes = self._span_attributes(started)
        attributes[sc.TURN_NUMBER] = stage.turn_number
        attributes[sc.STAGE] = stage.kind
        attributes[sc.GEN_AI_OPERATION] = _OPERATION[stage.kind]
        if stage.kind == "tool":
            attributes[sc.GEN_AI_TOOL_NAME] = stage.provider
        else:
            attributes[sc.GEN_AI_PROVIDER] = stage.provider
            attributes[sc.GEN_AI_REQUEST_MODEL] = stage.model
        ttfc = self._seconds(stage.start_ns, stage.first_chunk_ns) if stage.first_chunk_ns else None
        if ttfc is not None:
            attributes[sc.STAGE_TTFC] = ttfc
        if stage.audio_seconds:
            attributes[sc.STT_AUDIO_SECONDS] = stage.audio_seconds
        if stage.input_tokens or stage.output_tokens:
            attributes[sc.GEN_AI_INPUT_TOKENS] = stage.input_tokens
            attributes[sc.GEN_AI_OUTPUT_TOKENS] = stage.output_tokens
        if stage.characters:
            attributes[sc.TTS_CHARACTERS] = stage.characters
        if self._export_text and stage.text:
            key = sc.STT_TRANSCRIPT if stage.kind == "stt" else sc.LLM_RESPONSE_TEXT
            attributes[key] = truncate(self._redactor.text(stage.text), self._max_text)
        cost = self._stage_cost(state, stage)
        if cost:
            attributes[sc.COST_USD] = cost
        if stage.error_type:
            attributes[sc.ERROR_TYPE] = stage.error_type
        self._emit_span(
            _SPAN_NAME[stage.kind],
            started,
            stage.span_id,
            stage.turn_span_id,
            stage.start_ns,
            stage.end_ns,
            attributes,
            events=(Event(sc.EVENT_FIRST_CHUNK, timestamp=stage.first_chunk_ns),)
            if stage.first_chunk_ns is not None
            else (),
            status=Status(StatusCode.ERROR, stage.error_type) if stage.error_type else _UNSET,
        )
        if stage.kind != "tool":
            self._stage_metrics(state, stage, ttfc)

    def _stage_metrics(self, state: _CallState, stage: StageEnded, ttfc: float | None) -> None:
        m, g = self._m, self._labels
        started = state.started
        provider, model = g.provider(stage.provider), g.model(stage.model)
        usage = {**state.labels, sc.L_PROVIDER: provider, sc.L_MODEL: model}
        timing = {**usage, sc.EXEMPLAR_CALL_ID: started.call_id}
        ctx = _exemplar_context(started.trace_id, stage.span_id, started.trace_flags)
        outcome = g.outcome(stage.error_type) if stage.error_type else "ok"
        m.provider_requests.add(
            1, {sc.L_PROVIDER: provider, sc.L_COMPONENT: stage.kind, sc.L_OUTCOME: outcome}
        )
        if stage.kind == "stt":
            final = stage.first_chunk_ns
            since = stage.turn_speech_end_ns or stage.start_ns
            if final is not None:
                m.stt_latency.record(max(0.0, (final - since) / 1e9), timing, context=ctx)
            if stage.audio_seconds:
                m.stt_audio.add(stage.audio_seconds, usage)
        elif stage.kind == "llm":
            if ttfc is not None:
                m.llm_ttft.record(ttfc, timing, context=ctx)
            duration = self._seconds(stage.start_ns, stage.end_ns)
            if duration is not None:
                m.llm_duration.record(duration, timing, context=ctx)
            if stage.input_tokens:
                m.llm_tokens.add(stage.input_tokens, {**usage, sc.L_TYPE: "input"})
            if stage.output_tokens:
                m.llm_tokens.add(stage.output_tokens, {**usage, sc.L_TYPE: "output"})
        else:
            if ttfc is not None:
                m.tts_ttfb.record(ttfc, timing, context=ctx)
            if stage.characters:
                m.tts_characters.add(stage.characters, usage)

    def _stage_cost(self, state: _CallState, stage: StageEnded) -> float:
        if stage.kind == "tool":
            return 0.0
        cost = self._rate_card.cost(
            stage.provider,
            stage.model,
            audio_seconds=stage.audio_seconds,
            input_tokens=stage.input_tokens,
            output_tokens=stage.output_tokens,
            characters=stage.characters,
        )
        if cost:
            state.cost_usd += cost
            self._m.cost.add(
                cost,
                {
                    **state.labels,
                    sc.L_COMPONENT: stage.kind,
                    sc.L_PROVIDER: self._labels.provider(stage.provider),
                },
            )
        return cost

    # --- everything else ----------------------------------------------------------------------
    def _jitter(self, snapshot: JitterSnapshot) -> None:
        """One histogram point: the mean depth of the frames since the previous snapshot."""
        state = self._state(snapshot.call_span_id)
        if state is None:
            return  # the call's record went out already: a late periodic snapshot
        seen_count, seen_total = state.jitter.get(snapshot.direction, (0, 0.0))
        frames = snapshot.frames - seen_count
        if frames <= 0:
            return  # an older snapshot overtaken by a newer one
        state.jitter[snapshot.direction] = (snapshot.frames, snapshot.total)
        mean = (snapshot.total - seen_total) / frames
        started = state.started
        self._m.jitter_buffer_depth.record(
            max(0.0, mean),
            {
                sc.L_PIPELINE: state.labels[sc.L_PIPELINE],
                sc.L_DIRECTION: self._labels.direction(snapshot.direction),
                sc.EXEMPLAR_CALL_ID: started.call_id,
            },
            context=state.context,
        )

    def _restart(self, restart: StreamRestarted) -> None:
        state = self._state(restart.call_span_id)
        pipeline = state.labels[sc.L_PIPELINE] if state else sc.OTHER
        self._m.stream_restarts.add(
            1,
            {
                sc.L_PIPELINE: pipeline,
                sc.L_PROVIDER: self._labels.provider(restart.provider),
                sc.L_COMPONENT: self._labels.component(restart.component),
                sc.L_REASON: self._labels.reason(restart.reason),
            },
        )
        if state is not None:
            state.restarts.append(
                Event(
                    sc.EVENT_STREAM_RESTART,
                    {
                        sc.GEN_AI_PROVIDER: restart.provider,
                        sc.STAGE: restart.component,
                        "voice.reason": restart.reason,
                    },
                    timestamp=restart.at_ns,
                )
            )

    def _dropped(self, dropped: Dropped) -> None:
        self._count_dropped(dropped.reason, dropped.items, dropped.signal)

    def _export_failed(self, failed: ExportFailed) -> None:
        self._m.export_failures.add(1, {sc.L_SIGNAL: failed.signal})

    def _circuit_state(self, item: CircuitState) -> None:
        self._m.circuit_state.set(item.value, {sc.L_PROVIDER: self._labels.provider(item.provider)})

    def _provider_request(self, item: ProviderRequest) -> None:
        self._m.provider_requests.add(
            1,
            {
                sc.L_PROVIDER: self._labels.provider(item.provider),
                sc.L_COMPONENT: self._labels.component(item.component),
                sc.L_OUTCOME: self._labels.outcome(item.outcome),
            },
        )
