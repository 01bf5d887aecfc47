"""Who is asking: API keys and JWTs (HS256/RS256), roles, tenant scope, rate limit, audit log.

A credential resolves to a :class:`Principal` with a role (``viewer`` reads, ``admin`` also
runs admin actions) and, optionally, the one tenant it may see. There is no default
credential: with auth on and none configured every request is refused with 401.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jwt

from voiceobs.api.settings import ApiSettings

Role = Literal["viewer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "admin")

audit_logger = logging.getLogger("voiceobs.api.audit")


class AuthError(Exception):
    """The request is refused; ``status`` is 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``name`` identifies the credential in logs, never the secret."""

    name: str
    role: Role
    tenant: str | None

    def scope(self, requested: str | None) -> str | None:
        """The tenant this request may read: its own, or any the caller names if unscoped."""
        if self.tenant is None:
            return requested
        if requested not in (None, self.tenant):
            raise AuthError(403, f"tenant: this credential is scoped to tenant {self.tenant!r}")
        return self.tenant


ANONYMOUS = Principal("anonymous (auth off)", "admin", None)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _parse_key_entry(fields: list[str], where: str) -> tuple[str, Principal]:
    if len(fields) not in (2, 3):
        raise ValueError(f"{where}: expected 'key role [tenant]', got {len(fields)} fields")
    key, role = fields[0], fields[1]
    if role not in ROLES:
        raise ValueError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
    if len(key) < 16:
        raise ValueError(f"{where}: an API key must be at least 16 characters")
    tenant = fields[2] if len(fields) == 3 else None
    digest = _digest(key)
    return digest, Principal(f"key:{digest[:8]}", "admin" if role == "admin" else "viewer", tenant)


def load_api_keys(settings: ApiSettings) -> dict[str, Principal]:
    """sha256(key) → principal, from VOICEOBS_API_API_KEYS and VOICEOBS_API_API_KEYS_FILE."""
    keys: dict[str, Principal] = {}
    if settings.api_keys is not None:
        for n, entry in enumerate(settings.api_keys.get_secret_value().split(","), 1):
            if entry.strip():
                digest, principal = _parse_key_entry(
                    entry.strip().split(":"), f"VOICEOBS_API_API_KEYS entry {n}"
                )
                keys[digest] = principal
    if settings.api_keys_file is not None:
        text = _read_secret(settings.api_keys_file, "VOICEOBS_API_API_KEYS_FILE")
        for n, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if line:
                digest, principal = _parse_key_entry(
                    line.split(), f"{settings.api_keys_file} line {n}"
                )
                keys[digest] = principal
    return keys


def _read_secret(path: Path, variable: str) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ValueError(f"{variable}: cannot read {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class JwtKeys:
    hs256: str | None
    rs256: str | None

    @property
    def configured(self) -> bool:
        return bool(self.hs256 or self.rs256)


def load_jwt_keys(settings: ApiSettings) -> JwtKeys:
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    if settings.jwt_secret_file is not None:
        secret = _read_secret(settings.jwt_secret_file, "VOICEOBS_API_JWT_SECRET_FILE").strip()
    if secret is not None and len(secret) < 32:
        raise ValueError("VOICEOBS_API_JWT_SECRET: an HS256 secret must be at least 32 bytes")
    public = None
    if settings.jwt_public_key_file is not None:
        public = _read_secret(settings.jwt_public_key_file, "VOICEOBS_API_JWT_PUBLIC_KEY_FILE")
    return JwtKeys(secret, public)


class Authenticator:
    """Resolves bearer credentials to principals; reloadable so keys rotate without restart."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.enabled = settings.auth == "on"
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> tuple[int, bool]:
        """Re-read keys and JWT keys from settings and secret files; (keys, jwt configured)."""
        keys, jwt_keys = load_api_keys(self.settings), load_jwt_keys(self.settings)
        with self._lock:
            self._keys, self._jwt = keys, jwt_keys
        return len(keys), jwt_keys.configured

    @property
    def configured(self) -> bool:
        return bool(self._keys) or self._jwt.configured

    def authenticate(self, credential: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        if not self.configured:
            raise AuthError(
                401,
                "no credential is configured: set VOICEOBS_API_API_KEYS_FILE or "
                "VOICEOBS_API_JWT_SECRET_FILE / VOICEOBS_API_JWT_PUBLIC_KEY_FILE",
            )
        if not credential:
            raise AuthError(401, "Authorization: send 'Bearer <API key or JWT>'")
        principal = self._keys.get(_digest(credential))
        if principal is not None:
            return principal
        if credential.count(".") == 2 and self._jwt.configured:
            return self._from_jwt(credential)
        raise AuthError(401, "Authorization: unknown API key or malformed token")

    def _from_jwt(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError(401, "Authorization: malformed token") from None
        algorithm = header.get("alg")
        key = {"HS256": self._jwt.hs256, "RS256": self._jwt.rs256}.get(str(algorithm))
        if key is None:
            raise AuthError(401, f"Authorization: token algorithm {algorithm!r} is not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(401, f"Authorization: token refused ({exc})") from None
        role = claims.get("role", "viewer")
        if role not in ROLES:
            raise AuthError(403, f"token claim role: {role!r} is not one of {', '.join(ROLES)}")
        tenant = claims.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise AuthError(401, "token claim tenant: must be a string")
        return Principal(f"jwt:{claims['sub']}", role, tenant)


class RateLimiter:
    """A token bucket per credential: ``per_minute`` requests, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.refill_per_s = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, who: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(who, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.refill_per_s)
            if tokens < 1.0:
                self._buckets[who] = (tokens, now)
                return False
            self._buckets[who] = (tokens - 1.0, now)
            return True


class AuditLog:
    """Admin actions as JSON lines in a file (or the ``voiceobs.api.audit`` logger)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()

    def record(self, principal: Principal, action: str, detail: str = "") -> None:
        entry = {"time": time.time(), "credential": principal.name, "action": action,
                 "detail": detail}  # fmt: skip
        line = json.dumps(entry, sort_keys=True)
        if self.path is None:
            audit_logger.info(line)
            return
        with self._lock, self.path.open("a") as out:
            out.write(line + "\n")

    def entries(self, limit: int) -> list[dict[str, object]]:
        if self.path is None or not self.path.exists():
            return []
        lines = self.path.read_text().splitlines()[-limit:]
        return [json.loads(line) for line in lines if line.strip()]
