"""The demo voice engine: a FastAPI app instrumented with ``setup_instrumentation``.

It speaks no audio: each turn is simulated with realistic provider latencies (see
:mod:`voiceobs.demo.providers`) on a per-call virtual clock, recorded through the voice API
with explicit timestamps — the way an engine replays events from its audio clock. The HTTP
call sleeps for the simulated time divided by ``speed``.

Routes: ``POST /v1/calls`` (start), ``POST /v1/calls/{id}/turns`` (one user utterance →
one agent reply), ``POST /v1/calls/{id}/hangup``, ``GET /healthz``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from voiceobs.demo.providers import PIPELINES, CircuitBreaker, Pipeline, ProviderModel
from voiceobs.setup import Instrumentation
from voiceobs.voice import Call, Turn

log = logging.getLogger("voiceobs.demo.engine")

OUTAGE_PROVIDERS = ("openai", "groq")
OUTAGE_EVERY_S = 60.0
OUTAGE_START_S = 3.0
OUTAGE_LENGTH_S = 9.0
"""The demo's recurring incident, in seconds since the engine started (real time, whatever
the speed, so someone watching the dashboards sees it): two LLM providers fail for a while
(every call of two pipelines out of three needs one of them, whatever the seed), so their
breakers open, go half-open after the cool-down and close again once the providers
answer; early enough that even a 20-second demo shows every breaker state."""

RESTART_REASONS = ("timeout", "network", "provider_reset")
RESTART_EVERY_TURNS = 20
"""Every so many turns one STT stream restarts (on top of the random ones), so a short demo
still has restarts to show."""
INTERRUPT_EVERY_TURNS = 12
"""Every so many turns the user barges in (on top of the random 8 %), so a short demo has
interrupted turns to show."""
LATE_EVENT_EVERY_CALLS = 10
"""Every so many calls the gateway's ``turn.started`` webhook arrives after hang-up; the
event adapter rejects it (``unknown_call``) and counts it in the dropped-telemetry metric."""


class StartCall(BaseModel):
    call_id: str | None = None
    tenant: str = "default"
    pipeline: str = Field(default="support-en", description="one of the demo pipelines")
    caller: str | None = None


class TurnRequest(BaseModel):
    utterance: str = Field(min_length=1, max_length=2000)


class Hangup(BaseModel):
    status: str = "completed"
    failure_reason: str | None = None


@dataclass
class _CallState:
    call: Call
    pipeline: Pipeline
    rng: random.Random
    clock: float  # the call's virtual time, Unix seconds


class DemoEngine:
    """Simulated STT → LLM → TTS turns, reported through the voice API."""

    def __init__(
        self,
        obs: Instrumentation,
        *,
        seed: int = 0,
        speed: float = 1.0,
        slowdown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.obs = obs
        self.seed = seed
        self.speed = speed
        self.slowdown = slowdown
        self.clock = clock  # real seconds, for the outage and the breakers
        self.started = clock()
        self.calls: dict[str, _CallState] = {}
        self.breakers: dict[str, CircuitBreaker] = {}
        self.turns_started = 0
        self.calls_ended = 0

    def start_call(self, request: StartCall) -> _CallState:
        pipeline = PIPELINES.get(request.pipeline)
        if pipeline is None:
            raise HTTPException(
                422, f"pipeline {request.pipeline!r}; allowed: {', '.join(PIPELINES)}"
            )
        call_id = request.call_id or f"call-{uuid.uuid4()}"
        if call_id in self.calls:
            raise HTTPException(409, f"call {call_id} is already in progress")
        now = time.time()
        call = self.obs.call(
            call_id, tenant=request.tenant, pipeline=pipeline.name, caller=request.caller, at=now
        )
        state = _CallState(call, pipeline, random.Random(f"{self.seed}:{call_id}"), now)
        self.calls[call_id] = state
        with call.active():
            log.info(
                "call from %s started on pipeline %s", request.caller or "unknown", pipeline.name
            )
        return state

    def _breaker(self, provider: str) -> CircuitBreaker:
        return self.breakers.setdefault(provider, CircuitBreaker())

    def _fails(self, model: ProviderModel, rng: random.Random, elapsed: float) -> str | None:
        """The error a request to ``model`` made ``elapsed`` s into the demo ends with, if any."""
        in_outage = model.provider in OUTAGE_PROVIDERS and (
            0 <= elapsed % OUTAGE_EVERY_S - OUTAGE_START_S < OUTAGE_LENGTH_S
        )
        if in_outage or rng.random() < model.error_rate:
            return "timeout" if rng.random() < 0.4 else "error"
        return None

    def _request(
        self, turn: Turn, model: ProviderModel, rng: random.Random, start: float
    ) -> tuple[float, str | None]:
        """One provider request as a stage; returns (time of first output, error)."""
        breaker = self._breaker(model.provider)
        elapsed = self.clock() - self.started
        before = breaker.state
        allowed = breaker.allow(elapsed)
        before = self._report_breaker(model.provider, before, breaker.state)
        if not allowed:
            return start, "circuit_open"
        stage = turn.stage(model.component, model.provider, model.model, at=start)  # type: ignore[arg-type]
        error = self._fails(model, rng, elapsed)
        slow = self.slowdown if model.component == "llm" else 1.0
        first = start + model.draw_latency(rng, slow)
        if error is not None:
            stage.fail(error)
            end = first if error == "error" else start + 2.0
            stage.end(at=end)
            breaker.record(False, elapsed)
            log.warning("%s %s request failed: %s", model.component, model.provider, error)
        else:
            stage.first_chunk(at=first)
            if model.component == "llm":
                stage.usage(input_tokens=rng.randint(300, 2400), output_tokens=rng.randint(15, 90))
                stage.end(at=first + model.stream_s * rng.uniform(0.6, 1.4))
            else:
                stage.end(at=first + rng.uniform(0.2, 0.6))
            breaker.record(True, elapsed)
        self._report_breaker(model.provider, before, breaker.state)
        return first, error

    def _report_breaker(self, provider: str, before: str, after: str) -> str:
        """Report a breaker's change of state (every one: open, half-open and closed)."""
        if after != before:
            self.obs.circuit_state(provider, after)
            log.warning("circuit breaker of %s is now %s", provider, after)
        return after

    async def run_turn(self, state: _CallState, utterance: str) -> dict[str, object]:
        call, pipe, rng = state.call, state.pipeline, state.rng
        t0 = max(state.clock, time.time() - 1.0)
        turn = call.turn(at=t0)
        with turn:
            speech_s = 0.6 + len(utterance) / 16.0
            speech_end = t0 + speech_s
            turn.user_speech_ended(at=speech_end)
            turn.eou_detected(
                at=speech_end + rng.lognormvariate(-2.1, 0.3), provider="silero", model="v5"
            )
            log.info("user said: %s", utterance)

            stt = turn.stt(pipe.stt.provider, pipe.stt.model, at=t0)
            stt.usage(audio_seconds=speech_s)
            self.turns_started += 1
            if self.turns_started % RESTART_EVERY_TURNS == 1 or rng.random() < 0.04:
                call.stream_restart(
                    pipe.stt.provider, "stt", rng.choice(RESTART_REASONS), at=t0 + speech_s / 2
                )
                log.warning("STT stream to %s restarted", pipe.stt.provider)
            final = speech_end + pipe.stt.draw_latency(rng)
            stt.final(at=final)
            stt.transcript(utterance)
            stt.end(at=final)

            llm_start = max(final, turn.eou_ns / 1e9 if turn.eou_ns else final)
            first_token, error = self._request(turn, pipe.llm, rng, llm_start)
            if error is not None and pipe.fallback_llm is not None:
                log.info(
                    "falling back from %s to %s", pipe.llm.provider, pipe.fallback_llm.provider
                )
                first_token, error = self._request(turn, pipe.fallback_llm, rng, first_token)
            if error is not None:
                turn.end(at=first_token)
                await self._sleep(first_token - t0)
                state.clock = first_token
                log.error("no LLM could answer (%s); ending the call", error)
                raise HTTPException(503, "llm_error")

            reply = "Sure, I can help with that. " * rng.randint(1, 4)
            tts_first, tts_error = self._request(turn, pipe.tts, rng, first_token + 0.02)
            if tts_error is not None:
                turn.end(at=tts_first)
                state.clock = tts_first
                log.error("TTS failed (%s); ending the call", tts_error)
                raise HTTPException(503, "tts_error")
            tts = turn.stages[-1]
            tts.usage(characters=len(reply))
            if rng.random() < 0.02:
                call.stream_restart(
                    pipe.tts.provider, "tts", rng.choice(RESTART_REASONS), at=tts_first
                )
            audio_start = tts_first + 0.02
            turn.agent_audio_started(at=audio_start)
            self._jitter(call, "inbound", rng, speech_s)
            end = audio_start + len(reply) / 15.0
            interrupted = rng.random() < 0.08 or self.turns_started % INTERRUPT_EVERY_TURNS == 0
            if interrupted:
                end = audio_start + rng.uniform(0.3, 1.5)
                turn.interrupt(at=end)
                log.info("user barged in")
            self._jitter(call, "outbound", rng, end - audio_start)
            log.info("agent replied in %.0f ms", (audio_start - speech_end) * 1000)
            turn.end(at=end)
        await self._sleep(end - t0)
        state.clock = end + rng.uniform(0.2, 1.0)
        return {"turn": turn.number, "latency_s": turn.latency, "interrupted": interrupted}

    def _jitter(self, call: Call, direction: str, rng: random.Random, seconds: float) -> None:
        """Per-frame jitter-buffer samples (50 frames a second) for ``seconds`` of audio: the
        user's speech inbound, the agent's outbound, as the README tells engines to."""
        base = rng.uniform(0.03, 0.06)
        for _ in range(min(int(seconds * 50), 400)):
            depth = max(0.0, rng.gauss(base, 0.01) + (0.08 if rng.random() < 0.01 else 0.0))
            call.jitter_buffer(direction).sample(depth)

    async def _sleep(self, simulated_s: float) -> None:
        await asyncio.sleep(max(0.0, simulated_s) / self.speed)

    def hang_up(self, call_id: str, request: Hangup) -> Call:
        state = self.calls.pop(call_id, None)
        if state is None:
            raise HTTPException(404, f"no call {call_id} in progress")
        call = state.call
        with call.active():
            log.info("call ended: %s", request.status)
        call.end(
            at=max(state.clock, time.time()),
            status=request.status,
            failure_reason=request.failure_reason,
        )
        self.calls_ended += 1
        if self.calls_ended % LATE_EVENT_EVERY_CALLS == 1:
            self.obs.events.handle({"type": "turn.started", "call_id": call_id})
        return call


