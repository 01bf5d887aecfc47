"""``setup_instrumentation``: one call wires an engine for traces, metrics and logs over OTLP.

Start-up is one small function per signal (:func:`_init_tracing`, :func:`_init_metrics`,
:func:`_init_logging`). Exporter destinations, headers, TLS, compression and sampling come
from the standard ``OTEL_*`` variables, read by the SDK's own exporters and samplers.
"""

from __future__ import annotations

import atexit
import logging
import os
import platform
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import _logs as logs_api
from opentelemetry import metrics, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricReader,
)
from opentelemetry.sdk.resources import (
    OsResourceDetector,
    ProcessResourceDetector,
    Resource,
    get_aggregated_resources,
)
from opentelemetry.sdk.trace import SpanLimits, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Sampler
from prometheus_client import CollectorRegistry

from voiceobs import semconv as sc
from voiceobs.channel import ExportConfig
from voiceobs.cost import RateCard
from voiceobs.disabled import DISABLED
from voiceobs.exportpipeline import (
    INSTRUMENTATION_SCOPE,
    check_otlp_protocols,
    env_exporters,
    exporter_names,
    init_metrics,
    materialiser_for,
    redactor_for,
    sdk_self_metrics,
)
from voiceobs.handover import (
    HandoverLogProcessor,
    HandoverMetricExporter,
    HandoverSpanProcessor,
)
from voiceobs.logbridge import OtlpLogHandler
from voiceobs.materialiser import Materialiser
from voiceobs.processtransport import ProcessTransport
from voiceobs.records import CircuitState, ExportFailed, ProviderRequest
from voiceobs.redaction import RedactingLogExporter, RedactingSpanExporter, Redactor
from voiceobs.selftelemetry import (
    GuardedLogExporter,
    GuardedSpanExporter,
    quiet_sdk_loggers,
)
from voiceobs.settings import VoiceobsSettings
from voiceobs.sharedpipeline import LogsToProvider, SpansToProvider, global_sdk_providers
from voiceobs.transport import ThreadTransport, Transport
from voiceobs.voice import Call, Moment, Parent, at_ns, now_ns

if TYPE_CHECKING:
    from fastapi import FastAPI

    from voiceobs.adapters import EventAdapter

_log = logging.getLogger("voiceobs")

