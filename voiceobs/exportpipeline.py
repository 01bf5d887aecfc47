"""The export side's pipeline pieces, shared by the engine's process and the export process:
which exporters the ``OTEL_*`` variables ask for, the meter provider, the redactor and the
materialiser built from settings.
"""

from __future__ import annotations

import importlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry

from voiceobs import semconv as sc
from voiceobs.cost import RateCard
from voiceobs.httpmaterialiser import HttpMaterialiser
from voiceobs.instruments import Instruments, metric_views
from voiceobs.materialiser import Labels, Materialiser, SpanOut
from voiceobs.promptexport import PromptMetricReader
from voiceobs.redaction import Redactor
from voiceobs.selftelemetry import GuardedMetricExporter
from voiceobs.settings import VoiceobsSettings

INSTRUMENTATION_SCOPE = "voiceobs"

SDK_SELF_METRICS_ENV = {"OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED": "true"}
"""Read by the SDK while it builds providers, processors and exporters: with it the SDK counts
its own queue drops and export results. Set only while voiceobs builds its pipeline (unless
the user set it), so the process environment stays the user's. Only the process that runs
the batch processors and span exporters does: the same names from two processes of one
service would collide."""
_environ_lock = threading.Lock()


@contextmanager
def sdk_self_metrics() -> Iterator[None]:
    """:data:`SDK_SELF_METRICS_ENV` in ``os.environ`` for the block; restored exactly after."""
    with _environ_lock:
        added = [name for name in SDK_SELF_METRICS_ENV if name not in os.environ]
        for name in added:
            os.environ[name] = SDK_SELF_METRICS_ENV[name]
        try:
            yield
        finally:
            for name in added:
                os.environ.pop(name, None)


def redactor_for(settings: VoiceobsSettings) -> Redactor:
    return Redactor(
        phone_numbers=settings.redact_phone_numbers,
        emails=settings.redact_emails,
        card_numbers=settings.redact_card_numbers,
        patterns=settings.redact_patterns,
    )


def materialiser_for(
    settings: VoiceobsSettings,
    resource: Resource,
    span_out: SpanOut | None,
    meter: Meter,
    redactor: Redactor,
    rate_card: RateCard,
) -> Materialiser:
    """The materialiser the settings describe (labels, text, expiry), recording
    into the voice instruments it creates on ``meter``."""
    instruments = Instruments(meter)
    labels = Labels(
        tenants=settings.tenants,
        pipelines=settings.pipelines,
        providers=settings.providers,
        models=settings.models,
        limit=settings.label_limit,
    )
    scope = InstrumentationScope(INSTRUMENTATION_SCOPE)
    materialiser = Materialiser(
        span_out,
        resource,
        scope,
        instruments,
        labels,
        rate_card,
        redactor,
        http=HttpMaterialiser(span_out, resource, scope, meter),
        export_text=settings.export_transcripts,
        max_text_length=settings.max_text_length,
        call_expiry_s=settings.call_expiry_s,
    )
    meter.create_observable_gauge(
        sc.CALLS_OLDEST_AGE.name,
        callbacks=[materialiser.observe_oldest_calls],
        unit=sc.CALLS_OLDEST_AGE.unit,
        description=sc.CALLS_OLDEST_AGE.description,
    )
    return materialiser


def _otlp_protocol(signal: str) -> str:
    return (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()


def _otlp_kwargs(signal: str, settings: VoiceobsSettings) -> dict[str, Any]:
    """Only the timeout, and only when neither OTEL timeout variable sets it."""
    if os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT") or os.environ.get(
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT"
    ):
        return {}
    return {"timeout": settings.export_timeout_s}


def _check_protocol(signal: str) -> str:
    protocol = _otlp_protocol(signal)
    if protocol not in ("grpc", "http/protobuf"):
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL (or OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL)="
            f"{protocol!r}; allowed: grpc, http/protobuf"
        )
    return protocol


def check_otlp_protocols(chosen: dict[str, tuple[str, ...]]) -> None:
    """A clear error naming the variable, raised at set-up in the engine, for an OTLP
    protocol none of the SDK's exporters speaks (the export process builds them later)."""
    for signal, names in chosen.items():
        if "otlp" in names:
            _check_protocol(signal)


_OTLP_EXPORTERS = {
    "traces": ("trace_exporter", "OTLPSpanExporter"),
    "metrics": ("metric_exporter", "OTLPMetricExporter"),
    "logs": ("_log_exporter", "OTLPLogExporter"),
}
"""Module and class of each signal's OTLP exporter, under ``...otlp.proto.{grpc,http}``."""


def otlp_exporter(signal: str, settings: VoiceobsSettings) -> Any:
    """The SDK's OTLP exporter for ``signal`` in the protocol the environment asks for; it
    reads endpoint, headers, TLS and compression from the ``OTEL_EXPORTER_OTLP_*`` variables."""
    module, name = _OTLP_EXPORTERS[signal]
    transport = "grpc" if _check_protocol(signal) == "grpc" else "http"
    exporter = getattr(
        importlib.import_module(f"opentelemetry.exporter.otlp.proto.{transport}.{module}"), name
    )
    kwargs = _otlp_kwargs(signal, settings)
    if transport == "http" and _keeps_its_ca(signal):
        from voiceobs.httpsession import CaKeepingSession

        kwargs["session"] = CaKeepingSession()
    return exporter(**kwargs)


