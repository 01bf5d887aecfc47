"""The export process: voice telemetry materialised and exported outside the engine's
process, seen by a real OTLP/HTTP receiver; its death, restart and loss accounting, and a
bounded shutdown, caused by real signals."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import voiceobs
from voiceobs import VoiceobsSettings, processtransport, setup_instrumentation
from voiceobs.channel import KINDS, pack, unpack
from voiceobs.processtransport import ProcessTransport
from voiceobs.records import CallStarted, Dropped, JitterSnapshot, StageEnded, TurnEnded
from voiceobs.setup import Instrumentation

PHONE = "+1 415 555 0134"


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP endpoint on the loopback that keeps what it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[Any] = []
        self.metrics: list[Any] = []
        self.logs: list[Any] = []
        self.lock = threading.Lock()

    def span_names(self) -> list[str]:
        with self.lock:
            return [span.name for span in self.spans]

    def sums(self, name: str, **attributes: str) -> float:
        """The latest cumulative value of counter ``name`` over points matching ``attributes``."""
        latest: dict[tuple[tuple[str, str], ...], float] = {}
        with self.lock:
            for metric in self.metrics:
                if metric.name != name:
                    continue
                for point in metric.sum.data_points:
                    labels = {a.key: a.value.string_value for a in point.attributes}
                    if all(labels.get(k) == v for k, v in attributes.items()):
                        value = point.as_double or float(point.as_int)
                        latest[tuple(sorted(labels.items()))] = value
        return sum(latest.values())

    def histogram_count(self, name: str) -> int:
        """The latest cumulative count of histogram ``name``, over all its points."""
        latest: dict[tuple[tuple[str, str], ...], int] = {}
        with self.lock:
            for metric in self.metrics:
                if metric.name != name:
                    continue
                for point in metric.histogram.data_points:
                    labels = {a.key: str(a.value) for a in point.attributes}
                    latest[tuple(sorted(labels.items()))] = point.count
        return sum(latest.values())


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            if self.path == "/v1/traces":
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        self.server.spans.extend(scope_spans.spans)
            elif self.path == "/v1/metrics":
                metrics_request = ExportMetricsServiceRequest.FromString(body)
                for resource_metrics in metrics_request.resource_metrics:
                    for scope_metrics in resource_metrics.scope_metrics:
                        self.server.metrics.extend(scope_metrics.metrics)
            elif self.path == "/v1/logs":
                logs_request = ExportLogsServiceRequest.FromString(body)
                for resource_logs in logs_request.resource_logs:
                    for scope_logs in resource_logs.scope_logs:
                        self.server.logs.extend(scope_logs.log_records)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "60000")
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def obs(receiver: Receiver) -> Iterator[Instrumentation]:
    instrumentation = setup_instrumentation(settings=VoiceobsSettings.load(), set_global=False)
    yield instrumentation
    instrumentation.shutdown()


def _transport(obs: Instrumentation) -> ProcessTransport:
    assert isinstance(obs.transport, ProcessTransport)
    return obs.transport


def _pid(obs: Instrumentation) -> int:
    process = _transport(obs)._process
    assert process is not None
    return process.pid


def _turn(call: Any) -> None:
    with call.turn() as turn:
        with turn.stage("stt", provider="deepgram", model="nova-3"):
            pass
        turn.agent_audio_started()


def test_the_engine_only_ships_records_and_the_export_process_sends_them(
    obs: Instrumentation, receiver: Receiver
) -> None:
    assert obs.materialiser is None  # nothing materialises in the engine's process
    with obs.call("c-proc-1", tenant="acme") as call:
        _turn(call)
        _turn(call)
    assert obs.force_flush(30)
    assert _pid(obs) != os.getpid()
    names = receiver.span_names()
    assert names.count("voice.call") == 1
    assert names.count("voice.turn") == 2
    assert names.count("voice.stt") == 2
    call_span = next(s for s in receiver.spans if s.name == "voice.call")
    assert int.from_bytes(call_span.trace_id, "big") == call.trace_id
    assert receiver.sums("voice.turns") == 2
    assert receiver.sums("voice.calls", tenant="acme") == 1
    # The SDK's own pipeline metrics come from the process that runs the batch processors.
    assert receiver.sums("otel.sdk.processor.span.processed") >= 5
    assert receiver.sums("otel.sdk.exporter.span.exported") >= 5


def test_the_series_a_turn_moved_are_pushed_without_a_flush_or_a_full_push(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full pushes every 60 s (the receiver fixture); the prompt push sends the turn's series
    soon after its records reach the export process."""
    monkeypatch.setenv("VOICEOBS_METRIC_PROMPT_EXPORT_MS", "200")
    obs = setup_instrumentation(settings=VoiceobsSettings.load(), set_global=False)
    try:
        with obs.call("c-prompt-1", tenant="acme") as call, call.turn() as turn:
            turn.user_speech_ended()
            turn.agent_audio_started()
        deadline = time.monotonic() + 30
        while receiver.sums("voice.calls", tenant="acme") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.sums("voice.calls", tenant="acme") == 1
        assert receiver.sums("voice.turns") == 1
        assert receiver.histogram_count("voice.turn.latency") == 1
    finally:
        obs.shutdown()