DEFAULT_SERVICE_NAME = "voice-engine"
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
        transport: Transport,
        undo: list[Callable[[], None]],
        sampler: Sampler | None,
    ) -> None:
        self.settings = settings
        self.resource = resource
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.logger_provider = logger_provider
        self.transport = transport
        """Where the voice API's records go (see :mod:`voiceobs.transport`)."""
        self.materialiser: Materialiser | None = None
        """The export side, when it runs in this process."""
        self._sampler = sampler
        self._undo = undo
        self.failed_exports = 0
        """Batches that failed to export so far (all signals); ``force_flush`` watches it."""
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
        parent: Parent | None = None,
        at: Moment | None = None,
    ) -> Call:
        """Start a call. Use it as a (async) context manager, or end it with ``end()``.

        The call's span is the root of a new trace unless ``parent`` (a Context, or a Span
        whose trace it joins) continues one. ``at`` is Unix time in seconds or a
        timezone-aware datetime. Anything else raises ``TypeError`` naming the argument
        before the call starts.
        """
        if not self.settings.enabled:
            return cast(Call, DISABLED)
        start = self._clock() if at is None else at_ns(at)
        return Call(
            self.transport,
            call_id,
            tenant,
            pipeline,
            caller,
            direction,
            start,
            self._clock,
            parent,
            self._sampler,
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
        self.transport.send(CircuitState(provider, value))

    def provider_request(self, provider: str, component: str, outcome: str = "ok") -> None:
        """Count a provider request made outside a stage (health check, warm-up…)."""
        self.transport.send(ProviderRequest(provider, component, outcome))

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
        """Send everything recorded so far; False if it did not finish in time or a backend
        refused it. Never raises and never waits past ``timeout_s`` (default from settings)."""
        deadline = time.monotonic() + (timeout_s or self.settings.shutdown_timeout_s)
        failed_before = self.failed_exports
        providers = [
            p for p in (self.tracer_provider, self.meter_provider, self.logger_provider) if p
        ]
        flushes = [partial(_flush, p, deadline) for p in providers]
        if self._providers_feed_transport:
            ok = _within(deadline, flushes)
            ok = self.transport.flush(_left(deadline)) and ok
        else:
            ok = self.transport.flush(_left(deadline))
            ok = _within(deadline, flushes) and ok
        return ok and self.failed_exports == failed_before

    @property
    def _providers_feed_transport(self) -> bool:
        """With the export process, the providers hand what they hold to the transport (so
        they go first); otherwise the transport's thread feeds the providers."""
        return self.materialiser is None

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Flush and close all signals within ``timeout_s`` (default from settings).

        Returns False if some exporter was still busy at the deadline; it is abandoned (its
        thread is a daemon), so a dead collector never holds the engine's exit.
        """
        global _active
        if self.is_shut_down:
            return True
        self.is_shut_down = True
        atexit.unregister(self._at_exit)
        deadline = time.monotonic() + (timeout_s or self.settings.shutdown_timeout_s)
        providers = [
            p for p in (self.tracer_provider, self.logger_provider, self.meter_provider) if p
        ]
        closes = [partial(_close, p, deadline) for p in providers]
        if self._providers_feed_transport:
            for undo in reversed(self._undo):
                undo()
            ok = _within(time.monotonic() + _left(deadline) / 2, closes)
            ok = self.transport.shutdown(_left(deadline)) and ok
        else:
            ok = self.transport.shutdown(_left(deadline) / 2)
            for undo in reversed(self._undo):
                undo()
            ok = _within(deadline, closes) and ok
        with _lock:
            if _active is self:
                _active = None
        return ok

    def _at_exit(self) -> None:
        """Registered with :mod:`atexit` until ``shutdown()``: an engine that exits without
        calling it still sends its last seconds, within the same deadline."""
        self.shutdown()


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _flush(provider: Any, deadline: float) -> bool:
    return bool(provider.force_flush(int(_left(deadline) * 1000)))


def _close(provider: Any, deadline: float) -> bool:
    if isinstance(provider, MeterProvider):
        # Its shutdown exports a last collection; a flush first would collect twice within a
        # millisecond, and Prometheus refuses a gauge's two values at one timestamp (which
        # would drop the whole batch that carries it).
        provider.shutdown(timeout_millis=_left(deadline) * 1000)
        return True
    try:
        return _flush(provider, deadline)
    finally:
        provider.shutdown()


def _within(deadline: float, tasks: Sequence[Callable[[], bool]]) -> bool:
    """Run each task on its own daemon thread until ``deadline``; True if every one finished
    in time and succeeded. A task still running is abandoned, so a dead collector never holds
    the engine; an exception (the SDK raises on some flush timeouts) becomes False."""
    results: list[bool] = []

    def run(task: Callable[[], bool]) -> None:
        try:
            results.append(task())
        except Exception as exc:
            _log.debug("voiceobs: flush failed: %r", exc)
            results.append(False)

    threads = []
    for task in tasks:
        thread = threading.Thread(target=run, args=(task,), daemon=True, name="voiceobs-flush")
        try:
            thread.start()
        except RuntimeError:  # the interpreter is finalising and starts no thread: run it here
            run(task)
            continue
        threads.append(thread)
    for thread in threads:
        thread.join(_left(deadline))
    return len(results) == len(tasks) and all(results)


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
    OpenTelemetry providers and the root logger alone and always builds a new, independent
    instrumentation with the ``exporters`` given (tests, libraries).
    """
    global _active
    with _lock:
        if set_global and _active is not None and not _active.is_shut_down:
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
        "host.name": socket.gethostname(),
        "host.arch": platform.machine(),
    }
    # Only what the user configured: an invented version or environment would mislead.
    if settings.service_version is not None:
        defaults["service.version"] = settings.service_version
    if settings.environment is not None:
        defaults["deployment.environment.name"] = settings.environment
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


_OWN_PROVIDERS: weakref.WeakSet[Any] = weakref.WeakSet()
"""Providers voiceobs built: a global one of these is never mistaken for the application's."""


def _shared_providers(exporters: Exporters) -> tuple[TracerProvider | None, LoggerProvider | None]:
    """The application's own global SDK providers to join (see :mod:`voiceobs.sharedpipeline`),
    for each signal whose exporter was not given in code."""
    tracer_provider, logger_provider = global_sdk_providers()
    if exporters.span is not None or tracer_provider in _OWN_PROVIDERS:
        tracer_provider = None
    if exporters.log is not None or logger_provider in _OWN_PROVIDERS:
        logger_provider = None
    return tracer_provider, logger_provider


