"""voiceobs settings, read from ``VOICEOBS_*`` environment variables.

Only voiceobs' own knobs live here. Where telemetry goes (endpoint, protocol, headers, TLS),
the service name, resource attributes and sampling stay the standard ``OTEL_*`` variables,
read by the OpenTelemetry SDK itself.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "VOICEOBS_"

CsvList = Annotated[tuple[str, ...], NoDecode]
"""A list given as comma-separated text in the environment (``a,b,c``)."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class SettingsError(ValueError):
    """Invalid voiceobs settings; the message names each variable and what it allows."""


class VoiceobsSettings(BaseSettings):
    """Everything voiceobs lets you tune, each field read from ``VOICEOBS_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    enabled: bool = True
    """Master switch; when off, the voice API records nothing and costs next to nothing."""
    traces_enabled: bool = True
    metrics_enabled: bool = True
    logs_enabled: bool = True
    service_version: str | None = None
    """Reported as ``service.version`` unless OTEL_RESOURCE_ATTRIBUTES sets it; unset, none."""
    environment: str | None = None
    """Reported as ``deployment.environment.name`` when set (OTEL_RESOURCE_ATTRIBUTES wins)."""

    metric_export_interval_ms: int = Field(default=5000, ge=200, le=60000)
    """How often every metric series is pushed; short enough for live dashboards."""
    metric_prompt_export_ms: int = Field(default=1000, ge=0, le=60000)
    """After voice activity, the series that changed are pushed this soon after the previous
    push, so a turn is in Prometheus about this long after it ended; 0 turns it off (every
    series every ``metric_export_interval_ms`` only). Applies to the export process."""
    shutdown_timeout_s: float = Field(default=5.0, gt=0, le=60)
    """Upper bound for flushing and closing all three signals at shutdown."""
    export_timeout_s: float = Field(default=10.0, gt=0, le=60)
    """Per-export timeout (retries included) used when OTEL_EXPORTER_OTLP_TIMEOUT is not set;
    a batch that cannot be sent in this time is dropped and counted. Shutdown stays bounded by
    ``shutdown_timeout_s`` whatever this is."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest Python log level bridged to OTLP logs."""
    queue_size: int = Field(default=20000, ge=100, le=1_000_000)
    """Voice events waiting to become spans and metric points; beyond it they are counted
    as dropped, never blocking the engine."""
    export_process: bool = True
    """Materialise and export the voice API's telemetry in a separate process that voiceobs
    starts and supervises, so the engine's interpreter only appends records. Off (or with
    exporters given in code, an application's own SDK providers, or ``prometheus_route``),
    a thread of the engine's process does it."""
    call_expiry_s: float = Field(default=14400.0, gt=0, le=7 * 86400)
    """A call whose end never arrives is closed after this long (status ``abandoned``,
    counted), so its state is released and it stops counting as active."""

    tenants: CsvList = ()
    """Allowed ``tenant`` label values; empty means the first ``label_limit`` seen."""
    pipelines: CsvList = ()
    providers: CsvList = ()
    models: CsvList = ()
    label_limit: int = Field(default=50, ge=1, le=10000)
    """Distinct values a label takes without an allow-list before new ones become ``other``."""

    rate_card_path: Path | None = None
    """YAML or JSON rate card used to turn usage into cost (see docs/cost.md)."""

    redact_phone_numbers: bool = True
    redact_emails: bool = True
    redact_card_numbers: bool = True
    redact_patterns: Annotated[tuple[str, ...], NoDecode] = ()
    """Extra regular expressions (Python syntax) whose matches are redacted from spans and
    logs, given as a JSON list: ``["ACCT-\\d{6,10}", "IBAN [A-Z]{2}[0-9]{2}"]``. Not a
    comma-separated list: a comma is part of a regular expression (``{6,10}``)."""
    export_transcripts: bool = False
    """Attach (redacted) transcripts and LLM responses to spans. Off by default."""
    max_text_length: int = Field(default=512, ge=16, le=8192)
    """Longest text attribute voiceobs writes; longer ones are cut."""

    prometheus_route: bool = False
    """Mount ``/metrics`` on the app for Prometheus to scrape (same metric names)."""
    excluded_urls: CsvList = ("/healthz", "/readyz", "/metrics")
    """Routes the HTTP instrumentation ignores."""

    _split = field_validator(
        "tenants",
        "pipelines",
        "providers",
        "models",
        "excluded_urls",
        mode="before",
    )(_split_csv)

    @field_validator("redact_patterns", mode="before")
    @classmethod
    def _patterns_json(cls, value: object) -> tuple[str, ...]:
        """Parse the JSON list and compile each pattern, so a bad one stops start-up."""
        example = 'e.g. ["ACCT-\\\\d{6,10}"] (each backslash doubled inside JSON)'
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else []
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, too many digits
                raise ValueError(
                    f"not a JSON list of regular expressions, {example}: {exc}"
                ) from None
        if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value):
            raise ValueError(f"give a JSON list of strings, {example}")
        for pattern in value:
            try:
                re.compile(pattern)
            except (re.error, RecursionError) as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        return tuple(value)

    @field_validator("metric_prompt_export_ms")
    @classmethod
    def _prompt_export_off_or_bounded(cls, value: int) -> int:
        if 0 < value < 200:
            raise ValueError("should be 0 (off) or between 200 and 60000 milliseconds")
        return value

    @field_validator("rate_card_path")
    @classmethod
    def _rate_card_exists(cls, value: Path | None) -> Path | None:
        try:
            found = value is None or value.is_file()
        except OSError as exc:  # a name too long for the file system, say
            raise ValueError(f"{exc.strerror}; give the path of a YAML or JSON rate card") from None
        if not found:
            raise ValueError(f"no file at {value}; give the path of a YAML or JSON rate card")
        return value

    @classmethod
    def load(cls, **overrides: object) -> VoiceobsSettings:
        """Read the environment, raising :class:`SettingsError` that names every bad variable
        (unknown ``VOICEOBS_*`` names too, so a typo does not pass silently).

        ``VOICEOBS_STACK_*`` is reserved for the monitoring stack's own knobs (bind address,
        state and secrets dirs, retention, trace exporters), which ``make`` exports into the
        engine's environment too; the library ignores that prefix and owns no field in it."""
        known = {f"{ENV_PREFIX}{name.upper()}" for name in cls.model_fields}
        stack_prefix = f"{ENV_PREFIX}STACK_"
        unknown = sorted(
            n
            for n in os.environ
            if n.startswith(ENV_PREFIX) and not n.startswith(stack_prefix) and n not in known
        )
        if unknown:
            raise SettingsError(
                f"unknown voiceobs setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        try:
            return cls(**overrides)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = ["invalid voiceobs settings:"]
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        variable = f"{ENV_PREFIX}{field.upper()}"
        got = repr(error.get("input"))
        got = got if len(got) <= 80 else f"{got[:60]}... ({len(got)} characters)"
        lines.append(f"  {variable}: {error['msg']} (got {got})")
    return "\n".join(lines)