def test_a_killed_export_process_is_restarted_and_what_it_held_is_counted(
    obs: Instrumentation, receiver: Receiver
) -> None:
    transport = _transport(obs)
    with obs.call("c-proc-2") as call:
        _turn(call)
        assert obs.force_flush(30)
        process = transport._process
        assert process is not None
        first = process.pid
        os.kill(first, signal.SIGSTOP)  # it holds what it is sent, unacknowledged
        _turn(call)
        while not transport._unacked:  # the shipper wrote the turn into the pipe
            time.sleep(0.01)
        held = sum(frame[1] for frame in transport._unacked)
        os.kill(first, signal.SIGKILL)
        process.wait()
        _turn(call)
    assert obs.force_flush(30)
    assert _pid(obs) != first
    assert transport.restarts == 1
    # The new process was told the call had started, so its end and later turn still land.
    assert receiver.span_names().count("voice.call") == 1
    assert receiver.span_names().count("voice.turn") == 2  # the first and the last
    assert held >= 1
    assert receiver.sums("voiceobs.telemetry.dropped", reason="export_process_died") == held


def test_shutdown_kills_an_export_process_that_does_not_finish_in_time(
    obs: Instrumentation,
) -> None:
    with obs.call("c-proc-3") as call:
        _turn(call)
    assert obs.force_flush(30)
    process = _transport(obs)._process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)
    with obs.call("c-proc-4") as call:
        _turn(call)
    assert obs.shutdown(1.0) is False
    assert process.poll() is not None  # killed, not left behind


def test_spans_and_logs_of_others_are_handed_over_and_redacted_there(
    obs: Instrumentation, receiver: Receiver
) -> None:
    assert obs.tracer_provider is not None and obs.log_handler is not None
    tracer = obs.tracer_provider.get_tracer("engine.dialer", "1.2")
    engine_log = logging.getLogger("engine.dialer")
    engine_log.addHandler(obs.log_handler)
    engine_log.setLevel(logging.INFO)
    try:
        with tracer.start_as_current_span("dial", attributes={"to": PHONE}) as span:
            engine_log.warning("dialling %s", PHONE)
    finally:
        engine_log.removeHandler(obs.log_handler)
    assert obs.force_flush(30)
    exported = next(s for s in receiver.spans if s.name == "dial")
    assert int.from_bytes(exported.trace_id, "big") == span.get_span_context().trace_id
    assert PHONE not in str(exported.attributes)
    line = next(r for r in receiver.logs if "dialling" in r.body.string_value)
    assert PHONE not in line.body.string_value
    assert line.span_id == exported.span_id  # the log line carries the span it was written in


def test_http_requests_become_spans_and_metrics_in_the_export_process(
    obs: Instrumentation, receiver: Receiver
) -> None:
    app = FastAPI()

    @app.get("/v1/things/{thing}")
    def thing(thing: str) -> dict[str, str]:
        return {"thing": thing}

    obs.instrument_app(app)
    client = TestClient(app)
    for index in range(3):
        assert client.get(f"/v1/things/{index}").status_code == 200
    assert obs.force_flush(30)
    assert receiver.span_names().count("GET /v1/things/{thing}") == 3
    assert receiver.histogram_count("http.server.request.duration") == 3


def test_exporters_in_code_keep_the_work_on_a_thread(telemetry: Any) -> None:
    assert telemetry.obs.materialiser is not None
    assert not isinstance(telemetry.obs.transport, ProcessTransport)


def test_the_engines_own_metrics_are_exported_by_the_export_process(
    obs: Instrumentation, receiver: Receiver
) -> None:
    assert obs.meter_provider is not None
    orders = obs.meter_provider.get_meter("shop").create_counter("shop.orders")
    orders.add(3, {"tier": "gold"})
    assert obs.force_flush(30)
    assert receiver.sums("shop.orders", tier="gold") == 3
    orders.add(2, {"tier": "gold"})
    assert obs.force_flush(30)
    assert receiver.sums("shop.orders", tier="gold") == 5
    assert "process.cpu.time" in {metric.name for metric in receiver.metrics}


