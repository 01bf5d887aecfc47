"""The live feed: one backend poll per scope, fanned out to every client of that scope.

Each connected client has a small queue of unsent updates. The poller never waits for a
client: when a client's queue is full (it reads slower than updates come) the client is
dropped, and the poll and every other client go on as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from voiceobs.api.backends import BackendUnavailable
from voiceobs.api.queries import Scope

log = logging.getLogger(__name__)

Poll = Callable[[Scope], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(eq=False)
class Subscriber:
    """One client: its queue of updates and the event set when it is dropped."""

    queue: asyncio.Queue[dict[str, Any]]
    dropped: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""


@dataclass(eq=False)
class _Topic:
    subscribers: set[Subscriber] = field(default_factory=set)
    latest: dict[str, Any] | None = None
    task: asyncio.Task[None] | None = None


class Feed:
    """Polls ``poll(scope)`` every ``interval_s`` while a client of that scope is connected."""

    def __init__(self, poll: Poll, interval_s: float, client_queue: int) -> None:
        self._poll = poll
        self.interval_s = interval_s
        self.client_queue = client_queue
        self._topics: dict[Scope, _Topic] = {}
        self.polls = 0
        """Backend polls run since start, over all scopes."""
        self.dropped = 0
        """Clients dropped for reading too slowly."""

    @property
    def clients(self) -> int:
        return sum(len(t.subscribers) for t in self._topics.values())

    def subscribe(self, scope: Scope) -> Subscriber:
        topic = self._topics.setdefault(scope, _Topic())
        subscriber = Subscriber(asyncio.Queue(maxsize=self.client_queue))
        topic.subscribers.add(subscriber)
        if topic.latest is not None:  # a newcomer sees the last figures at once
            subscriber.queue.put_nowait(topic.latest)
        if topic.task is None or topic.task.done():
            topic.task = asyncio.create_task(self._run(scope, topic), name=f"feed {scope}")
        return subscriber

    def unsubscribe(self, scope: Scope, subscriber: Subscriber) -> None:
        topic = self._topics.get(scope)
        if topic is None:
            return
        topic.subscribers.discard(subscriber)
        if not topic.subscribers:
            if topic.task is not None:
                topic.task.cancel()
            del self._topics[scope]

    async def _run(self, scope: Scope, topic: _Topic) -> None:
        loop = asyncio.get_running_loop()
        while topic.subscribers:
            began = loop.time()
            self.polls += 1
            update: dict[str, Any]
            try:
                update = {"type": "metrics", "data": await self._poll(scope)}
            except BackendUnavailable as exc:
                update = {"type": "error", "backend": exc.backend, "detail": str(exc)}
            except Exception:  # the feed outlives any one bad poll
                log.exception("live feed poll failed")
                update = {"type": "error", "backend": None, "detail": "poll failed"}
            topic.latest = update
            for subscriber in list(topic.subscribers):
                try:
                    subscriber.queue.put_nowait(update)
                except asyncio.QueueFull:
                    self.dropped += 1
                    subscriber.reason = f"more than {self.client_queue} updates unread"
                    subscriber.dropped.set()
                    topic.subscribers.discard(subscriber)
            # A fixed cadence: the poll's own duration is part of the interval, not added to it.
            await asyncio.sleep(max(0.0, self.interval_s - (loop.time() - began)))

    async def serve(self, scope: Scope, send: Send) -> str:
        """Send this scope's updates through ``send`` until the client is dropped or gone.

        Returns why it ended. ``send`` may block on a slow client; only that client waits.
        """
        subscriber = self.subscribe(scope)

        async def pump() -> None:
            while True:
                await send(await subscriber.queue.get())

        pumping = asyncio.create_task(pump())
        dropped = asyncio.create_task(subscriber.dropped.wait())
        try:
            await asyncio.wait({pumping, dropped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pumping, dropped):
                task.cancel()
            self.unsubscribe(scope, subscriber)
        if subscriber.dropped.is_set():
            return f"dropped: {subscriber.reason}"
        with contextlib.suppress(asyncio.CancelledError):
            exc = pumping.exception() if pumping.done() and not pumping.cancelled() else None
            if exc is not None:
                return f"gone: {type(exc).__name__}"
        return "gone"
