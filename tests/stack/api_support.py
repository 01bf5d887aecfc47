"""A demo run on the live stack and the dashboard API pointed at it, shared by the API's stack
tests (router, live feed, browser)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from stack.settings import StackSettings
from tests.stack.test_e2e_demo import DemoRun, get_json, poll, run_demo
from voiceobs.api import ApiSettings, create_app

ADMIN_KEY = "live-admin-key-0123456789"
ACME_KEY = "live-acme-viewer-key-0123"
GLOBEX_KEY = "live-globex-viewer-key-01"
DEMO_ARGS = ("--calls", "16", "--rate", "8", "--concurrency", "8", "--speed", "40", "--seed", "5")


@pytest.fixture(scope="module")
def api_demo(stack: StackSettings, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """A short demo run under its own service name (its figures are this run's alone), once
    every backend holds it. One per test module: the live figures cover the last 5 minutes."""
    out = tmp_path_factory.mktemp("api-demo") / "calls.json"
    run = run_demo(stack, f"voiceobs-api-{uuid.uuid4().hex[:6]}", out, *DEMO_ARGS)
    with TestClient(create_app(api_settings(stack, run.service))) as client:
        wait_for_data(client, stack, run)
    return run


def api_settings(stack: StackSettings, service: str, **extra: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "prometheus_url": stack.url("prometheus", "web/API"),
        "jaeger_url": stack.url("jaeger", "query HTTP API"),
        "loki_url": stack.url("loki", "HTTP API"),
        "service": service,
        "api_keys": f"{ADMIN_KEY}:admin,{ACME_KEY}:viewer:acme,{GLOBEX_KEY}:viewer:globex",
        "rate_limit_per_minute": 100_000,
    }
    values.update(extra)
    return ApiSettings(**values)


def ratable_pipelines(
    stack: StackSettings, service: str, at: float, window: str = "5m"
) -> set[str]:
    """Pipelines whose turn count rose within ``window`` before ``at`` (the instant the
    answer under test was evaluated as of), computed from the raw series: the ones a rate,
    and so a percentile, exists for. (A short run can fit a pipeline's turns into the first
    sample of its series, and a first sample has no rate.)"""
    count = f'voice_turn_latency_seconds_count{{job="{service}"}}'
    query = f"sum by (pipeline) (rate({count}[{window}])) > 0"
    body = get_json(
        stack.url("prometheus", "web/API", "/api/v1/query"), query=query, time=f"{at:.3f}"
    )
    return {series["metric"]["pipeline"] for series in body["data"]["result"]}


def wait_for_data(client: TestClient, stack: StackSettings, run: DemoRun) -> None:
    """Until every backend holds the run: recorded latency, every call, a call's log lines."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}

    def overview_ready() -> set[str]:
        body = client.get("/api/dashboard/metrics", headers=headers).json()
        return {p["pipeline"] for p in body["pipelines"] if p["turn_latency"]["p95"]}

    def calls_ready() -> bool:
        body = client.get("/api/dashboard/recent-activity?limit=100", headers=headers).json()
        return len(body["calls"]) == len(run.calls)

    last = run.calls[-1]["call_id"]

    def logs_ready() -> bool:
        body = client.get(f"/api/dashboard/calls/{last}", headers=headers).json()
        return bool(body.get("logs"))

    poll("recording rules' turn-latency quantiles per pipeline", overview_ready, 120)
    poll("every demo call's voice.call span in Jaeger", calls_ready, 90)
    poll("the last call's log lines in Loki", logs_ready, 90)


@dataclass
class LiveServer:
    """The console app served by uvicorn on a free loopback port, in a thread."""

    app: FastAPI
    url: str
    server: uvicorn.Server


def serve_in_thread(settings: ApiSettings, send_buffer: int | None = None) -> Iterator[LiveServer]:
    """Serve the console app on a free loopback port until the generator is closed.

    ``send_buffer`` fixes the kernel's send buffer of every connection (accepted sockets
    inherit it from the listening one), so a client that stops reading backs the server up
    after kilobytes rather than the megabytes Linux's autotuning would allow."""
    sock = socket.socket()
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    app = create_app(settings.model_copy(update={"port": port}))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield LiveServer(app, f"http://127.0.0.1:{port}", server)
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
