"""The call simulator: drives the demo engine over HTTP like a telephony gateway would.

Bounded by design: it stops after ``calls`` calls or ``duration_s`` seconds, whichever comes
first. Tenants, pipelines, turn counts, utterances (with phone numbers and e-mail addresses,
to show redaction) and hang-ups are drawn from a seeded ``random.Random``.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass, field

import httpx

from voiceobs.demo.providers import PIPELINES

TENANTS = ("acme", "globex", "initech")
UTTERANCES = (
    "Hi, I'd like to check the status of my order",
    "My number is +1 415 555 {n:04d}, can you call me back",
    "Can I move my appointment to Thursday afternoon",
    "Please send the receipt to jane.doe{n}@example.com",
    "What are your opening hours on the weekend",
    "I want to talk about my last invoice",
    "Yes, that works for me, thank you",
    "No, that's not what I asked for",
    "Could you repeat that please",
    "My card ends in 4242 and it was charged twice",
)


@dataclass(frozen=True)
class SimOptions:
    """How much traffic to make; every field is bounded."""

    calls: int = 60
    duration_s: float = 60.0
    rate: float = 2.0
    concurrency: int = 8
    turns_min: int = 2
    turns_max: int = 7
    seed: int = 1
    call_prefix: str = "demo"

    def __post_init__(self) -> None:
        checks = (
            ("calls", 1 <= self.calls <= 100_000, "between 1 and 100000"),
            ("duration", 0 < self.duration_s <= 24 * 3600, "between 0 and 86400 seconds"),
            ("rate", 0 < self.rate <= 1000, "between 0 and 1000 calls a second"),
            ("concurrency", 1 <= self.concurrency <= 1000, "between 1 and 1000"),
            ("turns", 1 <= self.turns_min <= self.turns_max <= 100, "1 <= min <= max <= 100"),
        )
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"--{name}: must be {allowed}")


@dataclass
class CallResult:
    call_id: str
    trace_id: str
    tenant: str
    pipeline: str
    status: str = "completed"
    latencies: list[float] = field(default_factory=list)
    interrupted: int = 0
    turns: int = 0  # turn requests made, the failed one included
    log_lines: int = 0  # engine log lines written inside this call (filled in by the runner)


@dataclass
class SimReport:
    calls: list[CallResult]
    seconds: float
    flushed: bool = True
    """Whether all telemetry reached the exporter at shutdown (set by the demo runner)."""

    @property
    def turns(self) -> int:
        return sum(len(c.latencies) for c in self.calls)

    def latency_quantiles(self) -> dict[str, float]:
        values = sorted(v for c in self.calls for v in c.latencies)
        if len(values) < 2:
            return {}
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98]}

    def summary(self) -> str:
        failed = sum(c.status == "failed" for c in self.calls)
        q = self.latency_quantiles()
        latency = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in q.items()) or "n/a"
        return (
            f"{len(self.calls)} calls ({failed} failed), {self.turns} turns "
            f"in {self.seconds:.1f} s; "
            f"turn latency {latency}"
        )


async def _one_call(
    client: httpx.AsyncClient, index: int, rng: random.Random, options: SimOptions
) -> CallResult:
    tenant = rng.choice(TENANTS)
    pipeline = rng.choice(tuple(PIPELINES))
    caller = f"+1 415 555 {rng.randint(0, 9999):04d}"
    call_id = f"{options.call_prefix}-{options.seed}-{index:05d}"
    started = await client.post(
        "/v1/calls",
        json={"call_id": call_id, "tenant": tenant, "pipeline": pipeline, "caller": caller},
    )
    started.raise_for_status()
    result = CallResult(call_id, started.json()["trace_id"], tenant, pipeline)
    for _ in range(rng.randint(options.turns_min, options.turns_max)):
        utterance = rng.choice(UTTERANCES).format(n=rng.randint(0, 9999))
        result.turns += 1
        reply = await client.post(f"/v1/calls/{call_id}/turns", json={"utterance": utterance})
        if reply.status_code == 503:  # the engine gave up and ended the call
            result.status = "failed"
            return result
        reply.raise_for_status()
        body = reply.json()
        if body["latency_s"] is not None:
            result.latencies.append(body["latency_s"])
        result.interrupted += bool(body["interrupted"])
    result.status = "abandoned" if rng.random() < 0.03 else "completed"
    hangup = await client.post(f"/v1/calls/{call_id}/hangup", json={"status": result.status})
    hangup.raise_for_status()
    return result


async def simulate(base_url: str, options: SimOptions, *, progress: bool = True) -> SimReport:
    """Run calls against the engine at ``base_url`` until the count or the time runs out."""
    rng = random.Random(options.seed)
    seeds = [rng.random() for _ in range(options.calls)]
    limit = asyncio.Semaphore(options.concurrency)
    deadline = time.monotonic() + options.duration_s
    began = time.monotonic()
    results: list[CallResult] = []

    async def run(client: httpx.AsyncClient, index: int) -> None:
        async with limit:
            if time.monotonic() >= deadline:
                return
            result = await _one_call(client, index, random.Random(seeds[index]), options)
            results.append(result)
            if progress and len(results) % 10 == 0:
                print(
                    f"  … {len(results)} calls done, {sum(len(r.latencies) for r in results)} turns"
                )

    async with httpx.AsyncClient(base_url=base_url, timeout=120.0) as client:
        tasks = []
        for index in range(options.calls):
            if time.monotonic() >= deadline:
                break
            tasks.append(asyncio.create_task(run(client, index)))
            await asyncio.sleep(1.0 / options.rate)
        await asyncio.gather(*tasks)
    return SimReport(results, time.monotonic() - began)
