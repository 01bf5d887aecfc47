"""The hand-off between the engine's thread and telemetry materialisation.

The voice API only notes timestamps and ids on the engine's thread, then hands finished
calls, turns and stages to a :class:`Recorder`: a bounded queue drained by one daemon
thread that creates the spans and metric points. A full queue drops (and counts) rather
than blocking, except for the tasks that must pair up (a call's start and end), which always
get in; an error while materialising is logged once per kind and counted, never raised into
the engine. In a forked child (``gunicorn --preload``) the recorder starts afresh: the
parent's queue stays the parent's, and the child's first task starts its own worker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

_log = logging.getLogger(__name__)

Task = tuple[Callable[[Any], None], Any]
DropCallback = Callable[[str, int], None]


class Recorder:
    """A bounded work queue with one background worker."""

    def __init__(
        self,
        capacity: int,
        on_drop: DropCallback,
        *,
        interval_s: float = 0.1,
        periodic: Callable[[None], None] | None = None,
        period_s: float = 1.0,
        name: str = "voiceobs-recorder",
        on_fork: Callable[[], None] | None = None,
    ) -> None:
        self._capacity = capacity
        self._on_drop = on_drop
        self._interval = interval_s
        self._periodic = periodic
        self._period = period_s
        self._stopped = False
        self._failed_kinds: set[str] = set()
        self._name = name
        self._on_fork = on_fork
        self._fresh()
        _watch_forks(self)

    def _fresh(self) -> None:
        """The queue, worker and synchronisation state: new at start and in a forked child,
        where the parent's worker thread does not exist and its locks may be held."""
        self._queue: deque[Task] = deque()
        self._next_period = time.monotonic() + self._period
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._dropped = 0  # written by submitting threads only
        self._reported = 0  # written by the worker only
        self._thread: threading.Thread | None = None  # started by the first submit
        self._start_lock = threading.Lock()

    def submit(self, fn: Callable[[Any], None], arg: Any, *, keep: bool = False) -> None:
        """Queue ``fn(arg)`` for the worker; never blocks, never raises. A full queue drops
        and counts the task, unless ``keep``: for the few tasks that must pair up (a call's
        start and end), which are bounded by the calls in progress."""
        if self._stopped or (len(self._queue) >= self._capacity and not keep):
            self._dropped += 1
            return
        self._queue.append((fn, arg))
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        """Start the worker once, on first use: a disabled or idle voiceobs runs no thread."""
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self._interval)
            self._wake.clear()
            self._drain()
            if self._periodic is not None and time.monotonic() >= self._next_period:
                self._next_period += self._period
                self._call(self._periodic, None)

    def _drain(self) -> None:
        self._idle.clear()
        try:
            queue = self._queue
            while queue:
                fn, arg = queue.popleft()
                self._call(fn, arg)
            dropped = self._dropped - self._reported
            if dropped:
                self._reported += dropped
                self._on_drop("queue_full", dropped)
        finally:
            self._idle.set()

    def _call(self, fn: Callable[[Any], None], arg: Any) -> None:
        try:
            fn(arg)
        except Exception:  # telemetry must never take the engine down
            self._failed(fn)

    def _failed(self, fn: Callable[[Any], None]) -> None:
        kind = getattr(fn, "__qualname__", repr(fn))
        self._on_drop("materialise_error", 1)
        if kind not in self._failed_kinds:
            self._failed_kinds.add(kind)
            _log.exception("voiceobs could not record telemetry in %s (logged once)", kind)

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued so far is materialised; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._queue or not self._idle.is_set():
            self._wake.set()
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def shutdown(self, timeout_s: float) -> bool:
        """Drain what is queued (within ``timeout_s``) and stop the worker."""
        flushed = self.flush(timeout_s)
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, timeout_s))
        return flushed

    def __len__(self) -> int:
        return len(self._queue)

    def _after_fork_in_child(self) -> None:
        """Forget the parent's queue and worker; tell the owner to forget its state too."""
        self._fresh()
        if self._on_fork is not None:
            self._on_fork()


_recorders: weakref.WeakSet[Recorder] = weakref.WeakSet()
"""Every live recorder; a forked child resets each (weakly held: tests make many)."""
_fork_hook_installed = False


def _watch_forks(recorder: Recorder) -> None:
    """Reset ``recorder`` in forked children; the hook is installed with the first one."""
    global _fork_hook_installed
    if not _fork_hook_installed and hasattr(os, "register_at_fork"):  # Windows has no fork
        os.register_at_fork(after_in_child=_reset_in_child)
        _fork_hook_installed = True
    _recorders.add(recorder)


def _reset_in_child() -> None:
    for recorder in list(_recorders):
        recorder._after_fork_in_child()
