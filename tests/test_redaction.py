"""PII redaction: phone numbers, e-mails, card numbers and custom patterns never leave the
process, wherever a span or log record carries text; the call id always does."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.metrics.export import HistogramDataPoint

from tests.conftest import Telemetry, make_telemetry
from tests.pii_cases import ORDINARY, SENSITIVE
from voiceobs import SettingsError, setup_instrumentation
from voiceobs import semconv as sc
from voiceobs.redaction import Redactor

redactor = Redactor()
log = logging.getLogger("voiceobs.engine.pii")


def exported_text(t: Telemetry) -> str:
    """Everything the exporters received, spans and log records, as one JSON text."""
    spans = [s.to_json() for s in t.finished_spans()]
    logs = [r.to_json() for r in t.logs.get_finished_logs()]
    return "\n".join(spans + logs)


@pytest.mark.parametrize(("text", "secret"), SENSITIVE)
def test_personal_data_is_replaced(text: str, secret: str) -> None:
    redacted = redactor.text(text)
    assert secret not in redacted
    assert "[REDACTED:" in redacted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call me at +1 415 555 0100 today", "call me at [REDACTED:phone] today"),
        ("sip:+14155550100@carrier.example", "sip:[REDACTED:phone]@carrier.example"),
        ("mail jane.doe@example.com now", "mail [REDACTED:email] now"),
        ("card 4242 4242 4242 4242 charged", "card [REDACTED:card] charged"),
    ],
)
def test_replacement_names_the_kind_of_data(text: str, expected: str) -> None:
    assert redactor.text(text) == expected


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redactor.text(text) == text


def test_card_shaped_number_failing_luhn_is_left_alone_by_the_library() -> None:
    assert redactor.text("ref 4242 4242 4242 4241") == "ref 4242 4242 4242 4241"


@given(st.integers(min_value=2_000_000, max_value=9_999_999), st.integers(0, 999))
def test_any_us_number_is_redacted(local: int, area: int) -> None:
    number = f"+1 ({area:03d}) {str(local)[:3]}-{str(local)[3:]}"
    assert "REDACTED" in redactor.text(f"reach me on {number}")


@given(st.integers(min_value=10**6, max_value=10**15 - 1))
def test_bare_digit_runs_are_ids_not_phone_numbers(number: int) -> None:
    """Numeric call ids and timestamps look like this; a phone needs a "+" or grouping."""
    assert "phone" not in redactor.text(f"call {number} ended")


def test_custom_patterns_and_switches() -> None:
    custom = Redactor(phone_numbers=False, emails=False, card_numbers=False, patterns=[r"ACCT-\d+"])
    assert custom.text("ACCT-991 at +1 415 555 0100") == "[REDACTED] at +1 415 555 0100"


def test_redact_patterns_variable_is_a_json_list_so_commas_stay_in_the_regex(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOICEOBS_REDACT_PATTERNS", json.dumps([r"ACCT-\d{6,10}", r"IBAN\w+"]))
    t = make_telemetry()
    try:
        with t.obs.call("c-acct") as call:
            log.info("charged ACCT-12345678", extra={"account": "ACCT-1234567890"})
            call.fail("ACCT-12345678 blocked")
        text = exported_text(t)
        assert "12345678" not in text
        assert "[REDACTED]" in text
    finally:
        t.obs.shutdown()


@pytest.mark.parametrize(
    "value",
    [r"ACCT-\d{6,10}", r'["ACCT-\d{6,10}"]', '["(unclosed"]', '{"acct": "ACCT-"}'],
    ids=["comma-separated", "single-backslash", "invalid-regex", "not-a-list"],
)
def test_malformed_redact_patterns_stop_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("VOICEOBS_REDACT_PATTERNS", value)
    with pytest.raises(SettingsError, match="VOICEOBS_REDACT_PATTERNS"):
        setup_instrumentation(set_global=False)


def test_spans_and_logs_are_redacted_before_export() -> None:
    t = make_telemetry()
    try:
        with t.obs.call("c-pii", caller="+1 415 555 0100") as call:
            with call.turn() as turn:
                log.info(
                    "caller said: my email is bob@example.com", extra={"note": "+44 7911 123456"}
                )
                with turn.stt("deepgram") as stt:
                    stt.transcript("my number is +1 415 555 0100")
        call_span = t.span(sc.SPAN_CALL)
        assert call_span.attributes[sc.CALL_CALLER] == "[REDACTED:phone]"
        assert sc.STT_TRANSCRIPT not in t.span(sc.SPAN_STT).attributes  # transcripts are off
        (record,) = (r.log_record for r in t.logs.get_finished_logs())
        assert record.body == "caller said: my email is [REDACTED:email]"
        assert record.attributes["note"] == "[REDACTED:phone]"
    finally:
        t.obs.shutdown()


def test_call_failure_reason_is_redacted_in_the_span_status() -> None:
    t = make_telemetry()
    try:
        call = t.obs.call("c-fail")
        call.fail("transfer to +14155550199 failed")
        call.end()
        span = t.span(sc.SPAN_CALL)
        assert span.status.description == "transfer to [REDACTED:phone] failed"
        assert "4155550199" not in exported_text(t)
    finally:
        t.obs.shutdown()


def test_exception_in_a_with_scope_leaves_no_personal_data() -> None:
    """The exception's message reaches span status, exception event and log attributes."""
    t = make_telemetry()
    tracer = t.obs.tracer_provider.get_tracer("engine")  # type: ignore[union-attr]
    try:
        with pytest.raises(ValueError), t.obs.call("c-exc") as call, call.turn():
            try:
                with tracer.start_as_current_span("transfer"):  # records it, sets the status
                    raise ValueError("callee +14155550199 busy, told jane@example.com")
            except ValueError:
                log.exception("transfer failed", extra={"callee": "+14155550199"})
                raise
        transfer = t.span("transfer")
        assert transfer.status.description == (
            "ValueError: callee [REDACTED:phone] busy, told [REDACTED:email]"
        )
        (event,) = transfer.events
        assert event.attributes["exception.message"] == (
            "callee [REDACTED:phone] busy, told [REDACTED:email]"
        )
        (record,) = (r.log_record for r in t.logs.get_finished_logs())
        assert "[REDACTED:phone]" in record.attributes["exception.stacktrace"]
        text = exported_text(t)
        assert "4155550199" not in text and "jane@example.com" not in text
    finally:
        t.obs.shutdown()


