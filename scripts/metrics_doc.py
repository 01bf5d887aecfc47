"""Writes docs/metrics.md from voiceobs/semconv.py and grafana/external-metrics.txt.

``python scripts/metrics_doc.py`` rewrites the page; ``tests/test_docs.py`` fails when the page
and the code disagree, so the page never drifts from the names the code emits.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voiceobs import semconv as sc  # noqa: E402

TARGET = ROOT / "docs" / "metrics.md"
EXTERNAL = ROOT / "grafana" / "external-metrics.txt"

INTRO = """# Metrics and span attributes

The telemetry contract of voiceobs: every metric Prometheus shows, every span and attribute.
Names are defined once in `voiceobs/semconv.py`; this page is generated from it by
`scripts/metrics_doc.py`, `tests/test_docs.py` checks they agree, and the dashboard and alert
tests check their queries against this page.

Conventions: seconds everywhere (base units), percentiles from histograms
(`histogram_quantile`), never averages. Every voice metric also carries `job` (the engine's
`service.name`) and `instance` (`service.instance.id`, one per worker process) once it reaches
Prometheus. The call id is **never** a label: it is on every span (`voice.call.id`), every log
record, and every exemplar of the histograms (exemplar labels `trace_id`, `span_id`,
`voice_call_id`). Label values come from bounded sets: allow-lists (`VOICEOBS_TENANTS`,
`VOICEOBS_PIPELINES`, `VOICEOBS_PROVIDERS`, `VOICEOBS_MODELS`) or, without one, the first
`VOICEOBS_LABEL_LIMIT` (50) values seen; anything else becomes `other`.

Prometheus names are what the Collector's remote write makes of the instrument's name, unit
and type (OpenTelemetry → Prometheus translation): the unit's suffix (`s` → `_seconds`,
`By` → `_bytes`), `_total` for counters, and `_ratio` for a gauge of unit `1`. So no voiceobs
instrument uses unit `1`: dimensionless values carry an annotation unit (`{state}`, `{call}`),
which adds no suffix. `tests/test_prometheus_names.py` applies these rules to every metric
below, and `tests/stack/test_contract_live.py` finds each name with data in a live Prometheus.
"""

ENGINE = {
    "http_server_request_duration_seconds": "HTTP request duration histogram, labels "
    "`http_request_method`, `http_route` (the route template; absent when none matched), "
    "`http_response_status_code`, `url_scheme`, `network_protocol_version`, `error_type` "
    "(exception class, or the status from 500); health and metrics routes excluded; every "
    "request counts, whatever the trace sampling",
    "http_server_active_requests": "requests in flight, labels `http_request_method`, `url_scheme`",
    "process_cpu_time_seconds_total": "CPU seconds of the worker, label `type` (user, system)",
    "process_cpu_utilization_ratio": "CPU utilisation of the worker",
    "process_memory_usage_bytes": "resident memory of the worker",
    "process_memory_virtual_bytes": "virtual memory of the worker",
    "process_thread_count": "threads of the worker",
    "process_open_file_descriptor_count": "open file descriptors of the worker",
    "voiceobs_process_memory_limit_bytes": sc.PROCESS_MEMORY_LIMIT.description
    + " Memory % = `process_memory_usage_bytes / voiceobs_process_memory_limit_bytes`",
}

SDK = {
    "otel_sdk_processor_span_processed_total": "spans through the batch processor; "
    '`error_type="queue_full"` counts drops',
    "otel_sdk_processor_log_processed_total": "log records through the batch processor; "
    '`error_type="queue_full"` counts drops',
    "otel_sdk_processor_span_queue_size": "spans waiting in the batch queue",
    "otel_sdk_processor_log_queue_size": "log records waiting in the batch queue",
    "otel_sdk_exporter_span_exported_total": "spans exported, `error_type` on failures",
    "otel_sdk_exporter_log_exported_total": "log records exported, `error_type` on failures",
    "otel_sdk_exporter_metric_data_point_exported_total": "metric points exported, "
    "`error_type` on failures",
}

# Series only alert rules read (the dashboards do not, so grafana/external-metrics.txt
# does not list them).
ALERT_ONLY = {
    "target_info": "one series per pushing worker (`job`, `instance` from `service.name`, "
    "`service.instance.id`), written by the Collector with every metric export; "
    "`ServiceTelemetryMissing` watches it",
    "alertmanager_notifications_failed_total": "notifications Alertmanager gave up on after "
    "its retries, label `integration` (slack, pagerduty, email, webhook)",
}

ATTRIBUTES = {
    sc.CALL_ID: ("all spans, log records, exemplars", "the call id"),
    sc.CONVERSATION_ID: ("all spans", "GenAI alias of the call id"),
    sc.TENANT: ("all spans", "tenant (raw value; the metric label is bounded)"),
    sc.PIPELINE: ("all spans", "pipeline name"),
    sc.CALL_DIRECTION: ("call", "inbound or outbound"),
    sc.CALL_CALLER: ("call", "caller id; phone numbers are redacted before export"),
    sc.CALL_STATUS: ("call", "completed, failed, abandoned, transferred"),
    sc.CALL_FAILURE_REASON: ("call", "why a call failed (`none` otherwise)"),
    sc.CALL_TURNS: ("call", "number of turns"),
    sc.CALL_COST: ("call", "cost of the call in USD, from the rate card"),
    sc.CALL_STREAM_RESTARTS: ("call", "streaming restarts during the call"),
    sc.TURN_NUMBER: ("turn, stages", "1-based turn number"),
    sc.TURN_LATENCY: ("turn", "user speech end → agent audio start, seconds"),
    sc.TURN_INTERRUPTED: ("turn", "true when the user barged in"),
    sc.TURN_EOU_DELAY: ("turn", "end-of-utterance detection delay, seconds"),
    sc.STAGE: ("stages", "stt, llm, tts or tool"),
    sc.STAGE_TTFC: ("stages", "time to first chunk (STT final, LLM token, TTS byte), seconds"),
    sc.STT_AUDIO_SECONDS: ("stt", "audio seconds sent"),
    sc.STT_TRANSCRIPT: ("stt", "transcript — only with `VOICEOBS_EXPORT_TRANSCRIPTS=true`, "
                        "redacted, cut to `VOICEOBS_MAX_TEXT_LENGTH`"),
    sc.LLM_RESPONSE_TEXT: ("llm", "response text — same rules as the transcript"),
    sc.TTS_CHARACTERS: ("tts", "characters synthesised"),
    sc.COST_USD: ("stages", "cost of the stage in USD"),
    sc.GEN_AI_PROVIDER: ("stt, llm, tts", "provider (OpenTelemetry GenAI convention)"),
    sc.GEN_AI_REQUEST_MODEL: ("stt, llm, tts", "model"),
    sc.GEN_AI_OPERATION: ("stages", "chat, speech_to_text, text_to_speech, execute_tool"),
    sc.GEN_AI_INPUT_TOKENS: ("llm", "input tokens"),
    sc.GEN_AI_OUTPUT_TOKENS: ("llm", "output tokens"),
    sc.GEN_AI_TOOL_NAME: ("tool", "tool name"),
    sc.ERROR_TYPE: ("stages", "why the provider request failed (error, timeout, rate_limited…)"),
}  # fmt: skip

OUTRO = """
Text attributes are cut to `VOICEOBS_MAX_TEXT_LENGTH` (512) characters unless
`OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT` says otherwise: never the whole conversation on a span.

