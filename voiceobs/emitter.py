"""Turns finished calls, turns and stages into spans, metric points and exemplars.

Everything here except :meth:`Emitter.start_call_span` and the ``submit_*`` methods runs on
the recorder's background thread. The emitter is the one owner of per-call state: the calls
in progress, their jitter buffers, and when each call's record may go out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, Tracer

from voiceobs import semconv as sc
from voiceobs.cost import RateCard
from voiceobs.instruments import Instruments
from voiceobs.labels import LabelGuard, fixed
from voiceobs.recorder import Recorder
from voiceobs.redaction import Redactor, truncate
from voiceobs.voice import Call, JitterBuffer, Stage, Turn

_OPERATION = {
    "stt": "speech_to_text",
    "llm": "chat",
    "tts": "text_to_speech",
    "tool": "execute_tool",
}
_SPAN_NAME = {"stt": sc.SPAN_STT, "llm": sc.SPAN_LLM, "tts": sc.SPAN_TTS, "tool": sc.SPAN_TOOL}
_STAGE_GRACE_NS = 60 * 10**9
"""How long a hung-up call's record waits for a stage left open (never ended) at most."""


class PresetIdGenerator(IdGenerator):
    """Lets the worker give a span the id its scope chose on the engine's thread."""

    def __init__(self, fallback: IdGenerator | None = None) -> None:
        self._fallback = fallback or RandomIdGenerator()
        self._local = threading.local()

    def preset(self, span_id: int) -> None:
        self._local.span_id = span_id

    def generate_span_id(self) -> int:
        span_id: int = getattr(self._local, "span_id", 0)
        if span_id:
            self._local.span_id = 0
            return span_id
        return self._fallback.generate_span_id()

    def generate_trace_id(self) -> int:
        return self._fallback.generate_trace_id()


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


