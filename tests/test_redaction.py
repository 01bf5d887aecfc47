"""PII redaction: phone numbers, e-mails and card numbers never leave the process."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import make_telemetry
from voiceobs import semconv as sc
from voiceobs.redaction import Redactor

redactor = Redactor()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call me at +1 415 555 0100 today", "call me at [REDACTED:phone] today"),
        ("(415) 555-0100", "[REDACTED:phone]"),
        ("+447911123456", "[REDACTED:phone]"),
        ("sip:+14155550100@carrier.example", "sip:[REDACTED:phone]@carrier.example"),
        ("mail jane.doe@example.com now", "mail [REDACTED:email] now"),
        ("card 4242 4242 4242 4242 charged", "card [REDACTED:card] charged"),
    ],
)
def test_sensitive_values_are_replaced(text: str, expected: str) -> None:
    assert redactor.text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "turn 3 took 812 ms",
        "2026-11-23 was a Monday",
        "trace 4bf92f3577b34da6a3ce929d0e0e4736",
        "call demo-1-00042 ended",
        "version 1.45.2",
        "1234 5678 9012 3456",  # card-like but fails the Luhn check
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redactor.text(text) == text


@given(st.integers(min_value=2_000_000, max_value=9_999_999), st.integers(0, 999))
def test_any_us_number_is_redacted(local: int, area: int) -> None:
    number = f"+1 ({area:03d}) {str(local)[:3]}-{str(local)[3:]}"
    assert "REDACTED" in redactor.text(f"reach me on {number}")


def test_custom_patterns_and_switches() -> None:
    custom = Redactor(phone_numbers=False, emails=False, card_numbers=False, patterns=[r"ACCT-\d+"])
    assert custom.text("ACCT-991 at +1 415 555 0100") == "[REDACTED] at +1 415 555 0100"


def test_spans_and_logs_are_redacted_before_export() -> None:
    t = make_telemetry()
    log = logging.getLogger("voiceobs.engine.pii")
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
