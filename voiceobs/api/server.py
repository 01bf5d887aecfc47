"""The standalone console server (``voiceobs console``): the router in its own FastAPI app.

Secure by default: it binds to loopback, refuses to start with auth off on any other address,
refuses to start with auth on but no credential configured, and sends no CORS headers unless
origins are listed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse

from voiceobs.api.router import DashboardApi
from voiceobs.api.settings import ApiSettings, is_loopback


class ConsoleConfigError(ValueError):
    """The console cannot start as configured; the message says which setting and why."""


def check_bind(settings: ApiSettings, api: DashboardApi) -> None:
    """Refuse the unsafe combinations before anything listens."""
    if settings.auth == "off" and not is_loopback(settings.host):
        raise ConsoleConfigError(
            f"host {settings.host} (VOICEOBS_API_HOST, --host): with auth off the console "
            "binds to loopback only (127.0.0.1, ::1); configure API keys or JWT keys to serve "
            "other hosts"
        )
    if settings.auth == "on" and not api.auth.configured:
        raise ConsoleConfigError(
            "no credential configured: set VOICEOBS_API_API_KEYS_FILE (lines 'key role "
            "[tenant]') or VOICEOBS_API_JWT_SECRET_FILE / VOICEOBS_API_JWT_PUBLIC_KEY_FILE, "
            "or run with auth off on loopback (voiceobs console --no-auth)"
        )


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """A FastAPI app serving the dashboard API at /api/dashboard and the console at /console/."""
    settings = settings or ApiSettings()
    api = DashboardApi(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await api.aclose()

    app = FastAPI(
        title="voiceobs dashboard API",
        summary="Live voice-call figures, calls, traces and logs from Prometheus, Jaeger, Loki",
        lifespan=lifespan,
    )
    app.state.dashboard = api
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key"],
        )
    app.include_router(api.router)

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/console/")

    return app


def serve(settings: ApiSettings) -> None:
    """Run the console server until interrupted."""
    import uvicorn

    app = create_app(settings)
    check_bind(settings, app.state.dashboard)
    print(f"voiceobs console: http://{settings.host}:{settings.port}/console/", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
