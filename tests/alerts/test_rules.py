"""Alert and recording rules: valid, unit-tested, labelled, documented, on the contract.

`promtool test rules` runs the cases in alerts.test.yml (from this directory, as promtool
resolves rule_files relative to the test file). The other tests read the rule files and
check what promtool cannot: routing labels, runbook anchors that exist, and that rules only
query metric and label names of the telemetry contract (voiceobs/semconv.py) or the
documented external ones (Collector self-metrics, `up`, blackbox `probe_*`, `target_info`,
Alertmanager's own metrics).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from voiceobs import semconv

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "prometheus" / "rules"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"
TESTS_DIR = Path(__file__).resolve().parent

RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
UNIT_TESTS = sorted(TESTS_DIR.glob("*.test.yml"))
SEVERITIES = {"critical", "warning", "info"}
TEAMS = {"voice", "platform", "security", "product"}

# Names rules may use that voiceobs does not define itself (listed in docs/metrics.md).
EXTERNAL_METRICS = {
    "up",
    "probe_success",
    "probe_ssl_earliest_cert_expiry",
    "otelcol_exporter_send_failed_spans",
    "otelcol_exporter_send_failed_metric_points",
    "otelcol_exporter_send_failed_log_records",
    "otelcol_receiver_refused_spans",
    "otelcol_receiver_refused_metric_points",
    "otelcol_receiver_refused_log_records",
    "otelcol_exporter_sent_spans",
    "otelcol_exporter_sent_metric_points",
    "otelcol_exporter_sent_log_records",
    "otelcol_exporter_enqueue_failed_spans",
    "otelcol_exporter_enqueue_failed_metric_points",
    "otelcol_exporter_enqueue_failed_log_records",
    "otelcol_exporter_queue_size",
    "otelcol_exporter_queue_capacity",
    "otelcol_processor_filter_datapoints_filtered",
    # One series per pushing worker, written by the Collector's remote-write exporter
    # (target_info: enabled): the only per-service series every OTLP sender has.
    "target_info",
    "alertmanager_notifications_failed_total",
}
CONTRACT_METRICS = (
    {spec.prometheus for spec in semconv.VOICE_METRICS}
    | {semconv.PROCESS_MEMORY_LIMIT.prometheus}
    | set(semconv.ENGINE_METRICS)
    | set(semconv.SDK_SELF_METRICS)
)
CONTRACT_LABELS = {label for spec in semconv.VOICE_METRICS for label in spec.labels}
# job/instance from Prometheus, le of histograms, and the labels of the external metrics.
EXTRA_LABELS = {
    "job", "instance", "le", "exporter", "receiver", "error_type", "error_permanent", "filter",
    "integration",
}  # fmt: skip

PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "anchored", "smoothed", "inf", "nan",
}  # fmt: skip


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def _rules() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for g in _load(path)["groups"] for rule in g["rules"]]


ALERTS = [rule for rule in _rules() if "alert" in rule]
RECORDS = [rule for rule in _rules() if "record" in rule]


def _metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, labels and keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range durations
    text = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # grouping label lists
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end() :].lstrip()[:1]
        if following == "(" or word.lower() in PROMQL_WORDS or ":" in word:
            continue  # function call, keyword, or a recorded series
        names.add(word)
    return names


def _label_names(expr: str) -> set[str]:
    labels: set[str] = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels |= {name.strip() for name in group.split(",") if name.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
    return labels


def _base_name(name: str) -> str:
    """Histogram series map back to their metric (`x_bucket` -> `x`)."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in CONTRACT_METRICS:
            return name.removesuffix(suffix)
    return name


def _used_metrics() -> set[str]:
    return {_base_name(n) for rule in _rules() for n in _metric_names(str(rule["expr"]))}


def _github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub generates for the headings, plus explicit <a id=...> anchors."""
    anchors = set(re.findall(r'<a\s+(?:id|name)="([^"]+)"', markdown))
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_rule_files_pass_promtool_check(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", *map(str, RULE_FILES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", UNIT_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(promtool: str, test_file: Path) -> None:
    result = subprocess.run(
        [promtool, "test", "rules", test_file.name],
        cwd=test_file.parent,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for path in UNIT_TESTS:
        for case in _load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in ALERTS}
    assert names - fires == set(), "alerts without a case where they fire"
    # The Watchdog fires by design; it has no silent case.
    assert names - silent - {"Watchdog"} == set(), "alerts without a case where they stay silent"


@pytest.mark.parametrize(
    "rule", ALERTS, ids=[f"{r['alert']}-{r['labels'].get('stage', '')}" for r in ALERTS]
)
def test_alert_has_routing_labels_and_annotations(rule: dict[str, Any]) -> None:
    labels, annotations = rule["labels"], rule["annotations"]
    assert labels["severity"] in SEVERITIES
    assert labels["team"] in TEAMS
    assert labels.get("kind"), "kind pairs a critical with the warning it silences"
    assert annotations["summary"].strip()
    assert "$value" in annotations["description"], "the description shows the value"
    assert annotations["runbook_url"] == f"docs/runbooks.md#{rule['alert'].lower()}"


@pytest.mark.parametrize("name", sorted({r["alert"] for r in ALERTS}))
def test_runbook_anchor_exists(name: str) -> None:
    assert RUNBOOKS.exists(), "docs/runbooks.md is missing"
    assert name.lower() in _github_anchors(RUNBOOKS.read_text(encoding="utf-8"))


def test_rule_group_names_are_unique_across_files() -> None:
    names = [g["name"] for path in RULE_FILES for g in _load(path)["groups"]]
    assert len(names) == len(set(names)), names


def test_recording_rule_names_follow_level_metric_operation() -> None:
    for rule in RECORDS:
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]
    assert len({r["record"] for r in RECORDS}) == len(RECORDS), "duplicate recording rule"


def test_rules_query_only_contract_metrics() -> None:
    unknown = _used_metrics() - CONTRACT_METRICS - EXTERNAL_METRICS
    assert unknown == set(), "metrics outside voiceobs/semconv.py and the documented externals"


def test_rules_use_only_contract_labels() -> None:
    used = set().union(*(_label_names(str(rule["expr"])) for rule in _rules()))
    assert used - CONTRACT_LABELS - EXTRA_LABELS == set()


def test_metric_name_extraction_sees_selectors_not_labels() -> None:
    expr = 'sum by (job, le) (rate(x_bucket{le="1"}[5m])) / on (job) (y > 0) and a:b:c'
    assert _metric_names(expr) == {"x_bucket", "y"}


def test_every_metric_used_by_rules_is_documented() -> None:
    """docs/metrics.md lists every Prometheus name (in backticks) that rules query."""
    if not METRICS_DOC.exists():
        pytest.skip("docs/metrics.md is not written yet (checked against semconv above)")
    documented = set(re.findall(r"`([a-zA-Z_:][a-zA-Z0-9_:]*)", METRICS_DOC.read_text("utf-8")))
    missing = _used_metrics() - documented
    assert missing == set(), f"add to docs/metrics.md: {sorted(missing)}"


def test_rules_live_where_prometheus_loads_them() -> None:
    """prometheus.yml loads rules/*.yml relative to prometheus/: nothing else may live there."""
    for path in RULES_DIR.iterdir():
        if path.suffix == ".yml":
            assert "groups" in _load(path), f"{path} is loaded as a rule file"
    assert (ROOT / "prometheus" / "rules").is_dir()
