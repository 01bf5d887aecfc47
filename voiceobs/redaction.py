"""PII redaction of span attributes, span events and log records before export.

Redaction runs in the exporters' background threads (it wraps the real exporters), so the
engine's thread never pays for the regular expressions. The Collector redacts again as a
second line of defence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# 13-19 digits, optionally grouped by spaces or dashes: checked with Luhn below.
_CARD = re.compile(r"(?<![\w])(?:\d[ -]?){12,18}\d(?![\w])")
# International or national phone numbers: optional +cc, optional (area), 2-4 digit groups.
_PHONE = re.compile(
    r"(?<![\w.:/-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,5}(?:[\s.-]?\d{2,5}){1,4}(?![\w.:/-])"
)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SIP_USER = re.compile(r"(?<=sip:)\+?\d{6,15}(?=@)")


def _digits(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


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
        rules: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = []
        if phone_numbers:  # before e-mail: a SIP URI looks like an address
            rules.append((_SIP_USER, lambda m: "[REDACTED:phone]"))
        if emails:
            rules.append((_EMAIL, lambda m: "[REDACTED:email]"))
        if card_numbers:
            rules.append((_CARD, self._card))
        if phone_numbers:
            rules.append((_PHONE, self._phone))
        rules.extend((re.compile(p), lambda m: "[REDACTED]") for p in patterns)
        self._rules = rules
        self._needs_digits = not patterns and not emails

    @property
    def active(self) -> bool:
        return bool(self._rules)

    @staticmethod
    def _card(match: re.Match[str]) -> str:
        text = match.group(0)
        return "[REDACTED:card]" if _luhn_ok(text) else text

    @staticmethod
    def _phone(match: re.Match[str]) -> str:
        text = match.group(0)
        if not 7 <= _digits(text) <= 15 or _ISO_DATE.fullmatch(text):
            return text
        return "[REDACTED:phone]"

    def text(self, value: str) -> str:
        """Return ``value`` with every sensitive match replaced."""
        if self._needs_digits and not any(ch.isdigit() for ch in value):
            return value
        for pattern, replace in self._rules:
            value = pattern.sub(replace, value)
        return value

    def value(self, value: Any) -> Any:
        """Redact a string, or the strings in a sequence; other values pass through."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (list, tuple)) and any(isinstance(v, str) for v in value):
            return tuple(self.text(v) if isinstance(v, str) else v for v in value)
        return value

    def attributes(self, attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """A redacted copy of ``attributes``, or None when nothing needed changing."""
        if not attributes:
            return None
        changed = False
        out: dict[str, Any] = {}
        for key, raw in attributes.items():
            new = self.value(raw)
            changed = changed or new != raw
            out[key] = new
        return out if changed else None


class RedactingSpanExporter(SpanExporter):
    """Wraps a span exporter, redacting attribute and event values of each span first."""

    def __init__(self, inner: SpanExporter, redactor: Redactor) -> None:
        self._inner = inner
        self._redactor = redactor

    def _span(self, span: ReadableSpan) -> ReadableSpan:
        attributes = self._redactor.attributes(span.attributes)
        events = [self._event(e) for e in span.events]
        if attributes is None and all(
            new is old for new, old in zip(events, span.events, strict=True)
        ):
            return span
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes if attributes is not None else span.attributes,
            events=events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def _event(self, event: Event) -> Event:
        attributes = self._redactor.attributes(event.attributes)
        if attributes is None:
            return event
        return Event(event.name, attributes, event.timestamp)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([self._span(s) for s in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class RedactingLogExporter(LogRecordExporter):
    """Wraps a log exporter, redacting each record's body and string attributes first."""

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
