"""The OTLP/HTTP exporter keeps the CA it is given when the host sets a requests CA bundle."""

from __future__ import annotations

import pytest
import requests

from voiceobs.exportpipeline import otlp_exporter
from voiceobs.httpsession import CaKeepingSession
from voiceobs.settings import VoiceobsSettings


def test_the_session_keeps_its_ca_over_requests_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    plain, keeping = requests.Session(), CaKeepingSession()
    for session in (plain, keeping):
        session.verify = "/etc/voiceobs/ca.pem"
    url = "https://collector.example:4318/v1/traces"
    assert plain.merge_environment_settings(url, {}, None, None, None)["verify"] == (
        "/etc/ssl/certs/ca-certificates.crt"  # psf/requests#4726: the bundle wins
    )
    assert keeping.merge_environment_settings(url, {}, None, None, None)["verify"] == (
        "/etc/voiceobs/ca.pem"
    )
    assert keeping.merge_environment_settings(url, {}, None, False, None)["verify"] is False


@pytest.mark.parametrize(
    ("variables", "keeps"),
    [
        ({"OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/voiceobs/ca.pem"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": "/etc/voiceobs/ca.pem"}, True),
        ({}, False),
        (
            {
                "OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/voiceobs/ca.pem",
                "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER": "mine",
            },
            False,
        ),
    ],
    ids=["ca", "traces-ca", "no-ca", "own-credential-provider"],
)
def test_the_http_exporter_gets_that_session_only_with_a_ca_and_no_provider_of_yours(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], keeps: bool
) -> None:
    import voiceobs.exportpipeline as pipeline

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert pipeline._keeps_its_ca("traces") is keeps
    if "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER" not in variables:
        exporter = otlp_exporter("traces", VoiceobsSettings())
        try:
            sessions = _sessions(exporter)
            assert sessions, "the exporter's requests session, a few attributes down"
            assert all(isinstance(s, CaKeepingSession) is keeps for s in sessions)
        finally:
            exporter.shutdown()


def _sessions(obj: object, depth: int = 4) -> list[requests.Session]:
    """The requests sessions held by ``obj`` or its attributes, ``depth`` levels down."""
    if isinstance(obj, requests.Session):
        return [obj]
    if depth == 0 or not hasattr(obj, "__dict__"):
        return []
    return [s for value in vars(obj).values() for s in _sessions(value, depth - 1)]
