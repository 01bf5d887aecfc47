"""``setup_instrumentation``: one call wires an engine for traces, metrics and logs over OTLP.

Start-up is one small function per signal (:func:`_init_tracing`, :func:`_init_metrics`,
:func:`_init_logging`). Exporter destinations, headers, TLS, compression and sampling come
from the standard ``OTEL_*`` variables, read by the SDK's own exporters and samplers.
"""

from __future__ import annotations

import importlib
import logging
import os
import platform
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import _logs as logs_api
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import (
    OsResourceDetector,
    ProcessResourceDetector,
    Resource,
    get_aggregated_resources,
)
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from prometheus_client import CollectorRegistry

from voiceobs import semconv as sc
from voiceobs.cost import RateCard
from voiceobs.disabled import DISABLED
from voiceobs.emitter import Emitter, Labels, PresetIdGenerator
from voiceobs.instruments import Instruments, metric_views
from voiceobs.logbridge import OtlpLogHandler
from voiceobs.redaction import RedactingLogExporter, RedactingSpanExporter, Redactor
from voiceobs.selftelemetry import (
    GuardedLogExporter,
    GuardedMetricExporter,
    GuardedSpanExporter,
    quiet_sdk_loggers,
)
from voiceobs.settings import VoiceobsSettings
from voiceobs.voice import Call, now_ns

if TYPE_CHECKING:
    from fastapi import FastAPI

    from voiceobs.adapters import EventAdapter

_log = logging.getLogger("voiceobs")

DEFAULT_SERVICE_NAME = "voice-engine"
INSTRUMENTATION_SCOPE = "voiceobs"
_PRIVATE_PROCESS_ATTRIBUTES = ("process.command", "process.command_args", "process.command_line")
"""Dropped from the resource: command lines can hold tokens and phone numbers."""

_lock = threading.Lock()
_active: Instrumentation | None = None


@dataclass
class Exporters:
    """Where each signal goes. ``None`` means OTLP, configured by the ``OTEL_*`` variables.

    Tests and advanced users pass the SDK's in-memory exporters and readers here.
    """

    span: SpanExporter | None = None
    metric_readers: list[MetricReader] = field(default_factory=list)
    log: LogRecordExporter | None = None


