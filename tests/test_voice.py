"""The voice API: span tree, attributes, timings, exemplars and log correlation."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import HistogramDataPoint
from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tests.conftest import Telemetry, make_telemetry
from voiceobs import semconv as sc
from voiceobs.voice import Call, new_span_id

T0 = 1_800_000_000.0  # explicit timestamps, as an engine replaying its audio clock would


def run_call(telemetry: Telemetry, call_id: str = "call-1") -> None:
    obs = telemetry.obs
    call = obs.call(call_id, tenant="acme", pipeline="support", at=T0)
    turn = call.turn(at=T0 + 1.0)
    turn.user_speech_ended(at=T0 + 3.0)
    turn.eou_detected(at=T0 + 3.2)
    stt = turn.stt("deepgram", "nova-3", at=T0 + 1.0)
    stt.usage(audio_seconds=2.0)
    stt.final(at=T0 + 3.15)
    stt.end(at=T0 + 3.15)
    llm = turn.llm("openai", "gpt-4o-mini", at=T0 + 3.2)
    llm.first_token(at=T0 + 3.5)
    tts = turn.tts("cartesia", "sonic-2", at=T0 + 3.52)  # starts while the LLM still streams
    llm.usage(input_tokens=1000, output_tokens=50)
    tts.first_byte(at=T0 + 3.62)
    tts.usage(characters=100)
    turn.agent_audio_started(at=T0 + 3.65)
    llm.end(at=T0 + 4.0)
    tts.end(at=T0 + 4.1)
    turn.end(at=T0 + 6.0)
    call.end(at=T0 + 7.0)


def test_call_turn_and_stages_form_one_trace(telemetry: Telemetry) -> None:
    run_call(telemetry)
    call = telemetry.span(sc.SPAN_CALL)
    turn = telemetry.span(sc.SPAN_TURN)
    stages = [telemetry.span(name) for name in (sc.SPAN_STT, sc.SPAN_LLM, sc.SPAN_TTS)]
    assert call.parent is None
    assert turn.parent is not None and turn.parent.span_id == call.context.span_id
    for stage in stages:
        assert stage.parent is not None and stage.parent.span_id == turn.context.span_id
        assert stage.context.trace_id == call.context.trace_id
    llm, tts = stages[1], stages[2]
    assert tts.start_time < llm.end_time, "streaming stages overlap"


def test_every_span_carries_the_call_id_tenant_and_pipeline(telemetry: Telemetry) -> None:
    run_call(telemetry)
    spans = telemetry.finished_spans()
    assert len(spans) == 5
    for span in spans:
        assert span.attributes[sc.CALL_ID] == "call-1"
        assert span.attributes[sc.CONVERSATION_ID] == "call-1"
        assert span.attributes[sc.TENANT] == "acme"
        assert span.attributes[sc.PIPELINE] == "support"


def test_turn_latency_runs_from_speech_end_to_agent_audio(telemetry: Telemetry) -> None:
    run_call(telemetry)
    turn = telemetry.span(sc.SPAN_TURN)
    assert abs(turn.attributes[sc.TURN_LATENCY] - 0.65) < 1e-6
    assert abs(turn.attributes[sc.TURN_EOU_DELAY] - 0.2) < 1e-6
    assert turn.attributes[sc.TURN_NUMBER] == 1
    assert turn.attributes[sc.TURN_INTERRUPTED] is False
    assert turn.start_time == int((T0 + 1.0) * 1e9)
    assert turn.end_time == int((T0 + 6.0) * 1e9)
    names = [e.name for e in turn.events]
    assert names == [
        sc.EVENT_USER_SPEECH_ENDED,
        sc.EVENT_EOU_DETECTED,
        sc.EVENT_AGENT_AUDIO_STARTED,
    ]


def test_stage_spans_use_genai_attributes(telemetry: Telemetry) -> None:
    run_call(telemetry)
    llm = telemetry.span(sc.SPAN_LLM)
    assert llm.attributes[sc.GEN_AI_PROVIDER] == "openai"
    assert llm.attributes[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert llm.attributes[sc.GEN_AI_OPERATION] == "chat"
    assert llm.attributes[sc.GEN_AI_INPUT_TOKENS] == 1000
    assert llm.attributes[sc.GEN_AI_OUTPUT_TOKENS] == 50
    assert abs(llm.attributes[sc.STAGE_TTFC] - 0.3) < 1e-6
    assert telemetry.span(sc.SPAN_STT).attributes[sc.STT_AUDIO_SECONDS] == 2.0
    assert telemetry.span(sc.SPAN_TTS).attributes[sc.TTS_CHARACTERS] == 100


def _histogram_point(telemetry: Telemetry, name: str) -> HistogramDataPoint:
    points = list(telemetry.metrics()[name].data.data_points)
    assert len(points) == 1
    point = points[0]
    assert isinstance(point, HistogramDataPoint)
    return point


def test_breakdown_metrics_measure_each_part_of_the_turn(telemetry: Telemetry) -> None:
    run_call(telemetry)
    metrics = telemetry.metrics()
    expected = {
        sc.TURN_LATENCY_METRIC.name: 0.65,
        sc.EOU_DELAY.name: 0.2,
        sc.STT_LATENCY.name: 0.15,  # final transcript after speech end
        sc.LLM_TTFT.name: 0.3,
        sc.LLM_DURATION.name: 0.8,
        sc.TTS_TTFB.name: 0.1,
    }
    for name, value in expected.items():
        (point,) = metrics[name].data.data_points
        assert abs(point.sum - value) < 1e-6, name
        assert point.count == 1


def test_turn_latency_exemplar_points_to_the_turn_span(telemetry: Telemetry) -> None:
    run_call(telemetry)
    point = _histogram_point(telemetry, sc.TURN_LATENCY_METRIC.name)
    turn = telemetry.span(sc.SPAN_TURN)
    (exemplar,) = point.exemplars
    assert exemplar.trace_id == turn.context.trace_id
    assert exemplar.span_id == turn.context.span_id
    assert exemplar.filtered_attributes == {sc.EXEMPLAR_CALL_ID: "call-1"}


def test_call_id_is_never_a_metric_label(telemetry: Telemetry) -> None:
    run_call(telemetry)
    for metric in telemetry.metrics().values():
        for point in metric.data.data_points:
            attributes = point.attributes or {}
            assert sc.CALL_ID not in attributes and sc.EXEMPLAR_CALL_ID not in attributes


def test_logs_inside_a_turn_carry_its_trace_span_and_call_id(telemetry: Telemetry) -> None:
    log = logging.getLogger("voiceobs.engine.test")
    with telemetry.obs.call("call-7", tenant="acme", pipeline="support") as call:
        with call.turn() as turn:
            log.info("inside the turn")
        log.warning("after the turn")
    telemetry.flush()
    inside, after = (r.log_record for r in telemetry.logs.get_finished_logs())
    turn_span = telemetry.span(sc.SPAN_TURN)
    assert inside.body == "inside the turn"
    assert inside.trace_id == turn_span.context.trace_id
    assert inside.span_id == turn_span.context.span_id == turn.span_id
    assert inside.attributes[sc.CALL_ID] == "call-7"
    assert after.span_id == call.span_id
    assert after.attributes[sc.CALL_ID] == "call-7"


def test_the_span_current_in_a_scope_is_the_one_opentelemetry_would_make(
    telemetry: Telemetry,
) -> None:
    carrier: dict[str, str] = {}
    with telemetry.obs.call("call-8", tenant="acme", pipeline="support") as call:
        with call.turn() as turn, turn.llm("openai", "gpt-4o") as llm:
            current = trace.get_current_span()
            TraceContextTextMapPropagator().inject(carrier)
        outer = trace.get_current_span()
    flags = TraceFlags(call.trace_flags)
    assert not current.is_recording()
    assert current.get_span_context() == SpanContext(call.trace_id, llm.span_id, False, flags)
    assert outer.get_span_context() == SpanContext(call.trace_id, call.span_id, False, flags)
    assert carrier["traceparent"] == (
        f"00-{call.trace_id:032x}-{llm.span_id:016x}-{call.trace_flags:02x}"
    )
    assert repr(current) == f"IdsSpan({current.get_span_context()!r})"


def test_async_context_managers_work_like_sync_ones(telemetry: Telemetry) -> None:
    async def engine() -> None:
        async with telemetry.obs.call("call-async") as call:
            async with call.turn() as turn:
                turn.user_speech_ended()
                async with turn.llm("openai", "gpt-4o") as llm:
                    await asyncio.sleep(0.01)
                    llm.first_token()
                turn.agent_audio_started()

    asyncio.run(engine())
    llm = telemetry.span(sc.SPAN_LLM)
    assert llm.attributes[sc.STAGE_TTFC] >= 0.01
    assert telemetry.span(sc.SPAN_TURN).attributes[sc.TURN_LATENCY] > 0


def test_exception_in_call_marks_it_failed_without_swallowing(telemetry: Telemetry) -> None:
    try:
        with telemetry.obs.call("call-boom", tenant="acme"):
            raise RuntimeError("engine bug")
    except RuntimeError:
        pass
    else:
        raise AssertionError("the engine's exception must propagate")
    span = telemetry.span(sc.SPAN_CALL)
    assert span.attributes[sc.CALL_STATUS] == "failed"
    assert span.attributes[sc.CALL_FAILURE_REASON] == "internal_error"
    (point,) = telemetry.metrics()[sc.CALLS.name].data.data_points
    assert point.attributes == {
        sc.L_TENANT: "acme",
        sc.L_PIPELINE: "default",
        sc.L_STATUS: "failed",
        sc.L_FAILURE_REASON: "internal_error",
    }


def test_interruption_restarts_and_failed_stage_are_recorded(telemetry: Telemetry) -> None:
    with telemetry.obs.call("call-2", pipeline="sales") as call:
        call.stream_restart("deepgram", "stt", "timeout")
        call.stream_restart("deepgram", "stt", "timeout")
        with call.turn() as turn:
            with turn.llm("groq", "llama") as llm:
                llm.fail("timeout")
            turn.interrupt()
    turn_span = telemetry.span(sc.SPAN_TURN)
    assert turn_span.attributes[sc.TURN_INTERRUPTED] is True
    assert telemetry.span(sc.SPAN_LLM).attributes[sc.ERROR_TYPE] == "timeout"
    assert telemetry.span(sc.SPAN_CALL).attributes[sc.CALL_STREAM_RESTARTS] == 2
    metrics = telemetry.metrics()
    (restarts,) = metrics[sc.STREAM_RESTARTS.name].data.data_points
    assert restarts.value == 2
    assert restarts.attributes[sc.L_REASON] == "timeout"
    (requests,) = metrics[sc.PROVIDER_REQUESTS.name].data.data_points
    assert requests.attributes == {
        sc.L_PROVIDER: "groq",
        sc.L_COMPONENT: "llm",
        sc.L_OUTCOME: "timeout",
    }
    (turns,) = metrics[sc.TURNS.name].data.data_points
    assert turns.attributes[sc.L_INTERRUPTED] == "true"
    (per_call,) = metrics[sc.CALL_STREAM_RESTARTS_METRIC.name].data.data_points
    assert per_call.sum == 2


def test_jitter_buffer_samples_become_one_point_per_second(telemetry: Telemetry) -> None:
    with telemetry.obs.call("call-3", pipeline="support") as call:
        buffer = call.jitter_buffer("inbound")
        for depth in (0.02, 0.04, 0.06) * 50:
            buffer.sample(depth)
    (point,) = telemetry.metrics()[sc.JITTER_BUFFER_DEPTH.name].data.data_points
    assert point.count == 1  # 150 frames, one mean
    assert abs(point.sum - 0.04) < 1e-9
    assert point.attributes == {sc.L_PIPELINE: "support", sc.L_DIRECTION: "inbound"}


def test_circuit_state_and_unknown_state(telemetry: Telemetry) -> None:
    telemetry.obs.circuit_state("openai", "open")
    telemetry.obs.circuit_state("openai", "exploded")  # ignored, logged
    (point,) = telemetry.metrics()[sc.CIRCUIT_STATE.name].data.data_points
    assert point.value == 2
    assert point.attributes == {sc.L_PROVIDER: "openai"}


def test_labels_outside_the_allow_list_become_other() -> None:
    t = make_telemetry(tenants="acme")
    try:
        for index, tenant in enumerate(("acme", "mallory")):
            t.obs.call(f"c{index}", tenant=tenant).end()
        labels = sorted(
            p.attributes[sc.L_TENANT] for p in t.metrics()[sc.CALLS.name].data.data_points
        )
        assert labels == ["acme", "other"]
        assert t.span(sc.SPAN_CALL, **{sc.CALL_ID: "c1"}).attributes[sc.TENANT] == "mallory"
    finally:
        t.obs.shutdown()


def test_label_cardinality_is_capped_without_allow_list() -> None:
    t = make_telemetry(label_limit=3)
    try:
        for index in range(10):
            t.obs.call(f"c{index}", pipeline=f"p{index}").end()
        pipelines = {
            p.attributes[sc.L_PIPELINE] for p in t.metrics()[sc.CALLS.name].data.data_points
        }
        assert pipelines == {"p0", "p1", "p2", "other"}
    finally:
        t.obs.shutdown()


def test_open_turns_end_with_the_call(telemetry: Telemetry) -> None:
    call = telemetry.obs.call("call-4", at=T0)
    call.turn(at=T0 + 1)
    call.end(at=T0 + 5)
    turn = telemetry.span(sc.SPAN_TURN)
    assert turn.end_time == int((T0 + 5) * 1e9)


def test_a_stage_ending_after_its_turn_is_still_exported(telemetry: Telemetry) -> None:
    with telemetry.obs.call("call-5") as call:
        turn = call.turn()
        tts = turn.tts("cartesia")
        turn.end()
        tts.end()
    assert (
        telemetry.span(sc.SPAN_TTS).parent.span_id == telemetry.span(sc.SPAN_TURN).context.span_id
    )


def test_oldest_call_in_progress_is_a_gauge_per_tenant_and_pipeline(telemetry: Telemetry) -> None:
    old = telemetry.obs.call("c-old", tenant="acme", pipeline="support", at=time.time() - 700)
    telemetry.obs.call("c-new", tenant="acme", pipeline="support")
    ended = telemetry.obs.call("c-ended", tenant="globex", pipeline="support", at=time.time() - 900)
    ended.end()
    (point,) = telemetry.metrics()[sc.CALLS_OLDEST_AGE.name].data.data_points
    assert point.attributes == {sc.L_TENANT: "acme", sc.L_PIPELINE: "support"}
    assert 700 <= point.value < 760
    old.end()


# --- under real engine usage --------------------------------------------------------------


def _value(telemetry: Telemetry, metric: str, **labels: str) -> float:
    """Sum of a counter's points (or a histogram's sums) whose labels include ``labels``."""
    found = telemetry.metrics().get(metric)
    total = 0.0
    for point in found.data.data_points if found else ():
        if all((point.attributes or {}).get(k) == v for k, v in labels.items()):
            total += point.sum if isinstance(point, HistogramDataPoint) else point.value
    return total


def test_jitter_buffer_per_frame_as_documented_reuses_one_buffer(telemetry: Telemetry) -> None:
    with telemetry.obs.call("call-jb", pipeline="support") as call:
        for _ in range(500):
            call.jitter_buffer("inbound").sample(0.04)  # the README's per-frame line
        call.jitter_buffer("outbound").sample(0.02)
        assert call.jitter_buffer("inbound") is call.jitter_buffer("inbound")
        assert [b.direction for b in call.buffers] == ["inbound", "outbound"]
    points = telemetry.metrics()[sc.JITTER_BUFFER_DEPTH.name].data.data_points
    by_direction = {p.attributes[sc.L_DIRECTION]: p for p in points}
    assert by_direction["inbound"].count == 1  # 500 frames, one point (was 500)
    assert abs(by_direction["inbound"].sum - 0.04) < 1e-9
    assert by_direction["outbound"].count == 1


def test_jitter_buffer_memory_stays_flat_over_a_million_frames(telemetry: Telemetry) -> None:
    import gc
    import tracemalloc

    call = telemetry.obs.call("call-long")
    call.jitter_buffer("inbound").sample(0.04)  # first use makes the buffer
    telemetry.flush()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(1_000_000):
            call.jitter_buffer("inbound").sample(0.04)
        telemetry.flush()
        gc.collect()
        grown = tracemalloc.take_snapshot().compare_to(before, "filename")
    finally:
        tracemalloc.stop()
    growth = sum(stat.size_diff for stat in grown)
    assert growth < 256 * 1024, f"{growth} bytes more after 1 M frames"  # was ~140 MB
    assert len(call.buffers) == 1
    call.end()


def _stall_worker(telemetry: Telemetry) -> list[int]:
    """Occupy the worker until the returned list is appended to."""
    started: list[int] = []
    release: list[int] = []

    def stall(_: object) -> None:
        started.append(1)
        while not release:
            time.sleep(0.001)

    telemetry.obs.transport.recorder.submit(stall, None)
    while not started:
        time.sleep(0.001)
    return release


def test_a_full_queue_never_drops_a_calls_start_or_end() -> None:
    t = make_telemetry(queue_size=100)
    try:
        release = _stall_worker(t)
        for index in range(150):
            call = t.obs.call(f"c{index}", tenant="acme")
            call.turn().end()
            call.end()
        release.append(1)
        assert _value(t, sc.CALLS.name) == 150
        assert _value(t, sc.CALLS_ACTIVE.name) == 0  # was 50..100 forever, or negative
        assert sc.CALLS_OLDEST_AGE.name not in t.metrics()  # nobody left "in progress"
        assert not t.obs.materialiser.calls_in_progress()  # per-call state released
        turns = _value(t, sc.TURNS.name)
        dropped = _value(t, sc.TELEMETRY_DROPPED.name, reason="queue_full")
        assert turns < 150 and turns + dropped == 150  # turns may go, counted
    finally:
        t.obs.shutdown()


def _age(telemetry: Telemetry, call: Call, seconds: float) -> None:
    """Make the export side's news of ``call`` ``seconds`` older than it is."""
    telemetry.flush()
    telemetry.obs.materialiser._calls[call.span_id].seen_ns -= int(seconds * 1e9)


