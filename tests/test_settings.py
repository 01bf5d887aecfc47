"""VoiceobsSettings: environment parsing and errors that name the variable."""

from __future__ import annotations

import pytest

from voiceobs import SettingsError, VoiceobsSettings


def test_defaults_suit_live_dashboards() -> None:
    settings = VoiceobsSettings.load()
    assert settings.metric_export_interval_ms <= 5000
    assert settings.shutdown_timeout_s <= 5
    assert settings.export_transcripts is False
    assert settings.redact_phone_numbers and settings.redact_emails and settings.redact_card_numbers


def test_lists_come_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEOBS_TENANTS", "acme, globex ,")
    settings = VoiceobsSettings.load()
    assert settings.tenants == ("acme", "globex")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("VOICEOBS_METRIC_EXPORT_INTERVAL_MS", "60001", "less than or equal to 60000"),
        ("VOICEOBS_METRIC_EXPORT_INTERVAL_MS", "soon", "valid integer"),
        ("VOICEOBS_METRIC_PROMPT_EXPORT_MS", "100", "should be 0 (off) or between 200 and 60000"),
        ("VOICEOBS_METRIC_PROMPT_EXPORT_MS", "-1", "greater than or equal to 0"),
        ("VOICEOBS_SHUTDOWN_TIMEOUT_S", "0", "greater than 0"),
        ("VOICEOBS_EXPORT_TIMEOUT_S", "-1", "greater than 0"),
        ("VOICEOBS_LOG_LEVEL", "LOUD", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ("VOICEOBS_QUEUE_SIZE", "10", "greater than or equal to 100"),
        ("VOICEOBS_LABEL_LIMIT", "0", "greater than or equal to 1"),
        (
            "VOICEOBS_RATE_CARD_PATH",
            "/nonexistent/rates.yaml",
            "no file at /nonexistent/rates.yaml",
        ),
        ("VOICEOBS_REDACT_PATTERNS", r'["([unclosed"]', "not a valid regular expression"),
        ("VOICEOBS_REDACT_PATTERNS", r"ACCT-\d{6,10}", "not a JSON list"),
        ("VOICEOBS_MAX_TEXT_LENGTH", "8", "greater than or equal to 16"),
        ("VOICEOBS_ENABLED", "perhaps", "valid boolean"),
        ("VOICEOBS_PROMETHEUS_ROUTE", "2", "valid boolean"),
        ("VOICEOBS_METRICS_INTERVAL", "5", "unknown voiceobs setting"),
    ],
)
def test_every_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        VoiceobsSettings.load()
    assert variable in str(error.value)
    assert message in str(error.value)