class Instrumentation:
    """What ``setup_instrumentation`` returns: the providers and the voice API.

    ``shutdown()`` flushes and closes all three signals within ``settings.shutdown_timeout_s``.
    """

    def __init__(
        self,
        settings: VoiceobsSettings,
        resource: Resource,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        logger_provider: LoggerProvider | None,
        emitter: Emitter,
        undo: list[Callable[[], None]],
    ) -> None:
        self.settings = settings
        self.resource = resource
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.logger_provider = logger_provider
        self.emitter = emitter
        self._undo = undo
        self._clock = now_ns
        self._apps: set[int] = set()
        self._adapter: EventAdapter | None = None
        self.prometheus_registry: CollectorRegistry | None = None
        """Behind the optional ``/metrics`` route."""
        self.log_handler: OtlpLogHandler | None = None
        """The logging → OTLP handler; on the root logger when set up globally, else yours to
        attach (``logging.getLogger("myengine").addHandler(obs.log_handler)``)."""
        self.is_shut_down = False

    # --- voice API -----------------------------------------------------------------------
    def call(
        self,
        call_id: str,
        *,
        tenant: str = "default",
        pipeline: str = "default",
        caller: str | None = None,
        direction: str = "inbound",
        parent: Context | None = None,
        at: float | None = None,
    ) -> Call:
        """Start a call. Use it as a (async) context manager, or end it with ``end()``.

        The call's span is the root of a new trace unless ``parent`` continues one.
        """
        if not self.settings.enabled:
            return cast(Call, DISABLED)
        start = self._clock() if at is None else int(at * 1e9)
        return Call(
            self.emitter, call_id, tenant, pipeline, caller, direction, start, self._clock, parent
        )

    def circuit_state(self, provider: str, state: str) -> None:
        """Report a provider's circuit breaker: ``closed``, ``half_open`` or ``open``."""
        value = sc.CIRCUIT_STATES.get(state)
        if value is None:
            _log.warning(
                "voiceobs: circuit state %r ignored; allowed: %s",
                state,
                ", ".join(sc.CIRCUIT_STATES),
            )
            return
        self.emitter.submit_circuit_state(provider, value)

    def provider_request(self, provider: str, component: str, outcome: str = "ok") -> None:
        """Count a provider request made outside a stage (health check, warm-up…)."""
        self.emitter.submit_provider_request(provider, component, outcome)

    @property
    def events(self) -> EventAdapter:
        """The event adapter, for engines that publish voice events as dicts."""
        if self._adapter is None:
            from voiceobs.adapters import EventAdapter

            self._adapter = EventAdapter(self)
        return self._adapter

    # --- lifecycle -----------------------------------------------------------------------
    def instrument_app(self, app: FastAPI) -> None:
        """Instrument a FastAPI app (once per app) and mount ``/metrics`` when configured."""
        if id(app) in self._apps or not self.settings.enabled:
            return
        self._apps.add(id(app))
        _instrument_fastapi(app, self)

    def force_flush(self, timeout_s: float | None = None) -> bool:
        """Send everything recorded so far; False if it did not finish in time."""
        deadline = time.monotonic() + (timeout_s or self.settings.shutdown_timeout_s)
        ok = self.emitter.recorder.flush(_left(deadline))
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            if provider is not None:
                ok = bool(provider.force_flush(int(_left(deadline) * 1000))) and ok
        return ok

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Flush and close all signals within ``timeout_s`` (default from settings).

        Returns False if some exporter was still busy at the deadline; it is abandoned (its
        thread is a daemon), so a dead collector never holds the engine's exit.
        """
        global _active
        if self.is_shut_down:
            return True
        self.is_shut_down = True
        deadline = time.monotonic() + (timeout_s or self.settings.shutdown_timeout_s)
        ok = self.emitter.recorder.shutdown(_left(deadline) / 2)
        for undo in reversed(self._undo):
            undo()
        providers = [
            p for p in (self.tracer_provider, self.logger_provider, self.meter_provider) if p
        ]
        threads = [
            threading.Thread(
                target=_close, args=(p, _left(deadline)), daemon=True, name="voiceobs-shutdown"
            )
            for p in providers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(_left(deadline))
            ok = ok and not thread.is_alive()
        with _lock:
            if _active is self:
                _active = None
        return ok


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _close(provider: Any, timeout_s: float) -> None:
    try:
        provider.force_flush(int(timeout_s * 1000))
    finally:
        provider.shutdown()


def setup_instrumentation(
    app: FastAPI | None = None,
    settings: VoiceobsSettings | None = None,
    *,
    exporters: Exporters | None = None,
    set_global: bool = True,
) -> Instrumentation:
    """Wire traces, metrics and logs for a voice engine; idempotent.

    A second call returns the instrumentation already set up (instrumenting ``app`` if it is
    new) instead of creating providers twice. ``set_global=False`` leaves the global
    OpenTelemetry providers and the root logger alone (tests, libraries).
    """
    global _active
    with _lock:
        if _active is not None and not _active.is_shut_down:
            if settings is not None and settings != _active.settings:
                _log.warning("voiceobs: already set up; new settings ignored (shut down first)")
            if app is not None:
                _active.instrument_app(app)
            return _active
        instrumentation = _build(
            settings or VoiceobsSettings.load(), exporters or Exporters(), set_global
        )
        if set_global:
            _active = instrumentation
    if app is not None:
        instrumentation.instrument_app(app)
    return instrumentation


def get_instrumentation() -> Instrumentation | None:
    """The instrumentation set up globally by :func:`setup_instrumentation`, if any."""
    return _active


def build_resource(settings: VoiceobsSettings) -> Resource:
    """Service, host and process attributes; ``OTEL_RESOURCE_ATTRIBUTES`` and
    ``OTEL_SERVICE_NAME`` win over voiceobs' defaults."""
    defaults: dict[str, str] = {
        "service.name": DEFAULT_SERVICE_NAME,
        "service.version": settings.service_version,
        "deployment.environment.name": settings.environment,
        "host.name": socket.gethostname(),
        "host.arch": platform.machine(),
    }
    from_env = Resource.create({}).attributes  # service.instance.id, telemetry.sdk.*, OTEL_*
    explicit = set(_env_resource_keys())
    chosen = {k: v for k, v in defaults.items() if k not in explicit}
    detected = get_aggregated_resources([ProcessResourceDetector(), OsResourceDetector()])
    process = {k: v for k, v in detected.attributes.items() if k not in _PRIVATE_PROCESS_ATTRIBUTES}
    return Resource(process).merge(Resource(dict(from_env))).merge(Resource(chosen))