def _sweep(telemetry: Telemetry) -> None:
    """Run the export side's periodic sweep now, on its own thread."""
    telemetry.obs.transport.recorder.submit(
        lambda _: telemetry.obs.materialiser.every_second(), None
    )


def test_a_call_whose_end_never_comes_expires_as_abandoned_and_counted() -> None:
    t = make_telemetry(call_expiry_s=60)
    try:
        lost = t.obs.call("c-lost", tenant="acme")
        lost.turn().end()
        live = t.obs.call("c-live", tenant="acme")
        _age(t, lost, 61)
        _age(t, live, 61)
        live.turn().end()  # news of the call: still going
        _sweep(t)
        span = t.span(sc.SPAN_CALL)
        assert span.attributes[sc.CALL_ID] == "c-lost"
        assert span.attributes[sc.CALL_STATUS] == "abandoned"
        assert _value(t, sc.CALLS.name, status="abandoned") == 1
        assert _value(t, sc.TELEMETRY_DROPPED.name, reason="call_expired") == 1
        assert _value(t, sc.CALLS_ACTIVE.name) == 1  # only the live call
        assert t.obs.materialiser.calls_in_progress() == ["c-live"]  # the lost call's went
        lost.end()  # the engine remembers it after all: ignored, not recorded twice
        live.end()
        assert sorted(
            s.attributes[sc.CALL_ID] for s in t.finished_spans() if s.name == sc.SPAN_CALL
        ) == ["c-live", "c-lost"]
        assert _value(t, sc.CALLS.name) == 2
    finally:
        t.obs.shutdown()


