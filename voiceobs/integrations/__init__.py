"""Adapters that turn a voice framework's own events into the voice API.

- :mod:`voiceobs.integrations.pipecat`: an observer for a Pipecat pipeline
  (``pip install 'voiceobs[pipecat]'``).
- :mod:`voiceobs.integrations.livekit`: attached to a LiveKit Agents ``AgentSession``
  (``pip install 'voiceobs[livekit]'``).

Each module imports its framework, so import the one you use; docs/integrations.md says what
each maps.
"""
