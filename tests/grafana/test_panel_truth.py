"""Dashboards tell the truth: panel queries computed from known inputs, compared.

Each case feeds Prometheus' rule engine (``promtool test rules``, the same engine and the same
recording rules as the stack) series shaped like the demo's — calls that cost money, providers
that fail and get cancelled on barge-in, an engine that stops pushing — and evaluates the
panel's own query, taken from the committed dashboard JSON with its variables filled in, at a
known time. The expected figure is worked out here from the inputs, by the definition the
panel claims (and the alert rule uses).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from stack.build import promtool
from tests.grafana.dashboard_queries import iter_panel_queries

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "prometheus" / "rules"
SERVICE = "voiceobs-demo"
VALUES = {"service": SERVICE, "__range": "1h", "tenant": "acme", "pipeline": "support"}
LABELS = f'job="{SERVICE}",instance="w1",tenant="acme",pipeline="support"'


def panel_expr(uid: str, title: str, refid: int = 0, **values: str) -> str:
    """The ``refid``-th Prometheus query of the panel ``title`` on dashboard ``uid`` (variables
    from VALUES, or ``values`` where given)."""
    found = [
        q.expr
        for q in iter_panel_queries({**VALUES, **values})
        if q.dashboard_uid == uid and q.panel_title == title and q.datasource_type == "prometheus"
    ]
    assert found, f"no panel {title!r} on {uid}"
    return found[refid]


def run_promtool(
    tmp_path: Path,
    series: list[dict[str, str]],
    checks: list[dict[str, Any]],
    evaluation_interval: str = "1m",
) -> None:
    """One promtool test: ``series`` in (a sample a minute), the rules evaluated every
    ``evaluation_interval`` (promtool evaluates every group at that interval, whatever the
    group's own), each check's expr evaluated at its eval_time."""
    test = {
        "rule_files": [str(path) for path in sorted(RULES.glob("*.yml"))],
        "evaluation_interval": evaluation_interval,
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": checks}],
    }
    path = tmp_path / "panels.test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run(
        [str(promtool()), "test", "rules", path.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def one_value(expr: str, eval_time: str, value: float, labels: str = "{}") -> dict[str, Any]:
    """A check that ``expr`` gives ``value`` (to 1e-9: promtool compares floats exactly, and
    0.1 computed as 0.3 / 3 is not 0.1), with ``labels`` (the metric name dropped)."""
    return {
        "expr": f"round(({expr}) * 1e9)",
        "eval_time": eval_time,
        "exp_samples": [{"labels": labels[labels.index("{") :], "value": round(value * 1e9)}],
    }


def test_cost_per_call_minute_is_the_alerts_figure_not_spend_over_minutes(tmp_path: Path) -> None:
    # Each minute two calls end, costing $0.30 together over 180 s of talk: $0.10 a call-minute.
    # Meanwhile the calls still running spend $0.50 a minute (voice_cost_usd_total), which a
    # spend / call-minutes ratio would wrongly mix in ($0.50 + ... over the ended minutes).
    series = [
        {"series": f"voice_call_cost_usd_sum{{{LABELS}}}", "values": "0+0.30x60"},
        {"series": f"voice_call_cost_usd_count{{{LABELS}}}", "values": "0+2x60"},
        {"series": f"voice_call_duration_seconds_sum{{{LABELS},status=\"completed\"}}", "values": "0+180x60"},
        {"series": f"voice_call_duration_seconds_count{{{LABELS},status=\"completed\"}}", "values": "0+2x60"},
        {"series": f'voice_cost_usd_total{{{LABELS},provider="openai",component="llm",model="m"}}', "values": "0+0.50x60"},
    ]  # fmt: skip
    expected = 0.30 / (180 / 60)
    by_pipeline = '{pipeline="support"}'
    run_promtool(
        tmp_path,
        series,
        [
            one_value(panel_expr("voiceobs-overview", "Cost per call-minute"), "60m", expected),
            one_value(panel_expr("voiceobs-cost", "Cost per call-minute"), "60m", expected),
            one_value(
                panel_expr("voiceobs-cost", "Cost per call-minute by pipeline"),
                "60m",
                expected,
                by_pipeline,
            ),
            one_value(
                f'job_tenant_pipeline:voice_call_cost_usd:per_call_minute_rate30m{{job="{SERVICE}"}}',
                "60m",
                expected,
                f'job_tenant_pipeline:voice_call_cost_usd:per_call_minute_rate30m{{job="{SERVICE}",tenant="acme",pipeline="support"}}',
            ),
        ],
    )


def test_cancelled_requests_are_neither_provider_errors_nor_answers(tmp_path: Path) -> None:
    # A minute of openai LLM requests: 50 ok, 5 errors, 20 cancelled on barge-in.
    provider = f'job="{SERVICE}",instance="w1",provider="openai",component="llm"'
    series = [
        {"series": f'voice_provider_requests_total{{{provider},outcome="ok"}}', "values": "0+50x60"},
        {"series": f'voice_provider_requests_total{{{provider},outcome="error"}}', "values": "0+5x60"},
        {"series": f'voice_provider_requests_total{{{provider},outcome="cancelled"}}', "values": "0+20x60"},
    ]  # fmt: skip
    error_ratio, ok_ratio = 5 / 55, 50 / 55
    run_promtool(
        tmp_path,
        series,
        [
            one_value(
                panel_expr("voiceobs-providers", "Error rate by provider"),
                "30m",
                error_ratio,
                '{provider="openai"}',
            ),
            one_value(
                panel_expr("voiceobs-providers", "Provider uptime (share of ok, time range)"),
                "60m",
                ok_ratio,
                '{provider="openai",component="llm"}',
            ),
            one_value(
                "provider_component:voice_provider_requests:error_ratio_rate5m",
                "30m",
                error_ratio,
                'provider_component:voice_provider_requests:error_ratio_rate5m{provider="openai",component="llm"}',
            ),
        ],
    )


def test_engine_uptime_is_the_engines_not_the_monitoring_stacks(tmp_path: Path) -> None:
    # The engine pushes (target_info) for the first hour, then stops; the monitoring stack
    # stays up throughout (up == 1), which the old panel reported as 100 % uptime.
    series = [
        {"series": f'target_info{{job="{SERVICE}",instance="w1"}}', "values": "1x60"},
        {"series": 'up{job="prometheus",instance="127.0.0.1:9090"}', "values": "1x120"},
    ]
    # Rule samples at 0..120 min. The last push is at 60 min; the engine counts as up while
    # that push is less than 180 s old, i.e. through minute 62: 63 of 121 samples.
    run_promtool(
        tmp_path,
        series,
        [one_value(panel_expr("voiceobs-executive", "Engine uptime (24h)"), "120m", 63 / 121)],
    )


def test_daily_success_rate_weighs_calls_not_five_minute_ratios(tmp_path: Path) -> None:
    # A busy hour of 100 calls a minute, all completed, then two quiet hours of 10 calls a
    # minute of which 8 fail. Of the 7 200 calls, 6 240 were served: 86.7 %. An average of the
    # recorded 5-minute success ratios would say 47 %.
    series = [
        {"series": f'voice_calls_total{{{LABELS},status="completed",failure_reason="none"}}', "values": "0+100x60 6002+2x119"},
        {"series": f'voice_calls_total{{{LABELS},status="failed",failure_reason="llm_error"}}', "values": "0x60 8+8x119"},
    ]  # fmt: skip
    served = 6240 / 7200
    # The panel sums the recorded 5-minute increases over the day: the calls of the last 5
    # minutes are only partly in, well under a tenth of a point here.
    daily = panel_expr("voiceobs-executive", "Daily call success rate")
    overview = panel_expr("voiceobs-overview", "Success rate")
    run_promtool(
        tmp_path,
        series,
        [
            one_value(f"abs(({daily}) - {served}) < bool 0.005", "180m", 1),
            # The overview's stat over the last hour: 120 of the 600 calls were served.
            one_value(f"abs(({overview}) - 0.2) < bool 0.005", "180m", 1),
        ],
    )


_RANGE = re.compile(r"\[(\d+)([smhdwy])(?::[^\]]*)?\](?:\s*offset\s+(\d+)([smhdwy]))?")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def _default_retention_s() -> int:
    settings = (REPO / "stack" / "settings.py").read_text()
    native = re.search(r'"VOICEOBS_STACK_METRICS_RETENTION", "(\d+)([dhw])"', settings)
    compose = (REPO / "compose.monitoring.yml").read_text()
    docker = re.search(
        r"retention\.time=\$\{VOICEOBS_STACK_METRICS_RETENTION:-(\d+)([dhw])\}", compose
    )
    assert native and docker and native.groups() == docker.groups()
    return int(native.group(1)) * _SECONDS[native.group(2)]


def test_no_panel_or_rule_reads_further_back_than_metrics_are_kept() -> None:
    retention = _default_retention_s()
    exprs = [q.expr for q in iter_panel_queries(VALUES) if q.datasource_type == "prometheus"]
    for path in RULES.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            exprs += [rule["expr"] for rule in group["rules"]]
    longest = 0
    for expr in exprs:
        for match in _RANGE.finditer(expr):
            back = int(match.group(1)) * _SECONDS[match.group(2)]
            if match.group(3):
                back += int(match.group(3)) * _SECONDS[match.group(4)]
            assert back <= retention, f"{expr}: reads {back / 86400:g} days back"
            longest = max(longest, back)
    assert longest >= 30 * 86400, "the 30-day spend panel is gone: recheck this test"


def test_spend_over_a_range_counts_each_five_minute_window_once(tmp_path: Path) -> None:
    # $0.60 of LLM and $0.30 of TTS a minute for two hours, as the 5-minute group sees it
    # (evaluated every 5 minutes, so its windows tile the time line).
    series = [
        {"series": f'voice_cost_usd_total{{{LABELS},provider="openai",component="llm",model="m"}}', "values": "0+0.6x120"},
        {"series": f'voice_cost_usd_total{{{LABELS},provider="cartesia",component="tts",model="m"}}', "values": "0+0.3x120"},
    ]  # fmt: skip
    five_minutes = {"__interval": "5m", "__interval_ms": "300000", "provider": "openai"}
    # Read at 122 min, off the 5-minute grid, as a live group's evaluations are (Prometheus
    # offsets each group's schedule). Prometheus 3's range selectors leave out their start
    # (2.x counted a window ending exactly on it too), so either way each window counts once.
    run_promtool(
        tmp_path,
        series,
        [
            # The last hour: 12 windows of $4.50.
            one_value(panel_expr("voiceobs-cost", "Spend in time range"), "122m", 54.0),
            one_value(
                panel_expr("voiceobs-cost", "Spend by provider (time range)", provider="openai"),
                "122m",
                36.0,
                '{provider="openai"}',
            ),
            # Per minute, from the one window in a 5-minute point (the LLM's provider).
            one_value(
                panel_expr("voiceobs-cost", "Spend per minute by component", **five_minutes),
                "122m",
                0.6,
                '{component="llm"}',
            ),
        ],
        evaluation_interval="5m",
    )