def test_a_stage_left_open_delays_the_calls_span_by_a_bounded_grace_only() -> None:
    t = make_telemetry(call_expiry_s=30)
    try:
        call = t.obs.call("c-stuck")
        call.turn().tts("cartesia")  # never ended
        call.end()
        t.flush()
        assert _value(t, sc.CALLS_ACTIVE.name) == 0  # hung up: counted at once
        assert _value(t, sc.CALLS.name) == 1
        assert not [s for s in t.finished_spans() if s.name == sc.SPAN_CALL]  # waits for the TTS
        _age(t, call, 31)  # the grace is min(60 s, call_expiry_s)
        _sweep(t)
        assert t.span(sc.SPAN_CALL).attributes[sc.CALL_STATUS] == "completed"
        assert _value(t, sc.TELEMETRY_DROPPED.name, reason="stage_not_ended") == 1
        assert _value(t, sc.CALLS.name) == 1
        assert not t.obs.materialiser.calls_in_progress()
    finally:
        t.obs.shutdown()


def test_a_call_id_that_comes_again_is_a_call_of_its_own(telemetry: Telemetry) -> None:
    # A room name or a reused SIP Call-ID: the first call still waits for its TTS stage
    # when the second starts, and a third overlaps the second.
    first = telemetry.obs.call("room-1", tenant="acme")
    tts = first.turn().tts("cartesia")
    first.end()
    second = telemetry.obs.call("room-1", tenant="acme")
    third = telemetry.obs.call("room-1", tenant="acme")
    for call, turns in ((second, 2), (third, 3)):
        for _ in range(turns):
            call.turn().end()
    third.end()
    second.end()
    tts.end()
    spans = telemetry.finished_spans()
    calls = {s.context.span_id: s for s in spans if s.name == sc.SPAN_CALL}
    assert sorted(calls) == sorted(c.span_id for c in (first, second, third))
    for call, turns in ((first, 1), (second, 2), (third, 3)):
        span = calls[call.span_id]
        assert span.attributes[sc.CALL_ID] == "room-1"
        assert span.attributes[sc.CALL_TURNS] == turns
        children = [s for s in spans if s.parent and s.parent.span_id == call.span_id]
        assert len(children) == turns
        assert all(s.context.trace_id == call.trace_id for s in children)
    assert _value(telemetry, sc.CALLS.name) == 3
    assert _value(telemetry, sc.CALLS_ACTIVE.name) == 0
    assert not telemetry.obs.materialiser.calls_in_progress()


