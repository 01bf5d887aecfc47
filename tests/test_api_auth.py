"""Credentials of the dashboard API: API keys and JWTs, roles, tenant scope, rate limit, audit.

These checks are answered before any backend is asked, so the backends' addresses point at a
port nothing listens on: a request that got past auth would answer 503, never 200.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from tests.api_support import ACME_KEY, ADMIN_KEY, SECRET, VIEWER_KEY, bearer, settings
from voiceobs.api import ApiSettings, create_app
from voiceobs.api.auth import Authenticator, RateLimiter
from voiceobs.api.server import ConsoleConfigError, check_bind


def test_no_credential_configured_refuses_every_request_and_the_console_will_not_start() -> None:
    app = create_app(ApiSettings())
    with TestClient(app) as client:
        response = client.get("/api/dashboard/metrics")
    assert response.status_code == 401
    assert "no credential is configured" in response.json()["detail"]
    with pytest.raises(ConsoleConfigError, match="no credential configured"):
        check_bind(ApiSettings(), app.state.dashboard)


def test_auth_off_refuses_a_bind_beyond_loopback() -> None:
    app = create_app(ApiSettings(auth="off"))
    check_bind(ApiSettings(auth="off", host="127.0.0.1"), app.state.dashboard)
    check_bind(ApiSettings(auth="off", host="::1"), app.state.dashboard)
    for host in ("0.0.0.0", "192.168.1.10", "example.com"):
        with pytest.raises(ConsoleConfigError, match="loopback only"):
            check_bind(ApiSettings(auth="off", host=host), app.state.dashboard)


def test_missing_or_unknown_credential_gets_401(tmp_path: Path) -> None:
    with TestClient(create_app(settings(tmp_path))) as client:
        assert client.get("/api/dashboard/metrics").status_code == 401
        unknown = client.get("/api/dashboard/metrics", headers=bearer("x" * 20))
        assert unknown.status_code == 401
        assert "unknown API key" in unknown.json()["detail"]


def test_a_known_key_gets_past_auth_to_the_backends(tmp_path: Path) -> None:
    with TestClient(create_app(settings(tmp_path))) as client:
        response = client.get("/api/dashboard/metrics", headers=bearer(VIEWER_KEY))
        by_header = client.get("/api/dashboard/metrics", headers={"X-API-Key": VIEWER_KEY})
    assert response.status_code == 503  # past auth: the (dead) backend answers
    assert response.json()["detail"].startswith("prometheus unavailable")
    assert by_header.status_code == 503


def test_keys_from_the_environment_need_a_valid_role(tmp_path: Path) -> None:
    auth = Authenticator(ApiSettings(api_keys=f"{VIEWER_KEY}:viewer,{ADMIN_KEY}:admin:acme"))
    assert auth.authenticate(ADMIN_KEY).role == "admin"
    assert auth.authenticate(ADMIN_KEY).tenant == "acme"
    with pytest.raises(ValueError, match="role 'root' is not one of viewer, admin"):
        Authenticator(ApiSettings(api_keys=f"{VIEWER_KEY}:root"))
    with pytest.raises(ValueError, match="at least 16 characters"):
        Authenticator(ApiSettings(api_keys="short:viewer"))
    with pytest.raises(ValueError, match="cannot read"):
        Authenticator(ApiSettings(api_keys_file=tmp_path / "absent"))


def _token(key: object, algorithm: str, **claims: object) -> str:
    body = {"sub": "ops", "aud": "voiceobs", "exp": int(time.time()) + 60, **claims}
    return jwt.encode(body, key, algorithm=algorithm)  # type: ignore[arg-type]


def _hmac_token(key: bytes, claims: dict[str, object]) -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signed = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
    return signed + "." + b64(hmac.new(key, signed.encode(), hashlib.sha256).digest())


def test_hs256_token_with_role_and_tenant(tmp_path: Path) -> None:
    secret = tmp_path / "jwt"
    secret.write_text(SECRET + "\n")
    auth = Authenticator(ApiSettings(jwt_secret_file=secret))
    principal = auth.authenticate(_token(SECRET, "HS256", role="admin", tenant="acme"))
    assert (principal.name, principal.role, principal.tenant) == ("jwt:ops", "admin", "acme")
    assert auth.authenticate(_token(SECRET, "HS256")).role == "viewer"
    for bad, reason in (
        (_token("t" * 40, "HS256"), "Signature verification failed"),
        (_token(SECRET, "HS256", exp=int(time.time()) - 10), "expired"),
        (_token(SECRET, "HS256", aud="someone-else"), "Audience"),
    ):
        with pytest.raises(Exception, match=reason):
            auth.authenticate(bad)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Authenticator(ApiSettings(jwt_secret="short"))


def test_rs256_token_and_no_algorithm_confusion(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = tmp_path / "jwt.pub"
    public.write_bytes(public_pem)
    auth = Authenticator(ApiSettings(jwt_public_key_file=public))
    assert auth.authenticate(_token(private, "RS256", tenant="acme")).tenant == "acme"
    # An HS256 token whose HMAC key is the public key must not pass (algorithm confusion).
    with pytest.raises(Exception, match="'HS256' is not accepted"):
        auth.authenticate(_hmac_token(public_pem, {"sub": "x", "aud": "voiceobs"}))
    with pytest.raises(Exception, match="'none' is not accepted"):
        auth.authenticate(jwt.encode({"sub": "x"}, None, algorithm="none"))


def test_a_scoped_credential_cannot_name_another_tenant(tmp_path: Path) -> None:
    with TestClient(create_app(settings(tmp_path))) as client:
        response = client.get(
            "/api/dashboard/metrics", params={"tenant": "globex"}, headers=bearer(ACME_KEY)
        )
    assert response.status_code == 403
    assert response.json()["detail"] == "tenant: this credential is scoped to tenant 'acme'"


def test_admin_actions_need_admin_and_are_audited(tmp_path: Path) -> None:
    config = settings(tmp_path)
    with TestClient(create_app(config)) as client:
        viewer = client.post("/api/dashboard/admin/credentials/reload", headers=bearer(VIEWER_KEY))
        assert viewer.status_code == 403
        assert "admin" in viewer.json()["detail"]
        reload = client.post("/api/dashboard/admin/credentials/reload", headers=bearer(ADMIN_KEY))
        assert reload.json() == {"api_keys": 3, "jwt": False}
        entries = client.get("/api/dashboard/admin/audit", headers=bearer(ADMIN_KEY)).json()
    assert [e["action"] for e in entries] == ["credentials.reload", "audit.read"]
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert lines[0]["credential"].startswith("key:")
    assert ADMIN_KEY not in (tmp_path / "audit.jsonl").read_text()  # never the secret


def test_reloaded_keys_take_effect_without_restart(tmp_path: Path) -> None:
    config = settings(tmp_path)
    with TestClient(create_app(config)) as client:
        assert client.get("/api/dashboard/metrics", headers=bearer(VIEWER_KEY)).status_code == 503
        assert config.api_keys_file is not None
        config.api_keys_file.write_text(f"{ADMIN_KEY} admin\n")
        client.post("/api/dashboard/admin/credentials/reload", headers=bearer(ADMIN_KEY))
        assert client.get("/api/dashboard/metrics", headers=bearer(VIEWER_KEY)).status_code == 401


def test_rate_limit_is_per_credential(tmp_path: Path) -> None:
    with TestClient(create_app(settings(tmp_path, rate_limit_per_minute=3))) as client:
        codes = [
            client.get("/api/dashboard/call-volume?hours=0", headers=bearer(VIEWER_KEY)).status_code
            for _ in range(4)
        ]
        other = client.get("/api/dashboard/call-volume?hours=0", headers=bearer(ADMIN_KEY))
    assert codes == [422, 422, 422, 429]
    assert other.status_code == 422


def test_rate_limiter_refills_over_time() -> None:
    limiter = RateLimiter(per_minute=60)
    assert all(limiter.allow("k", now=0.0) for _ in range(60))
    assert not limiter.allow("k", now=0.0)
    assert limiter.allow("k", now=1.0)


def test_cors_is_off_by_default_and_lists_only_configured_origins(tmp_path: Path) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    with TestClient(create_app(settings(tmp_path))) as client:
        response = client.options("/api/dashboard/metrics", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    allowed = settings(tmp_path, cors_origins="https://ops.example")
    with TestClient(create_app(allowed)) as client:
        ok = client.options(
            "/api/dashboard/metrics", headers={**preflight, "Origin": "https://ops.example"}
        )
        evil = client.options("/api/dashboard/metrics", headers=preflight)
    assert ok.headers["access-control-allow-origin"] == "https://ops.example"
    assert "access-control-allow-origin" not in evil.headers
