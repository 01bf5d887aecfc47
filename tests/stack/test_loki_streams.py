"""Loki keeps one stream per service, not one per process, and stores per line only what
describes the line (loki/config.yaml, otlp_config).

Two processes of one engine, one after the other (a restart: a new service.instance.id, pid
and start time), each send log lines through the real Collector into Loki with the resource
attributes the Python SDK reports. The service must still be one stream; the line keeps its
trace id, call id and process identity as structured metadata, and not the process's
executable path, command line, runtime or SDK identity.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import urllib.parse
import urllib.request
import uuid
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from stack.settings import StackSettings, listener

pytestmark = [
    pytest.mark.stack,
    pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning"),
]

SERVICE = f"voiceobs-restarts-{uuid.uuid4().hex[:6]}"
LINES_PER_PROCESS = 5
PROCESS_ATTRIBUTES = {
    "process.pid": os.getpid(),
    "process.executable.path": sys.executable,
    "process.command_line": " ".join(sys.argv),
    "process.runtime.name": "cpython",
    "process.runtime.version": sys.version.split()[0],
    "os.type": "linux",
}


def _process_logs(stack: StackSettings, instance: str, call_id: str) -> None:
    """One engine process: its own providers and resource, a few lines in a span, shut down."""
    resource = Resource.create(
        {
            "service.name": SERVICE,
            "service.namespace": "voice",
            "service.instance.id": instance,
            **PROCESS_ATTRIBUTES,
        }
    )
    endpoint = f"http://{listener('collector', 'OTLP/gRPC receiver').hostport(stack.env)}"
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True))
    )
    tracer = TracerProvider(resource=resource).get_tracer("restarts")
    logger = logging.getLogger(f"restarts.{instance}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(LoggingHandler(logger_provider=logs))
    with tracer.start_as_current_span("voice.turn"):
        for n in range(LINES_PER_PROCESS):
            logger.info("turn %d answered", n, extra={"voice.call.id": call_id})
    logs.shutdown()


def _loki(stack: StackSettings, path: str, **params: str) -> Any:
    url = f"{stack.url('loki', 'HTTP API', path)}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_a_restarted_engine_keeps_its_stream_and_lines_keep_only_line_metadata(
    stack: StackSettings,
) -> None:
    began = time.time()
    for instance in ("first-process", "after-restart"):
        _process_logs(stack, instance, f"call-{instance}")
    window = {"start": str(int((began - 60) * 1e9)), "end": str(int((time.time() + 60) * 1e9))}
    selector = f'{{service_name="{SERVICE}"}}'
    deadline = time.monotonic() + 60
    lines: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(lines) < 2 * LINES_PER_PROCESS:
        result = _loki(stack, "/loki/api/v1/query_range", query=selector, limit="100", **window)
        lines = [
            {**s["stream"], "line": line}
            for s in result["data"]["result"]
            for _, line in s["values"]
        ]
        time.sleep(1)
    assert len(lines) == 2 * LINES_PER_PROCESS, lines
    streams = _loki(stack, "/loki/api/v1/series", **{"match[]": selector}, **window)["data"]
    # One stream: the index labels are the service identity only, whatever the process.
    assert len(streams) == 1, streams
    assert set(streams[0]) <= {"service_name", "service_namespace"}, streams[0]
    assert streams[0]["service_namespace"] == "voice"
    for line in lines:
        assert line["trace_id"] and line["span_id"]  # structured metadata, per line
        assert line["voice_call_id"] in ("call-first-process", "call-after-restart")
        assert line["service_instance_id"] in ("first-process", "after-restart")
        dropped = [k for k in line if k.startswith(("process_", "os_", "telemetry_sdk"))]
        assert not dropped, f"stored per line: {dropped}"
