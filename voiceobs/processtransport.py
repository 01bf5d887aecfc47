"""The engine side of the export process: records leave the engine's interpreter.

``send`` appends to a bounded deque, a few hundred nanoseconds on the engine's thread. A
shipper thread sleeps until a record arrives (the first record of a batch wakes it), gathers
the records of the next :data:`SHIP_INTERVAL_S`, pickles them into one frame
(:data:`FRAME_RECORDS` at most; a backlog leaves frame after frame) and writes it to the
export process (:mod:`voiceobs.exportprocess`), which materialises and exports it. The shipper
adds the jitter buffers' running totals once a second and reports what the deque dropped; an
engine with nothing to report wakes it once a second, not once an interval.
Everything heavy (spans, metric points, OTLP encoding, network retries) happens in the other
process, so it never holds this process' GIL.

Supervision: the export process starts with the first record. If it dies, the next frame
starts a new one, which first receives the start (and end, if sent) of every call not yet
finished there, so their later turns and ends still materialise; the other records the dead
process had not acknowledged are counted as dropped (``export_process_died``). ``shutdown``
closes the pipe, lets the process export what it holds until the deadline and kills it past
that. A forked child (``gunicorn --preload``) starts afresh with its own export process.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from pathlib import Path

from voiceobs.channel import Ack, Batch, ExportConfig, FrameReader, pack, write_frame
from voiceobs.records import CallClosed, CallEnded, CallStarted, Dropped, Record
from voiceobs.transport import Transport

_log = logging.getLogger(__name__)

SHIP_INTERVAL_S = 0.1
"""How long the first record of a batch waits for the others: short against the export
process's batch delay (500 ms), long against a record. Each frame costs the engine a thread
wake-up and a pipe write, a few hundred microseconds on a busy host, whatever its size."""
FRAME_RECORDS = 1000
"""Most records in one frame: pickling holds the GIL, so a backlog (after the export process
was slow or restarted) leaves in frames of a millisecond or two each, never in one long stall
of the engine's loop."""
KILL_MARGIN_S = 0.1
"""Kept back from the shutdown deadline to kill and reap an export process still busy at it,
so that ``shutdown()`` returns within its timeout."""
_PIPE_BYTES = 1 << 20
"""Pipe capacity asked for (Linux): about a second of a busy engine's records."""


