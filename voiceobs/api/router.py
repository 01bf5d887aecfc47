"""``voiceobs.api``'s router: the dashboard API, its live feed and the console page.

Mount it in an engine (``app.include_router(DashboardApi(settings).router)``) or serve it
alone with ``voiceobs console``. Paths follow the seeds: ``/api/dashboard/...``.
"""

import asyncio
import contextlib
from collections.abc import Awaitable
from importlib import resources
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response

from voiceobs.api import dashboard
from voiceobs.api import models as m
from voiceobs.api.auth import AuditLog, Authenticator, AuthError, Principal, RateLimiter
from voiceobs.api.backends import Backends, BackendUnavailable
from voiceobs.api.feed import Feed
from voiceobs.api.queries import (
    CALL_ID_PATTERN,
    TENANT_PATTERN,
    TRACE_ID_PATTERN,
    WINDOW_PATTERN,
    Scope,
    window_seconds,
)
from voiceobs.api.settings import ApiSettings

T = TypeVar("T")
PREFIX = "/api/dashboard"
CONSOLE_FILES = {"console.js": "text/javascript", "console.css": "text/css"}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": m.Problem, "description": "no or unknown credential"},
    403: {"model": m.Problem, "description": "role or tenant scope does not allow it"},
    429: {"model": m.Problem, "description": "rate limit of this credential reached"},
    503: {"model": m.Problem, "description": "a backend is down; `backend` names it"},
}

TenantQuery = Annotated[
    str | None,
    Query(pattern=TENANT_PATTERN, description="tenant label; a scoped credential's own by default"),
]
WindowQuery = Annotated[
    str, Query(pattern=WINDOW_PATTERN, description="PromQL duration, 10s … 90d, e.g. 5m, 1h, 30d")
]


def _checked_window(window: str) -> int:
    try:
        return window_seconds(window)
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ("query", "window"), "msg": f"window: must be {exc}", "type": "value_error",
              "input": window}]
        ) from None  # fmt: skip


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


