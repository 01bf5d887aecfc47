"""Closed by default, open by choice: the stack's bind rules (stack/exposure.py, applied by
stack.settings and stack.control) and the Collector overlay they render."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from stack import control, exposure
from stack.settings import LISTENERS, StackError, StackSettings, load

ROOT = Path(__file__).resolve().parents[1]
BASE_CONFIG = ROOT / "collector" / "config.yaml"


def _settings(tmp_path: Path, **env: str) -> StackSettings:
    return load({"VOICEOBS_STACK_STATE_DIR": str(tmp_path / "state"), **env}, repo=ROOT)


def _overlay(**env: str) -> dict[str, object]:
    return exposure.collector_overlay(env, BASE_CONFIG)


def test_by_default_every_listener_is_on_loopback_and_the_overlay_is_empty(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    for item in LISTENERS:
        assert item.address(settings.env)[0] == "127.0.0.1", item
    control.check_exposure(settings)
    assert _overlay() == {}


def test_otlp_bind_moves_only_the_otlp_receivers(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        VOICEOBS_STACK_OTLP_BIND="10.0.0.5",
        VOICEOBS_STACK_OTLP_AUTH="bearer",
        VOICEOBS_STACK_OTLP_TLS="true",
    )
    moved = {(i.service, i.purpose) for i in LISTENERS if i.address(settings.env)[0] != "127.0.0.1"}
    assert moved == {("collector", "OTLP/gRPC receiver"), ("collector", "OTLP/HTTP receiver")}
    assert settings.env["COLLECTOR_OTLP_GRPC_ENDPOINT"] == "10.0.0.5:4317"
    assert settings.env["COLLECTOR_OTLP_HTTP_ENDPOINT"] == "10.0.0.5:4318"
    control.check_exposure(settings)


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "VOICEOBS_STACK_OTLP_AUTH=bearer and VOICEOBS_STACK_OTLP_TLS=true"),
        ({"VOICEOBS_STACK_OTLP_AUTH": "bearer"}, "without VOICEOBS_STACK_OTLP_TLS=true"),
        ({"VOICEOBS_STACK_OTLP_TLS": "true"}, "without VOICEOBS_STACK_OTLP_AUTH=bearer"),
    ],
    ids=["neither", "token-only", "tls-only"],
)
def test_otlp_beyond_loopback_needs_token_and_tls(
    tmp_path: Path, env: dict[str, str], missing: str
) -> None:
    for host in ("0.0.0.0", "10.0.0.5", "collector.example.com", "::"):
        settings = _settings(tmp_path, VOICEOBS_STACK_OTLP_BIND=host, **env)
        with pytest.raises(StackError, match=missing):
            control.check_exposure(settings)
        with pytest.raises(exposure.ExposureError, match=missing):
            exposure.write_overlay(settings.env, BASE_CONFIG, tmp_path / "otlp.yaml")
    assert not (tmp_path / "otlp.yaml").exists()


def test_an_explicit_insecure_opt_out_opens_otlp_without_token_or_tls(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, VOICEOBS_STACK_OTLP_BIND="0.0.0.0", VOICEOBS_STACK_OTLP_INSECURE="true"
    )
    control.check_exposure(settings)


def test_the_rule_follows_the_collector_variable_too(tmp_path: Path) -> None:
    """Setting the Collector's own endpoint variable is no way around the rule."""
    settings = _settings(tmp_path, COLLECTOR_OTLP_HTTP_ENDPOINT="0.0.0.0:4318")
    with pytest.raises(StackError, match="COLLECTOR_OTLP_HTTP_ENDPOINT"):
        control.check_exposure(settings)


@pytest.mark.parametrize(
    "variable",
    ["PROMETHEUS_LISTEN_ADDRESS", "ALERTMANAGER_LISTEN_ADDRESS", "COLLECTOR_PPROF_ENDPOINT",
     "COLLECTOR_ZPAGES_ENDPOINT", "COLLECTOR_PROMETHEUS_ENDPOINT", "JAEGER_QUERY_HTTP_ENDPOINT"],
)  # fmt: skip
def test_admin_endpoints_stay_on_loopback_whatever_their_variable_says(
    tmp_path: Path, variable: str
) -> None:
    settings = _settings(
        tmp_path, **{variable: "0.0.0.0:19999"}, VOICEOBS_STACK_OTLP_INSECURE="true"
    )
    with pytest.raises(StackError, match=variable):
        control.check_exposure(settings)
    for host_var in ("COLLECTOR_TELEMETRY_HOST", "LOKI_HTTP_ADDRESS", "JAEGER_METRICS_HOST"):
        with pytest.raises(StackError, match=host_var):
            control.check_exposure(_settings(tmp_path, **{host_var: "0.0.0.0"}))
    control.check_exposure(_settings(tmp_path, **{variable: "127.0.0.1:19999"}))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("", False), ("::", False),
     ("192.168.1.4", False), ("host.example.com", False)],
)  # fmt: skip
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert exposure.is_loopback(host) is loopback


