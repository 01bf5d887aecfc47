"""The span a voice scope or a request makes current, as OpenTelemetry sees it.

Every ``with`` block of the voice API, and every request the middleware serves, makes a
context current whose span carries ids chosen on the engine's side, so that logs written
inside and outgoing ``traceparent`` headers carry them. Most of those contexts are never
read: a turn without logs or outgoing calls only enters and leaves them. Building one the
ordinary way (``SpanContext``, ``TraceFlags``, ``NonRecordingSpan``, ``set_span_in_context``)
costs about half of a ``with`` turn on the engine's loop, so the span here builds its
``SpanContext`` when someone first asks for it, and the context is made in one copy.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, Context())))
"""The key under which OpenTelemetry keeps the current span, learnt through its public API."""


class IdsSpan(NonRecordingSpan):
    """A non-recording span known by its ids; its ``SpanContext`` is built on first use."""

    __slots__ = ("_ids",)

    def __init__(self, trace_id: int, span_id: int, flags: int) -> None:
        # NonRecordingSpan.__init__ is not called: it would build the SpanContext now.
        self._ids = (trace_id, span_id, flags)

    def get_span_context(self) -> SpanContext:
        try:
            return self._context
        except AttributeError:
            trace_id, span_id, flags = self._ids
            self._context = SpanContext(trace_id, span_id, False, TraceFlags(flags))
            return self._context

    def __repr__(self) -> str:
        return f"IdsSpan({self.get_span_context()!r})"


def context_with_span(base: Context, span: trace.Span) -> Context:
    """``base`` with ``span`` as the current span: ``trace.set_span_in_context`` in one step."""
    values = base.copy()
    values[SPAN_KEY] = span
    return Context(values)
