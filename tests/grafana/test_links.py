"""The correlation links, filled in the way Grafana fills them (tests/grafana/grafana_links.py),
checked without a backend: which span gets which link, and that every link carries the
service and the time range. tests/stack/test_e2e_demo.py runs the same links against Loki.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.grafana.dashboard_queries import iter_dashboards
from tests.grafana.grafana_links import (
    REPO,
    SpanRow,
    call_logs_link,
    interpolate,
    interval_ms,
    provisioned,
    span_logs_link,
)
from voiceobs import semconv

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
VOICE_SPAN = SpanRow(
    trace_id=TRACE_ID,
    span_id="00f067aa0ba902b7",
    operation="voice.turn",
    service="voice-engine",
    service_tags={"service.namespace": "prod", "service.instance.id": "w1"},
    tags={semconv.CALL_ID: "call-42", "voice.turn.number": 3},
    start_ms=1_700_000_000_123.456,
    duration_ms=812.5,
)
HTTP_SPAN = SpanRow(
    trace_id="0af7651916cd43dd8448eb211c80319c",
    span_id="b7ad6b7169203331",
    operation="POST /v1/calls/{call_id}/turns",
    service="voice-engine",
    service_tags={"service.namespace": "prod"},
    tags={"http.request.method": "POST", "http.response.status_code": 200},
    start_ms=1_700_000_000_000.0,
    duration_ms=0.4,
)


@pytest.mark.parametrize("uid", ["jaeger", "tempo"])
def test_every_span_links_to_its_own_service_and_trace_logs(uid: str) -> None:
    source = provisioned(uid)
    for row in (VOICE_SPAN, HTTP_SPAN):
        link = span_logs_link(source, row)
        assert link is not None, f"{uid}: no span link on {row.operation}"
        assert link.expr == f'{{service_name="{row.service}"}} | trace_id="{row.trace_id}"'
        assert (link.start_ms, link.end_ms) == row.time_range_ms()
        assert link.end_ms > link.start_ms


@pytest.mark.parametrize("uid", ["jaeger", "tempo"])
def test_the_whole_call_link_exists_only_where_the_call_id_does(uid: str) -> None:
    source = provisioned(uid)
    link = call_logs_link(source, VOICE_SPAN, "voice-engine: voice.call", 30_000.0)
    assert link is not None
    assert link.expr.endswith('| voice_call_id="call-42"')
    options = source["jsonData"]["tracesToLogsV2"]
    start, end = VOICE_SPAN.time_range_ms(
        interval_ms(options["spanStartTimeShift"]), interval_ms(options["spanEndTimeShift"])
    )
    assert (link.start_ms, link.end_ms) == (start, end)
    assert call_logs_link(source, HTTP_SPAN, "voice-engine: POST", 1.0) is None


def test_interpolation_follows_grafanas_all_variables_defined_rule() -> None:
    scoped: dict[str, Any] = {"__span": {"tags": {"a.b": "x"}}, "traceID": "t"}
    assert interpolate('${__span.tags["a.b"]}/${traceID}/$traceID', scoped) == "x/t/t"
    assert interpolate('${__span.tags["missing"]}', scoped) is None
    assert interpolate("${nothing}", scoped) is None


def test_jaeger_has_no_tempo_only_settings_and_nothing_hard_codes_the_jaeger_ui() -> None:
    jaeger = provisioned("jaeger")["jsonData"]
    assert "traceQuery" not in jaeger  # a Tempo setting; the Jaeger plugin ignores it
    assert "serviceMap" not in provisioned("tempo")["jsonData"]  # needs Tempo's generator
    for path in [*(REPO / "grafana").rglob("*.json"), *(REPO / "grafana").rglob("*.yaml")]:
        assert not re.search(r"localhost:16686|127\.0\.0\.1:16686", path.read_text()), path


def test_exemplar_and_log_line_call_links_carry_service_and_time_range() -> None:
    prometheus = provisioned("prometheus")["jsonData"]
    (call,) = [d for d in prometheus["exemplarTraceIdDestinations"] if d["name"] == "voice_call_id"]
    assert "var-call_id=${__value.raw}" in call["url"]
    assert "var-service=${__data.fields.job}" in call["url"]
    assert "${__url_time_range}" in call["url"]
    derived = {d["name"]: d for d in provisioned("loki")["jsonData"]["derivedFields"]}
    url = derived["Call"]["url"]
    assert "var-service=${service_name}" in url and "${__url_time_range}" in url
    # ${service_name} is the row's own field: a derived field reading the stream label.
    assert re.fullmatch(derived["service_name"]["matcherRegex"], "service_name")
    assert not re.fullmatch(derived["service_name"]["matcherRegex"], "service_namespace")


def _variables(uid: str) -> dict[str, dict[str, Any]]:
    (dashboard,) = [d for d in iter_dashboards() if d["uid"] == uid]
    return {v["name"]: v for v in dashboard["templating"]["list"]}


@pytest.mark.parametrize("job", ["voice-engine", "prod/voice-engine", "a/b/voice-engine"])
def test_one_service_identity_holds_in_prometheus_loki_and_jaeger(job: str) -> None:
    variables = _variables("voiceobs-call-explorer")
    service_name = variables["service_name"]
    # Grafana applies the variable's regex to each job and keeps the first capture group.
    pattern = service_name["regex"].strip("/").replace("\\/", "/")
    match = re.search(pattern, job)
    assert match and match.group(1) == "voice-engine"
    assert service_name["hide"] == 2 and service_name.get("allValue") is None
    assert "$service" in service_name["query"]
    # Prometheus selectors match the job from a full job value or from service.name alone
    # (a log line's Call link knows only the name); Prometheus anchors regexes.
    svc = re.search(r'job=~"([^"]+)"', service_name["query"])
    assert svc is not None
    for given in (job, "voice-engine"):
        regex = svc.group(1).replace("$service", re.escape(given))
        assert re.fullmatch(regex, job), (regex, job)
    assert not re.fullmatch(svc.group(1).replace("$service", "engine"), job)
    # Loki and Jaeger read service_name, never the job.
    (dashboard,) = [d for d in iter_dashboards() if d["uid"] == "voiceobs-call-explorer"]
    text = yaml.safe_dump(dashboard)
    assert 'service_name=~\\"$service\\"' not in text
    jaeger_targets = [
        t for p in dashboard["panels"] for t in p.get("targets", []) if "service" in t
    ]
    assert jaeger_targets and {t["service"] for t in jaeger_targets} == {"$service_name"}
