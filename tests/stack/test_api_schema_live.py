"""schemathesis against the dashboard API's OpenAPI schema, served from the live stack after a
demo run: whatever the generated input, no answer is a 5xx, and every 200 matches its schema."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from stack.settings import StackSettings, load
from tests.stack.api_support import ADMIN_KEY, DEMO_ARGS, api_settings, wait_for_data
from tests.stack.test_e2e_demo import DemoRun, run_demo
from voiceobs.api import create_app

pytestmark = pytest.mark.stack


SERVICE = f"voiceobs-api-schema-{uuid.uuid4().hex[:6]}"
APP = create_app(api_settings(load(), SERVICE))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def demo_run(stack: StackSettings, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The run every generated request reads (the app above watches its service name)."""
    run = run_demo(stack, SERVICE, tmp_path_factory.mktemp("schema") / "calls.json", *DEMO_ARGS)
    with TestClient(APP) as client:
        wait_for_data(client, stack, run)
    return run


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_input_gets_a_server_error(case: Any) -> None:
    response = case.call(headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert response.status_code < 500, (case.path, case.query, response.text[:300])
    if response.status_code == 200:
        case.validate_response(response)