def _build(settings: VoiceobsSettings, exporters: Exporters, set_global: bool) -> Instrumentation:
    resource = build_resource(settings)
    rate_card = (
        RateCard.load(settings.rate_card_path) if settings.rate_card_path else RateCard.empty()
    )
    redactor = redactor_for(settings)
    undo: list[Callable[[], None]] = []
    span_processors = SynchronousMultiSpanProcessor()  # type: ignore[no-untyped-call]
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    logger_provider: LoggerProvider | None = None
    registry: CollectorRegistry | None = None
    log_handler: OtlpLogHandler | None = None
    failures: list[Callable[[str], None]] = []
    in_process = True
    handover: ProcessTransport | None = None

    def count_failure(signal: str) -> None:
        for count in failures:
            count(signal)

    if settings.enabled:
        _, unquiet = quiet_sdk_loggers()
        undo.append(unquiet)
        shared_tracer, shared_logger = _shared_providers(exporters) if set_global else (None, None)
        shared = shared_tracer or shared_logger
        if shared is not None:
            resource = shared.resource
        from_env = {
            "metrics": settings.metrics_enabled and not exporters.metric_readers,
            "traces": settings.traces_enabled and not exporters.span and shared_tracer is None,
            "logs": settings.logs_enabled and not exporters.log and shared_logger is None,
        }
        in_process = _materialise_in_process(settings, exporters, shared is not None)
        chosen = {signal: exporter_names(signal) for signal, wanted in from_env.items() if wanted}
        check_otlp_protocols(chosen)
        if not in_process:
            handover = ProcessTransport(
                settings.queue_size, ExportConfig(settings, dict(resource.attributes), rate_card)
            )
        with sdk_self_metrics() if in_process else nullcontext():
            if settings.metrics_enabled:
                meter_provider, registry = init_metrics(
                    settings,
                    resource,
                    exporters.metric_readers,
                    [HandoverMetricExporter(handover)]
                    if handover is not None and chosen.get("metrics")
                    else env_exporters("metrics", chosen, settings),
                    count_failure,
                )
            if settings.traces_enabled:
                tracer_provider = _init_tracing(
                    settings,
                    resource,
                    [exporters.span]
                    if exporters.span
                    else [SpansToProvider(shared_tracer)]
                    if shared_tracer
                    else []
                    if handover
                    else env_exporters("traces", chosen, settings),
                    redactor,
                    span_processors,
                    meter_provider,
                    count_failure,
                    sampler=shared_tracer.sampler if shared_tracer else None,
                    handover=handover if chosen.get("traces") else None,
                )
            if settings.logs_enabled:
                logger_provider = _init_logging(
                    resource,
                    [exporters.log]
                    if exporters.log
                    else [LogsToProvider(shared_logger)]
                    if shared_logger
                    else []
                    if handover
                    else env_exporters("logs", chosen, settings),
                    redactor,
                    meter_provider,
                    count_failure,
                    handover=handover if chosen.get("logs") else None,
                )
        _OWN_PROVIDERS.update(p for p in (tracer_provider, meter_provider, logger_provider) if p)
        if logger_provider is not None:
            log_handler = OtlpLogHandler(logger_provider, getattr(logging, settings.log_level))
            if set_global:
                undo.append(_bridge_logging(log_handler, logging.getLogger()))
        if meter_provider is not None:
            undo.append(_init_process_metrics(meter_provider))
        if set_global:
            _set_globals(tracer_provider, meter_provider, logger_provider)

    transport: Transport
    materialiser: Materialiser | None = None
    if handover is not None:
        transport = handover
    else:
        meter = (meter_provider or metrics.NoOpMeterProvider()).get_meter(INSTRUMENTATION_SCOPE)
        materialiser = materialiser_for(
            settings,
            resource,
            span_processors.on_end if tracer_provider is not None else None,
            meter,
            redactor,
            rate_card,
        )
        transport = ThreadTransport(
            settings.queue_size,
            materialiser.handle,
            materialiser.every_second,
            materialiser.forget_calls,
        )
    if materialiser is not None:  # counted at once (a counter is thread-safe), before a flush ends
        failures.append(partial(_count_export_failure, materialiser.handle))
    else:
        failures.append(partial(_count_export_failure, transport.send))
    instrumentation = Instrumentation(
        settings,
        resource,
        tracer_provider,
        meter_provider,
        logger_provider,
        transport,
        undo,
        tracer_provider.sampler if tracer_provider is not None else None,
    )
    instrumentation.materialiser = materialiser
    instrumentation.prometheus_registry = registry

    def count_on_instrumentation(_: str) -> None:
        instrumentation.failed_exports += 1

    failures.append(count_on_instrumentation)
    instrumentation.log_handler = log_handler
    if settings.enabled:
        atexit.register(instrumentation._at_exit)
    return instrumentation


def _count_export_failure(handle: Callable[[ExportFailed], None], signal: str) -> None:
    handle(ExportFailed(signal))