def test_ids_do_not_follow_the_global_random_seed_nor_repeat_in_a_forked_worker(
    telemetry: Telemetry,
) -> None:
    calls = []
    for number in range(2):
        random.seed(42)  # an engine's reproducible simulation
        calls.append(telemetry.obs.call(f"seeded-{number}"))
    assert calls[0].trace_id != calls[1].trace_id
    assert calls[0].span_id != calls[1].span_id
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # a worker forked after start-up (gunicorn --preload)
        os.write(write, f"{new_span_id()}".encode())
        os._exit(0)
    os.close(write)
    ours = new_span_id()
    with os.fdopen(read) as pipe:
        theirs = int(pipe.read())
    os.waitpid(child, 0)
    assert theirs != ours
    for call in calls:
        call.end()


def test_a_stage_ending_after_hang_up_counts_in_the_calls_cost(tmp_path: Path) -> None:
    card = tmp_path / "rates.yaml"
    card.write_text("providers: {openai: {gpt: {input_1k_tokens: 2.0}}}\n")
    t = make_telemetry(rate_card_path=str(card))
    try:
        call = t.obs.call("c-late", tenant="acme")
        llm = call.turn().llm("openai", "gpt")
        call.end()  # hang-up while the LLM still streams
        t.flush()
        assert _value(t, sc.CALLS_ACTIVE.name) == 0  # it is no longer in progress
        assert not [s for s in t.finished_spans() if s.name == sc.SPAN_CALL]  # not yet recorded
        llm.usage(input_tokens=1000)
        llm.end()
        assert _value(t, sc.COST.name) == 2.0
        assert _value(t, sc.CALL_COST_METRIC.name) == 2.0  # was 0
        assert t.span(sc.SPAN_CALL).attributes[sc.CALL_COST] == 2.0
    finally:
        t.obs.shutdown()