def create_app(
    obs: Instrumentation,
    *,
    seed: int = 0,
    speed: float = 1.0,
    slowdown: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The demo engine's FastAPI app, instrumented by ``obs`` (``clock``: see DemoEngine)."""
    app = FastAPI(title="voiceobs demo engine")
    engine = DemoEngine(obs, seed=seed, speed=speed, slowdown=slowdown, clock=clock)
    app.state.engine = engine

    @app.get("/healthz")
    def healthz() -> dict[str, object]:
        return {"status": "ok", "calls": len(engine.calls)}

    @app.post("/v1/calls")
    def start_call(request: StartCall) -> dict[str, str]:
        state = engine.start_call(request)
        return {"call_id": state.call.call_id, "trace_id": state.call.trace_id_hex}

    @app.post("/v1/calls/{call_id}/turns")
    async def turn(call_id: str, request: TurnRequest) -> dict[str, object]:
        state = engine.calls.get(call_id)
        if state is None:
            raise HTTPException(404, f"no call {call_id} in progress")
        try:
            return await engine.run_turn(state, request.utterance)
        except HTTPException as exc:
            engine.hang_up(call_id, Hangup(status="failed", failure_reason=str(exc.detail)))
            raise

    @app.post("/v1/calls/{call_id}/hangup")
    def hangup(call_id: str, request: Hangup) -> dict[str, object]:
        # In the request's own span (the call's scope is not current here), like an engine's
        # request log: the line a trace -> logs link on the HTTP span finds.
        log.info("hang-up of %s requested: %s", call_id, request.status)
        call = engine.hang_up(call_id, request)
        return {"call_id": call.call_id, "turns": call.turn_count}

    obs.instrument_app(app)
    return app