def _materialise_in_process(
    settings: VoiceobsSettings, exporters: Exporters, shares_providers: bool
) -> bool:
    """Whether a thread of this process materialises the voice API's records: when the
    export process is off, when exporters or readers come in code (they live here), when
    voiceobs joins the application's own providers, or when ``/metrics`` is served from
    here. Otherwise the export process does (:mod:`voiceobs.processtransport`): the engine
    keeps its providers for HTTP spans, other instrumentations and logs."""
    in_code = exporters.span or exporters.metric_readers or exporters.log
    return bool(
        not settings.export_process or in_code or shares_providers or settings.prometheus_route
    )


def _init_tracing(
    settings: VoiceobsSettings,
    resource: Resource,
    exporters: list[SpanExporter],
    redactor: Redactor,
    processors: SynchronousMultiSpanProcessor,
    meter_provider: MeterProvider | None,
    count_failure: Callable[[str], None],
    sampler: Sampler | None = None,
    handover: Transport | None = None,
) -> TracerProvider | None:
    """A tracer provider sending to each of ``exporters``, or handing its spans over to the
    export process; None when there is neither. ``sampler`` None means the one
    ``OTEL_TRACES_SAMPLER`` names."""
    if not exporters and handover is None:
        return None
    limits = SpanLimits(
        max_span_attribute_length=None
        if os.environ.get("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT")
        else settings.max_text_length
    )
    provider = TracerProvider(
        resource=resource,
        span_limits=limits,
        sampler=sampler,
        shutdown_on_exit=False,
    )
    for inner in exporters:
        exporter: SpanExporter = GuardedSpanExporter(inner, count_failure)
        if redactor.active:
            exporter = RedactingSpanExporter(exporter, redactor)
        processors.add_span_processor(BatchSpanProcessor(exporter, meter_provider=meter_provider))
    if handover is not None:
        processors.add_span_processor(HandoverSpanProcessor(handover))
    provider.add_span_processor(processors)
    return provider


def _init_logging(
    resource: Resource,
    exporters: list[LogRecordExporter],
    redactor: Redactor,
    meter_provider: MeterProvider | None,
    count_failure: Callable[[str], None],
    handover: Transport | None = None,
) -> LoggerProvider | None:
    """A logger provider sending to each of ``exporters``, or handing its records over to
    the export process; None when there is neither."""
    if not exporters and handover is None:
        return None
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    for inner in exporters:
        exporter: LogRecordExporter = GuardedLogExporter(inner, count_failure)
        if redactor.active:
            exporter = RedactingLogExporter(exporter, redactor)
        provider.add_log_record_processor(
            BatchLogRecordProcessor(exporter, meter_provider=meter_provider)
        )
    if handover is not None:
        provider.add_log_record_processor(HandoverLogProcessor(handover))
    return provider


def _bridge_logging(handler: OtlpLogHandler, target: logging.Logger) -> Callable[[], None]:
    """Attach the OTLP handler to ``target`` (the root logger when set up globally).

    Logger levels stay the application's: the handler's own level (``VOICEOBS_LOG_LEVEL``)
    picks what is exported among the records the application's loggers let through.
    """
    target.addHandler(handler)

    def undo() -> None:
        target.removeHandler(handler)

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
    """Make ours the global providers where the application has none of its own."""
    tracer_theirs, logger_theirs = global_sdk_providers()
    if tracer_provider is not None and tracer_theirs is None:
        trace.set_tracer_provider(tracer_provider)
    if meter_provider is not None and not isinstance(metrics.get_meter_provider(), MeterProvider):
        metrics.set_meter_provider(meter_provider)
    if logger_provider is not None and logger_theirs is None:
        logs_api.set_logger_provider(logger_provider)


def _instrument_fastapi(app: FastAPI, instrumentation: Instrumentation) -> None:
    """Wrap the app's whole middleware stack (outermost, so a crash is a 500 it sees) in the
    lean middleware, and mount ``/metrics`` when configured."""
    from voiceobs.asgi import TelemetryMiddleware

    settings = instrumentation.settings
    build = app.build_middleware_stack

    def build_with_telemetry() -> Any:
        return TelemetryMiddleware(
            build(),
            instrumentation.transport,
            instrumentation._sampler,
            settings.excluded_urls,
        )

    app.build_middleware_stack = build_with_telemetry  # type: ignore[method-assign]
    # FastAPI 0.16x has request telemetry of its own, on whenever global providers exist; ours
    # replaces it, or every request would be counted twice under the same names. Its per-app
    # configuration has no public setter after construction.
    native = getattr(app, "_telemetry", None)
    if isinstance(native, dict):
        native.update(tracing=False, metrics=False, logs=False, operation_spans=False)
    app.middleware_stack = None  # an app already serving builds it again on its next request
    if instrumentation.prometheus_registry is not None:
        from voiceobs.prometheus_route import mount_metrics_route

        mount_metrics_route(app, instrumentation.prometheus_registry)
