"""Stable HTTP semantic conventions for voiceobs' FastAPI instrumentation, and only for it.

The dashboards and alerts read ``http.server.request.duration`` (the stable HTTP
conventions). The contrib instrumentations choose their conventions from
``OTEL_SEMCONV_STABILITY_OPT_IN``, read once per process; setting that variable would switch
every other HTTP instrumentation of the application too. Instead, the process-wide choice is
left as the user made it and, while voiceobs builds its own middleware, the HTTP mode reads as
``http`` in that context only (a :class:`~contextvars.ContextVar`, so other threads and tasks
never see it). A user who opted in to ``http`` or ``http/dup`` keeps their choice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from opentelemetry.instrumentation._semconv import (
    _OpenTelemetrySemanticConventionStability,
    _OpenTelemetryStabilitySignalType,
    _StabilityMode,
)

R = TypeVar("R")

_HTTP = _OpenTelemetryStabilitySignalType.HTTP
_override: ContextVar[_StabilityMode | None] = ContextVar("voiceobs_http_semconv", default=None)


class _ScopedModes(dict[Any, Any]):
    """The instrumentations' mode table, answering ``http`` for HTTP inside :func:`stable_http`
    when the process-wide choice is the old conventions; everything else unchanged."""

    def get(self, key: Any, default: Any = None) -> Any:
        mode = super().get(key, default)
        override = _override.get()
        if key == _HTTP and override is not None and mode == _StabilityMode.DEFAULT:
            return override
        return mode


def _install() -> None:
    stability: Any = _OpenTelemetrySemanticConventionStability
    stability._initialize()  # reads the user's OTEL_SEMCONV_STABILITY_OPT_IN, as it would anyway
    with stability._lock:
        modes = stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING
        if not isinstance(modes, _ScopedModes):
            stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING = _ScopedModes(modes)


@contextmanager
def stable_http() -> Iterator[None]:
    """Instrumentation built inside this block uses the stable HTTP conventions."""
    _install()
    token = _override.set(_StabilityMode.HTTP)
    try:
        yield
    finally:
        _override.reset(token)


def in_stable_http(build: Callable[[], R]) -> Callable[[], R]:
    """``build`` wrapped to run inside :func:`stable_http` (for lazily built middleware)."""

    def wrapped() -> R:
        with stable_http():
            return build()

    return wrapped
