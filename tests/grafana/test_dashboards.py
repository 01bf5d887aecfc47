"""Static checks of the Grafana provisioning and dashboards (no Grafana needed).

They hold the dashboards to the telemetry contract: every metric they query is defined in
``voiceobs/semconv.py`` or listed in ``grafana/external-metrics.txt`` (and documented in
``docs/metrics.md``), every datasource is referenced by a provisioned uid, every variable
is defined, every panel explains itself, and latency is shown as percentiles.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack.build import promtool
from tests.recording_rules import iter_recording_rules
from voiceobs import semconv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard_queries import (
    DEFAULT_VALUES,
    iter_dashboards,
    iter_panel_queries,
    iter_panels,
)

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES_YAML = GRAFANA / "provisioning" / "datasources" / "datasources.yaml"
PROVIDERS_YAML = GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml"
EXTERNAL_METRICS = GRAFANA / "external-metrics.txt"
DOCS_METRICS = REPO / "docs" / "metrics.md"

EXPECTED_UIDS = {
    "voiceobs-overview",
    "voiceobs-latency",
    "voiceobs-call-explorer",
    "voiceobs-cost",
    "voiceobs-audio",
    "voiceobs-providers",
    "voiceobs-engine",
    "voiceobs-pipeline",
    "voiceobs-executive",
}
STANDARD_VARIABLES = ("service", "tenant", "pipeline", "provider")
CONTAINER_MOUNT = "/var/lib/grafana/dashboards"
PROVISIONING_ENV = {"PROMETHEUS_URL", "JAEGER_URL", "LOKI_URL", "TEMPO_URL", "ALERTMANAGER_URL"}
EXTERNAL_PREFIXES = ("otelcol_", "probe_", "node_", "container_")

GRAFANA_BUILTINS = {
    "__rate_interval",
    "__interval",
    "__interval_ms",
    "__auto",
    "__range",
    "__range_s",
    "__range_ms",
    "__from",
    "__to",
    "__url_time_range",
    "__all_variables",
    "__timezone",
    "__dashboard",
    "__org",
    "__user",
    "__all",
    # Link / derived-field scopes, used with a dotted path (${__value.raw}, ${__span.tags…})
    "__value",
    "__span",
    "__trace",
    "__data",
    "__field",
    "__series",
    "__tags",
}

LATENCY_HISTOGRAMS = {
    semconv.TURN_LATENCY_METRIC.prometheus,
    semconv.EOU_DELAY.prometheus,
    semconv.STT_LATENCY.prometheus,
    semconv.LLM_TTFT.prometheus,
    semconv.LLM_DURATION.prometheus,
    semconv.TTS_TTFB.prometheus,
    semconv.JITTER_BUFFER_DEPTH.prometheus,
    "http_server_request_duration_seconds",
}
"""Seconds histograms shown as latency: percentiles only, never _sum/_count averages."""

UNITLESS_PANELS = {"row", "text", "logs"}

_VAR_REF = re.compile(r"\$\{([A-Za-z_]\w*)|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)")
_PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "limitk", "limit_ratio", "by", "without", "on", "ignoring",
    "group_left", "group_right", "and", "or", "unless", "bool", "offset", "anchored", "atan2",
    "inf", "nan",
}  # fmt: skip


# --- helpers ---------------------------------------------------------------------------


def _load_build_script() -> Any:
    spec = importlib.util.spec_from_file_location(
        "voiceobs_build_dashboards", GRAFANA / "build_dashboards.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dashboards() -> list[dict[str, Any]]:
    return list(iter_dashboards(DASHBOARDS))


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, key, value) for every key of every mapping in a JSON tree."""
    if isinstance(node, dict):
        for key, val in node.items():
            yield f"{path}.{key}", key, val
            yield from _walk(val, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk(item, f"{path}[{i}]")


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for val in node.values():
            yield from _strings(val)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _prom_exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(panel title, target, expr) for every Prometheus target, unsubstituted."""
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel.get("datasource") or {}
            if ds.get("type") == "prometheus":
                yield panel.get("title", ""), target, target["expr"]


def _variable_metric_exprs(dashboard: dict[str, Any]) -> Iterator[str]:
    for var in dashboard["templating"]["list"]:
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", query)
        assert match, f"{dashboard['uid']}: variable {var['name']} is not label_values(): {query}"
        yield match.group(1)


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (functions, keywords and labels skipped)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?[\w$]+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)", text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group(1).lower() in _PROMQL_WORDS:
            continue
        names.add(match.group(1))
    return names


def selector_labels(expr: str) -> Iterator[tuple[str, set[str]]]:
    """(metric, label names in its {…} selector) for every selector on a named metric."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    for match in re.finditer(r"([A-Za-z_:][\w:]*)\{([^}]*)\}", text):
        labels = {m.group(1) for m in re.finditer(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", match[2])}
        yield match.group(1), labels


def _histogram_base(name: str, histograms: set[str]) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in histograms:
            return name.removesuffix(suffix)
    return name


def _semconv_metrics() -> dict[str, tuple[str, ...]]:
    """Prometheus name -> labels for every metric voiceobs defines."""
    specs = [*semconv.VOICE_METRICS, semconv.PROCESS_MEMORY_LIMIT]
    names = {spec.prometheus: spec.labels for spec in specs}
    for name in (*semconv.ENGINE_METRICS, *semconv.SDK_SELF_METRICS):
        names.setdefault(name, ())
    return names


def _histograms() -> set[str]:
    specs = [*semconv.VOICE_METRICS, semconv.PROCESS_MEMORY_LIMIT]
    return {s.prometheus for s in specs if s.kind == "histogram"} | {
        "http_server_request_duration_seconds"
    }


def _external_metrics() -> list[str]:
    lines = EXTERNAL_METRICS.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _queried_metrics() -> dict[str, set[str]]:
    """Metric base name -> dashboard uids querying it (panels and variables)."""
    histograms = _histograms()
    used: dict[str, set[str]] = {}
    for dashboard in _dashboards():
        exprs = [e for _, _, e in _prom_exprs(dashboard)]
        exprs += list(_variable_metric_exprs(dashboard))
        for expr in exprs:
            for name in metric_names(expr):
                used.setdefault(_histogram_base(name, histograms), set()).add(dashboard["uid"])
    return used


def _recorded_series() -> dict[str, set[str]]:
    """Series the recording rules write -> the labels they keep (the name's level part,
    e.g. job_tenant_pipeline:... keeps job, tenant and pipeline)."""
    return {rule.record: set(rule.labels) for rule in iter_recording_rules()}


def _provisioned_datasources() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(DATASOURCES_YAML.read_text(encoding="utf-8"))
    return {ds["uid"]: ds for ds in doc["datasources"]}


# --- the dashboards are the build script's output ---------------------------------------


def test_committed_dashboards_match_the_build_script() -> None:
    rendered = _load_build_script().render()
    on_disk = {p.relative_to(DASHBOARDS) for p in DASHBOARDS.rglob("*.json")}
    assert on_disk == set(rendered), "run: python grafana/build_dashboards.py"
    for rel, content in rendered.items():
        assert (DASHBOARDS / rel).read_text(encoding="utf-8") == content, (
            f"{rel} is stale: run python grafana/build_dashboards.py"
        )


# --- structure ---------------------------------------------------------------------------


def test_every_dashboard_is_json_with_unique_uid_title_and_schema_version() -> None:
    uids, titles = [], []
    for path in sorted(DASHBOARDS.rglob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(dashboard.get("schemaVersion"), int), path
        assert dashboard["schemaVersion"] >= 36, path
        assert "id" not in dashboard or dashboard["id"] is None, f"{path}: no fixed id"
        uids.append(dashboard["uid"])
        titles.append(dashboard["title"])
    assert sorted(uids) == sorted(EXPECTED_UIDS)
    assert len(set(titles)) == len(titles), titles


def test_dashboard_folders_match_the_providers() -> None:
    providers = yaml.safe_load(PROVIDERS_YAML.read_text(encoding="utf-8"))["providers"]
    paths = {p["options"]["path"] for p in providers}
    folders = {p["folder"] for p in providers}
    assert len(folders) == len(providers), "one provider per folder"
    for path in paths:
        assert path.startswith(CONTAINER_MOUNT + "/"), path
    subdirs = {f"{CONTAINER_MOUNT}/{d.name}" for d in DASHBOARDS.iterdir() if d.is_dir()}
    assert subdirs == paths, "each dashboards/ subfolder needs exactly one provider"
    assert not list(DASHBOARDS.glob("*.json")), "dashboards live in a folder subdirectory"


def test_panel_ids_are_unique_and_panels_fit_the_grid() -> None:
    for dashboard in _dashboards():
        ids = [p["id"] for p in iter_panels(dashboard)]
        assert len(ids) == len(set(ids)), dashboard["uid"]
        for panel in iter_panels(dashboard):
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (dashboard["uid"], panel["title"])


def test_every_panel_has_a_title_and_description() -> None:
    for dashboard in _dashboards():
        assert dashboard.get("description"), dashboard["uid"]
        for panel in iter_panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel.get("title"), dashboard["uid"]
            assert panel.get("description", "").strip(), (dashboard["uid"], panel["title"])


def test_every_data_panel_sets_a_unit() -> None:
    for dashboard in _dashboards():
        for panel in iter_panels(dashboard):
            if panel["type"] in UNITLESS_PANELS:
                continue
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
            assert unit, (dashboard["uid"], panel["title"])


def test_every_dashboard_has_the_standard_filter_variables() -> None:
    for dashboard in _dashboards():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        for name in STANDARD_VARIABLES:
            assert name in variables, (dashboard["uid"], name)
            assert variables[name]["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        assert variables["service"]["query"] == "label_values(voice_calls_total, job)"
        for name in ("tenant", "pipeline", "provider"):
            assert variables[name]["multi"] and variables[name]["includeAll"], name


def test_call_explorer_takes_a_call_id_and_queries_traces_and_logs() -> None:
    (dashboard,) = [d for d in _dashboards() if d["uid"] == "voiceobs-call-explorer"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["call_id"]["type"] == "textbox"
    targets = [t for p in iter_panels(dashboard) for t in p.get("targets", [])]
    jaeger = [t for t in targets if t["datasource"]["type"] == "jaeger"]
    assert jaeger and all(t["queryType"] == "search" for t in jaeger)
    assert all(t["tags"] == f'{semconv.CALL_ID}="$call_id"' for t in jaeger)
    assert {t["operation"] for t in jaeger} <= set(semconv.SPAN_NAMES)
    loki = [t["expr"] for t in targets if t["datasource"]["type"] == "loki"]
    assert loki and all('voice_call_id="$call_id"' in e for e in loki)


def test_dashboards_link_to_each_other_by_existing_uids() -> None:
    for dashboard in _dashboards():
        kinds = {link["type"] for link in dashboard["links"]}
        assert "dashboards" in kinds, dashboard["uid"]
        urls = [s for s in _strings(dashboard) if "/d/" in s]
        for url in urls:
            for uid in re.findall(r"/d/([\w-]+)", url):
                assert uid in EXPECTED_UIDS, (dashboard["uid"], url)
    linked = {
        uid
        for d in _dashboards()
        for p in iter_panels(d)
        for link in p.get("fieldConfig", {}).get("defaults", {}).get("links", [])
        for uid in re.findall(r"/d/([\w-]+)", link["url"])
    }
    assert len(linked) >= 5, f"data links reach only {sorted(linked)}"


# --- datasources ---------------------------------------------------------------------


def test_datasources_are_referenced_by_provisioned_uid_never_by_name() -> None:
    provisioned = _provisioned_datasources()
    for dashboard in _dashboards():
        for path, key, value in _walk(dashboard):
            if key != "datasource":
                continue
            assert isinstance(value, dict), f"{dashboard['uid']}{path}: by name ({value!r})"
            if value.get("type") == "grafana":
                continue  # the built-in annotations datasource
            assert value.get("uid") in provisioned, f"{dashboard['uid']}{path}: {value}"
            assert provisioned[value["uid"]]["type"] == value["type"], f"{path}: {value}"


def test_provisioned_datasources_have_stable_uids_and_link_to_each_other() -> None:
    provisioned = _provisioned_datasources()
    assert set(provisioned) == {"prometheus", "jaeger", "tempo", "loki", "alertmanager"}
    types = {uid: ds["type"] for uid, ds in provisioned.items()}
    assert types == {
        "prometheus": "prometheus",
        "jaeger": "jaeger",
        "tempo": "tempo",
        "loki": "loki",
        "alertmanager": "alertmanager",
    }
    prom = provisioned["prometheus"]["jsonData"]
    assert prom["httpMethod"] == "POST"
    exemplar_links = {d["name"]: d for d in prom["exemplarTraceIdDestinations"]}
    assert exemplar_links["trace_id"]["datasourceUid"] == "jaeger"
    for uid in ("jaeger", "tempo"):
        data = provisioned[uid]["jsonData"]
        assert data["tracesToLogsV2"]["datasourceUid"] == "loki"
        assert data["tracesToLogsV2"]["customQuery"] is True
        assert {"key": semconv.CALL_ID, "value": "voice_call_id"} in data["tracesToLogsV2"]["tags"]
        assert data["tracesToMetrics"]["datasourceUid"] == "prometheus"
    derived = provisioned["loki"]["jsonData"]["derivedFields"]
    assert any(
        d.get("datasourceUid") == "jaeger" and d["matcherRegex"] == "trace_id" for d in derived
    )
    assert any("voiceobs-call-explorer" in d.get("url", "") for d in derived)
    assert provisioned["alertmanager"]["jsonData"]["implementation"] == "prometheus"
    # Every datasourceUid anywhere in the file points at a provisioned datasource.
    doc = yaml.safe_load(DATASOURCES_YAML.read_text(encoding="utf-8"))
    for path, key, value in _walk(doc):
        if key == "datasourceUid":
            assert value in provisioned, f"{path}: {value}"


def test_provisioning_yaml_parses_and_escapes_literal_dollars() -> None:
    for path in (GRAFANA / "provisioning").rglob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        assert yaml.safe_load(text)["apiVersion"] == 1, path
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.lstrip().startswith("#"):
                continue
            for match in re.finditer(r"\$(\$)?(\{[^}]*\}|\w+)?", line):
                if match.group(1):
                    continue  # $$: a literal dollar
                env = (match.group(2) or "").strip("{}")
                assert env in PROVISIONING_ENV, (
                    f"{path.name}:{lineno}: ${env} would be expanded from the environment; "
                    "write a literal $ as $$"
                )


# --- queries ---------------------------------------------------------------------------


def test_every_variable_used_is_defined_or_builtin() -> None:
    for dashboard in _dashboards():
        defined = {v["name"] for v in dashboard["templating"]["list"]}
        for panel in iter_panels(dashboard):
            for text in _strings({k: v for k, v in panel.items() if k != "options"}):
                for match in _VAR_REF.finditer(text):
                    name = next(g for g in match.groups() if g)
                    assert name in defined or name in GRAFANA_BUILTINS, (
                        f"{dashboard['uid']} / {panel.get('title')}: ${name} in {text!r}"
                    )
        for text in _strings([dashboard["links"], dashboard["templating"]]):
            for match in _VAR_REF.finditer(text):
                name = next(g for g in match.groups() if g)
                assert name in defined or name in GRAFANA_BUILTINS, (dashboard["uid"], text)


def test_every_queried_metric_is_in_the_contract_or_listed_as_external() -> None:
    contract = {**_semconv_metrics(), **_recorded_series()}
    external = set(_external_metrics())
    unknown = {
        name: sorted(uids)
        for name, uids in _queried_metrics().items()
        if name not in contract and name not in external
    }
    assert not unknown, f"not in semconv, the recording rules or external-metrics.txt: {unknown}"


def test_recorded_series_are_selected_only_by_the_labels_their_rule_keeps() -> None:
    recorded = _recorded_series()
    for dashboard in _dashboards():
        for title, _, expr in _prom_exprs(dashboard):
            for metric, labels in selector_labels(expr):
                if metric in recorded:
                    assert labels <= recorded[metric], (dashboard["uid"], title, metric)


def test_external_metrics_file_lists_exactly_the_non_voiceobs_metrics_used() -> None:
    contract = {**_semconv_metrics(), **_recorded_series()}
    external = _external_metrics()
    assert len(external) == len(set(external)), "duplicates in external-metrics.txt"
    used_external = {n for n in _queried_metrics() if n not in contract}
    assert set(external) == used_external
    for name in external:
        assert name == "up" or name.startswith(EXTERNAL_PREFIXES), name


def test_every_queried_metric_is_documented_in_docs_metrics_md() -> None:
    if not DOCS_METRICS.exists():
        pytest.skip("docs/metrics.md not written yet")
    documented = set(re.findall(r"`([A-Za-z_:][\w:]*)", DOCS_METRICS.read_text(encoding="utf-8")))
    external = set(_external_metrics()) | set(_recorded_series())  # rules document those
    missing = sorted(
        name for name in _queried_metrics() if name not in documented and name not in external
    )
    assert not missing, f"queried by dashboards but not in docs/metrics.md: {missing}"


def test_voice_metric_selectors_use_only_contract_labels() -> None:
    contract = _semconv_metrics()
    histograms = _histograms()
    for dashboard in _dashboards():
        for title, _, expr in _prom_exprs(dashboard):
            for metric, labels in selector_labels(expr):
                base = _histogram_base(metric, histograms)
                if base not in contract or not base.startswith("voice"):
                    continue
                allowed = {*contract[base], "job", "instance"}
                if metric.endswith("_bucket"):
                    allowed.add("le")
                assert labels <= allowed, (dashboard["uid"], title, metric, labels - allowed)


def test_latency_is_shown_as_percentiles_never_averages() -> None:
    for dashboard in _dashboards():
        for title, target, expr in _prom_exprs(dashboard):
            for base in LATENCY_HISTOGRAMS:
                where = (dashboard["uid"], title, expr)
                assert f"{base}_sum" not in expr, where
                if f"{base}_bucket" in expr:
                    assert (
                        "histogram_quantile(" in expr
                        or target.get("format") == "heatmap"
                        # a share of one bucket, raw or recorded (..._bucket:increase5m)
                        or re.search(rf"{base}_bucket(:\w+)?\{{[^}}]*\ble=", expr)
                    ), where


def test_percentiles_use_rate_interval_and_group_by_le() -> None:
    for dashboard in _dashboards():
        for title, _, expr in _prom_exprs(dashboard):
            for match in re.finditer(
                r"histogram_quantile\(\s*([\d.]+)\s*,\s*sum by \(([^)]*)\)", expr
            ):
                assert 0 < float(match.group(1)) < 1, (dashboard["uid"], title)
                assert "le" in [s.strip() for s in match.group(2).split(",")], (title, expr)


def test_latency_time_series_show_exemplars() -> None:
    seconds_latency = LATENCY_HISTOGRAMS - {semconv.JITTER_BUFFER_DEPTH.prometheus}
    for dashboard in _dashboards():
        for panel in iter_panels(dashboard):
            if panel["type"] not in {"timeseries", "heatmap"}:
                continue
            for target in panel.get("targets", []):
                expr = target.get("expr", "")
                # Raw buckets only: a recorded series (level:metric:op) carries no exemplars.
                raw = any(re.search(rf"(?<!:){m}_bucket", expr) for m in seconds_latency)
                if raw and "$__range" not in expr:
                    assert target.get("exemplar") is True, (dashboard["uid"], panel["title"])


def test_turn_latency_panels_draw_the_800ms_budget() -> None:
    budget_panels = 0
    for dashboard in _dashboards():
        for panel in iter_panels(dashboard):
            exprs = " ".join(t.get("expr", "") for t in panel.get("targets", []))
            if panel["type"] != "timeseries" or "histogram_quantile" not in exprs:
                continue
            if "voice_turn_latency_seconds_bucket" not in exprs:
                continue
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert any(s["value"] == 0.8 for s in steps), (dashboard["uid"], panel["title"])
            mode = panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"]
            assert mode != "off", (dashboard["uid"], panel["title"])
            budget_panels += 1
    assert budget_panels >= 3


# --- the helper the end-to-end tests use ----------------------------------------------


def test_substituted_queries_are_complete_and_balanced() -> None:
    queries = list(iter_panel_queries())
    assert {q.dashboard_uid for q in queries} == EXPECTED_UIDS
    assert {q.datasource_type for q in queries} == {"prometheus", "loki", "jaeger"}
    for q in queries:
        assert "$" not in q.expr, q
        stripped = re.sub(r'"(?:\\.|[^"\\])*"', '""', q.expr)
        for open_, close in ("()", "[]", "{}"):
            assert stripped.count(open_) == stripped.count(close), q
        if q.datasource_type == "loki":
            # Loki needs one matcher that cannot match the empty string.
            assert re.match(
                r'\s*(sum by \(\w+\) \(count_over_time\()?\{service_name=~"\.\+"', q.expr
            )


def test_substituted_prometheus_queries_parse_with_promtool(tmp_path: Path) -> None:
    exprs = [q.expr for q in iter_panel_queries() if q.datasource_type == "prometheus"]
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard-queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [str(promtool()), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_substitution_takes_caller_values() -> None:
    values = {"service": "voiceobs-demo", "call_id": "call-123"}
    loki = [q for q in iter_panel_queries(values) if q.datasource_type == "loki"]
    assert loki and all('voice_call_id="call-123"' in q.expr for q in loki)
    assert all('service_name=~"voiceobs-demo"' in q.expr for q in loki)
    namespaced = {**values, "service": "prod/voiceobs-demo"}
    loki = [q for q in iter_panel_queries(namespaced) if q.datasource_type == "loki"]
    assert all('service_name=~"voiceobs-demo"' in q.expr for q in loki)
    assert DEFAULT_VALUES["__rate_interval"] == "1m"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            "histogram_quantile(0.95, sum by (le, provider) "
            '(rate(voice_llm_ttft_seconds_bucket{job=~"$service"}[5m])))',
            {"voice_llm_ttft_seconds_bucket"},
        ),
        (
            "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
            {"node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes"},
        ),
        (
            "topk by (component) (1, sum by (component, provider) "
            "(increase(voice_cost_usd_total[30d] offset 7d)))",
            {"voice_cost_usd_total"},
        ),
        (
            "count(max by (provider) (voice_provider_circuit_state) == 2) or vector(0)",
            {"voice_provider_circuit_state"},
        ),
        (
            "min by (instance) (probe_ssl_earliest_cert_expiry) - time()",
            {"probe_ssl_earliest_cert_expiry"},
        ),
    ],
)
def test_metric_name_tokenizer(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
