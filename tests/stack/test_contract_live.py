"""The telemetry contract, checked where users read it: after a demo run on the live stack,
every series that an alert rule, a recording rule or a dashboard panel selects exists in
Prometheus with data.

A query that "evaluates" to nothing is not enough: a rule written against
``voice_provider_circuit_state`` evaluated fine for months while remote write stored
``voice_provider_circuit_state_ratio``. So each vector selector of each expression (its metric
name and label matchers, dashboard variables pinned to this run's service) must match samples
written since the run started. The run is this module's own: the traffic ``.ci/run`` gives
``make demo`` (20 s in real time, speed 1), because the demo's provider outage and breaker
cycle happen in real seconds and the faster end-to-end run is over before they start.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack.settings import StackSettings
from tests.grafana.dashboard_queries import iter_dashboards, iter_panel_queries, substitute
from tests.grafana.test_dashboards import metric_names
from tests.stack.test_e2e_demo import DemoRun, prom, run_demo
from voiceobs import semconv as sc

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]
SERVICE = f"voiceobs-contract-{uuid.uuid4().hex[:6]}"
CI_DEMO_ARGS = (
    "--calls", "60", "--duration", "20", "--rate", "3", "--concurrency", "10", "--turns", "2-4",
)  # fmt: skip
"""The traffic of ``make demo`` in ``.ci/run``."""

_FAILURE_ONLY = "the Collector's failure counters: a series appears only once it fails"
_PROBES = "blackbox exporter: Docker stack, `probes` profile only"
_HOST = "node exporter / cAdvisor: Docker stack, `host` profile only"
NO_DATA_FROM_A_DEMO: dict[str, str] = {
    **dict.fromkeys(
        (
            f"otelcol_{kind}_{signal}"
            for kind in (
                "receiver_refused",
                "receiver_failed",
                "exporter_send_failed",
                "exporter_enqueue_failed",
            )
            for signal in ("spans", "metric_points", "log_records")
        ),
        _FAILURE_ONLY,
    ),
    sc.TELEMETRY_EXPORT_FAILURES.prometheus: "an engine's exports fail only when the "
    "Collector refuses or is down",
    **dict.fromkeys(
        (
            'otel_sdk_processor_span_processed_total{error_type="queue_full"}',
            'otel_sdk_processor_span_processed_total{error_type!=""}',
            'otel_sdk_processor_log_processed_total{error_type="queue_full"}',
            'otel_sdk_processor_log_processed_total{error_type!=""}',
        ),
        "the SDK's own batch queue drops only when an engine outruns its export",
    ),
    'http_server_request_duration_seconds_count{http_response_status_code=~"5.."}': "the "
    "demo engine answers 5xx only on its turn route, which HTTP metrics exclude",
    "probe_success": _PROBES,
    "probe_duration_seconds": _PROBES,
    "probe_ssl_earliest_cert_expiry": _PROBES,
    "node_cpu_seconds_total": _HOST,
    "node_memory_MemAvailable_bytes": _HOST,
    "node_memory_MemTotal_bytes": _HOST,
    "container_cpu_usage_seconds_total": _HOST,
    "container_memory_working_set_bytes": _HOST,
}
"""Series no demo can produce on the native stack, and why (a metric, or a metric with one of
its label matchers as written in the rule or panel); everything else must have data."""

_ENGINE_METRICS = {
    *(spec.prometheus for spec in (*sc.VOICE_METRICS, sc.PROCESS_MEMORY_LIMIT)),
    *sc.ENGINE_METRICS,
    *sc.SDK_SELF_METRICS,
}
_SELECTOR = re.compile(
    r'(?<![\w.$:"])([A-Za-z_:][\w:]*)\s*(\{(?:[^{}"]|"(?:\\.|[^"\\])*")*\})?(?!\s*\()'
)
_MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)"')


def _engine_series(name: str) -> bool:
    """Series written by the engine (so this run's ``job``), recorded ones keeping ``job``."""
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return name in _ENGINE_METRICS or base in _ENGINE_METRICS or name.startswith("job")


def selectors(expr: str) -> Iterator[tuple[str, tuple[tuple[str, str, str], ...]]]:
    """(metric name, label matchers) of every vector selector in a PromQL expression."""
    names = metric_names(expr)
    stripped = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    for match in _SELECTOR.finditer(stripped):
        if match.group(1) in names:
            yield match.group(1), tuple(_MATCHER.findall(match.group(2) or ""))


def _rules() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((REPO / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                yield f"{path.name}: {rule.get('alert') or rule.get('record')}", rule


def _dashboard_exprs(service: str) -> Iterator[tuple[str, str]]:
    values = {"service": service}
    for query in iter_panel_queries(values):
        if query.datasource_type == "prometheus":
            yield f"{query.dashboard_uid} / {query.panel_title}", query.expr
    for dashboard in iter_dashboards():
        for var in dashboard.get("templating", {}).get("list", []):
            if var.get("type") != "query":
                continue
            text = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            found = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", text)
            if found:
                expr = substitute(found.group(1), values)
                yield f"{dashboard['uid']} / variable {var['name']}", expr


def referenced_selectors(service: str) -> dict[str, set[str]]:
    """PromQL selector → where it is used, for every rule and every dashboard query."""
    found: dict[str, set[str]] = {}
    exprs = [(where, rule["expr"]) for where, rule in _rules()]
    exprs += [
        (f"{where} (its output)", rule["record"]) for where, rule in _rules() if "record" in rule
    ]
    exprs += _dashboard_exprs(service)
    for where, expr in exprs:
        for name, matchers in selectors(expr):
            written = {f'{name}{{{label}{op}"{value}"}}' for label, op, value in matchers}
            if name in NO_DATA_FROM_A_DEMO or written & NO_DATA_FROM_A_DEMO.keys():
                continue
            parts = [f'__name__="{name}"']
            parts += [f'{label}{op}"{value}"' for label, op, value in matchers]
            if _engine_series(name) and "job" not in {label for label, _, _ in matchers}:
                parts.append(f'job="{service}"')
            found.setdefault("{" + ", ".join(parts) + "}", set()).add(where)
    return found


def test_the_selector_parser_sees_what_the_bug_hid() -> None:
    """The parser behind the live check finds the circuit-breaker selectors (unit check)."""
    alert = "max by (job, instance, provider) (voice_provider_circuit_state) == 2"
    assert list(selectors(alert)) == [("voice_provider_circuit_state", ())]
    panel = 'sum(rate(voice_calls_total{job=~"x", status="failed"}[5m])) or vector(0)'
    assert list(selectors(panel)) == [
        ("voice_calls_total", (("job", "=~", "x"), ("status", "=", "failed")))
    ]
    recorded = "job_instance:process_memory_usage_bytes:ratio_limit > 0.8"
    assert list(selectors(recorded)) == [
        ("job_instance:process_memory_usage_bytes:ratio_limit", ())
    ]
    wanted = referenced_selectors("svc")
    assert '{__name__="voice_provider_circuit_state", job="svc"}' in wanted


@pytest.fixture(scope="module")
def ci_demo(
    stack: StackSettings, tmp_path_factory: pytest.TempPathFactory, rules_at_stack_interval: None
) -> DemoRun:
    out = tmp_path_factory.mktemp("contract") / "calls.json"
    return run_demo(stack, SERVICE, out, *CI_DEMO_ARGS)


def test_every_series_a_rule_or_panel_selects_has_data_after_the_demo(
    stack: StackSettings, ci_demo: DemoRun, rules_at_stack_interval: None
) -> None:
    wanted = referenced_selectors(ci_demo.service)
    assert len(wanted) > 50

    def missing() -> dict[str, list[str]]:
        window = f"{int(time.time() - ci_demo.started) + 60}s"
        absent = {}
        for selector, where in wanted.items():
            result: list[Any] = prom(
                stack, "/api/v1/query", query=f"count_over_time({selector}[{window}])"
            )["result"]
            if not result:
                absent[selector] = sorted(where)
        return absent

    # Recording rules need an evaluation (every 15 s here, the 5-minute group's included)
    # after the run's last push: a bounded wait for them, then the list of what is still
    # missing, with where each is used.
    deadline = time.monotonic() + 90
    absent = missing()
    while absent and time.monotonic() < deadline:
        time.sleep(5)
        absent = missing()
    assert not absent, "selected, no data:\n" + "\n".join(f"{s}  <- {w}" for s, w in absent.items())