def test_the_engine_process_loads_no_otlp_exporter() -> None:
    """Encoding and sending happen in the export process: the engine never imports gRPC."""
    script = (
        "import sys\n"
        "from voiceobs import setup_instrumentation\n"
        "obs = setup_instrumentation()\n"
        "with obs.call('c-1') as call:\n"
        "    pass\n"
        "obs.shutdown(2)\n"
        "print(sorted(m for m in sys.modules if m == 'grpc' or 'exporter.otlp.proto.grpc' in m))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VOICEOBS_"))}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens: still no gRPC
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_export_process_imports_nothing_from_the_engines_working_directory(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A package in the directory the engine runs from, named like voiceobs, is not what the
    export process runs: it runs the engine's own voiceobs."""
    decoy = tmp_path / "voiceobs"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("")
    (decoy / "exportprocess.py").write_text("raise SystemExit('the working directory ran')\n")
    script = (
        "from voiceobs import setup_instrumentation\n"
        "obs = setup_instrumentation()\n"
        "with obs.call('c-1'):\n"
        "    pass\n"
        "print(obs.force_flush(20))\n"
        "obs.shutdown(2)\n"
    )
    package_root = str(Path(voiceobs.__file__).resolve().parent.parent)
    out = subprocess.run(  # -P: the engine itself imports its voiceobs, not the decoy
        [sys.executable, "-P", "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": package_root},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "True", out.stderr
    assert "voice.call" in receiver.span_names()


def test_a_backlog_leaves_in_bounded_frames_and_a_flush_covers_all_of_it(
    obs: Instrumentation, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processtransport, "FRAME_RECORDS", 20)
    sizes: list[int] = []
    write = processtransport.write_frame

    def noting_size(fd: int, message: Any) -> None:
        if hasattr(message, "records"):  # a Batch, not the ExportConfig that starts a process
            sizes.append(len(message.records))
        write(fd, message)

    monkeypatch.setattr(processtransport, "write_frame", noting_size)
    for index in range(60):
        with obs.call(f"c-backlog-{index}") as call:
            _turn(call)
    assert obs.force_flush(30)
    assert receiver.span_names().count("voice.call") == 60
    assert sum(sizes) >= 60 * 3 and max(sizes) <= 20 + 2  # + the once-a-second extras


def test_an_idle_shipper_sleeps_and_the_next_record_wakes_it(
    obs: Instrumentation, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = _transport(obs)
    call = obs.call("c-idle")
    assert obs.force_flush(30)  # the export process is up and has everything
    rounds = 0
    take = ProcessTransport._take

    def counting(self: ProcessTransport) -> list[Any]:
        nonlocal rounds
        rounds += 1
        return take(self)

    monkeypatch.setattr(ProcessTransport, "_take", counting)
    time.sleep(0.6)
    assert rounds <= 1  # at most the once-a-second extras, not a round per interval
    _turn(call)  # no flush: the record itself wakes the shipper
    deadline = time.monotonic() + 10
    while "voice.turn" not in receiver.span_names() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "voice.turn" in receiver.span_names()
    while transport._unacked and time.monotonic() < deadline:  # acknowledged without a flush
        time.sleep(0.05)
    assert not transport._unacked
    call.end()
    assert obs.force_flush(30)
    assert receiver.span_names().count("voice.call") == 1


def test_records_cross_the_pipe_as_plain_tuples_and_come_back_equal() -> None:
    stage = StageEnded(
        2**63 + 1, 1, 7, 5, 8, "llm", "openai", "gpt", 1, 2, None, None, 0.0, 820, 42, 0, "hi"
    )
    records = [
        CallStarted("c-1", 2**127 + 1, 2**63 + 1, 0, False, 1, "t", "p", None, "in", 1, 2, None),
        TurnEnded(2**63 + 1, 1, 7, 1, 9, 5, None, "vad", "default", 8, None, (stage, stage)),
        JitterSnapshot(2**63 + 1, "inbound", 50, 1.5),
        Dropped("voice", "queue_full", 3),
    ]
    plain = pack(records)
    assert all(type(item) is tuple for item in plain)
    assert all(type(stage) is tuple for stage in plain[1][-1])  # a turn's stages too
    # without the fields they share with their turn, which unpack takes from the turn
    assert StageEnded._fields[:4] == (
        "call_span_id",
        "turn_number",
        "turn_span_id",
        "turn_speech_end_ns",
    )
    assert plain[1][-1] == (stage[4:], stage[4:])
    back = unpack(plain)
    assert back == records
    assert [type(record) for record in back] == [type(record) for record in records]
    assert [type(stage) for stage in back[1].stages] == [StageEnded, StageEnded]
    assert len(set(KINDS)) == len(KINDS)