class ProcessTransport(Transport):
    """Ships records to a supervised export process."""

    def __init__(self, capacity: int, config: ExportConfig) -> None:
        super().__init__()
        self._capacity = capacity
        self._config = config
        self._stopped = False
        self.restarts = 0
        """Export processes started after the first one died."""
        self._fresh()
        _watch_forks(self)

    def _fresh(self) -> None:
        """Queue, shipper and process state: new at start and in a forked child."""
        self._queue: deque[Record] = deque()
        self._dropped = 0  # written by the engine's threads only
        self._reported = 0  # written by the shipper only
        self._lost_records = 0  # taken by a dead export process; written by the shipper only
        self._bell = _Bell()
        self._asleep = False
        """The shipper waits for a record: the next ``send`` rings (a flag read, so the
        other sends of a batch cost the engine nothing more)."""
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._seq = 0
        self._unacked: deque[tuple[int, int, tuple[int, ...]]] = deque()
        """(seq, items, calls finished in it) of each frame not yet acknowledged."""
        self._open: dict[int, list[Record]] = {}
        """Each call whose finish is not acknowledged yet: its start (and end, once sent), for
        a new export process to pick the call up from."""
        self._acked = 0
        self._flushed: dict[int, bool] = {}
        self._acks = threading.Condition()
        self._flush_requests: list[_FlushRequest] = []
        self._next_second = time.monotonic() + 1.0

    # --- the engine's side ----------------------------------------------------------------
    def send(self, record: Record) -> None:
        if self._stopped or len(self._queue) >= self._capacity:
            self._dropped += 1
            return
        self._queue.append(record)
        if self._asleep:
            self._asleep = False
            self._bell.ring()
        elif self._thread is None:
            self._start()

    def send_kept(self, record: Record) -> None:
        if self._stopped:
            self._dropped += 1
            return
        self._queue.append(record)
        if self._asleep:
            self._asleep = False
            self._bell.ring()
        elif self._thread is None:
            self._start()

    def flush(self, timeout_s: float) -> bool:
        """Wait until the export process has exported everything sent so far; False on
        timeout, on an export failure, or if the process died meanwhile."""
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout_s
        request = _FlushRequest()
        with self._acks:
            self._flush_requests.append(request)
        self._bell.ring()
        with self._acks:
            while request.seq is None or request.seq not in self._flushed:
                left = deadline - time.monotonic()
                if left <= 0 or request.failed or (request.seq is not None and self._died()):
                    return False
                self._acks.wait(min(left, 0.1))
            return self._flushed.pop(request.seq)

    def shutdown(self, timeout_s: float) -> bool:
        """Ship what is queued, close the pipe and let the export process finish its
        exports until the deadline; past it, kill it. False if anything was cut short."""
        deadline = time.monotonic() + max(0.0, timeout_s - KILL_MARGIN_S)
        ok = self.flush(timeout_s * 0.5)
        self._stopped = True
        self._bell.ring()
        process = self._process
        if process is None:
            return ok
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        _close(process)
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()  # also frees a shipper blocked on the full pipe
            process.wait()
            return False
        return ok and process.returncode == 0

    # --- the shipper thread ---------------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="voiceobs-shipper", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        """The shipper: the only thread that writes to the export process."""
        while True:
            stopping = self._stopped
            if len(self._queue) < FRAME_RECORDS:  # else a backlog: the next frame at once
                self._wait_for_records()
            self._bell.silence()
            with self._acks:
                requests, self._flush_requests = self._flush_requests, []
            try:
                while (requests or stopping) and len(self._queue) > FRAME_RECORDS:
                    self._ship(flush=False)  # a flush or the last round covers the backlog
                seq = self._ship(flush=bool(requests))
            except Exception:  # never let the shipper die silently
                _log.exception("voiceobs: the record shipper failed; retrying")
                seq = None
            with self._acks:
                for request in requests:
                    request.seq = seq
                    request.failed = seq is None
                self._acks.notify_all()
            if stopping:
                return

    def _wait_for_records(self) -> None:
        """Sleep until a record, a flush or the next second (the once-a-second extras); after
        a record, let the records of one interval gather (a flush or shutdown cuts that
        short)."""
        if not self._queue and not self._stopped:
            self._asleep = True
            if not self._queue:  # a record sent before the flag was up finds no one asleep
                self._bell.wait(self._next_second - time.monotonic())
            self._asleep = False
            if not self._queue:  # the next second, a flush or shutdown: nothing to gather
                return
        self._bell.silence()
        if not self._flush_requests and not self._stopped:
            self._bell.wait(SHIP_INTERVAL_S)

    def _ship(self, flush: bool) -> int | None:
        """Send the queued records as one frame (with the once-a-second extras); the frame's
        sequence number, or None when nothing was (or could be) sent."""
        records = self._take()
        if not records and not flush:
            return None
        for _ in range(2):  # a second try goes to a new process if this one just died
            process = self._alive_process()
            if process is None:
                break
            self._seq += 1
            seq = self._seq
            try:
                assert process.stdin is not None
                write_frame(process.stdin.fileno(), Batch(seq, pack(records), flush))
            except OSError:  # the pipe broke: the process is gone and never read this frame
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(1.0)
                continue
            finished = self._note_calls(records)
            with self._acks:
                self._unacked.append((seq, _items(records), finished))
            return seq
        self._lost_records += _items(records)
        return None

    def _note_calls(self, records: list[Record]) -> tuple[int, ...]:
        """Keep each call's start and end until a frame that finishes it is acknowledged;
        the span ids of the calls ``records`` finish."""
        finished: list[int] = []
        with self._acks:
            for record in records:
                if isinstance(record, CallStarted):
                    self._open[record.span_id] = [record]
                elif isinstance(record, CallEnded):
                    self._open.get(record.call_span_id, []).append(record)
                    if record.complete:
                        finished.append(record.call_span_id)
                elif isinstance(record, CallClosed):
                    finished.append(record.call_span_id)
        return tuple(finished)

    def _take(self) -> list[Record]:
        queue = self._queue
        records = [queue.popleft() for _ in range(min(len(queue), FRAME_RECORDS))]
        now = time.monotonic()
        if now >= self._next_second:
            self._next_second = now + 1.0
            records.extend(self.jitter_snapshots())
        dropped = self._dropped - self._reported
        if dropped:
            self._reported += dropped
            records.append(Dropped("voice", "queue_full", dropped))
        if self._lost_records:
            records.append(Dropped("voice", "export_process_died", self._lost_records))
            self._lost_records = 0
        return records

    def _alive_process(self) -> subprocess.Popen[bytes] | None:
        """The export process, started (again) if needed; None if it cannot start."""
        process = self._process
        if process is not None and process.poll() is None:
            return process
        lost = 0
        if self._stopped:
            return None
        if process is not None:
            self.restarts += 1
            lost = self._forget_unacked()
            _close(process)
        try:
            process = self._spawn()
        except OSError as exc:
            _log.warning("voiceobs: cannot start the export process: %s", exc)
            self._process = None
            self._lost_records += lost
            return None
        self._process = process
        with self._acks:
            replay = [record for records in self._open.values() for record in records]
        if lost:
            replay.append(Dropped("voice", "export_process_died", lost))
        try:
            assert process.stdin is not None
            write_frame(process.stdin.fileno(), self._config)
            if replay:
                self._seq += 1
                write_frame(process.stdin.fileno(), Batch(self._seq, pack(replay), False))
        except OSError:  # died at once: the next frame tries again
            self._lost_records += lost
            return None
        return process

    def _spawn(self) -> subprocess.Popen[bytes]:
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        ack_read, ack_write = os.pipe()
        try:
            process = subprocess.Popen(
                # -P: the engine's working directory is not on the export process's path, so
                # what lies there (a script named like a module) is never imported in its place
                [sys.executable, "-P", "-m", "voiceobs.exportprocess", str(ack_write)],
                stdin=subprocess.PIPE,
                env=env,
                close_fds=True,
                pass_fds=(ack_write,),
            )
        except OSError:
            os.close(ack_read)
            raise
        finally:
            os.close(ack_write)
        assert process.stdin is not None
        _grow_pipe(process.stdin.fileno())
        threading.Thread(
            target=self._read_acks,
            args=(ack_read,),
            name="voiceobs-acks",
            daemon=True,
        ).start()
        return process

    def _read_acks(self, fd: int) -> None:
        """On its own thread for each export process: its acknowledgements, until it ends."""
        reader = FrameReader(fd)
        try:
            while True:
                ack = reader.read()
                assert isinstance(ack, Ack)
                with self._acks:
                    while self._unacked and self._unacked[0][0] <= ack.seq:
                        for call_span_id in self._unacked.popleft()[2]:
                            self._open.pop(call_span_id, None)
                    if ack.flushed:
                        self._flushed[ack.seq] = ack.delivered
                    self._acks.notify_all()
        except (EOFError, OSError):
            with self._acks:
                self._acks.notify_all()
        finally:
            os.close(fd)

    def _died(self) -> bool:
        process = self._process
        return process is None or process.poll() is not None

    def _forget_unacked(self) -> int:
        with self._acks:
            lost = sum(count for _, count, _ in self._unacked)
            self._unacked.clear()
            self._acks.notify_all()
        return lost

    def _after_fork_in_child(self) -> None:
        """The parent's export process and calls stay the parent's; this child's pipe end
        is closed so the parent's process still sees the parent's exit."""
        if self._process is not None:
            _close(self._process)
        self._forget_everything()
        self._fresh()