def _env_resource_keys() -> list[str]:
    keys = []
    for item in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        if "=" in item:
            keys.append(item.split("=", 1)[0].strip())
    if os.environ.get("OTEL_SERVICE_NAME"):
        keys.append("service.name")
    return keys


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


_OTLP_EXPORTERS = {
    "traces": ("trace_exporter", "OTLPSpanExporter"),
    "metrics": ("metric_exporter", "OTLPMetricExporter"),
    "logs": ("_log_exporter", "OTLPLogExporter"),
}
"""Module and class of each signal's OTLP exporter, under ``...otlp.proto.{grpc,http}``."""


def _otlp_exporter(signal: str, settings: VoiceobsSettings) -> Any:
    """The SDK's OTLP exporter for ``signal`` in the protocol the environment asks for; it
    reads endpoint, headers, TLS and compression from the ``OTEL_EXPORTER_OTLP_*`` variables."""
    module, name = _OTLP_EXPORTERS[signal]
    transport = "grpc" if _check_protocol(signal) == "grpc" else "http"
    exporter = getattr(
        importlib.import_module(f"opentelemetry.exporter.otlp.proto.{transport}.{module}"), name
    )
    return exporter(**_otlp_kwargs(signal, settings))


def _build(settings: VoiceobsSettings, exporters: Exporters, set_global: bool) -> Instrumentation:
    resource = build_resource(settings)
    rate_card = (
        RateCard.load(settings.rate_card_path) if settings.rate_card_path else RateCard.empty()
    )
    redactor = Redactor(
        phone_numbers=settings.redact_phone_numbers,
        emails=settings.redact_emails,
        card_numbers=settings.redact_card_numbers,
        patterns=settings.redact_patterns,
    )
    undo: list[Callable[[], None]] = []
    ids = PresetIdGenerator()
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    logger_provider: LoggerProvider | None = None
    registry: CollectorRegistry | None = None
    log_handler: OtlpLogHandler | None = None
    failures: list[Callable[[str], None]] = []

    def count_failure(signal: str) -> None:
        for count in failures:
            count(signal)

    if settings.enabled:
        # The SDK counts its own queue drops and export results once given a meter provider.
        os.environ.setdefault("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
        os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
        _, unquiet = quiet_sdk_loggers()
        undo.append(unquiet)
        if settings.metrics_enabled:
            meter_provider, registry = _init_metrics(settings, resource, exporters, count_failure)
        if settings.traces_enabled:
            tracer_provider = _init_tracing(
                settings, resource, exporters, redactor, ids, meter_provider, count_failure
            )
        if settings.logs_enabled:
            logger_provider = _init_logging(
                settings, resource, exporters, redactor, meter_provider, count_failure
            )
            log_handler = OtlpLogHandler(logger_provider, getattr(logging, settings.log_level))
            if set_global:
                undo.append(_bridge_logging(log_handler, logging.getLogger()))
        if meter_provider is not None:
            undo.append(_init_process_metrics(meter_provider))
        if set_global:
            _set_globals(tracer_provider, meter_provider, logger_provider)

    meter = (meter_provider or metrics.NoOpMeterProvider()).get_meter(INSTRUMENTATION_SCOPE)
    tracer = (tracer_provider or trace.NoOpTracerProvider()).get_tracer(INSTRUMENTATION_SCOPE)
    instruments = Instruments(meter)
    failures.append(lambda signal: instruments.export_failures.add(1, {sc.L_SIGNAL: signal}))
    labels = Labels(
        tenants=settings.tenants,
        pipelines=settings.pipelines,
        providers=settings.providers,
        models=settings.models,
        limit=settings.label_limit,
    )
    emitter = Emitter(
        tracer,
        ids,
        instruments,
        labels,
        rate_card,
        redactor,
        queue_size=settings.queue_size,
        export_text=settings.export_transcripts,
        max_text_length=settings.max_text_length,
    )
    meter.create_observable_gauge(
        sc.CALLS_OLDEST_AGE.name,
        callbacks=[emitter.observe_oldest_calls],
        unit=sc.CALLS_OLDEST_AGE.unit,
        description=sc.CALLS_OLDEST_AGE.description,
    )
    instrumentation = Instrumentation(
        settings, resource, tracer_provider, meter_provider, logger_provider, emitter, undo
    )
    instrumentation.prometheus_registry = registry
    instrumentation.log_handler = log_handler
    return instrumentation


def _init_tracing(
    settings: VoiceobsSettings,
    resource: Resource,
    exporters: Exporters,
    redactor: Redactor,
    ids: PresetIdGenerator,
    meter_provider: MeterProvider | None,
    count_failure: Callable[[str], None],
) -> TracerProvider:
    limits = SpanLimits(
        max_span_attribute_length=None
        if os.environ.get("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT")
        else settings.max_text_length
    )
    provider = TracerProvider(
        resource=resource, id_generator=ids, span_limits=limits, shutdown_on_exit=False
    )
    exporter: SpanExporter = GuardedSpanExporter(
        exporters.span or _otlp_exporter("traces", settings), count_failure
    )
    if redactor.active:
        exporter = RedactingSpanExporter(exporter, redactor)
    provider.add_span_processor(BatchSpanProcessor(exporter, meter_provider=meter_provider))
    return provider


def _init_metrics(
    settings: VoiceobsSettings,
    resource: Resource,
    exporters: Exporters,
    count_failure: Callable[[str], None],
) -> tuple[MeterProvider, CollectorRegistry | None]:
    """The meter provider, and the registry behind ``/metrics`` when that route is on."""
    readers = list(exporters.metric_readers)
    if not readers:
        interval = os.environ.get("OTEL_METRIC_EXPORT_INTERVAL")
        readers.append(
            PeriodicExportingMetricReader(
                GuardedMetricExporter(_otlp_exporter("metrics", settings), count_failure),
                export_interval_millis=float(interval)
                if interval
                else settings.metric_export_interval_ms,
                export_timeout_millis=settings.export_timeout_s * 1000,
            )
        )
    if settings.prometheus_route:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        registry = CollectorRegistry()
        readers.append(PrometheusMetricReader(registry=registry))
    else:
        registry = None
    provider = MeterProvider(
        metric_readers=readers, resource=resource, views=metric_views(), shutdown_on_exit=False
    )
    return provider, registry


def _init_logging(
    settings: VoiceobsSettings,
    resource: Resource,
    exporters: Exporters,
    redactor: Redactor,
    meter_provider: MeterProvider | None,
    count_failure: Callable[[str], None],
) -> LoggerProvider:
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    exporter: LogRecordExporter = GuardedLogExporter(
        exporters.log or _otlp_exporter("logs", settings), count_failure
    )
    if redactor.active:
        exporter = RedactingLogExporter(exporter, redactor)
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter, meter_provider=meter_provider)
    )
    return provider


