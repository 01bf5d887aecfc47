"""The dashboard API and console: answers from Prometheus, Jaeger and Loki, never the process.

``DashboardApi(settings).router`` mounts into an engine; ``create_app`` is the standalone
server that ``voiceobs console`` runs.
"""

from voiceobs.api.router import DashboardApi
from voiceobs.api.server import create_app
from voiceobs.api.settings import ApiSettings

__all__ = ["ApiSettings", "DashboardApi", "create_app"]