class _Bell:
    """Wakes the shipper: ``threading.Event`` without its Python-level condition, one lock
    operation each way (the shipper wakes several times a second, on the engine's GIL)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()  # held while silent; a ring releases it

    def ring(self) -> None:
        with contextlib.suppress(RuntimeError):  # rung already
            self._lock.release()

    def silence(self) -> None:
        self._lock.acquire(blocking=False)

    def wait(self, timeout_s: float) -> None:
        """Until rung or ``timeout_s`` passed; the ring is taken (silent again)."""
        if timeout_s > 0:
            self._lock.acquire(timeout=timeout_s)
        else:
            self.silence()


class _FlushRequest:
    """A ``flush`` waiting for the shipper to send its frame (``seq``)."""

    def __init__(self) -> None:
        self.seq: int | None = None
        self.failed = False


def _items(records: list[Record]) -> int:
    """Telemetry items in ``records``: a drop report stands for the items it counts."""
    return sum(r.items if isinstance(r, Dropped) else 1 for r in records)


def _close(process: subprocess.Popen[bytes]) -> None:
    try:
        if process.stdin is not None:
            process.stdin.close()
    except OSError:
        pass


def _grow_pipe(fd: int) -> None:
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    if set_size is None:
        return
    # Above the system's limit the default size stays: it only shortens the buffer.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, set_size, _PIPE_BYTES)


_transports: weakref.WeakSet[ProcessTransport] = weakref.WeakSet()
_fork_hook_installed = False


def _watch_forks(transport: ProcessTransport) -> None:
    global _fork_hook_installed
    if not _fork_hook_installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_reset_in_child)
        _fork_hook_installed = True
    _transports.add(transport)


def _reset_in_child() -> None:
    for transport in list(_transports):
        transport._after_fork_in_child()
