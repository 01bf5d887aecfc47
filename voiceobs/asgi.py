"""The HTTP side of the engine: a lean ASGI middleware that notes each request and hands it
over, instead of building a span and recording metrics on the engine's event loop.

Per request it reads two headers (``traceparent``, ``user-agent``), chooses the span id and
the sampling decision, makes that span current while the application runs (so its log lines
and outgoing ``traceparent`` headers carry it), and sends two plain records to the
transport: one when the request starts, one when it ends. The export side turns them into
the server span (stable HTTP conventions) and the ``http.server.*`` metrics, which count every
request whatever the sampling.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Decision, Sampler
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from voiceobs.currentspan import IdsSpan, context_with_span
from voiceobs.records import HttpServed, HttpStarted
from voiceobs.transport import Transport
from voiceobs.voice import new_span_id, new_trace_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def parse_traceparent(value: bytes) -> SpanContext | None:
    """A W3C ``traceparent`` header (version 00 layout), or None if it is not one."""
    parts = value.split(b"-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == b"ff":
        return None
    if len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, True, TraceFlags(flags & 1))


_FOLLOW_PARENT_ELSE_SAMPLE = DEFAULT_ON.get_description()  # type: ignore[no-untyped-call]


class TelemetryMiddleware:
    """Wraps an ASGI application. Requests to an ``excluded`` path (or below it, ``/healthz``
    covers ``/healthz/db``) pass through untouched."""

    def __init__(
        self,
        app: App,
        transport: Transport,
        sampler: Sampler | None,
        excluded: tuple[str, ...],
    ) -> None:
        self._app = app
        self._transport = transport
        self._sampler = sampler
        self._follows_parent = sampler is None or (
            sampler.get_description() == _FOLLOW_PARENT_ELSE_SAMPLE
        )
        """The sampler is the SDK's default (``parentbased_always_on``), or there is none:
        the decision is the parent's sampled flag, and a root is sampled (no sampler: not),
        decided here without the sampler's result objects (a few microseconds a request)."""
        self._excluded = frozenset(excluded)
        self._excluded_below = tuple(f"{path.rstrip('/')}/" for path in excluded)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_excluded(scope.get("path", "")):
            await self._app(scope, receive, send)
            return
        start_ns = time.time_ns()
        started = time.perf_counter_ns()
        method = scope.get("method", "_OTHER")
        scheme = scope.get("scheme", "http")
        parent: SpanContext | None = None
        user_agent: str | None = None
        for name, value in scope.get("headers", ()):
            if name == b"traceparent":
                parent = parse_traceparent(value)
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")
        trace_id = parent.trace_id if parent is not None else new_trace_id()
        span_id = new_span_id()
        flags = self._flags(parent, trace_id, method)
        span = IdsSpan(trace_id, span_id, flags)
        token = otel_context.attach(context_with_span(otel_context.get_current(), span))
        status = 500
        error_type: str | None = None

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self._transport.send(HttpStarted(method, scheme))
        try:
            await self._app(scope, receive, send_noting_status)
        except BaseException as exc:
            error_type = type(exc).__qualname__
            raise
        finally:
            otel_context.detach(token)
            server = scope.get("server")
            self._transport.send(
                HttpServed(
                    method,
                    getattr(scope.get("route"), "path", None),
                    scope.get("path", ""),
                    scheme,
                    scope.get("http_version", "1.1"),
                    (server[0], server[1]) if server else None,
                    user_agent,
                    status,
                    error_type,
                    start_ns,
                    time.perf_counter_ns() - started,
                    trace_id,
                    span_id,
                    parent.span_id if parent is not None else None,
                    flags,
                )
            )

    def _is_excluded(self, path: str) -> bool:
        return path in self._excluded or path.startswith(self._excluded_below)

    def _flags(self, parent: SpanContext | None, trace_id: int, method: str) -> int:
        if self._follows_parent:
            if parent is not None:
                return int(parent.trace_flags)  # parse_traceparent kept only the sampled bit
            return 0 if self._sampler is None else 1
        assert self._sampler is not None
        parent_context = (
            trace.set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
        )
        decision = self._sampler.should_sample(
            parent_context, trace_id, method, SpanKind.SERVER
        ).decision
        return 1 if decision is Decision.RECORD_AND_SAMPLE else 0
