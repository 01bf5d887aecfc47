"""HTTP clients of the three backends the dashboard API answers from.

Prometheus (PromQL), Jaeger (query API) and Loki (LogQL). Nothing is read from the process
itself, so every replica of an engine and every console give the same answers. A backend that
cannot be reached or answers with an error raises :class:`BackendUnavailable` naming it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import httpx


class BackendUnavailable(RuntimeError):
    """A backend did not answer usably; ``backend`` is ``prometheus``, ``jaeger`` or ``loki``."""

    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(f"{backend}: {detail}")
        self.backend = backend
        self.detail = detail


class Backends:
    """One pooled HTTP client for Prometheus, Jaeger and Loki; counts every query it sends."""

    def __init__(self, prometheus: str, jaeger: str, loki: str, *, timeout_s: float = 5.0) -> None:
        self.urls = {"prometheus": prometheus, "jaeger": jaeger, "loki": loki}
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.queries: Counter[str] = Counter()
        """Requests sent per backend since start (the live feed's fan-out is measured by it)."""

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        """The pooled client of the running event loop (a pool cannot cross loops)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(timeout=self._timeout_s)
            self._loop = loop
        return self._client

    async def _get(self, backend: str, path: str, params: dict[str, str] | None = None) -> Any:
        self.queries[backend] += 1
        url = self.urls[backend] + path
        try:
            response = await self.client.get(url, params=params)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(backend, f"{url} unreachable ({type(exc).__name__})") from None
        if response.status_code == 404 and backend == "jaeger":
            return None
        if response.status_code != 200:
            raise BackendUnavailable(
                backend, f"{url} answered HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            return response.json()
        except json.JSONDecodeError:
            raise BackendUnavailable(backend, f"{url} answered no JSON") from None

    async def ready(self, backend: str) -> bool:
        path = {"prometheus": "/-/ready", "jaeger": "/api/services", "loki": "/ready"}[backend]
        self.queries[backend] += 1
        try:
            response = await self.client.get(self.urls[backend] + path)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    # Prometheus ---------------------------------------------------------------------------

    async def instant(self, query: str, at: float) -> list[dict[str, Any]]:
        """An instant PromQL query's result vector as of ``at`` (Unix seconds). A report
        evaluates all its queries at one instant, so its figures agree with each other."""
        params = {"query": query, "time": f"{at:.3f}"}
        body = await self._get("prometheus", "/api/v1/query", params)
        return list(body["data"]["result"])

    async def range(
        self, query: str, start: float, end: float, step_s: int
    ) -> list[dict[str, Any]]:
        """A PromQL range query's matrix."""
        params = {
            "query": query,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{step_s}s",
        }
        body = await self._get("prometheus", "/api/v1/query_range", params)
        return list(body["data"]["result"])

    async def exemplars(self, query: str, start: float, end: float) -> list[dict[str, Any]]:
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        body = await self._get("prometheus", "/api/v1/query_exemplars", params)
        return list(body.get("data") or [])

    # Jaeger -------------------------------------------------------------------------------

    async def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One trace in Jaeger's JSON form, or None when Jaeger does not hold it."""
        body = await self._get("jaeger", f"/api/traces/{trace_id}")
        traces = (body or {}).get("data") or []
        return dict(traces[0]) if traces else None

    async def find_traces(
        self,
        service: str,
        *,
        operation: str | None,
        tags: dict[str, str],
        start: float,
        end: float,
        limit: int,
    ) -> list[dict[str, Any]]:
        params = {
            "service": service,
            "tags": json.dumps(tags),
            "start": str(int(start * 1e6)),
            "end": str(int(end * 1e6)),
            "limit": str(limit),
        }
        if operation:
            params["operation"] = operation
        body = await self._get("jaeger", "/api/traces", params)
        return list((body or {}).get("data") or [])

    # Loki ---------------------------------------------------------------------------------

    async def logs(
        self, query: str, *, start: float, end: float | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        params = {
            "query": query,
            "start": str(int(start * 1e9)),
            "end": str(int((end or time.time() + 60) * 1e9)),
            "limit": str(limit),
            "direction": "forward",
        }
        body = await self._get("loki", "/loki/api/v1/query_range", params)
        return list(body["data"]["result"])
