"""The dashboard API's contract without backends: OpenAPI schemas, 422 naming the field, 503
naming the backend that is down (the backends' addresses are ports nothing listens on), and
the console page served by the same router."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api_support import VIEWER_KEY, bearer, settings
from voiceobs.api import create_app
from voiceobs.api.queries import Scope, window_seconds

ENDPOINTS = (
    "/api/dashboard/metrics",
    "/api/dashboard/health",
    "/api/dashboard/metrics/health",
    "/api/dashboard/call-volume",
    "/api/dashboard/recent-activity",
    "/api/dashboard/metrics/latency",
    "/api/dashboard/metrics/cost",
    "/api/dashboard/metrics/calls",
    "/api/dashboard/slowest-turns",
    "/api/dashboard/calls/{call_id}",
    "/api/dashboard/traces/{trace_id}",
)


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    with TestClient(create_app(settings(tmp_path))) as client:
        client.headers.update(bearer(VIEWER_KEY))
        yield client


def test_openapi_lists_both_seeds_endpoints_with_json_schemas(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in ENDPOINTS:
        operation = schema["paths"][path]["get"]
        body = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert "$ref" in body, path
        assert operation["responses"]["503"]["content"]["application/json"]["schema"]
    components = schema["components"]["schemas"]
    assert components["CallDetail"]["properties"]["turns"]["items"]["$ref"].endswith("/Turn")
    assert {"p50", "p95", "p99"} <= set(components["Percentiles"]["properties"])


@pytest.mark.parametrize(
    ("path", "field", "says"),
    [
        ("/api/dashboard/metrics/latency?window=5x", "window", "String should match pattern"),
        ("/api/dashboard/metrics/latency?window=5s", "window", "between 10s and 90d"),
        ("/api/dashboard/metrics/cost?window=1000d", "window", "between 10s and 90d"),
        ("/api/dashboard/call-volume?hours=0", "hours", "greater than or equal to 1"),
        ("/api/dashboard/call-volume?hours=200", "hours", "less than or equal to 168"),
        ("/api/dashboard/metrics?tenant=a%20b", "tenant", "String should match pattern"),
        ("/api/dashboard/calls/a%20call", "call_id", "String should match pattern"),
        ("/api/dashboard/traces/not-hex", "trace_id", "String should match pattern"),
        ("/api/dashboard/recent-activity?limit=0", "limit", "greater than or equal to 1"),
    ],
)
def test_bad_input_gets_422_naming_the_field(
    client: TestClient, path: str, field: str, says: str
) -> None:
    response = client.get(path)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert errors[0]["loc"][-1] == field
    assert says in errors[0]["msg"]


@pytest.mark.parametrize(
    ("path", "backend"),
    [
        ("/api/dashboard/metrics", "prometheus"),
        ("/api/dashboard/metrics/latency", "prometheus"),
        ("/api/dashboard/metrics/cost", "prometheus"),
        ("/api/dashboard/metrics/calls", "prometheus"),
        ("/api/dashboard/call-volume", "prometheus"),
        ("/api/dashboard/slowest-turns", "prometheus"),
        ("/api/dashboard/recent-activity", "jaeger"),
        ("/api/dashboard/calls/demo-1", "jaeger"),
        ("/api/dashboard/traces/0123456789abcdef0123456789abcdef", "jaeger"),
    ],
)
def test_backend_down_gets_503_naming_it(client: TestClient, path: str, backend: str) -> None:
    response = client.get(path)
    assert response.status_code == 503
    assert response.json()["detail"].startswith(f"{backend} unavailable: http://127.0.0.1:")


def test_health_reports_each_backend_down_instead_of_failing(client: TestClient) -> None:
    body = client.get("/api/dashboard/health").json()
    assert body["status"] == "degraded"
    assert body["backends"] == {"prometheus": False, "jaeger": False, "loki": False}
    assert "prometheus: not ready" in body["missing"]


def test_console_page_and_its_files_are_served_without_third_party_code(
    client: TestClient,
) -> None:
    page = client.get("/console/")
    assert page.status_code == 200
    assert '<script src="/console/console.js"' in page.text
    script = client.get("/console/console.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "http://" not in page.text and "https://" not in page.text  # works offline
    assert "http://" not in script.text and "https://" not in script.text
    assert client.get("/console/secrets.txt").status_code == 404


def test_every_prometheus_selector_carries_the_scope_s_tenant() -> None:
    assert Scope("svc", None).sel("m") == 'm{job="svc"}'
    assert Scope("svc", "acme").sel("m", 'status="failed"') == (
        'm{job="svc",tenant="acme",status="failed"}'
    )
    assert Scope("svc", "acme").sel("m", tenant_label=False) == 'm{job="svc"}'
    assert Scope("s", 'a\\"b').sel("m") == 'm{job="s",tenant="a\\\\\\"b"}'
    assert Scope("svc", "acme").jaeger_tags(**{"voice.call.id": "c"}) == {
        "voice.call.id": "c",
        "voice.tenant": "acme",
    }


def test_windows_are_bounded() -> None:
    assert window_seconds("5m") == 300 and window_seconds("90d") == 90 * 86400
    for bad in ("0s", "5", "5w", "9s", "91d", "1h30m"):
        with pytest.raises(ValueError):
            window_seconds(bad)