## Logs

Python `logging` records are exported as OTLP logs carrying the trace id and span id of the
active voice scope and `voice.call.id`. In Loki (OTLP ingestion) the service is the
`service_name` stream label and `voice_call_id`, `trace_id`, `span_id` are structured metadata:
`{service_name="voiceobs-demo"} | voice_call_id="demo-1-00001"`.

## Exemplars and the scrape path

Histograms are recorded inside the scope they measure, so each exemplar carries the trace id
and span id of its turn (or stage) span and `voice.call.id`. Exemplars survive the OTLP path
(SDK → Collector → Prometheus). The optional `/metrics` route (`VOICEOBS_PROMETHEUS_ROUTE=true`)
serves the same names but, like every Python Prometheus exporter today, without exemplars.
"""


def external_metrics() -> list[str]:
    lines = (line.strip() for line in EXTERNAL.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _fmt(values: tuple[float, ...]) -> str:
    return ", ".join(format(v, "g") for v in values)


def render() -> str:
    out = [INTRO, "## Voice metrics\n"]
    out.append("| Prometheus name | type | labels | OpenTelemetry instrument (unit) | meaning |")
    out.append("|---|---|---|---|---|")
    for m in sc.VOICE_METRICS:
        kind = {"updowncounter": "gauge (up-down counter)", "observable_gauge": "gauge"}.get(
            m.kind, m.kind
        )
        labels = ", ".join(f"`{label}`" for label in m.labels) or "—"
        out.append(
            f"| `{m.prometheus}` | {kind} | {labels} | `{m.name}` ({m.unit}) | {m.description} |"
        )
    out.append("\nHistogram buckets (seconds unless stated):\n")
    for title, buckets in (
        (
            "turn latency (50 ms steps from 0.5 s to 1 s, around the 800 ms budget)",
            sc.TURN_LATENCY_BUCKETS,
        ),
        ("EOU, STT, LLM TTFT, TTS TTFB", sc.STAGE_LATENCY_BUCKETS),
        ("LLM duration", sc.LLM_DURATION_BUCKETS),
        ("call duration", sc.CALL_DURATION_BUCKETS),
        ("call cost (USD)", sc.CALL_COST_BUCKETS),
        ("stream restarts per call (count)", sc.RESTART_COUNT_BUCKETS),
        ("jitter-buffer depth", sc.JITTER_BUFFER_BUCKETS),
    ):
        out.append(f"- {title}: {_fmt(buckets)}")
    states = ", ".join(f"{v} {k}" for k, v in sc.CIRCUIT_STATES.items())
    out.append(
        f"\nBounded label values: `status` ∈ {', '.join(sc.CALL_STATUSES)}; `failure_reason` ∈ "
        f"{', '.join(sc.FAILURE_REASONS)}; `outcome` ∈ {', '.join(sc.OUTCOMES)}; `component` ∈ "
        f"{', '.join(sc.COMPONENTS)}; `direction` ∈ {', '.join(sc.DIRECTIONS)}; `interrupted` ∈ "
        f"true, false; `type` ∈ input, output. Circuit states: {states}.\n"
    )
    out.append("## Engine and process metrics\n")
    out.append(
        "From voiceobs' HTTP middleware (`setup_instrumentation(app)`, stable HTTP conventions;\n"
        "it replaces FastAPI's own request telemetry for that app, so nothing is counted twice)\n"
        "and process metrics:\n"
    )
    out.append("| Prometheus name | meaning |\n|---|---|")
    out.extend(f"| `{name}` | {ENGINE[name]} |" for name in sc.ENGINE_METRICS)
    out.append("\n## Telemetry self-metrics\n")
    out.append(
        "What the telemetry path dropped or failed to send, and why. The OpenTelemetry SDK counts\n"
        "its own queue drops and export results (voiceobs sets\n"
        "`OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED=true` unless you set it); voiceobs adds\n"
        "`voiceobs_telemetry_dropped_total` and `voiceobs_telemetry_export_failures_total`.\n"
    )
    out.append("| Prometheus name | meaning |\n|---|---|")
    out.extend(f"| `{name}` | {SDK[name]} |" for name in sc.SDK_SELF_METRICS)
    out.append("\n## Metrics of the monitoring stack\n")
    out.append(
        "Queried by the pipeline-health, engine and executive dashboards and by alerts; produced\n"
        "by the Collector, Prometheus, the blackbox exporter, node exporter and cAdvisor:\n"
    )
    out.extend(f"- `{name}`" for name in external_metrics())
    out.append("\nQueried by alerts only (`prometheus/rules/`):\n")
    out.extend(f"- `{name}`: {meaning}" for name, meaning in ALERT_ONLY.items())
    out.append("\n## Spans\n")
    out.append(
        "One trace per call. `voice.call` is its root (a new trace, linked to the request span\n"
        "that started it, unless a parent context is given); each turn is a child span; stages\n"
        "are children of their turn and may overlap (streaming).\n"
    )
    out.append("| span | parent | what it covers |\n|---|---|---|")
    out.append("| `voice.call` | — | the whole call, start to hang-up |")
    out.append("| `voice.turn` | `voice.call` | one exchange, from the turn's start to its end |")
    out.append("| `voice.stt` | `voice.turn` | the speech-to-text request of the turn |")
    out.append("| `voice.llm` | `voice.turn` | an LLM request (a fallback is a second one) |")
    out.append("| `voice.tts` | `voice.turn` | the text-to-speech request |")
    out.append("| `voice.tool` | `voice.turn` | a tool / function call |")
    events = (
        sc.EVENT_USER_SPEECH_ENDED, sc.EVENT_EOU_DETECTED, sc.EVENT_AGENT_AUDIO_STARTED,
        sc.EVENT_BARGE_IN, sc.EVENT_STREAM_RESTART, sc.EVENT_FIRST_CHUNK,
    )  # fmt: skip
    out.append("\nSpan events: " + ", ".join(f"`{e}`" for e in events) + ".\n")
    out.append("## Span attributes\n")
    out.append("| attribute | on | meaning |\n|---|---|---|")
    out.extend(f"| `{a}` | {ATTRIBUTES[a][0]} | {ATTRIBUTES[a][1]} |" for a in sc.SPAN_ATTRIBUTES)
    out.append(OUTRO)
    return "\n".join(out)


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(ROOT)}")
