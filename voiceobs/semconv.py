"""The telemetry contract: every span, attribute and metric name voiceobs emits.

Dashboards, alert rules and ``docs/metrics.md`` depend on these names; a test checks the
docs against this module. OpenTelemetry instrument names (dotted) are listed with the name
Prometheus shows for them once the unit suffix and ``_total`` are added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

# --- Spans -----------------------------------------------------------------------------------
SPAN_CALL: Final = "voice.call"
SPAN_TURN: Final = "voice.turn"
SPAN_STT: Final = "voice.stt"
SPAN_LLM: Final = "voice.llm"
SPAN_TTS: Final = "voice.tts"
SPAN_TOOL: Final = "voice.tool"

# --- Span and log attributes -----------------------------------------------------------------
CALL_ID: Final = "voice.call.id"
"""The call id: on every span and log record of a call, and on exemplars; never a label."""
EXEMPLAR_CALL_ID: Final = "voice_call_id"
"""The call id's key on exemplars: a valid Prometheus label name, the same as Loki's
structured-metadata name, so one ``voice_call_id`` leads from a metric to the call's logs."""
CONVERSATION_ID: Final = "gen_ai.conversation.id"
"""GenAI alias of the call id, so GenAI-aware tools group a call's spans."""
TENANT: Final = "voice.tenant"
PIPELINE: Final = "voice.pipeline"
CALL_DIRECTION: Final = "voice.call.direction"
CALL_CALLER: Final = "voice.call.caller"
"""Caller id (phone number or SIP URI); redacted before export."""
CALL_STATUS: Final = "voice.call.status"
CALL_FAILURE_REASON: Final = "voice.call.failure_reason"
CALL_TURNS: Final = "voice.call.turns"
CALL_COST: Final = "voice.call.cost_usd"
CALL_STREAM_RESTARTS: Final = "voice.call.stream_restarts"

TURN_NUMBER: Final = "voice.turn.number"
TURN_LATENCY: Final = "voice.turn.latency"
"""Seconds from the end of the user's speech to the first audio of the agent."""
TURN_INTERRUPTED: Final = "voice.turn.interrupted"
TURN_EOU_DELAY: Final = "voice.turn.eou_delay"

STAGE: Final = "voice.stage"
"""Which part of the turn a stage span is: stt, llm, tts or tool."""
STAGE_TTFC: Final = "voice.stage.time_to_first_chunk"
"""Seconds to the first useful output: STT final transcript, LLM token, TTS audio byte."""
STT_AUDIO_SECONDS: Final = "voice.stt.audio_seconds"
STT_TRANSCRIPT: Final = "voice.stt.transcript"
"""Exported only when transcripts are switched on, and then redacted."""
LLM_RESPONSE_TEXT: Final = "voice.llm.response"
TTS_CHARACTERS: Final = "voice.tts.characters"
COST_USD: Final = "voice.cost_usd"

GEN_AI_PROVIDER: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_OPERATION: Final = "gen_ai.operation.name"
GEN_AI_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
ERROR_TYPE: Final = "error.type"

# Span events
EVENT_USER_SPEECH_ENDED: Final = "voice.user_speech_ended"
EVENT_EOU_DETECTED: Final = "voice.eou_detected"
EVENT_AGENT_AUDIO_STARTED: Final = "voice.agent_audio_started"
EVENT_BARGE_IN: Final = "voice.barge_in"
EVENT_STREAM_RESTART: Final = "voice.stream_restart"
EVENT_FIRST_CHUNK: Final = "voice.first_chunk"

# --- Metric labels (bounded values only) -----------------------------------------------------
L_TENANT: Final = "tenant"
L_PIPELINE: Final = "pipeline"
L_STATUS: Final = "status"
L_FAILURE_REASON: Final = "failure_reason"
L_INTERRUPTED: Final = "interrupted"
L_PROVIDER: Final = "provider"
L_MODEL: Final = "model"
L_COMPONENT: Final = "component"
L_REASON: Final = "reason"
L_DIRECTION: Final = "direction"
L_TYPE: Final = "type"
L_OUTCOME: Final = "outcome"
L_SIGNAL: Final = "signal"