def _keeps_its_ca(signal: str) -> bool:
    """Whether the HTTP exporter needs a session that keeps its CA: one is set, and no
    credential provider of the user's supplies the session."""
    upper = signal.upper()
    ca = os.environ.get(f"OTEL_EXPORTER_OTLP_{upper}_CERTIFICATE") or os.environ.get(
        "OTEL_EXPORTER_OTLP_CERTIFICATE"
    )
    provider = os.environ.get(
        f"OTEL_PYTHON_EXPORTER_OTLP_HTTP_{upper}_CREDENTIAL_PROVIDER"
    ) or os.environ.get("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER")
    return bool(ca) and not provider


EXPORTER_VARIABLES = {
    "traces": "OTEL_TRACES_EXPORTER",
    "metrics": "OTEL_METRICS_EXPORTER",
    "logs": "OTEL_LOGS_EXPORTER",
}
"""The standard variables naming each signal's exporters: ``otlp`` (the default), ``console``
or ``none``; a comma-separated list sends to several. Exporters passed in code win."""
EXPORTER_NAMES = ("otlp", "console", "none")


def exporter_names(signal: str) -> tuple[str, ...]:
    """The exporters the environment asks for ``signal`` (empty for ``none``); a clear error
    naming the variable for anything else."""
    variable = EXPORTER_VARIABLES[signal]
    raw = os.environ.get(variable, "")
    names = tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip())) or ("otlp",)
    unknown = [name for name in names if name not in EXPORTER_NAMES]
    if unknown:
        raise ValueError(
            f"{variable}={raw!r}: unknown exporter {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(EXPORTER_NAMES)} (comma-separated for several)"
        )
    return tuple(name for name in names if name != "none")


def _console_exporter(signal: str) -> Any:
    from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    kinds = {
        "traces": ConsoleSpanExporter,
        "metrics": ConsoleMetricExporter,
        "logs": ConsoleLogRecordExporter,
    }
    return kinds[signal]()


def env_exporters(
    signal: str, chosen: dict[str, tuple[str, ...]], settings: VoiceobsSettings
) -> list[Any]:
    """One exporter per name in ``chosen[signal]`` (none when the signal is not chosen)."""
    return [
        otlp_exporter(signal, settings) if name == "otlp" else _console_exporter(signal)
        for name in chosen.get(signal, ())
    ]


def periodic_readers(
    settings: VoiceobsSettings,
    exporters: list[MetricExporter],
    count_failure: Callable[[str], None],
    *,
    prompt: bool,
) -> list[MetricReader]:
    """One reader per exporter pushing every series each interval (``OTEL_METRIC_EXPORT_INTERVAL``
    wins over ``metric_export_interval_ms``). With ``prompt`` (the export process) each is a
    :class:`~voiceobs.promptexport.PromptMetricReader`: with ``metric_prompt_export_ms`` on it
    also pushes the series that changed soon after it is nudged, and it always pushes a
    counter's zero start point before its first point (:mod:`voiceobs.startpoints`)."""
    interval = os.environ.get("OTEL_METRIC_EXPORT_INTERVAL")
    interval_ms = float(interval) if interval else settings.metric_export_interval_ms
    timeout_ms = settings.export_timeout_s * 1000
    readers: list[MetricReader] = []
    for exporter in exporters:
        guarded = GuardedMetricExporter(exporter, count_failure)
        if prompt:
            prompt_ms = settings.metric_prompt_export_ms
            readers.append(
                PromptMetricReader(
                    guarded,
                    export_interval_millis=interval_ms,
                    export_timeout_millis=timeout_ms,
                    prompt_gap_s=prompt_ms / 1000 if prompt_ms else math.inf,
                    # Its counters and histograms are all synchronous (voiceobs.startpoints).
                    zero_start_scopes=(INSTRUMENTATION_SCOPE,),
                )
            )
        else:
            readers.append(
                PeriodicExportingMetricReader(
                    guarded, export_interval_millis=interval_ms, export_timeout_millis=timeout_ms
                )
            )
    return readers


def init_metrics(
    settings: VoiceobsSettings,
    resource: Resource,
    readers: list[MetricReader],
    exporters: list[MetricExporter],
    count_failure: Callable[[str], None],
) -> tuple[MeterProvider | None, CollectorRegistry | None]:
    """The meter provider (None when nothing reads it), and the registry behind ``/metrics``
    when that route is on. ``readers`` given by the caller win over ``exporters``."""
    readers = list(readers) or periodic_readers(settings, exporters, count_failure, prompt=False)
    registry: CollectorRegistry | None = None
    if settings.prometheus_route:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        registry = CollectorRegistry()
        readers.append(PrometheusMetricReader(registry=registry))
    if not readers:
        return None, None
    provider = MeterProvider(
        metric_readers=readers, resource=resource, views=metric_views(), shutdown_on_exit=False
    )
    return provider, registry
