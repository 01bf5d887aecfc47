"""Where the voice API's records go: the engine side of the hand-over to materialisation.

A transport never blocks and never raises into the engine. Its buffer is bounded
(``VOICEOBS_QUEUE_SIZE`` records): past the bound a record is dropped and counted, except a
call's start and end, which must pair up and are bounded by the calls in progress. Once a
second it reads the running totals of the jitter buffers in use.

:class:`ThreadTransport` materialises on one worker thread of the engine's process. The
engine side never imports the materialiser: it only builds records (``voiceobs.records``).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

from voiceobs.recorder import Recorder
from voiceobs.records import Dropped, JitterSnapshot, Record

if TYPE_CHECKING:
    from voiceobs.voice import JitterBuffer

Handle = Callable[[Record], None]


class Transport(ABC):
    """The engine side's one dependency for telemetry: ``send`` records, never wait."""

    def __init__(self) -> None:
        self._buffers: dict[int, JitterBuffer] = {}
        self._buffers_lock = threading.Lock()

    @abstractmethod
    def send(self, record: Record) -> None:
        """Hand over a record; a full buffer drops it (counted)."""

    @abstractmethod
    def send_kept(self, record: Record) -> None:
        """Hand over a record that must not be dropped (a call's start and end)."""

    def count_dropped(self, signal: str, reason: str) -> None:
        """Count telemetry refused on the engine side (bad events…)."""
        self.send(Dropped(signal, reason, 1))

    @abstractmethod
    def flush(self, timeout_s: float) -> bool:
        """Wait until everything sent so far is materialised; False on timeout."""

    @abstractmethod
    def shutdown(self, timeout_s: float) -> bool:
        """Hand over what is buffered within ``timeout_s`` and stop."""

    # --- jitter buffers in use ---------------------------------------------------------------
    def watch(self, buffer: JitterBuffer) -> None:
        with self._buffers_lock:
            self._buffers[id(buffer)] = buffer

    def unwatch(self, buffer: JitterBuffer) -> None:
        with self._buffers_lock:
            self._buffers.pop(id(buffer), None)

    def jitter_snapshots(self) -> list[JitterSnapshot]:
        """The running totals of every watched buffer that had frames since the last time."""
        with self._buffers_lock:
            buffers = list(self._buffers.values())
        return [snapshot for buffer in buffers if (snapshot := buffer.snapshot()) is not None]

    def _forget_everything(self) -> None:
        """In a forked child: the parent's buffers are the parent's to record."""
        self._buffers = {}
        self._buffers_lock = threading.Lock()


class ThreadTransport(Transport):
    """Materialises on one daemon thread of the engine's process (see :mod:`voiceobs.recorder`)."""

    def __init__(
        self,
        capacity: int,
        handle: Handle,
        every_second: Callable[[], None],
        on_fork: Callable[[], None],
    ) -> None:
        super().__init__()
        self._handle = handle
        self._every_second = every_second
        self._on_fork = on_fork
        self.recorder = Recorder(
            capacity,
            self._dropped,
            periodic=self._tick,
            on_fork=self._after_fork,
        )

    def send(self, record: Record) -> None:
        self.recorder.submit(self._handle, record)

    def send_kept(self, record: Record) -> None:
        self.recorder.submit(self._handle, record, keep=True)

    def flush(self, timeout_s: float) -> bool:
        return self.recorder.flush(timeout_s)

    def shutdown(self, timeout_s: float) -> bool:
        return self.recorder.shutdown(timeout_s)

    def _dropped(self, reason: str, count: int) -> None:
        self._handle(Dropped("voice", reason, count))

    def _tick(self, _: None = None) -> None:
        """On the worker, once a second: jitter-buffer totals, then the export side's sweep."""
        for snapshot in self.jitter_snapshots():
            self._handle(snapshot)
        self._every_second()

    def _after_fork(self) -> None:
        self._forget_everything()
        self._on_fork()
