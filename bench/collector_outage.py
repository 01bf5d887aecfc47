"""The engine while its Collector is unreachable.

voiceobs at the goal load exports through a TCP relay to the private Collector. In one run
the relay passes everything; in the other it refuses connections (and cuts the open ones) for
an outage in the measurement window, then lets them through again. Figures: the engine's loop
lag and CPU in the outage run beside the run without one, and every span that never reached
the Collector set against what the engine's telemetry counted as dropped or failed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

from bench.collector import HarnessError, PrivateCollector
from bench.engine_load import GOAL_CALLS, run_engine, summary
from bench.figures import Figure, Goal

GROUP = f"Collector unreachable, {GOAL_CALLS} calls"
OUTAGE_STARTS_S = 7.0
"""Seconds after the engine starts: past its warm-up (5 s), inside the window."""
RECOVERY_S = 15.0
"""Window left after the outage, for the export process to reconnect and send what it held."""


class Relay:
    """Forwards TCP connections from a free loopback port to ``target``; :meth:`cut` closes
    the listener and every open connection (a sender sees "connection refused"), and
    :meth:`restore` listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return listener

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by cut()
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(sock)
            sock.close()

    def cut(self) -> None:
        with contextlib.suppress(OSError):  # wakes the blocked accept() and stops listening
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self._listener = self._listen(self.port)

    def close(self) -> None:
        self.cut()


def _outage(relay: Relay, outage_s: float) -> None:
    time.sleep(OUTAGE_STARTS_S)
    relay.cut()
    time.sleep(outage_s)
    relay.restore()


def _counted_span_losses(collector: PrivateCollector, service: str) -> dict[str, float]:
    """Spans the engine's telemetry says were lost, by where: the SDK span processor's queue
    and the span exporter (their results with an ``error_type``), and the records voiceobs'
    own bounded queue dropped."""
    return {
        where: collector.engine_metric(name, service, label=label) or 0.0
        for where, name, label in (
            ("queue", "otel_sdk_processor_span_processed_total", "error_type"),
            ("export", "otel_sdk_exporter_span_exported_total", "error_type"),
            ("records", "voiceobs_telemetry_dropped_total", None),
        )
    }


def measure(outage_s: float, collector: PrivateCollector) -> list[Figure]:
    seconds = OUTAGE_STARTS_S + outage_s + RECOVERY_S
    runs: dict[str, dict[str, Any]] = {}
    for name in ("reachable", "outage"):
        relay = Relay(("127.0.0.1", collector.ports.grpc))
        try:
            print(
                f"[bench] Collector {name}: {GOAL_CALLS} calls, {seconds:.0f} s"
                + (f", unreachable for {outage_s:.0f} s" if name == "outage" else ""),
                flush=True,
            )
            if name == "outage":
                threading.Thread(target=_outage, args=(relay, outage_s), daemon=True).start()
            service = f"bench-collector-{name}"
            runs[name] = run_engine(
                "voiceobs", GOAL_CALLS, seconds, collector, endpoint=relay.endpoint, service=service
            )
            runs[name]["counted_losses"] = _counted_span_losses(collector, service)
        finally:
            relay.close()
    return figures_for(outage_s, runs)


def figures_for(outage_s: float, runs: dict[str, dict[str, Any]]) -> list[Figure]:
    reachable, outage = summary(runs["reachable"]), summary(runs["outage"])
    figures: list[Figure] = []

    def add(key: str, title: str, value: float, unit: str, **kw: Any) -> None:
        figures.append(Figure(f"outage-{key}", GROUP, title, value, unit, **kw))

    for key, title, goal in (
        ("p99", "loop lag p99", Goal("<=", 1.2)),
        ("max", "loop lag max", Goal("<=", 5.0, on_ratio=False)),
    ):
        add(
            f"lag-{key}",
            f"{title}, Collector unreachable for {outage_s:.0f} s",
            outage[key],
            "ms",
            baseline=reachable[key],
            baseline_name="reachable",
            goal=goal,
        )
    add(
        "cpu",
        f"engine process CPU, Collector unreachable for {outage_s:.0f} s",
        outage["cpu"],
        "% of a core",
        baseline=reachable["cpu"],
        baseline_name="reachable",
    )
    run = runs["outage"]
    lost = run["spans_made"] - run["collector"]["accepted_spans"]
    if lost < 0:
        raise HarnessError(f"the Collector received {-lost:.0f} spans more than were made")
    counted = run["counted_losses"]
    add(
        "spans-uncounted",
        "spans that never reached the Collector and that no drop or export-failure count holds",
        max(0.0, lost - counted["queue"] - counted["export"]),
        "spans",
        note=f"{run['spans_made']:.0f} made, {lost:.0f} lost: {counted['queue']:.0f} dropped "
        f"at the full span queue, {counted['export']:.0f} in failed exports; "
        f"{counted['records']:.0f} records dropped before materialising",
        goal=Goal("<=", 0, on_ratio=False),
    )
    add(
        "shutdown",
        "shutdown() after the outage run",
        run["shutdown_s"],
        "s",
        note="returned " + str(run["shutdown_ok"]),
    )
    return figures
