"""Framework-driven calls through the live native stack: ``voiceobs demo --engine pipecat``
(real Pipecat pipelines of fake services, reported by the Pipecat adapter) and a real LiveKit
``AgentSession`` of fake components (reported by the LiveKit adapter). The voice dashboards'
queries, filled in for each run, must return data: turns, latency breakdown, cost, calls."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from stack.settings import StackSettings
from tests.grafana.dashboard_queries import iter_panel_queries
from tests.stack.test_e2e_demo import (
    VOICE_DATA,
    DemoRun,
    jaeger_traces_of_call,
    poll,
    prom,
    run_demo,
)

pytestmark = pytest.mark.stack

RUN = uuid.uuid4().hex[:6]
PIPECAT_SERVICE = f"voiceobs-pipecat-{RUN}"
LIVEKIT_SERVICE = f"voiceobs-livekit-{RUN}"


@pytest.fixture(scope="module")
def pipecat_run(
    stack: StackSettings, tmp_path_factory: pytest.TempPathFactory, rules_at_stack_interval: None
) -> DemoRun:
    out = tmp_path_factory.mktemp("pipecat") / "calls.json"
    args = ("--engine", "pipecat", "--calls", "6", "--rate", "6", "--concurrency", "6")
    return run_demo(stack, PIPECAT_SERVICE, out, *args, "--turns", "2-4", "--seed", "5")


@pytest.fixture(scope="module")
def livekit_run(stack: StackSettings, rules_at_stack_interval: None) -> DemoRun:
    """The adapter's test session (three turns, one interrupted), exported to the stack."""
    from tests import test_integration_livekit as lk
    from voiceobs import VoiceobsSettings, setup_instrumentation
    from voiceobs.cost import example_rate_card_path

    env = {
        "OTEL_SERVICE_NAME": LIVEKIT_SERVICE,
        "OTEL_EXPORTER_OTLP_ENDPOINT": stack.url("collector", "OTLP/gRPC receiver"),
        "VOICEOBS_METRIC_EXPORT_INTERVAL_MS": "1000",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        obs = setup_instrumentation(
            settings=VoiceobsSettings.load(rate_card_path=example_rate_card_path()),
            set_global=False,
        )
        started = time.time()
        telemetry: Any = type("T", (), {"obs": obs})
        asyncio.run(lk._run_session(telemetry))
        assert obs.shutdown(), "the LiveKit session's telemetry did not reach the Collector"
    return DemoRun(LIVEKIT_SERVICE, [{"call_id": "lk-room-1", "turns": 3}], started)


def _voice_panels_show(stack: StackSettings, run: DemoRun, pipeline: str) -> int:
    """Every voice data query of every dashboard, for this run, returns a series."""
    values = {"service": run.service, "pipeline": pipeline, "call_id": run.calls[0]["call_id"]}
    checked = 0
    for query in iter_panel_queries(values):
        if query.datasource_type != "prometheus" or not VOICE_DATA.search(query.expr):
            continue
        if "offset" in query.expr or "failure_reason" in query.expr:
            continue  # last week's data; failed calls (these runs have none)
        where = f"{query.dashboard_uid} / {query.panel_title}: {query.expr}"

        def answered(expr: str = query.expr) -> list[Any]:
            return list(prom(stack, "/api/v1/query", query=expr)["result"])

        poll(f"data for {where}", answered, timeout_s=60)
        checked += 1
    return checked


def _turns_counted(stack: StackSettings, run: DemoRun, expected: int) -> None:
    query = f'sum(voice_turn_latency_seconds_count{{job="{run.service}"}})'

    def counted() -> float | None:
        result = prom(stack, "/api/v1/query", query=query)["result"]
        value = float(result[0]["value"][1]) if result else 0.0
        return value if value == expected else None

    assert poll(f"{expected} turn latencies for {run.service}", counted) == expected


def test_pipecat_calls_are_traces_with_their_turns(
    stack: StackSettings, pipecat_run: DemoRun
) -> None:
    assert len(pipecat_run.calls) == 6
    for call in pipecat_run.calls:

        def complete(call: dict[str, Any] = call) -> list[dict[str, Any]] | None:
            traces = jaeger_traces_of_call(stack, pipecat_run, call["call_id"])
            turns = [s for t in traces for s in t["spans"] if s["operationName"] == "voice.turn"]
            return traces if len(turns) == call["turns"] else None

        traces = poll(f"trace of {call['call_id']} with {call['turns']} turns", complete)
        assert [t["traceID"] for t in traces] == [call["trace_id"]]


def test_pipecat_turn_latencies_match_pipecats_own_count(
    stack: StackSettings, pipecat_run: DemoRun
) -> None:
    # The demo counts turns the bot answered with Pipecat's SpeakingObserver.
    _turns_counted(stack, pipecat_run, len(pipecat_run.latencies))


def test_voice_dashboards_show_the_pipecat_calls(
    stack: StackSettings, pipecat_run: DemoRun
) -> None:
    assert _voice_panels_show(stack, pipecat_run, "pipecat") >= 5


def test_voice_dashboards_show_the_livekit_session(
    stack: StackSettings, livekit_run: DemoRun
) -> None:
    _turns_counted(stack, livekit_run, 3)
    assert _voice_panels_show(stack, livekit_run, "livekit") >= 5
    trace = poll(
        "the LiveKit call's trace",
        lambda: jaeger_traces_of_call(stack, livekit_run, "lk-room-1"),
    )
    names = [s["operationName"] for s in trace[0]["spans"]]
    assert names.count("voice.turn") == 3 and names.count("voice.llm") == 3
