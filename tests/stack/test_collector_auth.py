"""OTLP auth and TLS on the real Collector: our built binary, the shared config plus the
overlay that ``VOICEOBS_STACK_OTLP_AUTH=bearer`` and ``VOICEOBS_STACK_OTLP_TLS=true`` render,
on free ports (no lock, no clash with a running stack). Certificates are made by openssl at
test time. The senders are the library's own OTLP exporters, configured only by the standard
``OTEL_EXPORTER_OTLP_*`` variables, so this also shows voiceobs honours them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from stack import build, exposure
from stack.control import free_port
from tests.collector_env import start_private_collector
from voiceobs import VoiceobsSettings
from voiceobs.exportpipeline import otlp_exporter

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token-for-tests"
NEXT_TOKEN = "rotated-in-token"  # a second line of the token file: rotation without downtime


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN={name}")  # fmt: skip
    return key, cert


def _server_cert(directory: Path, ca_key: Path, ca_cert: Path) -> tuple[Path, Path]:
    key, csr, cert = (directory / f"server.{ext}" for ext in ("key", "csr", "crt"))
    ext = directory / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return key, cert


@dataclass
class Collector:
    grpc: str
    http: str
    telemetry: str
    ca: Path
    wrong_ca: Path

    def accepted_spans(self) -> float:
        return self.accepted("spans")

    def accepted(self, items: str) -> float:
        """What the OTLP receiver let into the pipeline (its own counter, both transports):
        ``spans``, ``log_records`` or ``metric_points``."""
        with urllib.request.urlopen(f"http://{self.telemetry}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(f"otelcol_receiver_accepted_{items}") and 'receiver="otlp"' in line
        )


@pytest.fixture(scope="module")
def collector_binary() -> Path:
    try:
        return build.build_all(["collector"])["collector"]
    except build.StackError as exc:
        pytest.fail(f"building the Collector failed: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def secured_collector(
    collector_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Collector]:
    """The Collector with token and TLS on both OTLP protocols, its backends unreachable
    (what it accepts waits in its file-backed queues: acceptance is what is tested)."""
    tmp = tmp_path_factory.mktemp("collector-auth")
    ca_key, ca_cert = _ca(tmp, "test-ca")
    _, wrong_ca = _ca(tmp, "wrong-ca")
    server_key, server_cert = _server_cert(tmp, ca_key, ca_cert)
    secrets = tmp / "secrets"
    (secrets / "otlp").mkdir(parents=True)
    (secrets / "otlp" / "token").write_text(f"{TOKEN}\n{NEXT_TOKEN} # the next one\n")
    (secrets / "otlp" / "tls.crt").write_bytes(server_cert.read_bytes())
    (secrets / "otlp" / "tls.key").write_bytes(server_key.read_bytes())

    settings = {"VOICEOBS_STACK_OTLP_AUTH": "bearer", "VOICEOBS_STACK_OTLP_TLS": "true"}
    overlay = exposure.write_overlay(
        settings, REPO / "collector" / "config.yaml", tmp / "otlp.yaml"
    )
    command = [str(collector_binary), "--config", str(REPO / "collector" / "config.yaml"),
               "--config", str(overlay)]  # fmt: skip
    nowhere = f"127.0.0.1:{free_port()}"  # backends: what is accepted waits in the queues
    proc, ports = start_private_collector(
        command,
        tmp,
        traces=nowhere,
        logs=f"http://{nowhere}/otlp",
        remote_write=f"http://{nowhere}/w",
        extra_env=exposure.secret_paths(secrets),
    )
    try:
        yield Collector(
            grpc=f"127.0.0.1:{ports['grpc']}",
            http=f"127.0.0.1:{ports['http']}",
            telemetry=f"127.0.0.1:{ports['self']}",
            ca=ca_cert,
            wrong_ca=wrong_ca,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _send(
    monkeypatch: pytest.MonkeyPatch,
    protocol: str,
    endpoint: str,
    *,
    token: str | None,
    ca: Path | None,
    ca_bundle: str | None = None,
) -> SpanExportResult:
    """One span through the library's OTLP exporter, configured only by OTEL_* variables.

    REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE are unset unless ``ca_bundle`` is given: see
    test_http_sender_keeps_its_otlp_ca_when_requests_ca_bundle_is_set."""
    with monkeypatch.context() as env:
        env.delenv("CURL_CA_BUNDLE", raising=False)
        if ca_bundle is None:
            env.delenv("REQUESTS_CA_BUNDLE", raising=False)
        else:
            env.setenv("REQUESTS_CA_BUNDLE", ca_bundle)
        env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        if token is not None:
            env.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{token}")
        if ca is not None:
            env.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(ca))
        exporter = otlp_exporter("traces", VoiceobsSettings(export_timeout_s=3))
        span = TracerProvider().get_tracer("auth-test").start_span("voice.turn")
        span.end()
        try:
            result: SpanExportResult = exporter.export([span])
            return result
        finally:
            exporter.shutdown()


PROTOCOLS = [("grpc", "https://{grpc}"), ("http/protobuf", "https://{http}")]


@pytest.mark.parametrize(("protocol", "endpoint"), PROTOCOLS, ids=["grpc", "http"])
def test_only_a_sender_with_the_token_and_the_right_ca_gets_in(
    secured_collector: Collector, monkeypatch: pytest.MonkeyPatch, protocol: str, endpoint: str
) -> None:
    c = secured_collector
    url = endpoint.format(grpc=c.grpc, http=c.http)
    before = c.accepted_spans()
    cases = {
        "no token": _send(monkeypatch, protocol, url, token=None, ca=c.ca),
        "wrong token": _send(monkeypatch, protocol, url, token="guess", ca=c.ca),
        "wrong CA": _send(monkeypatch, protocol, url, token=TOKEN, ca=c.wrong_ca),
        "token": _send(monkeypatch, protocol, url, token=TOKEN, ca=c.ca),
        "next token": _send(monkeypatch, protocol, url, token=NEXT_TOKEN, ca=c.ca),
    }
    print(f"{protocol}: " + ", ".join(f"{k} -> {v.name}" for k, v in cases.items()))
    assert cases == {
        "no token": SpanExportResult.FAILURE,
        "wrong token": SpanExportResult.FAILURE,
        "wrong CA": SpanExportResult.FAILURE,
        "token": SpanExportResult.SUCCESS,
        "next token": SpanExportResult.SUCCESS,
    }
    assert c.accepted_spans() - before == 2  # the refused ones never reached the pipeline


@pytest.mark.parametrize(("protocol", "endpoint"), PROTOCOLS, ids=["grpc", "http"])
def test_a_plaintext_sender_is_refused_by_the_tls_receiver(
    secured_collector: Collector, monkeypatch: pytest.MonkeyPatch, protocol: str, endpoint: str
) -> None:
    c = secured_collector
    url = endpoint.format(grpc=c.grpc, http=c.http).replace("https://", "http://")
    before = c.accepted_spans()
    assert _send(monkeypatch, protocol, url, token=TOKEN, ca=None) == SpanExportResult.FAILURE
    assert c.accepted_spans() == before


def test_http_sender_keeps_its_otlp_ca_when_requests_ca_bundle_is_set(
    secured_collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With REQUESTS_CA_BUNDLE set (common on hosts with a corporate or Nix CA bundle),
    ``requests`` replaces the CA the SDK's OTLP/HTTP exporter put on its session
    (psf/requests#4726); voiceobs gives that exporter a session that keeps
    OTEL_EXPORTER_OTLP_CERTIFICATE, so a private CA still verifies, as it does on gRPC."""
    c = secured_collector
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    assert Path(bundle).is_file(), f"the system CA bundle {bundle} (Debian ca-certificates)"
    before = c.accepted_spans()
    http = _send(
        monkeypatch, "http/protobuf", f"https://{c.http}", token=TOKEN, ca=c.ca, ca_bundle=bundle
    )
    grpc = _send(monkeypatch, "grpc", f"https://{c.grpc}", token=TOKEN, ca=c.ca, ca_bundle=bundle)
    assert (http, grpc) == (SpanExportResult.SUCCESS, SpanExportResult.SUCCESS)
    wrong = _send(
        monkeypatch,
        "http/protobuf",
        f"https://{c.http}",
        token=TOKEN,
        ca=c.wrong_ca,
        ca_bundle=bundle,
    )
    assert wrong == SpanExportResult.FAILURE  # the kept CA is the one checked, not the bundle
    assert c.accepted_spans() - before == 2