def _bridge_logging(handler: OtlpLogHandler, target: logging.Logger) -> Callable[[], None]:
    """Attach the OTLP handler to ``target`` (the root logger when set up globally)."""
    target.addHandler(handler)
    if target.level == logging.NOTSET or target.level > handler.level:
        previous = target.level
        target.setLevel(handler.level)
    else:
        previous = None

    def undo() -> None:
        target.removeHandler(handler)
        if previous is not None:
            target.setLevel(previous)

    return undo


def _init_process_metrics(meter_provider: MeterProvider) -> Callable[[], None]:
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

    from voiceobs.process import observe_memory_limit

    instrumentor = SystemMetricsInstrumentor(
        config={
            "process.cpu.time": ["user", "system"],
            "process.cpu.utilization": None,
            "process.memory.usage": None,
            "process.memory.virtual": None,
            "process.thread.count": None,
            "process.open_file_descriptor.count": None,
        }
    )
    instrumentor.instrument(meter_provider=meter_provider)
    observe_memory_limit(meter_provider.get_meter(INSTRUMENTATION_SCOPE))

    def undo() -> None:
        instrumentor.uninstrument()

    return undo


def _set_globals(
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    logger_provider: LoggerProvider | None,
) -> None:
    if tracer_provider is not None:
        trace.set_tracer_provider(tracer_provider)
    if meter_provider is not None:
        metrics.set_meter_provider(meter_provider)
    if logger_provider is not None:
        logs_api.set_logger_provider(logger_provider)


def _instrument_fastapi(app: FastAPI, instrumentation: Instrumentation) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    settings = instrumentation.settings
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=instrumentation.tracer_provider or trace.NoOpTracerProvider(),
        meter_provider=instrumentation.meter_provider or metrics.NoOpMeterProvider(),
        excluded_urls=",".join(settings.excluded_urls),
        exclude_spans=["receive", "send"],
    )
    if instrumentation.prometheus_registry is not None:
        from voiceobs.prometheus_route import mount_metrics_route

        mount_metrics_route(app, instrumentation.prometheus_registry)
