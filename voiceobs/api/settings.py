"""Settings of the dashboard API and the console, read from ``VOICEOBS_API_*`` variables.

Credentials are never defaults: API keys and JWT keys come from the environment or from
secret files (one line per key: ``key role [tenant]``), and with none configured the server
refuses every request unless auth is switched off, which only a loopback bind allows.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

API_ENV_PREFIX = "VOICEOBS_API_"

CsvList = Annotated[tuple[str, ...], NoDecode]


class ApiSettings(BaseSettings):
    """Everything the dashboard API lets you tune, each field read from ``VOICEOBS_API_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix=API_ENV_PREFIX, extra="forbid", frozen=True)

    prometheus_url: str = "http://127.0.0.1:9090"
    jaeger_url: str = "http://127.0.0.1:16686"
    loki_url: str = "http://127.0.0.1:3100"
    service: str = Field(default="voiceobs-demo", pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    """The engine's ``service.name`` (Prometheus ``job``, Jaeger service, Loki ``service_name``)."""
    backend_timeout_s: float = Field(default=5.0, gt=0, le=60)

    host: str = "127.0.0.1"
    port: int = Field(default=8900, ge=1, le=65535)

    auth: Literal["on", "off"] = "on"
    """``off`` serves everyone as an unscoped admin; allowed only on a loopback bind."""
    api_keys: SecretStr | None = None
    """``key:role[:tenant]`` entries separated by commas (role ``viewer`` or ``admin``)."""
    api_keys_file: Path | None = None
    """A secret file with one ``key role [tenant]`` per line; ``#`` starts a comment."""
    jwt_secret: SecretStr | None = None
    """Shared secret for HS256 tokens."""
    jwt_secret_file: Path | None = None
    jwt_public_key_file: Path | None = None
    """PEM public key for RS256 tokens."""
    jwt_audience: str = "voiceobs"
    jwt_issuer: str | None = None

    cors_origins: CsvList = ()
    """Origins allowed to call the API from a browser; empty (the default) means CORS off."""
    rate_limit_per_minute: int = Field(default=600, ge=1, le=1_000_000)
    """Requests each credential may make per minute before it gets 429."""
    audit_log: Path | None = None
    """Where admin actions are appended as JSON lines; unset, the ``voiceobs.api.audit`` logger."""

    feed_interval_s: float = Field(default=5.0, ge=0.2, le=300)
    """How often the live feed polls the backends and pushes to every client."""
    feed_client_queue: int = Field(default=4, ge=1, le=1000)
    """Updates a client may have unsent before it is dropped as too slow."""

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("prometheus_url", "jaeger_url", "loki_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