class DashboardApi:
    """The router and what it shares: backend clients, authenticator, feed, audit log."""

    def __init__(self, settings: ApiSettings | None = None) -> None:
        self.settings = settings or ApiSettings()
        self.backends = Backends(
            self.settings.prometheus_url,
            self.settings.jaeger_url,
            self.settings.loki_url,
            timeout_s=self.settings.backend_timeout_s,
        )
        self.auth = Authenticator(self.settings)
        self.limiter = RateLimiter(self.settings.rate_limit_per_minute)
        self.audit = AuditLog(self.settings.audit_log)
        self.feed = Feed(self._poll, self.settings.feed_interval_s, self.settings.feed_client_queue)
        self.router = self._build()

    async def aclose(self) -> None:
        await self.backends.aclose()

    def _principal(self, credential: str | None) -> Principal:
        try:
            principal = self.auth.authenticate(credential)
        except AuthError as exc:
            raise HTTPException(exc.status, exc.detail) from None
        if not self.limiter.allow(principal.name):
            raise HTTPException(
                429,
                f"rate limit: {self.settings.rate_limit_per_minute} requests a minute per "
                "credential",
                headers={"Retry-After": "1"},
            )
        return principal

    def _scope(self, principal: Principal, tenant: str | None) -> Scope:
        try:
            return Scope(self.settings.service, principal.scope(tenant))
        except AuthError as exc:
            raise HTTPException(exc.status, exc.detail) from None

    async def _poll(self, scope: Scope) -> dict[str, Any]:
        return (await dashboard.overview(self.backends, scope)).model_dump(mode="json")

    @staticmethod
    async def _answer(coroutine: Awaitable[T]) -> T:
        try:
            return await coroutine
        except BackendUnavailable as exc:
            raise HTTPException(503, f"{exc.backend} unavailable: {exc.detail}") from None

    def _build(self) -> APIRouter:
        api = self
        router = APIRouter()
        dash = APIRouter(prefix=PREFIX, tags=["dashboard"], responses=ERRORS)

        def principal(request: Request) -> Principal:
            header = request.headers.get("authorization")
            return api._principal(_bearer(header) or request.headers.get("x-api-key"))

        Caller = Annotated[Principal, Depends(principal)]

        def admin(caller: Caller) -> Principal:
            if caller.role != "admin":
                raise HTTPException(403, "role: this action needs an admin credential")
            return caller

        Admin = Annotated[Principal, Depends(admin)]

        @dash.get("/metrics", response_model=m.DashboardMetrics, summary="Live overview")
        async def metrics(caller: Caller, tenant: TenantQuery = None) -> m.DashboardMetrics:
            """Calls active, call rate, success and error rate, turn latency P50/P95/P99 in
            total and per pipeline, cost per minute: the last 5 minutes."""
            return await api._answer(dashboard.overview(api.backends, api._scope(caller, tenant)))

        @dash.get("/health", response_model=m.HealthReport, summary="Backends, workers, providers")
        async def health(caller: Caller, tenant: TenantQuery = None) -> m.HealthReport:
            return await dashboard.health(api.backends, api._scope(caller, tenant))

        @dash.get("/metrics/health", response_model=m.HealthReport, summary="Same as /health")
        async def metrics_health(caller: Caller, tenant: TenantQuery = None) -> m.HealthReport:
            return await dashboard.health(api.backends, api._scope(caller, tenant))

        @dash.get("/call-volume", response_model=m.CallVolume, summary="Calls over time")
        async def call_volume(
            caller: Caller,
            hours: Annotated[int, Query(ge=1, le=168, description="1 … 168")] = 24,
            tenant: TenantQuery = None,
        ) -> m.CallVolume:
            scope = api._scope(caller, tenant)
            return await api._answer(dashboard.call_volume(api.backends, scope, hours))

        @dash.get("/recent-activity", response_model=m.RecentActivity, summary="Latest calls")
        async def recent_activity(
            caller: Caller,
            hours: Annotated[int, Query(ge=1, le=168)] = 1,
            limit: Annotated[int, Query(ge=1, le=200)] = 20,
            tenant: TenantQuery = None,
        ) -> m.RecentActivity:
            scope = api._scope(caller, tenant)
            return await api._answer(dashboard.recent_activity(api.backends, scope, hours, limit))

        @dash.get("/metrics/latency", response_model=m.LatencyReport, summary="P50/P95/P99")
        async def latency(
            caller: Caller, window: WindowQuery = "5m", tenant: TenantQuery = None
        ) -> m.LatencyReport:
            """Turn latency and its parts (EOU, STT, LLM TTFT, TTS TTFB) per pipeline."""
            _checked_window(window)
            scope = api._scope(caller, tenant)
            return await api._answer(dashboard.latency(api.backends, scope, window))

        @dash.get("/metrics/cost", response_model=m.CostReport, summary="Cost")
        async def cost(
            caller: Caller,
            window: WindowQuery = "30d",
            months: Annotated[int, Query(ge=1, le=12)] = 3,
            tenant: TenantQuery = None,
        ) -> m.CostReport:
            """Spend per tenant, component and provider; per call and call-minute; per month."""
            _checked_window(window)
            scope = api._scope(caller, tenant)
            return await api._answer(dashboard.cost(api.backends, scope, window, months))

        @dash.get("/metrics/calls", response_model=m.CallsReport, summary="Calls and failures")
        async def calls(
            caller: Caller, window: WindowQuery = "1h", tenant: TenantQuery = None
        ) -> m.CallsReport:
            _checked_window(window)
            scope = api._scope(caller, tenant)
            return await api._answer(dashboard.calls(api.backends, scope, window))

        @dash.get("/slowest-turns", response_model=m.SlowestTurns, summary="From exemplars")
        async def slowest_turns(
            caller: Caller,
            window: WindowQuery = "15m",
            limit: Annotated[int, Query(ge=1, le=100)] = 10,
            tenant: TenantQuery = None,
        ) -> m.SlowestTurns:
            seconds = _checked_window(window)
            scope = api._scope(caller, tenant)
            return await api._answer(
                dashboard.slowest_turns(api.backends, scope, window, seconds, limit)
            )

        @dash.get("/calls/{call_id}", response_model=m.CallDetail, summary="One call")
        async def call(
            caller: Caller,
            call_id: Annotated[str, Path(pattern=CALL_ID_PATTERN)],
            tenant: TenantQuery = None,
        ) -> m.CallDetail:
            """Its turns (STT/LLM/TTS, EOU, TTFT, TTFB) from its trace, its logs, cost, status."""
            scope = api._scope(caller, tenant)
            detail = await api._answer(dashboard.call_detail(api.backends, scope, call_id))
            if detail is None:
                raise HTTPException(404, f"call_id: no call {call_id!r} in Jaeger for this scope")
            return detail

        @dash.get("/traces/{trace_id}", response_model=m.TraceView, summary="One trace")
        async def trace(
            caller: Caller,
            trace_id: Annotated[str, Path(pattern=TRACE_ID_PATTERN)],
            tenant: TenantQuery = None,
        ) -> m.TraceView:
            scope = api._scope(caller, tenant)
            view = await api._answer(dashboard.trace_view(api.backends, scope, trace_id))
            if view is None:
                raise HTTPException(404, f"trace_id: no trace {trace_id} in Jaeger for this scope")
            return view

        @dash.post(
            "/admin/credentials/reload",
            response_model=m.CredentialsReloaded,
            summary="Re-read API keys and JWT keys (admin)",
        )
        async def reload_credentials(caller: Admin) -> m.CredentialsReloaded:
            try:
                keys, jwt_configured = api.auth.reload()
            except ValueError as exc:
                api.audit.record(caller, "credentials.reload", f"refused: {exc}")
                raise HTTPException(422, str(exc)) from None
            api.audit.record(caller, "credentials.reload", f"{keys} API keys, jwt={jwt_configured}")
            return m.CredentialsReloaded(api_keys=keys, jwt=jwt_configured)

        @dash.get("/admin/audit", response_model=list[m.AuditEntry], summary="Audit log (admin)")
        async def audit(
            caller: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100
        ) -> list[m.AuditEntry]:
            api.audit.record(caller, "audit.read", f"limit={limit}")
            return [m.AuditEntry.model_validate(e) for e in api.audit.entries(limit)]

        @dash.websocket("/ws/real-time")
        async def real_time(websocket: WebSocket, tenant: TenantQuery = None) -> None:
            """The live overview every ``feed_interval_s``; token in ``?token=`` or header."""
            credential = websocket.query_params.get("token") or _bearer(
                websocket.headers.get("authorization")
            )
            try:
                caller = api._principal(credential)
                scope = api._scope(caller, tenant)
            except HTTPException as exc:
                await websocket.close(code=1008, reason=str(exc.detail)[:120])
                return
            await websocket.accept()
            reason = await api.feed.serve(scope, websocket.send_json)
            if reason.startswith("dropped"):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(websocket.close(code=1013, reason=reason[:120]), 1.0)

        router.include_router(dash)

        @router.get("/console", include_in_schema=False)
        @router.get("/console/", include_in_schema=False)
        async def console_page() -> HTMLResponse:
            return HTMLResponse(_static("console.html"))

        @router.get("/console/{name}", include_in_schema=False)
        async def console_file(name: str) -> Response:
            if name not in CONSOLE_FILES:
                raise HTTPException(404, f"name: no console file {name!r}")
            return Response(_static(name), media_type=CONSOLE_FILES[name])

        return router


def _static(name: str) -> str:
    return resources.files("voiceobs.api").joinpath("static", name).read_text()