def test_durations_survive_a_wall_clock_step(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = telemetry.obs.call("c-ntp")
    turn = call.turn()
    turn.user_speech_ended()
    wall = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: wall() - 5_000_000_000)  # NTP steps back 5 s
    turn.agent_audio_started()
    turn.end()
    call.end()
    monkeypatch.undo()
    assert turn.latency is not None and turn.latency >= 0  # was -5 s
    (point,) = telemetry.metrics()[sc.TURN_LATENCY_METRIC.name].data.data_points
    assert point.count == 1


def test_a_negative_duration_from_at_is_counted_not_recorded(telemetry: Telemetry) -> None:
    call = telemetry.obs.call("c-order", at=T0)
    turn = call.turn(at=T0 + 1)
    turn.user_speech_ended(at=T0 + 5)
    turn.agent_audio_started(at=T0 + 4)  # before speech end: out of order
    call.end(at=T0 + 6)
    assert sc.TURN_LATENCY not in telemetry.span(sc.SPAN_TURN).attributes
    assert _value(telemetry, sc.TELEMETRY_DROPPED.name, reason="negative_duration") == 1
    assert sc.TURN_LATENCY_METRIC.name not in telemetry.metrics()


def test_bad_usage_raises_naming_the_argument_before_adding_anything(
    telemetry: Telemetry,
) -> None:
    with telemetry.obs.call("c-usage") as call, call.turn() as turn:
        llm = turn.llm("openai")
        with pytest.raises(TypeError, match=r"input_tokens.*None"):
            llm.usage(audio_seconds=1.0, input_tokens=None)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"characters.*between 0 and 1e12"):
            llm.usage(output_tokens=5, characters=-1)
        with pytest.raises(ValueError, match=r"input_tokens.*between 0 and 1e12"):
            llm.usage(input_tokens=2**64)  # its running total would overflow an OTLP point
        with pytest.raises(TypeError, match="output_tokens"):
            llm.usage(output_tokens=2.5)  # type: ignore[arg-type]
        assert (llm.audio_seconds, llm.input_tokens, llm.output_tokens) == (0.0, 0, 0)
        llm.usage(audio_seconds=1, input_tokens=10)
        llm.end()
    assert telemetry.span(sc.SPAN_LLM).attributes[sc.GEN_AI_INPUT_TOKENS] == 10


