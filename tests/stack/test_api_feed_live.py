"""The live feed over real WebSocket connections to a real server on the live stack: backend
queries per second are the same with 1 and with 100 clients, and a client that stops reading
is dropped while the server keeps feeding the others."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import Callable, Iterator

import pytest
import websockets

from stack.settings import StackSettings
from tests.stack.api_support import (
    ADMIN_KEY,
    LiveServer,
    api_settings,
    serve_in_thread,
)
from tests.stack.test_e2e_demo import DemoRun

pytestmark = pytest.mark.stack
INTERVAL_S = 0.5


@pytest.fixture(scope="module")
def run(api_demo: DemoRun) -> DemoRun:
    return api_demo


@pytest.fixture(scope="module")
def server(stack: StackSettings, run: DemoRun) -> Iterator[LiveServer]:
    settings = api_settings(stack, run.service, feed_interval_s=INTERVAL_S, feed_client_queue=2)
    yield from serve_in_thread(settings)


@pytest.fixture(scope="module")
def fast_server(stack: StackSettings, run: DemoRun) -> Iterator[LiveServer]:
    """Updates every 0.2 s through 8 KiB send buffers: a stuck client backs up in seconds."""
    settings = api_settings(stack, run.service, feed_interval_s=0.2, feed_client_queue=2)
    yield from serve_in_thread(settings, send_buffer=8192)


def ws_url(server: LiveServer, key: str) -> str:
    return server.url.replace("http://", "ws://") + f"/api/dashboard/ws/real-time?token={key}"


async def _queries_per_s(server: LiveServer, clients: int, seconds: float) -> tuple[float, int]:
    """Backend queries/s the server sent while ``clients`` clients read the feed."""
    api = server.app.state.dashboard
    connections = [await websockets.connect(ws_url(server, ADMIN_KEY)) for _ in range(clients)]
    received = [0] * clients

    async def read(i: int) -> None:
        async for message in connections[i]:
            assert json.loads(message)["type"] == "metrics"
            received[i] += 1

    readers = [asyncio.create_task(read(i)) for i in range(clients)]
    await asyncio.sleep(2 * INTERVAL_S)  # connected and fed
    before, began = sum(api.backends.queries.values()), time.monotonic()
    await asyncio.sleep(seconds)
    sent = sum(api.backends.queries.values()) - before
    elapsed = time.monotonic() - began
    for connection in connections:
        await connection.close()
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    assert min(received) >= seconds / INTERVAL_S - 1, received
    return sent / elapsed, min(received)


async def test_backend_queries_per_second_do_not_grow_with_clients(
    server: LiveServer, report: Callable[[str], None]
) -> None:
    one, _ = await _queries_per_s(server, 1, 6.0)
    hundred, fewest = await _queries_per_s(server, 100, 6.0)
    report(
        f"live feed every {INTERVAL_S} s: {one:.1f} backend queries/s with 1 client, "
        f"{hundred:.1f} with 100 clients (each got >= {fewest} updates in 6 s)"
    )
    assert one > 0
    assert hundred == pytest.approx(one, rel=0.2)


def _raw_client_that_never_reads(server: LiveServer) -> socket.socket:
    """A WebSocket client that completes the handshake, then never reads again."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /api/dashboard/ws/real-time?token={ADMIN_KEY} HTTP/1.1\r\nHost: {host}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert b" 101 " in sock.recv(1024)
    return sock


async def test_a_client_that_stops_reading_is_dropped_and_others_keep_getting_updates(
    fast_server: LiveServer, report: Callable[[str], None]
) -> None:
    api = fast_server.app.state.dashboard
    dropped_before = api.feed.dropped
    slow = _raw_client_that_never_reads(fast_server)
    began = time.monotonic()
    async with websockets.connect(ws_url(fast_server, ADMIN_KEY)) as good:
        updates = 0
        while api.feed.dropped == dropped_before and time.monotonic() - began < 240:
            update = json.loads(await asyncio.wait_for(good.recv(), 10))
            assert update["type"] == "metrics"
            updates += 1
        took = time.monotonic() - began
        assert api.feed.dropped == dropped_before + 1, "the slow client was never dropped"
        assert api.feed.clients == 1  # the reader, of the same scope, still fed by the poll
        after = [json.loads(await asyncio.wait_for(good.recv(), 10)) for _ in range(3)]
    slow.close()
    assert all(u["type"] == "metrics" for u in after)
    report(f"live feed: a client that stopped reading was dropped after {took:.0f} s "
           f"while another got {updates} updates")  # fmt: skip


async def test_the_feed_refuses_a_missing_or_unknown_credential(server: LiveServer) -> None:
    for url in (ws_url(server, ""), ws_url(server, "x" * 24)):
        with pytest.raises(websockets.exceptions.InvalidStatus):
            await websockets.connect(url)
