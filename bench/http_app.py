"""The HTTP server under load: ``python -m bench.http_app MODE PORT``.

uvicorn, one worker, a FastAPI app with one trivial route. Modes: ``plain`` (no telemetry),
``voiceobs`` (``setup_instrumentation(app)``, OTLP where ``OTEL_EXPORTER_OTLP_ENDPOINT``
points) and ``stock`` (the stock ``FastAPIInstrumentor`` with the SDK's BatchSpanProcessor and
PeriodicExportingMetricReader exporting OTLP gRPC). Exits on SIGINT/SIGTERM, flushing telemetry
at interpreter exit.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

MODES = ("plain", "voiceobs", "stock")


def build(mode: str) -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    if mode == "voiceobs":
        from voiceobs import setup_instrumentation

        setup_instrumentation(app)
    elif mode == "stock":
        from opentelemetry import metrics, trace
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=5000)
        meter_provider = MeterProvider(metric_readers=[reader])
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
    elif mode != "plain":
        raise SystemExit(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    return app


def main(argv: list[str]) -> None:
    mode, port = argv[0], int(argv[1])
    uvicorn.run(
        build(mode), host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main(sys.argv[1:])
