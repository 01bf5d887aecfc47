"""The live feed's fan-out: one poll per interval whatever the number of clients, and a client
that does not read is dropped while the others keep receiving."""

from __future__ import annotations

import asyncio
from typing import Any

from voiceobs.api.backends import BackendUnavailable
from voiceobs.api.feed import Feed
from voiceobs.api.queries import Scope

SCOPE = Scope("svc", None)


class Polls:
    """A poll function that counts its calls and can fail on demand."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail: str | None = None

    async def __call__(self, scope: Scope) -> dict[str, Any]:
        self.calls += 1
        if self.fail:
            raise BackendUnavailable(self.fail, "refused")
        return {"n": self.calls, "tenant": scope.tenant}


async def _run_clients(clients: int, seconds: float) -> int:
    polls = Polls()
    feed = Feed(polls, interval_s=0.05, client_queue=4)
    received = [0] * clients

    def sender(i: int) -> Any:
        async def send(update: dict[str, Any]) -> None:
            received[i] += 1

        return send

    tasks = [asyncio.create_task(feed.serve(SCOPE, sender(i))) for i in range(clients)]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert min(received) >= 3, received
    return polls.calls


async def test_one_poll_serves_every_client() -> None:
    one, hundred = await _run_clients(1, 0.5), await _run_clients(100, 0.5)
    assert abs(one - hundred) <= 1, (one, hundred)


async def test_a_client_that_does_not_read_is_dropped_and_the_others_go_on() -> None:
    feed = Feed(Polls(), interval_s=0.02, client_queue=2)
    stuck = asyncio.Event()
    fast: list[dict[str, Any]] = []

    async def never_returns(update: dict[str, Any]) -> None:
        await stuck.wait()

    async def reads(update: dict[str, Any]) -> None:
        fast.append(update)

    slow = asyncio.create_task(feed.serve(SCOPE, never_returns))
    good = asyncio.create_task(feed.serve(SCOPE, reads))
    reason = await asyncio.wait_for(slow, timeout=5)
    assert reason == "dropped: more than 2 updates unread"
    seen = len(fast)
    await asyncio.sleep(0.2)
    assert len(fast) > seen and feed.clients == 1 and feed.dropped == 1
    good.cancel()
    await asyncio.gather(good, return_exceptions=True)
    assert feed.clients == 0


async def test_a_backend_outage_reaches_clients_as_an_error_naming_it() -> None:
    polls = Polls()
    polls.fail = "prometheus"
    feed = Feed(polls, interval_s=0.02, client_queue=4)
    got: list[dict[str, Any]] = []

    async def reads(update: dict[str, Any]) -> None:
        got.append(update)

    task = asyncio.create_task(feed.serve(SCOPE, reads))
    await asyncio.sleep(0.1)
    polls.fail = None
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert got[0] == {"type": "error", "backend": "prometheus", "detail": "prometheus: refused"}
    assert got[-1]["type"] == "metrics"


async def test_each_tenant_scope_has_its_own_poll() -> None:
    polls = Polls()
    feed = Feed(polls, interval_s=0.05, client_queue=4)
    got: dict[str | None, set[str | None]] = {"acme": set(), "globex": set()}

    def sender(tenant: str) -> Any:
        async def send(update: dict[str, Any]) -> None:
            got[tenant].add(update["data"]["tenant"])

        return send

    tasks = [
        asyncio.create_task(feed.serve(Scope("svc", t), sender(t))) for t in ("acme", "globex")
    ]
    await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert got == {"acme": {"acme"}, "globex": {"globex"}}
