"""Simulated STT, LLM and TTS providers for the demo engine.

Latencies are log-normal with a slow tail, errors and timeouts happen at a per-provider rate,
and each provider sits behind a circuit breaker (closed → open after consecutive failures →
half-open after a cool-down). Everything is drawn from a ``random.Random`` the caller seeds,
so a demo run is reproducible.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ProviderModel:
    """One provider model: its median latency to first output, tail and error rate."""

    component: str  # stt | llm | tts
    provider: str
    model: str
    median_s: float
    sigma: float = 0.3
    slow_tail: float = 0.02  # share of requests that are 2-5x slower
    error_rate: float = 0.01
    stream_s: float = 0.0  # LLM: time from first to last token

    def draw_latency(self, rng: random.Random, slowdown: float = 1.0) -> float:
        value = rng.lognormvariate(math.log(self.median_s), self.sigma)
        if rng.random() < self.slow_tail:
            value *= rng.uniform(2.0, 5.0)
        return value * slowdown


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A named STT → LLM → TTS chain, with a fallback LLM."""

    name: str
    stt: ProviderModel
    llm: ProviderModel
    tts: ProviderModel
    fallback_llm: ProviderModel | None = None


PIPELINES: dict[str, Pipeline] = {
    p.name: p
    for p in (
        Pipeline(
            "support-en",
            ProviderModel("stt", "deepgram", "nova-3", 0.12, error_rate=0.005),
            ProviderModel("llm", "openai", "gpt-4o-mini", 0.24, stream_s=0.9, error_rate=0.01),
            ProviderModel("tts", "cartesia", "sonic-2", 0.09, error_rate=0.005),
            fallback_llm=ProviderModel("llm", "groq", "llama-3.3-70b", 0.18, stream_s=0.6),
        ),
        Pipeline(
            "sales-premium",
            ProviderModel("stt", "assemblyai", "universal-streaming", 0.16, error_rate=0.01),
            ProviderModel(
                "llm",
                "anthropic",
                "claude-sonnet-4-5",
                0.33,
                sigma=0.3,
                stream_s=1.4,
                error_rate=0.02,
            ),
            ProviderModel("tts", "elevenlabs", "eleven_flash_v2_5", 0.12, slow_tail=0.04),
            fallback_llm=ProviderModel("llm", "openai", "gpt-4o", 0.3, stream_s=1.1),
        ),
        Pipeline(
            "booking-fast",
            ProviderModel("stt", "deepgram", "nova-3", 0.11),
            ProviderModel("llm", "groq", "llama-3.3-70b", 0.17, stream_s=0.5, error_rate=0.015),
            ProviderModel("tts", "deepgram-aura", "aura-2", 0.08),
        ),
    )
}


@dataclass(slots=True)
class CircuitBreaker:
    """closed → open after ``threshold`` consecutive failures; half-open after ``cooldown_s``."""

    threshold: int = 3
    cooldown_s: float = 4.0
    state: str = "closed"
    failures: int = 0
    opened_at: float = field(default=0.0)

    def allow(self, now: float) -> bool:
        if self.state == "open" and now - self.opened_at >= self.cooldown_s:
            self.state = "half_open"
        return self.state != "open"

    def record(self, ok: bool, now: float) -> None:
        if ok:
            self.failures = 0
            self.state = "closed"
            return
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.threshold:
            self.state = "open"
            self.opened_at = now
