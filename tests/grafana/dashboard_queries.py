"""Every query of every voiceobs dashboard panel, ready to run against live backends.

The end-to-end tests run each panel query against Prometheus and Loki (and Jaeger
searches against Jaeger) to prove the dashboards show data. Grafana variables are
replaced by values that keep the query valid: multi-value filters become match-all
regexes (they are always used with ``=~``), ``$__rate_interval`` a fixed interval, and so
on; pass ``values`` to pin a service, tenant or call id::

    from tests.grafana.dashboard_queries import iter_panel_queries

    for q in iter_panel_queries({"service": "voiceobs-demo", "call_id": call_id}):
        if q.datasource_type == "prometheus":
            prometheus.query(q.expr)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "grafana" / "dashboards"

DEFAULT_VALUES: Mapping[str, str] = {
    # Grafana built-ins
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__auto": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    # Dashboard variables. service's All value is .+, and so is service_name's (Loki refuses
    # selectors that can match the empty string); the others are matched with =~ and may be
    # absent, hence .*.
    "service": ".+",
    "service_name": ".+",
    "tenant": ".*",
    "pipeline": ".*",
    "provider": ".*",
    "call_id": "example-call-id",
}
"""What each variable becomes when the caller gives no value."""

_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")

# Target fields that hold query text, per datasource type.
_QUERY_FIELDS = {"prometheus": ("expr",), "loki": ("expr",), "jaeger": ("tags",)}


class PanelQuery(NamedTuple):
    """One panel target with its variables substituted."""

    dashboard_uid: str
    panel_title: str
    datasource_type: str
    expr: str


def iter_dashboards(root: Path = DASHBOARDS) -> Iterator[dict[str, Any]]:
    """Every dashboard JSON under ``root``, parsed, in path order."""
    for path in sorted(root.rglob("*.json")):
        yield json.loads(path.read_text(encoding="utf-8"))


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def substitute(text: str, values: Mapping[str, str] | None = None) -> str:
    """Replace Grafana variables in ``text``; unknown ones are left as they are."""
    merged = {**DEFAULT_VALUES, **(values or {})}
    if values and "service" in values and "service_name" not in values:
        # The hidden service_name variable: the service.name part of the chosen job.
        merged["service_name"] = values["service"].rsplit("/", 1)[-1]

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return merged.get(name, match.group(0))

    return _VAR.sub(repl, text)


def target_type(panel: Mapping[str, Any], target: Mapping[str, Any]) -> str:
    ds = target.get("datasource") or panel.get("datasource") or {}
    return str(ds.get("type", "")) if isinstance(ds, Mapping) else ""


def iter_targets(
    values: Mapping[str, str] | None = None, root: Path = DASHBOARDS
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(dashboard uid, panel title, target) with every string field of the target substituted.

    Use this for Jaeger searches, whose target has several fields (service, operation, tags).
    """
    for dashboard in iter_dashboards(root):
        for panel in iter_panels(dashboard):
            for target in panel.get("targets", []):
                resolved = {
                    key: substitute(val, values) if isinstance(val, str) else val
                    for key, val in target.items()
                }
                resolved["datasource"] = {"type": target_type(panel, target)}
                yield dashboard["uid"], panel.get("title", ""), resolved


def iter_panel_queries(
    values: Mapping[str, str] | None = None, root: Path = DASHBOARDS
) -> Iterator[PanelQuery]:
    """(dashboard uid, panel title, datasource type, query) for every panel target.

    Prometheus and Loki targets give their ``expr``; Jaeger searches give their ``tags``
    (logfmt, e.g. ``voice.call.id="..."``; see ``iter_targets`` for service/operation).
    """
    for uid, title, target in iter_targets(values, root):
        ds_type = target["datasource"]["type"]
        for field in _QUERY_FIELDS.get(ds_type, ()):
            if field in target:
                yield PanelQuery(uid, title, ds_type, target[field])
