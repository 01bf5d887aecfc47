"""voiceobs: OpenTelemetry-first observability for real-time voice AI engines.

::

    from voiceobs import setup_instrumentation

    obs = setup_instrumentation(app)            # traces, metrics, logs over OTLP
    with obs.call("call-42", tenant="acme", pipeline="support") as call:
        with call.turn() as turn:
            turn.user_speech_ended()
            ...
            turn.agent_audio_started()
    obs.shutdown()
"""

from voiceobs.adapters import EventAdapter, EventResult
from voiceobs.cost import RateCard, RateCardError
from voiceobs.settings import SettingsError, VoiceobsSettings
from voiceobs.setup import Exporters, Instrumentation, get_instrumentation, setup_instrumentation
from voiceobs.voice import Call, JitterBuffer, Stage, Turn, current_call_id

__all__ = [
    "Call",
    "EventAdapter",
    "EventResult",
    "Exporters",
    "Instrumentation",
    "JitterBuffer",
    "RateCard",
    "RateCardError",
    "SettingsError",
    "Stage",
    "Turn",
    "VoiceobsSettings",
    "current_call_id",
    "get_instrumentation",
    "setup_instrumentation",
]
__version__ = "0.1.0"
