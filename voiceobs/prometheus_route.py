"""An optional ``/metrics`` route for users who scrape instead of push.

It serves the same metric names as the OTLP path. The Python Prometheus exporter writes no
exemplars, so the metric → trace link needs the OTLP path (see docs/metrics.md).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

METRICS_PATH = "/metrics"


def mount_metrics_route(app: FastAPI, registry: CollectorRegistry) -> None:
    """Serve ``registry`` at ``/metrics`` in Prometheus text format."""

    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(METRICS_PATH, metrics, methods=["GET"], include_in_schema=False)
