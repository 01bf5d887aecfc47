"""PII redaction of everything a span or log record carries as text, before export.

Redaction runs in the exporters' background threads (it wraps the real exporters), so the
engine's thread never pays for the regular expressions. The Collector redacts again as a
second line of defence, with the very same expressions (:data:`COLLECTOR_PATTERNS`; a test
keeps ``collector/config.yaml`` equal to them). They are therefore written in the syntax
shared by Python's ``re`` and Go's RE2: no look-around, ``[0-9]`` rather than ``\\d``.

The call id (``voice.call.id`` and its copy ``gen_ai.conversation.id``) is never redacted:
it is what links a metric exemplar to the call's trace and logs. docs/security.md says
exactly what each rule catches and misses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status

from voiceobs.semconv import CALL_ID, CONVERSATION_ID

EMAIL_PATTERN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
"""An e-mail address (also the user part of a ``sip:user@host`` URI)."""

CARD_PATTERN = (
    r"\b(?:4[0-9]{3}|5[1-5][0-9]{2}|2[2-7][0-9]{2}|3[0-9]{3}|6[0-9]{3})"
    r"(?:[0-9]{9,15}|(?:[ -][0-9]{4}){3}|[ -][0-9]{6}[ -][0-9]{5})\b"
)
"""A payment card number: an issuer prefix (Visa 4, Mastercard 51-55 and 22-27, Amex,
Diners and JCB 3, Discover and UnionPay 6), then 13-19 digits in all, contiguous, in groups
of four, or grouped 4-6-5 (Amex). Numeric ids and timestamps (``2024…``, ``17…``) do not
have such a prefix. The library also requires a valid Luhn checksum; the Collector cannot."""

PHONE_PATTERNS = (
    # E.164 with its "+": 8-15 digits, any of " .-()" between them.
    r"\+[1-9](?:[ .()-]{0,2}[0-9]){7,14}\b",
    # North American number with separators: 415-555-0100, 1 (415) 555-0100, 1 415.555.0100.
    r"\b(?:1[ .-]?)?(?:\([2-9][0-9]{2}\)[ .-]?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}\b",
    # ... and with its area code in parentheses: (415) 555-0100, (415)555-0100.
    r"\([2-9][0-9]{2}\)[ .-]?[2-9][0-9]{2}[ .-][0-9]{4}\b",
    # National number with its trunk 0 (or 00 and a country code), grouped by spaces or
    # dashes: 07911 123456, 020 7946 0958, 0044 7911 123456.
    r"\b0[0-9]{2,4}[ -][0-9]{3,4}(?:[ -]?[0-9]{2,4}){1,3}\b",
    # Five pairs after a trunk 0: 01 23 45 67 89.
    r"\b0[1-9](?:[ .-][0-9]{2}){4}\b",
)
"""Phone numbers by their shape: a leading ``+``, or the grouping people write. A bare digit
run (``20240611093015``, ``14155550199``) is never taken for a phone number: ids and
timestamps look just like that."""

COLLECTOR_PATTERNS = (EMAIL_PATTERN, CARD_PATTERN, *PHONE_PATTERNS)
"""The Collector's ``redaction`` processor's ``blocked_values``, in this order; its
``transform/redact`` statements use them joined into one alternation (:data:`ANY_PATTERN`)."""

ANY_PATTERN = "|".join(COLLECTOR_PATTERNS)
"""Every built-in rule as one expression."""

NEVER_REDACTED = frozenset({CALL_ID, CONVERSATION_ID})
"""Attribute keys whose values pass unchanged: the call id links metrics, traces and logs."""

_DIGIT = re.compile("[0-9]")

_Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _luhn_ok(number: str) -> bool:
    digits = [int(ch) for ch in number if ch.isdigit()]
    checksum = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        checksum += digit
    return checksum % 10 == 0


def _card(match: re.Match[str]) -> str:
    text = match.group(0)
    return "[REDACTED:card]" if _luhn_ok(text) else text


class Redactor:
    """Replaces phone numbers, e-mail addresses, card numbers and custom patterns in text."""

    def __init__(
        self,
        *,
        phone_numbers: bool = True,
        emails: bool = True,
        card_numbers: bool = True,
        patterns: Iterable[str] = (),
    ) -> None:
        # Each expression is compiled on its own: Python's engine then skips quickly to
        # where one can start, which an alternation of them all would prevent.
        digit_rules: list[_Rule] = []
        if phone_numbers:  # before e-mail, so sip:+14155550100@host is masked as a phone
            digit_rules.extend(
                (re.compile(p, re.ASCII), lambda m: "[REDACTED:phone]") for p in PHONE_PATTERNS
            )
        if card_numbers:
            digit_rules.append((re.compile(CARD_PATTERN, re.ASCII), _card))
        self._digit_rules = digit_rules
        # Needs an "@": checked before running it, as it is slow on long text without one.
        self._email = re.compile(EMAIL_PATTERN, re.ASCII) if emails else None
        self._custom = [re.compile(p) for p in patterns]

    @property
    def active(self) -> bool:
        return bool(self._digit_rules or self._email or self._custom)

    def text(self, value: str) -> str:
        """Return ``value`` with every sensitive match replaced."""
        if self._digit_rules and _DIGIT.search(value):
            for pattern, replace in self._digit_rules:
                value = pattern.sub(replace, value)
        if self._email is not None and "@" in value:
            value = self._email.sub("[REDACTED:email]", value)
        for custom in self._custom:
            value = custom.sub("[REDACTED]", value)
        return value

    def value(self, value: Any) -> Any:
        """Redact a string, or the strings inside a sequence or mapping (an OpenTelemetry
        ``AnyValue``, as a log body can be); other values pass through."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (list, tuple)):
            items = tuple(self.value(v) for v in value)
            return value if items == tuple(value) else items
        if isinstance(value, Mapping):
            return {k: v if k in NEVER_REDACTED else self.value(v) for k, v in value.items()}
        return value

    def attributes(self, attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """A redacted copy of ``attributes``, or None when nothing needed changing. The call
        id keys (:data:`NEVER_REDACTED`) are kept as they are."""
        if not attributes:
            return None
        changed = False
        out: dict[str, Any] = {}
        for key, raw in attributes.items():
            new = raw if key in NEVER_REDACTED else self.value(raw)
            changed = changed or new != raw
            out[key] = new
        return out if changed else None


class RedactingSpanExporter(SpanExporter):
    """Wraps a span exporter, redacting each span's name, attributes, status description,
    events (names and attributes, so recorded exceptions too) and link attributes first."""

    def __init__(self, inner: SpanExporter, redactor: Redactor) -> None:
        self._inner = inner
        self._redactor = redactor

    def _span(self, span: ReadableSpan) -> ReadableSpan:
        text = self._redactor.text
        name = text(span.name)
        attributes = self._redactor.attributes(span.attributes)
        status = span.status
        if status.description:
            description = text(status.description)
            if description != status.description:
                status = Status(status.status_code, description)
        events = tuple(self._event(e) for e in span.events)
        links = tuple(self._link(link) for link in span.links)
        if (
            name == span.name
            and attributes is None
            and status is span.status
            and all(new is old for new, old in zip(events, span.events, strict=True))
            and all(new is old for new, old in zip(links, span.links, strict=True))
        ):
            return span
        return ReadableSpan(
            name=name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes if attributes is not None else span.attributes,
            events=events,
            links=links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def _event(self, event: Event) -> Event:
        name = self._redactor.text(event.name)
        attributes = self._redactor.attributes(event.attributes)
        if attributes is None and name == event.name:
            return event
        return Event(
            name, attributes if attributes is not None else event.attributes, event.timestamp
        )

    def _link(self, link: Link) -> Link:
        attributes = self._redactor.attributes(link.attributes)
        return link if attributes is None else Link(link.context, attributes)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([self._span(s) for s in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class RedactingLogExporter(LogRecordExporter):
    """Wraps a log exporter, redacting each record's body (text, list or map) and its
    attributes (``extra`` fields, exception message and stack trace) first."""

    def __init__(self, inner: LogRecordExporter, redactor: Redactor) -> None:
        self._inner = inner
        self._redactor = redactor

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        for item in batch:
            record = item.log_record
            record.body = self._redactor.value(record.body)
            attributes = self._redactor.attributes(record.attributes)
            if attributes is not None:
                record.attributes = attributes
        return self._inner.export(batch)

    def shutdown(self) -> None:
        self._inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def truncate(value: str, limit: int) -> str:
    """Cut ``value`` to ``limit`` characters, marking the cut."""
    return value if len(value) <= limit else value[: limit - 1] + "…"
