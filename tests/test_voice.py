"""The voice API: span tree, attributes, timings, exemplars and log correlation."""

from __future__ import annotations

import asyncio
import logging

from opentelemetry.sdk.metrics.export import HistogramDataPoint

from tests.conftest import Telemetry, make_telemetry
from voiceobs import semconv as sc

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
    import time

    old = telemetry.obs.call("c-old", tenant="acme", pipeline="support", at=time.time() - 700)
    telemetry.obs.call("c-new", tenant="acme", pipeline="support")
    ended = telemetry.obs.call("c-ended", tenant="globex", pipeline="support", at=time.time() - 900)
    ended.end()
    (point,) = telemetry.metrics()[sc.CALLS_OLDEST_AGE.name].data.data_points
    assert point.attributes == {sc.L_TENANT: "acme", sc.L_PIPELINE: "support"}
    assert 700 <= point.value < 760
    old.end()