OTHER: Final = "other"
"""The value a label takes when the real one is outside its allow-list."""

# Bounded vocabularies
COMPONENTS: Final = ("stt", "llm", "tts", "tool")
CALL_STATUSES: Final = ("completed", "failed", "abandoned", "transferred")
FAILURE_REASONS: Final = (
    "none",
    "stt_error",
    "llm_error",
    "tts_error",
    "tool_error",
    "provider_down",
    "timeout",
    "network",
    "internal_error",
)
OUTCOMES: Final = ("ok", "error", "timeout", "rate_limited", "cancelled")
CIRCUIT_STATES: Final = {"closed": 0, "half_open": 1, "open": 2}
DIRECTIONS: Final = ("inbound", "outbound")

# --- Histogram buckets (seconds) -------------------------------------------------------------
TURN_LATENCY_BUCKETS: Final = (
    0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95,
    1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0,
)  # fmt: skip
"""50 ms steps between 0.5 s and 1 s, around the 800 ms budget."""
STAGE_LATENCY_BUCKETS: Final = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5,
    0.6, 0.7, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0,
)  # fmt: skip
LLM_DURATION_BUCKETS: Final = (
    0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
    90.0, 120.0,
)  # fmt: skip
"""A whole LLM response: long answers and tool loops take tens of seconds, past the stage
buckets' 5 s."""
CALL_DURATION_BUCKETS: Final = (
    5.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 450.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0,
)  # fmt: skip
CALL_COST_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
RESTART_COUNT_BUCKETS: Final = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0)
JITTER_BUFFER_BUCKETS: Final = (
    0.0, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3, 0.5, 1.0,
)  # fmt: skip