def test_span_names_event_names_and_link_attributes_are_redacted() -> None:
    t = make_telemetry()
    tracer = t.obs.tracer_provider.get_tracer("engine")  # type: ignore[union-attr]
    try:
        with tracer.start_as_current_span("dial +14155550199") as span:
            span.add_event("ringing 415-555-0100", {"to": "(415) 555-0100"})
            span.add_link(span.get_span_context(), {"peer": "jane@example.com"})
        (exported,) = t.finished_spans()
        assert exported.name == "dial [REDACTED:phone]"
        (event,) = exported.events
        assert (event.name, event.attributes["to"]) == (
            "ringing [REDACTED:phone]",
            "[REDACTED:phone]",
        )
        (link,) = exported.links
        assert link.attributes["peer"] == "[REDACTED:email]"
    finally:
        t.obs.shutdown()


def test_log_extra_fields_and_structured_bodies_are_redacted() -> None:
    t = make_telemetry()
    otel_logger = t.obs.logger_provider.get_logger("engine")  # type: ignore[union-attr]
    try:
        log.info(
            "transfer requested",
            extra={"transfer_to": "+14155550199", "customer": {"email": "jane@example.com"}},
        )
        otel_logger.emit(
            body={"caller": "+14155550199", "history": ["mailed jane@example.com"]},
            attributes={"cards": ("4111 1111 1111 1111",)},
        )
        t.flush()
        first, second = (r.log_record for r in t.logs.get_finished_logs())
        assert first.attributes["transfer_to"] == "[REDACTED:phone]"
        assert "jane@example.com" not in first.attributes["customer"]
        assert second.body == {
            "caller": "[REDACTED:phone]",
            "history": ("mailed [REDACTED:email]",),
        }
        assert second.attributes["cards"] == ("[REDACTED:card]",)
    finally:
        t.obs.shutdown()


@pytest.mark.parametrize("call_id", ["20240611093015", "+14155550100"])
def test_call_id_is_never_redacted_so_exemplars_still_lead_to_traces_and_logs(
    call_id: str,
) -> None:
    """Even a call id that looks like a phone number is exported as it is: it is the key
    from a metric exemplar to the call's trace and logs (do not use one as call id)."""
    t = make_telemetry()
    try:
        with t.obs.call(call_id, caller="+14155550100") as call, call.turn() as turn:
            turn.user_speech_ended()
            log.info("turn done")
            turn.agent_audio_started()
        span = t.span(sc.SPAN_CALL)
        assert span.attributes[sc.CALL_ID] == call_id
        assert span.attributes[sc.CONVERSATION_ID] == call_id
        assert span.attributes[sc.CALL_CALLER] == "[REDACTED:phone]"
        (record,) = (r.log_record for r in t.logs.get_finished_logs())
        assert record.attributes[sc.CALL_ID] == call_id
        (point,) = t.metrics()[sc.TURN_LATENCY_METRIC.name].data.data_points
        assert isinstance(point, HistogramDataPoint)
        (exemplar,) = point.exemplars
        assert exemplar.filtered_attributes == {sc.EXEMPLAR_CALL_ID: call_id}
    finally:
        t.obs.shutdown()


def test_transcripts_when_switched_on_are_redacted_and_cut() -> None:
    t = make_telemetry(export_transcripts=True, max_text_length=40)
    try:
        with t.obs.call("c-text") as call, call.turn() as turn, turn.stt("deepgram") as stt:
            stt.transcript("my number is +1 415 555 0100 and I have a very long story to tell")
        text = t.span(sc.SPAN_STT).attributes[sc.STT_TRANSCRIPT]
        assert "415" not in text
        assert len(text) <= 40
    finally:
        t.obs.shutdown()
