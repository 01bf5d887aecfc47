"""The export side of the HTTP middleware (:mod:`voiceobs.asgi`): server spans and the
``http.server.*`` metrics of the stable HTTP semantic conventions, from plain records.

Every request counts in the metrics; a span is made only for a sampled one. ``http.route`` is
the route template (never the path, which can hold ids and phone numbers) and is absent when
no route matched, so the metrics' label values stay bounded.
"""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.metrics import Meter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from voiceobs.records import HttpServed, HttpStarted

SpanOut = Callable[[ReadableSpan], None]

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
"""The stable HTTP conventions' advice for ``http.server.request.duration``."""
_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
)


def _method(method: str) -> str:
    """Known methods as they are, anything else ``_OTHER`` (bounded label values)."""
    return method if method in _METHODS else "_OTHER"


class HttpMaterialiser:
    """Turns :class:`HttpStarted` and :class:`HttpServed` records into spans and metrics."""

    def __init__(
        self,
        span_out: SpanOut | None,
        resource: Resource,
        scope: InstrumentationScope,
        meter: Meter,
    ) -> None:
        self._span_out = span_out
        self._resource = resource
        self._scope = scope
        self._duration = meter.create_histogram(
            "http.server.request.duration",
            "s",
            "Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._active = meter.create_up_down_counter(
            "http.server.active_requests", "{request}", "Number of active HTTP server requests."
        )

    def started(self, request: HttpStarted) -> None:
        self._active.add(
            1, {"http.request.method": _method(request.method), "url.scheme": request.scheme}
        )

    def served(self, request: HttpServed) -> None:
        method = _method(request.method)
        self._active.add(-1, {"http.request.method": method, "url.scheme": request.scheme})
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method,
            "url.scheme": request.scheme,
            "http.response.status_code": request.status,
            "network.protocol.version": request.protocol,
        }
        if request.route is not None:
            attributes["http.route"] = request.route
        failed = request.error_type is not None or request.status >= 500
        if failed:
            attributes["error.type"] = request.error_type or str(request.status)
        self._duration.record(request.duration_ns / 1e9, attributes)
        if self._span_out is None or not request.trace_flags & 1:
            return
        attributes["url.path"] = request.path
        if request.server is not None:
            attributes["server.address"], attributes["server.port"] = request.server
        if request.user_agent is not None:
            attributes["user_agent.original"] = request.user_agent
        flags = TraceFlags(request.trace_flags)
        parent = (
            SpanContext(request.trace_id, request.parent_span_id, True, flags)
            if request.parent_span_id is not None
            else None
        )
        name = f"{request.method} {request.route}" if request.route else request.method
        self._span_out(
            ReadableSpan(
                name=name,
                context=SpanContext(request.trace_id, request.span_id, False, flags),
                parent=parent,
                resource=self._resource,
                attributes=attributes,
                kind=SpanKind.SERVER,
                status=Status(StatusCode.ERROR) if failed else Status(StatusCode.UNSET),
                start_time=request.start_ns,
                end_time=request.start_ns + request.duration_ns,
                instrumentation_scope=self._scope,
            )
        )