Kind = Literal["counter", "updowncounter", "histogram", "gauge", "observable_gauge"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric of the contract: its instrument name and what Prometheus calls it."""

    name: str
    prometheus: str
    kind: Kind
    unit: str
    labels: tuple[str, ...]
    description: str
    buckets: tuple[float, ...] | None = None


_BREAKDOWN_LABELS = (L_TENANT, L_PIPELINE, L_PROVIDER, L_MODEL)
_USAGE_LABELS = (L_TENANT, L_PIPELINE, L_PROVIDER, L_MODEL)

CALLS = MetricSpec(
    "voice.calls", "voice_calls_total", "counter", "{call}",
    (L_TENANT, L_PIPELINE, L_STATUS, L_FAILURE_REASON), "Calls ended, by status and failure.",
)  # fmt: skip
CALLS_ACTIVE = MetricSpec(
    "voice.calls.active", "voice_calls_active", "updowncounter", "{call}",
    (L_TENANT, L_PIPELINE), "Calls in progress in this worker.",
)  # fmt: skip
CALLS_OLDEST_AGE = MetricSpec(
    "voice.calls.oldest_age", "voice_calls_oldest_age_seconds", "observable_gauge", "s",
    (L_TENANT, L_PIPELINE), "Age of the oldest call still in progress in this worker.",
)  # fmt: skip
CALL_DURATION = MetricSpec(
    "voice.call.duration", "voice_call_duration_seconds", "histogram", "s",
    (L_TENANT, L_PIPELINE, L_STATUS), "Call duration from start to hang-up.", CALL_DURATION_BUCKETS,
)  # fmt: skip
TURN_LATENCY_METRIC = MetricSpec(
    "voice.turn.latency", "voice_turn_latency_seconds", "histogram", "s",
    (L_TENANT, L_PIPELINE), "User speech end to agent audio start, per turn.",
    TURN_LATENCY_BUCKETS,
)  # fmt: skip
TURNS = MetricSpec(
    "voice.turns", "voice_turns_total", "counter", "{turn}",
    (L_TENANT, L_PIPELINE, L_INTERRUPTED), "Turns ended, by whether the user barged in.",
)  # fmt: skip
EOU_DELAY = MetricSpec(
    "voice.eou.delay", "voice_eou_delay_seconds", "histogram", "s", _BREAKDOWN_LABELS,
    "End-of-utterance detection delay after the user's speech ended.", STAGE_LATENCY_BUCKETS,
)  # fmt: skip
STT_LATENCY = MetricSpec(
    "voice.stt.latency", "voice_stt_latency_seconds", "histogram", "s", _BREAKDOWN_LABELS,
    "STT finalisation: user speech end to final transcript.", STAGE_LATENCY_BUCKETS,
)  # fmt: skip
LLM_TTFT = MetricSpec(
    "voice.llm.ttft", "voice_llm_ttft_seconds", "histogram", "s", _BREAKDOWN_LABELS,
    "LLM time to first token.", STAGE_LATENCY_BUCKETS,
)  # fmt: skip
LLM_DURATION = MetricSpec(
    "voice.llm.duration", "voice_llm_duration_seconds", "histogram", "s", _BREAKDOWN_LABELS,
    "LLM request duration to the last token.", LLM_DURATION_BUCKETS,
)  # fmt: skip
TTS_TTFB = MetricSpec(
    "voice.tts.ttfb", "voice_tts_ttfb_seconds", "histogram", "s", _BREAKDOWN_LABELS,
    "TTS time to first audio byte.", STAGE_LATENCY_BUCKETS,
)  # fmt: skip
STREAM_RESTARTS = MetricSpec(
    "voice.stream.restarts", "voice_stream_restarts_total", "counter", "{restart}",
    (L_PIPELINE, L_PROVIDER, L_COMPONENT, L_REASON), "Streaming connection restarts.",
)  # fmt: skip
CALL_STREAM_RESTARTS_METRIC = MetricSpec(
    "voice.call.stream_restarts", "voice_call_stream_restarts", "histogram", "{restart}",
    (L_PIPELINE,), "Streaming restarts per call, recorded at call end.", RESTART_COUNT_BUCKETS,
)  # fmt: skip
JITTER_BUFFER_DEPTH = MetricSpec(
    "voice.jitter_buffer.depth", "voice_jitter_buffer_depth_seconds", "histogram", "s",
    (L_PIPELINE, L_DIRECTION),
    "Jitter-buffer depth, one point per call and direction per second (the mean of its frames).",
    JITTER_BUFFER_BUCKETS,
)  # fmt: skip
STT_AUDIO = MetricSpec(
    "voice.stt.audio", "voice_stt_audio_seconds_total", "counter", "s", _USAGE_LABELS,
    "Audio seconds sent to STT.",
)  # fmt: skip
LLM_TOKENS = MetricSpec(
    "voice.llm.tokens", "voice_llm_tokens_total", "counter", "{token}", (*_USAGE_LABELS, L_TYPE),
    "LLM tokens, type=input|output.",
)  # fmt: skip
TTS_CHARACTERS_METRIC = MetricSpec(
    "voice.tts.characters", "voice_tts_characters_total", "counter", "{character}",
    _USAGE_LABELS, "Characters synthesised by TTS.",
)  # fmt: skip
COST = MetricSpec(
    "voice.cost.usd", "voice_cost_usd_total", "counter", "{USD}",
    (L_TENANT, L_PIPELINE, L_COMPONENT, L_PROVIDER), "Cost in US dollars from the rate card.",
)  # fmt: skip
CALL_COST_METRIC = MetricSpec(
    "voice.call.cost.usd", "voice_call_cost_usd", "histogram", "{USD}",
    (L_TENANT, L_PIPELINE), "Cost of each call, recorded at call end.", CALL_COST_BUCKETS,
)  # fmt: skip
PROVIDER_REQUESTS = MetricSpec(
    "voice.provider.requests", "voice_provider_requests_total", "counter", "{request}",
    (L_PROVIDER, L_COMPONENT, L_OUTCOME), "Provider requests by outcome.",
)  # fmt: skip
CIRCUIT_STATE = MetricSpec(
    "voice.provider.circuit_state", "voice_provider_circuit_state", "gauge", "{state}",
    (L_PROVIDER,), "Circuit breaker: 0 closed, 1 half-open, 2 open.",
)  # fmt: skip
TELEMETRY_DROPPED = MetricSpec(
    "voiceobs.telemetry.dropped", "voiceobs_telemetry_dropped_total", "counter", "{item}",
    (L_SIGNAL, L_REASON), "Telemetry voiceobs dropped before the SDK saw it, and why.",
)  # fmt: skip
TELEMETRY_EXPORT_FAILURES = MetricSpec(
    "voiceobs.telemetry.export_failures", "voiceobs_telemetry_export_failures_total", "counter",
    "{batch}", (L_SIGNAL,), "Export batches that failed after the exporter's own retries.",
)  # fmt: skip

VOICE_METRICS: Final = (
    CALLS, CALLS_ACTIVE, CALLS_OLDEST_AGE, CALL_DURATION, TURN_LATENCY_METRIC, TURNS, EOU_DELAY,
    STT_LATENCY, LLM_TTFT, LLM_DURATION, TTS_TTFB, STREAM_RESTARTS, CALL_STREAM_RESTARTS_METRIC,
    JITTER_BUFFER_DEPTH, STT_AUDIO, LLM_TOKENS, TTS_CHARACTERS_METRIC, COST, CALL_COST_METRIC,
    PROVIDER_REQUESTS, CIRCUIT_STATE, TELEMETRY_DROPPED, TELEMETRY_EXPORT_FAILURES,
)  # fmt: skip
"""Every metric voiceobs defines itself, in the order of ``docs/metrics.md``."""

SDK_SELF_METRICS: Final = (
    "otel_sdk_processor_span_processed_total",
    "otel_sdk_processor_log_processed_total",
    "otel_sdk_processor_span_queue_size",
    "otel_sdk_processor_log_queue_size",
    "otel_sdk_exporter_span_exported_total",
    "otel_sdk_exporter_log_exported_total",
    "otel_sdk_exporter_metric_data_point_exported_total",
)
"""The OpenTelemetry SDK's own pipeline metrics that voiceobs switches on (drops, queues)."""

SPAN_NAMES: Final = (SPAN_CALL, SPAN_TURN, SPAN_STT, SPAN_LLM, SPAN_TTS, SPAN_TOOL)
SPAN_ATTRIBUTES: Final = (
    CALL_ID, CONVERSATION_ID, TENANT, PIPELINE, CALL_DIRECTION, CALL_CALLER, CALL_STATUS,
    CALL_FAILURE_REASON, CALL_TURNS, CALL_COST, CALL_STREAM_RESTARTS, TURN_NUMBER, TURN_LATENCY,
    TURN_INTERRUPTED, TURN_EOU_DELAY, STAGE, STAGE_TTFC, STT_AUDIO_SECONDS, STT_TRANSCRIPT,
    LLM_RESPONSE_TEXT, TTS_CHARACTERS, COST_USD, GEN_AI_PROVIDER, GEN_AI_REQUEST_MODEL,
    GEN_AI_OPERATION, GEN_AI_INPUT_TOKENS, GEN_AI_OUTPUT_TOKENS, GEN_AI_TOOL_NAME, ERROR_TYPE,
)  # fmt: skip

PROCESS_MEMORY_LIMIT = MetricSpec(
    "voiceobs.process.memory.limit", "voiceobs_process_memory_limit_bytes", "gauge", "By", (),
    "Memory this worker may use: its cgroup limit, else the machine's RAM.",
)  # fmt: skip

ENGINE_METRICS: Final = (
    "http_server_request_duration_seconds",
    "http_server_active_requests",
    "process_cpu_time_seconds_total",
    "process_cpu_utilization_ratio",
    "process_memory_usage_bytes",
    "process_memory_virtual_bytes",
    "process_thread_count",
    "process_open_file_descriptor_count",
    "voiceobs_process_memory_limit_bytes",
)
"""Engine health metrics as Prometheus names: FastAPI server metrics (stable HTTP
conventions), process metrics, and the worker's memory limit for memory-percent alerts."""