def test_bad_setting_values_are_refused_by_name() -> None:
    with pytest.raises(exposure.ExposureError, match="VOICEOBS_STACK_OTLP_AUTH"):
        exposure.check_otlp({"VOICEOBS_STACK_OTLP_AUTH": "basic"})
    with pytest.raises(exposure.ExposureError, match="VOICEOBS_STACK_OTLP_TLS"):
        exposure.check_otlp({"VOICEOBS_STACK_OTLP_TLS": "maybe"})
    with pytest.raises(exposure.ExposureError, match="VOICEOBS_STACK_ENABLE_LIFECYCLE"):
        exposure.write_overlay(
            {"VOICEOBS_STACK_ENABLE_LIFECYCLE": "sometimes"}, BASE_CONFIG, Path("/nonexistent")
        )


def test_overlay_adds_the_authenticator_and_tls_to_both_protocols() -> None:
    overlay = _overlay(VOICEOBS_STACK_OTLP_AUTH="bearer", VOICEOBS_STACK_OTLP_TLS="true")
    protocols = overlay["receivers"]["otlp"]["protocols"]  # type: ignore[index]
    for name in ("grpc", "http"):
        assert protocols[name]["auth"] == {"authenticator": "bearertokenauth/otlp"}
        assert protocols[name]["tls"]["cert_file"] == "${env:COLLECTOR_OTLP_TLS_CERT_FILE}"
        assert protocols[name]["tls"]["key_file"] == "${env:COLLECTOR_OTLP_TLS_KEY_FILE}"
    assert overlay["extensions"] == {
        "bearertokenauth/otlp": {"filename": "${env:COLLECTOR_OTLP_TOKEN_FILE}"}
    }
    only_tls = _overlay(VOICEOBS_STACK_OTLP_TLS="true")
    assert "extensions" not in only_tls and "service" not in only_tls


def test_overlay_keeps_every_extension_of_the_shared_config() -> None:
    """A list replaces the base list when configs merge: the overlay repeats the base's."""
    base = yaml.safe_load(BASE_CONFIG.read_text(encoding="utf-8"))["service"]["extensions"]
    overlay = _overlay(VOICEOBS_STACK_OTLP_AUTH="bearer")
    assert overlay["service"] == {"extensions": [*base, "bearertokenauth/otlp"]}


def test_written_overlay_is_yaml_with_a_generated_header(tmp_path: Path) -> None:
    out = exposure.write_overlay(
        {"VOICEOBS_STACK_OTLP_AUTH": "bearer"}, BASE_CONFIG, tmp_path / "c" / "otlp.yaml"
    )
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# GENERATED by stack/exposure.py")
    assert yaml.safe_load(text) == json.loads(text.split("\n", 1)[1])


def test_native_stack_renders_the_overlay_and_finds_secrets_in_its_secrets_dir(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, VOICEOBS_STACK_OTLP_AUTH="bearer")
    control.render_configs(settings)
    assert "bearertokenauth/otlp" in settings.collector_overlay.read_text(encoding="utf-8")
    secrets = tmp_path / "state" / "secrets" / "otlp"
    assert settings.env["COLLECTOR_OTLP_TOKEN_FILE"] == str(secrets / "token")
    assert settings.env["COLLECTOR_OTLP_TLS_CERT_FILE"] == str(secrets / "tls.crt")
    assert settings.env["COLLECTOR_OTLP_TLS_KEY_FILE"] == str(secrets / "tls.key")


def test_bearer_auth_generates_a_private_token_once(tmp_path: Path) -> None:
    env = {"VOICEOBS_STACK_OTLP_AUTH": "bearer", **exposure.secret_paths(tmp_path)}
    notes = exposure.prepare_secrets(env)
    token = tmp_path / "otlp" / "token"
    first = token.read_text()
    assert len(first.strip()) == 48 and any("generated" in n for n in notes)
    assert stat.S_IMODE(os.stat(token).st_mode) == 0o600
    exposure.prepare_secrets(env)
    assert token.read_text() == first


def test_tls_without_certificate_files_is_refused_naming_them(tmp_path: Path) -> None:
    env = {"VOICEOBS_STACK_OTLP_TLS": "true", **exposure.secret_paths(tmp_path)}
    with pytest.raises(exposure.ExposureError, match=r"tls\.crt.*tls\.key"):
        exposure.prepare_secrets(env)


def test_docker_render_script_refuses_an_open_intake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `make monitor-render` runs (stdlib only, outside the virtualenv)."""
    assert exposure.main(["docker", str(tmp_path / "closed.yaml")]) == 0
    monkeypatch.setenv("VOICEOBS_STACK_OTLP_BIND", "0.0.0.0")
    assert exposure.main(["docker", str(tmp_path / "open.yaml")]) == 1
    assert not (tmp_path / "open.yaml").exists()