def test_a_span_continues_its_trace_as_parent(telemetry: Telemetry) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    upstream = TracerProvider().get_tracer("sip-gateway").start_span("invite")
    telemetry.obs.call("c-child", parent=upstream).end()
    span = telemetry.span(sc.SPAN_CALL)
    assert span.parent is not None
    assert span.parent.span_id == upstream.get_span_context().span_id
    assert span.context.trace_id == upstream.get_span_context().trace_id


def test_at_takes_an_aware_datetime_like_unix_seconds(telemetry: Telemetry) -> None:
    from datetime import UTC, timedelta, timezone

    start = datetime.fromtimestamp(T0, tz=UTC)
    call = telemetry.obs.call("c-dt", at=start)
    turn = call.turn(at=start.astimezone(timezone(timedelta(hours=2))) + timedelta(seconds=1))
    turn.end(at=T0 + 2)
    call.end(at=start + timedelta(seconds=3))
    assert telemetry.span(sc.SPAN_TURN).start_time == int((T0 + 1) * 1e9)
    assert telemetry.span(sc.SPAN_CALL).end_time == int((T0 + 3) * 1e9)


def test_a_wrong_at_or_parent_raises_before_anything_starts(telemetry: Telemetry) -> None:

    with pytest.raises(TypeError, match=r"^at: a naive datetime"):
        telemetry.obs.call("c-bad", at=datetime(2026, 1, 1))
    with pytest.raises(TypeError, match=r"^at must be .*got str"):
        telemetry.obs.call("c-bad", at="2026-01-01")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^parent must be .*got dict"):
        telemetry.obs.call("c-bad", parent={"trace": 1})  # type: ignore[arg-type]
    call = telemetry.obs.call("c-good")
    with pytest.raises(TypeError, match=r"^at must be"):
        call.turn(at="soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^at must be Unix time in seconds between 0 and"):
        call.end(at=float("nan"))
    with pytest.raises(ValueError, match=r"^at must be Unix time in seconds between 0 and"):
        call.end(at=-1.0)  # before 1970: no OTLP timestamp holds it
    with pytest.raises(ValueError, match=r"^at must be between 1970 and 2554"):
        call.end(at=datetime(9999, 1, 1, tzinfo=UTC))
    assert call.turn_count == 0 and call.end_ns is None
    call.end()
    assert [s.attributes[sc.CALL_ID] for s in telemetry.finished_spans()] == ["c-good"]
    assert _value(telemetry, sc.CALLS.name) == 1


