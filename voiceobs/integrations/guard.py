"""What every framework adapter shares: a failure in the adapter never reaches the engine.

A framework calls the adapter from its own event loop; an exception there would break the
framework's observer queue or event emitter. :class:`Guard` catches it, counts it in
``voiceobs_telemetry_dropped_total{signal=<framework>, reason="internal_error"}`` and logs it
once, so a bug in the mapping costs telemetry, never the call.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voiceobs.transport import Transport

_log = logging.getLogger("voiceobs.integrations")

_SERVICE_SUFFIX = re.compile(r"(Realtime)?(LLM|STT|TTS|S2S)?(Service|Plugin)?$")


class Guard:
    """Counts and logs (once) the adapter's own failures for one framework."""

    __slots__ = ("_logged", "_signal", "_transport")

    def __init__(self, transport: Transport, signal: str) -> None:
        self._transport = transport
        self._signal = signal
        self._logged = False

    def dropped(self, reason: str) -> None:
        """Count an event the adapter had to leave out (``reason`` names why)."""
        self._transport.count_dropped(self._signal, reason)

    def failed(self, what: str) -> None:
        """Call from an ``except Exception`` block: the event ``what`` was not mapped."""
        self._transport.count_dropped(self._signal, "internal_error")
        if not self._logged:
            self._logged = True
            _log.exception(
                "voiceobs: the %s adapter failed on %s; its telemetry is dropped and counted "
                "in voiceobs_telemetry_dropped_total{signal=%r} (further failures are counted, "
                "not logged)",
                self._signal,
                what,
                self._signal,
            )


def provider_of(component: object, framework_package: str) -> str:
    """A service's provider: its own ``provider`` attribute when it names one (LiveKit's
    components do; a wrapper service of your own may), else the package under
    ``<framework>.services`` or ``plugins`` it comes from (``pipecat.services.openai.llm`` →
    ``openai``), else its class name without the usual suffixes (``DeepgramSTTService`` →
    ``deepgram``)."""
    named = getattr(component, "provider", None)
    if isinstance(named, str) and named and named != "unknown":
        return named
    cls = type(component)
    parts = cls.__module__.split(".")
    if len(parts) > 2 and parts[0] == framework_package and parts[1] in ("services", "plugins"):
        return parts[2]
    name = _SERVICE_SUFFIX.sub("", cls.__name__) or cls.__name__
    return name.lower()
