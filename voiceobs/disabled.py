"""What the voice API hands out when voiceobs is disabled: one object that does nothing.

It stands in for a call, a turn, a stage and a jitter buffer alike, so a disabled engine pays
for a method call and nothing else. A test keeps its methods in step with the real scopes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self


class DisabledScope:
    """Every voice-scope method, doing nothing; scope-returning ones return this object."""

    __slots__ = ()

    call_id = ""
    trace_id = 0
    trace_id_hex = "0" * 32
    span_id = 0
    number = 0
    latency = None
    start_ns = 0
    start_monotonic_ns = 0
    end_ns = None
    turn_count = 0
    stages: tuple[()] = ()
    buffers: tuple[()] = ()

    def _self(self, *args: Any, **kwargs: Any) -> Self:
        return self

    def _nothing(self, *args: Any, **kwargs: Any) -> None:
        return None

    turn = stage = stt = llm = tts = tool = jitter_buffer = _self
    user_speech_ended = eou_detected = agent_audio_started = interrupt = end = _nothing
    snapshot = _nothing
    first_chunk = final = first_token = first_byte = usage = transcript = fail = _nothing
    stream_restart = sample = _nothing

    def now_ns(self) -> int:
        return 0

    def context(self) -> Any:
        from opentelemetry.context import get_current

        return get_current()

    @contextmanager
    def active(self) -> Iterator[Self]:
        yield self

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


DISABLED = DisabledScope()
