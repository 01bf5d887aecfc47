"""The recorder across a fork: a child process records its own telemetry, not the parent's."""

from __future__ import annotations

import json
import os
import threading

import pytest

from tests.conftest import Telemetry
from voiceobs import semconv as sc


def _child(telemetry: Telemetry, write_end: int) -> None:
    """In the forked child: serve a call, then report through the pipe what was recorded."""
    with telemetry.obs.call("c-child") as call, call.turn():
        pass
    flushed = telemetry.obs.transport.recorder.flush(5.0)
    if telemetry.obs.tracer_provider is not None:
        telemetry.obs.tracer_provider.force_flush(5000)
    spans = [(s.name, s.attributes[sc.CALL_ID]) for s in telemetry.spans.get_finished_spans()]
    os.write(write_end, json.dumps({"flushed": flushed, "spans": spans}).encode())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the platform has no fork()")
def test_a_forked_child_records_its_own_calls_and_not_the_parents(telemetry: Telemetry) -> None:
    """What ``gunicorn --preload`` does: set up in the parent, fork, serve calls in the child."""
    recorder = telemetry.obs.transport.recorder
    telemetry.obs.call("c-parent").end()
    telemetry.flush()  # the parent's worker thread runs
    telemetry.spans.clear()
    busy, release = threading.Event(), threading.Event()
    recorder.submit(lambda _: (busy.set(), release.wait(10)), None)
    busy.wait(10)
    telemetry.obs.call("c-queued").end()  # still queued in the parent when it forks
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            _child(telemetry, write_end)
            status = 0
        finally:
            os._exit(status)  # leave without running the parent's test session teardown
    os.close(write_end)
    release.set()
    with os.fdopen(read_end) as pipe:
        report = json.loads(pipe.read() or "{}")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report["flushed"] is True  # was False: the child had no worker thread
    assert sorted(report["spans"]) == [[sc.SPAN_CALL, "c-child"], [sc.SPAN_TURN, "c-child"]]
    parent_calls = [s.attributes[sc.CALL_ID] for s in telemetry.finished_spans()]
    assert parent_calls == ["c-queued"]  # the parent records its own queue, once
