"""Python ``logging`` → OpenTelemetry logs, with trace id, span id and ``voice.call.id``.

A lean replacement for the SDK's deprecated ``LoggingHandler``: it copies the message, level,
logger name, exception and ``extra`` fields, adds the call id of the active voice scope,
and leaves redaction to the exporter's background thread.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from opentelemetry._logs import Logger, LoggerProvider, SeverityNumber
from opentelemetry.context import get_current

from voiceobs.semconv import CALL_ID
from voiceobs.voice import current_call_id

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

_SEVERITY = {
    logging.DEBUG: (SeverityNumber.DEBUG, "DEBUG"),
    logging.INFO: (SeverityNumber.INFO, "INFO"),
    logging.WARNING: (SeverityNumber.WARN, "WARN"),
    logging.ERROR: (SeverityNumber.ERROR, "ERROR"),
    logging.CRITICAL: (SeverityNumber.FATAL, "FATAL"),
}

_IGNORED_PREFIXES = ("opentelemetry", "voiceobs.export")
"""Loggers whose records are never exported, so a failing exporter cannot feed itself."""


def _severity(levelno: int) -> tuple[SeverityNumber, str]:
    found = _SEVERITY.get(levelno)
    if found is not None:
        return found
    below = [level for level in _SEVERITY if level <= levelno]
    return _SEVERITY[max(below)] if below else (SeverityNumber.TRACE, "TRACE")


class OtlpLogHandler(logging.Handler):
    """A ``logging.Handler`` that emits each record as an OpenTelemetry log record."""

    def __init__(self, provider: LoggerProvider, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._provider = provider
        self._loggers: dict[str, Logger] = {}

    def _logger(self, name: str) -> Logger:
        logger = self._loggers.get(name)
        if logger is None:
            logger = self._loggers[name] = self._provider.get_logger(name)
        return logger

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_IGNORED_PREFIXES):
            return
        try:
            attributes: dict[str, Any] = {
                k: v if isinstance(v, (str, bool, int, float)) else str(v)
                for k, v in vars(record).items()
                if k not in _STANDARD and v is not None
            }
            ctx = get_current()
            call_id = current_call_id(ctx)
            if call_id is not None:
                attributes[CALL_ID] = call_id
            if record.exc_info and record.exc_info[0] is not None:
                exc_type, exc, _ = record.exc_info
                attributes["exception.type"] = exc_type.__name__
                attributes["exception.message"] = str(exc)
                attributes["exception.stacktrace"] = "".join(
                    traceback.format_exception(*record.exc_info)
                )
            severity, text = _severity(record.levelno)
            self._logger(record.name).emit(
                timestamp=int(record.created * 1e9),
                context=ctx,
                severity_number=severity,
                severity_text=text,
                body=record.getMessage(),
                attributes=attributes,
            )
        except Exception:  # a log line must never break the engine
            self.handleError(record)