def test_an_ended_turn_and_its_stages_need_no_garbage_collection(telemetry: Telemetry) -> None:
    import gc

    call = telemetry.obs.call("call-cycles")
    telemetry.flush()
    gc.collect()
    gc.disable()  # what a turn leaves behind now stays until the collect below
    try:
        for _ in range(200):
            with call.turn() as turn:
                with turn.stt("deepgram", "nova-3") as stt:
                    stt.final()
                turn.llm("openai").end()
                open_stage = turn.tts("cartesia")  # ends after its turn
            open_stage.end()
        del turn, stt, open_stage
        telemetry.flush()
        unreachable = gc.collect()  # objects only the collector could free
    finally:
        gc.enable()
    assert unreachable < 200, f"{unreachable} objects in cycles after 200 turns"  # was 2 600
    call.end()
    telemetry.flush()
    turns = [span for span in telemetry.finished_spans() if span.name == "voice.turn"]
    assert len(turns) == 200


def _histogram_quantile(q: float, point: HistogramDataPoint) -> float:
    """Prometheus' histogram_quantile over one point's classic buckets (linear within one)."""
    rank = q * point.count
    below = 0
    for upper, count, lower in zip(
        point.explicit_bounds, point.bucket_counts, (0.0, *point.explicit_bounds), strict=False
    ):
        if below + count >= rank:
            return float(lower + (upper - lower) * (rank - below) / count)
        below += count
    return float(point.explicit_bounds[-1])  # in +Inf: Prometheus answers the top bound


def test_llm_duration_p95_reaches_past_the_stage_buckets_5_s(telemetry: Telemetry) -> None:
    # 18 answers of 1.2 s, one of 12 s and one of 40 s: the 19th of 20 lies in (10 s, 15 s].
    # On the stage buckets (top bound 5 s) the same P95 would read 5 s.
    durations = [1.2] * 18 + [12.0, 40.0]
    call = telemetry.obs.call("call-long", tenant="acme", pipeline="support", at=T0)
    for i, duration in enumerate(durations):
        start = T0 + 100.0 * i
        turn = call.turn(at=start)
        llm = turn.llm("openai", "gpt-4o-mini", at=start)
        llm.first_token(at=start + 0.3)
        llm.end(at=start + duration)
        turn.end(at=start + duration + 0.5)
    call.end(at=T0 + 100.0 * len(durations))
    telemetry.flush()
    point = _histogram_point(telemetry, sc.LLM_DURATION.name)
    assert tuple(point.explicit_bounds) == sc.LLM_DURATION_BUCKETS
    assert point.count == len(durations)
    assert _histogram_quantile(0.95, point) == pytest.approx(15.0)