ENGINE = """
import logging
from voiceobs import VoiceobsSettings, setup_instrumentation

obs = setup_instrumentation(settings=VoiceobsSettings.load(), set_global=False)
log = logging.getLogger("voiceobs.engine")
log.addHandler(obs.log_handler)
log.setLevel(logging.INFO)
with obs.call("call-auth-1", tenant="acme", pipeline="support") as call:
    with call.turn() as turn:
        turn.user_speech_ended()
        log.info("inside the call")
        turn.agent_audio_started()
obs.shutdown()
"""


@pytest.mark.parametrize("token", [TOKEN, None], ids=["token", "no-token"])
def test_the_library_reaches_a_secured_collector_with_the_standard_variables(
    secured_collector: Collector, tmp_path: Path, token: str | None
) -> None:
    """A whole engine (export process included), configured by nothing but OTEL_* variables:
    with the token every signal gets in; without it nothing does."""
    c = secured_collector
    kinds = ("spans", "log_records", "metric_points")
    before = {kind: c.accepted(kind) for kind in kinds}
    env = {
        "PATH": os.environ["PATH"],
        "OTEL_SERVICE_NAME": "auth-engine",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"https://{c.grpc}",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(c.ca),
        "VOICEOBS_SHUTDOWN_TIMEOUT_S": "10",
        "VOICEOBS_EXPORT_TIMEOUT_S": "3",
    }
    if token is not None:
        env["OTEL_EXPORTER_OTLP_HEADERS"] = f"Authorization=Bearer%20{token}"
    run = subprocess.run(
        [sys.executable, "-c", ENGINE], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    after = {kind: c.accepted(kind) for kind in kinds}
    gained = {kind: after[kind] - before[kind] for kind in kinds}
    print(f"{'token' if token else 'no token'}: accepted {gained}")
    if token is None:
        assert gained == dict.fromkeys(kinds, 0)
    else:
        assert all(gained[kind] > 0 for kind in kinds), gained