class Emitter:
    """Materialises voice scopes; owns the recorder that feeds it."""

    def __init__(
        self,
        tracer: Tracer,
        ids: PresetIdGenerator,
        instruments: Instruments,
        labels: Labels,
        rate_card: RateCard,
        redactor: Redactor,
        *,
        queue_size: int,
        export_text: bool,
        max_text_length: int,
        call_expiry_s: float = 4 * 3600.0,
    ) -> None:
        self._tracer = tracer
        self._ids = ids
        self._m = instruments
        self._labels = labels
        self._rate_card = rate_card
        self._redactor = redactor
        self._export_text = export_text
        self._max_text = max_text_length
        self._expiry_ns = int(call_expiry_s * 1e9)
        self._calls: dict[Call, bool] = {}
        """Calls started and not yet recorded, each with whether it has hung up. Written by
        the worker only (under the lock, for the gauge callback that reads it)."""
        self._calls_lock = threading.Lock()
        self.recorder = Recorder(
            queue_size, self._dropped, periodic=self._every_second, on_fork=self._forget_calls
        )

    # --- engine thread ----------------------------------------------------------------------
    def start_call_span(self, call: Call, parent: Context | None) -> trace.Span:
        """Start the call's root span (or a child of ``parent``, to continue a trace)."""
        current = trace.get_current_span()
        links = (
            [Link(current.get_span_context())] if parent is None and current.is_recording() else []
        )
        attributes: dict[str, Any] = {
            sc.CALL_ID: call.call_id,
            sc.CONVERSATION_ID: call.call_id,
            sc.TENANT: call.tenant,
            sc.PIPELINE: call.pipeline,
            sc.CALL_DIRECTION: call.direction,
        }
        if call.caller:
            attributes[sc.CALL_CALLER] = call.caller
        span = self._tracer.start_span(
            sc.SPAN_CALL,
            context=parent if parent is not None else Context(),
            kind=SpanKind.SERVER,
            attributes=attributes,
            links=links,
            start_time=call.start_ns,
        )
        self.recorder.submit(self._call_started, call, keep=True)
        return span

    def submit_turn(self, turn: Turn) -> None:
        self.recorder.submit(self._turn, turn)

    def submit_stage(self, stage: Stage) -> None:
        self.recorder.submit(self._stage, stage)

    def submit_hang_up(self, call: Call) -> None:
        """The call hung up with stages still open: it stops counting as active."""
        self.recorder.submit(self._hang_up, call, keep=True)

    def submit_call_close(self, call: Call) -> None:
        """The call hung up and its last stage ended: its record goes out."""
        self.recorder.submit(self._close, call, keep=True)

    def submit_restart(self, event: tuple[Call, str, str, str, int]) -> None:
        self.recorder.submit(self._restart, event)

    def count_dropped(self, signal: str, reason: str) -> None:
        """Count telemetry voiceobs refused (bad events…) in the self-metric."""
        self.recorder.submit(self._count_dropped, (signal, reason))

    def submit_circuit_state(self, provider: str, value: int) -> None:
        self.recorder.submit(self._circuit_state, (provider, value))

    def submit_provider_request(self, provider: str, component: str, outcome: str) -> None:
        self.recorder.submit(self._provider_request, (provider, component, outcome))

    # --- worker thread ----------------------------------------------------------------------
    def _dropped(self, reason: str, count: int) -> None:
        self._m.telemetry_dropped.add(count, {sc.L_SIGNAL: "voice", sc.L_REASON: reason})

    def _count_dropped(self, item: tuple[str, str]) -> None:
        signal, reason = item
        self._m.telemetry_dropped.add(1, {sc.L_SIGNAL: signal, sc.L_REASON: reason})

    def _call_labels(self, call: Call) -> dict[str, str]:
        """The call's bounded tenant and pipeline labels, worked out once per call."""
        if not call.metric_labels:
            call.metric_labels = {
                sc.L_TENANT: self._labels.tenant(call.tenant),
                sc.L_PIPELINE: self._labels.pipeline(call.pipeline),
            }
        return call.metric_labels

    def _seconds(self, start_ns: int, end_ns: int) -> float | None:
        """A duration, or None (counted) when it is negative: only a user-given ``at=`` out
        of order can make it so, since the voice API's own clock is monotonic."""
        if end_ns < start_ns:
            self._m.telemetry_dropped.add(
                1, {sc.L_SIGNAL: "voice", sc.L_REASON: "negative_duration"}
            )
            return None
        return (end_ns - start_ns) / 1e9

    def _forget_calls(self) -> None:
        """In a forked child: the parent's calls are the parent's to record."""
        self._calls = {}
        self._calls_lock = threading.Lock()

    def _call_started(self, call: Call) -> None:
        self._m.calls_active.add(1, self._call_labels(call))
        with self._calls_lock:
            self._calls[call] = False

    def _hang_up(self, call: Call) -> None:
        self._hung_up(call, call.status, call.failure_reason, call.end_ns or call.now_ns())

    def _hung_up(self, call: Call, status: str, failure_reason: str, end_ns: int) -> None:
        """The call stops counting as active; its count and duration go out."""
        if self._calls.get(call) is not False:  # unknown (expired) or hung up already
            return
        with self._calls_lock:
            self._calls[call] = True
        labels = self._call_labels(call)
        status_label = self._labels.status(status)
        failure = self._labels.failure(failure_reason) if status != "completed" else "none"
        ctx = call.context()
        self._m.calls_active.add(-1, labels)
        self._m.calls.add(1, {**labels, sc.L_STATUS: status_label, sc.L_FAILURE_REASON: failure})
        duration = self._seconds(call.start_ns, end_ns)
        if duration is not None:
            self._m.call_duration.record(
                duration,
                {**labels, sc.L_STATUS: status_label, sc.EXEMPLAR_CALL_ID: call.call_id},
                context=ctx,
            )
        self._m.call_stream_restarts.record(
            call.restarts,
            {sc.L_PIPELINE: labels[sc.L_PIPELINE], sc.EXEMPLAR_CALL_ID: call.call_id},
            context=ctx,
        )

    def observe_oldest_calls(self, _: CallbackOptions) -> Iterable[Observation]:
        """Age of the oldest call in progress per tenant and pipeline (read at collection)."""
        with self._calls_lock:
            active = [
                (call.start_monotonic_ns, call.metric_labels)
                for call, hung_up in self._calls.items()
                if not hung_up
            ]
        oldest: dict[tuple[str, ...], tuple[int, dict[str, str]]] = {}
        for start, labels in active:  # start on the monotonic clock
            key = tuple(labels.values())
            if key not in oldest or start < oldest[key][0]:
                oldest[key] = (start, labels)
        now = time.monotonic_ns()
        for start, labels in oldest.values():
            yield Observation(max(0.0, (now - start) / 1e9), labels)

    def _span_attributes(self, call: Call) -> dict[str, Any]:
        return {
            sc.CALL_ID: call.call_id,
            sc.CONVERSATION_ID: call.call_id,
            sc.TENANT: call.tenant,
            sc.PIPELINE: call.pipeline,
        }

    def _start(
        self, name: str, scope: Turn | Stage, parent: Context, attributes: dict[str, Any]
    ) -> trace.Span:
        self._ids.preset(scope.span_id)
        return self._tracer.start_span(
            name, context=parent, attributes=attributes, start_time=scope.start_ns
        )

    def _turn(self, turn: Turn) -> None:
        call = turn.call
        labels = self._call_labels(call)
        attributes = self._span_attributes(call)
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
        span = self._start(sc.SPAN_TURN, turn, call.context(), attributes)
        for name, at in (
            (sc.EVENT_USER_SPEECH_ENDED, turn.speech_end_ns),
            (sc.EVENT_EOU_DETECTED, turn.eou_ns),
            (sc.EVENT_AGENT_AUDIO_STARTED, turn.agent_audio_ns),
            (sc.EVENT_BARGE_IN, turn.interrupted_ns),
        ):
            if at is not None:
                span.add_event(name, timestamp=at)
        span.end(end_time=turn.end_ns)

        ctx = turn.context()
        with_call = {**labels, sc.EXEMPLAR_CALL_ID: call.call_id}
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
        for stage in turn.stages_done:
            self._stage(stage)

    def _stage(self, stage: Stage) -> None:
        turn, call = stage.turn, stage.turn.call
        attributes = self._span_attributes(call)
        attributes[sc.TURN_NUMBER] = turn.number
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
        cost = self._stage_cost(stage, call)
        if cost:
            attributes[sc.COST_USD] = cost
        if stage.error_type:
            attributes[sc.ERROR_TYPE] = stage.error_type
        span = self._start(_SPAN_NAME[stage.kind], stage, turn.context(), attributes)
        if stage.first_chunk_ns is not None:
            span.add_event(sc.EVENT_FIRST_CHUNK, timestamp=stage.first_chunk_ns)
        if stage.error_type:
            span.set_status(Status(StatusCode.ERROR, stage.error_type))
        span.end(end_time=stage.end_ns)
        if stage.kind != "tool":
            self._stage_metrics(stage, call, ttfc)

    def _stage_metrics(self, stage: Stage, call: Call, ttfc: float | None) -> None:
        m, g = self._m, self._labels
        provider, model = g.provider(stage.provider), g.model(stage.model)
        usage = {**self._call_labels(call), sc.L_PROVIDER: provider, sc.L_MODEL: model}
        timing = {**usage, sc.EXEMPLAR_CALL_ID: call.call_id}
        ctx = stage.context()
        outcome = g.outcome(stage.error_type) if stage.error_type else "ok"
        m.provider_requests.add(
            1, {sc.L_PROVIDER: provider, sc.L_COMPONENT: stage.kind, sc.L_OUTCOME: outcome}
        )
        if stage.kind == "stt":
            final = stage.first_chunk_ns
            since = stage.turn.speech_end_ns or stage.start_ns
            if final is not None:
                m.stt_latency.record(max(0.0, (final - since) / 1e9), timing, context=ctx)
            if stage.audio_seconds:
                m.stt_audio.add(stage.audio_seconds, usage)
        elif stage.kind == "llm":
            if ttfc is not None:
                m.llm_ttft.record(ttfc, timing, context=ctx)
            duration = self._seconds(stage.start_ns, stage.end_ns) if stage.end_ns else None
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

    def _stage_cost(self, stage: Stage, call: Call) -> float:
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
            call.cost_usd += cost
            self._m.cost.add(
                cost,
                {
                    **self._call_labels(call),
                    sc.L_COMPONENT: stage.kind,
                    sc.L_PROVIDER: self._labels.provider(stage.provider),
                },
            )
        return cost

    def _restart(self, event: tuple[Call, str, str, str, int]) -> None:
        call, provider, component, reason, at = event
        self._m.stream_restarts.add(
            1,
            {
                sc.L_PIPELINE: self._labels.pipeline(call.pipeline),
                sc.L_PROVIDER: self._labels.provider(provider),
                sc.L_COMPONENT: self._labels.component(component),
                sc.L_REASON: self._labels.reason(reason),
            },
        )
        if call.span.is_recording():
            call.span.add_event(
                sc.EVENT_STREAM_RESTART,
                {sc.GEN_AI_PROVIDER: provider, sc.STAGE: component, "voice.reason": reason},
                timestamp=at,
            )

    def _close(self, call: Call) -> None:
        """The call hung up and its stages ended: its span and cost go out, once."""
        if call in self._calls and call.end_ns is not None:
            self._hang_up(call)
            self._record_call(call, call.status, call.failure_reason, call.end_ns)

    def _every_second(self, _: None = None) -> None:
        """One jitter-buffer point per call in progress and direction; calls with no new turn
        for ``call_expiry_s`` are ended, and hung-up calls waiting on a stage that was never
        ended are recorded without it after a grace period."""
        now = time.monotonic_ns()
        grace = min(_STAGE_GRACE_NS, self._expiry_ns)
        late = []
        for call, hung_up in self._calls.items():
            for buffer in call.buffers:
                self._sample_buffer(buffer)
            if now - call.active_monotonic_ns > (grace if hung_up else self._expiry_ns):
                late.append(call)
        for call in late:
            self._expire(call)

    def _expire(self, call: Call) -> None:
        """Record a call whose end never came as ``abandoned`` now, or one whose stage never
        ended with what it has; counted either way."""
        end_ns = call.end_ns
        if self._calls[call] and end_ns is not None:
            reason = "stage_not_ended"
            self._record_call(call, call.status, call.failure_reason, end_ns)
        else:
            reason = "call_expired"
            end_ns = call.now_ns()
            self._hung_up(call, "abandoned", "none", end_ns)
            self._record_call(call, "abandoned", "none", end_ns)
        self._m.telemetry_dropped.add(1, {sc.L_SIGNAL: "voice", sc.L_REASON: reason})

    def _record_call(self, call: Call, status: str, failure_reason: str, end_ns: int) -> None:
        """The call's span and cost, once all it can have is known; then its state goes."""
        span = call.span
        span.set_attributes(
            {
                sc.CALL_STATUS: status,
                sc.CALL_FAILURE_REASON: failure_reason,
                sc.CALL_TURNS: len(call.turns),
                sc.CALL_STREAM_RESTARTS: call.restarts,
                sc.CALL_COST: round(call.cost_usd, 6),
            }
        )
        if status == "failed":
            span.set_status(Status(StatusCode.ERROR, failure_reason))
        span.end(end_time=end_ns)
        self._m.call_cost.record(
            call.cost_usd,
            {**self._call_labels(call), sc.EXEMPLAR_CALL_ID: call.call_id},
            context=call.context(),
        )
        for buffer in call.buffers:
            self._sample_buffer(buffer)
        with self._calls_lock:
            del self._calls[call]

    def _sample_buffer(self, buffer: JitterBuffer) -> None:
        count, total = buffer.count, buffer.total
        frames = count - buffer.seen_count
        if frames <= 0:
            return
        mean = (total - buffer.seen_total) / frames
        buffer.seen_count, buffer.seen_total = count, total
        call = buffer.call
        self._m.jitter_buffer_depth.record(
            max(0.0, mean),
            {
                sc.L_PIPELINE: self._labels.pipeline(call.pipeline),
                sc.L_DIRECTION: self._labels.direction(buffer.direction),
                sc.EXEMPLAR_CALL_ID: call.call_id,
            },
            context=call.context(),
        )

    def _circuit_state(self, item: tuple[str, int]) -> None:
        provider, value = item
        self._m.circuit_state.set(value, {sc.L_PROVIDER: self._labels.provider(provider)})

    def _provider_request(self, item: tuple[str, str, str]) -> None:
        provider, component, outcome = item
        self._m.provider_requests.add(
            1,
            {
                sc.L_PROVIDER: self._labels.provider(provider),
                sc.L_COMPONENT: self._labels.component(component),
                sc.L_OUTCOME: self._labels.outcome(outcome),
            },
        )
