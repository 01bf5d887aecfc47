"""The trace -> logs links of grafana/provisioning, filled in the way Grafana fills them.

Grafana cannot run here, so the tests rebuild each link from the provisioned settings and
a span as Grafana's trace view sees it, following Grafana's own code (12.x):

- ``pkg/tsdb/jaeger/utils/client_utils.go`` (``TransformTraceResponse``): one row per
  span with the fields traceID, spanID, operationName, serviceName (the process's
  service.name), serviceTags (the process's other resource attributes), startTime and
  duration (ms) and tags.
- ``public/app/features/explore/TraceView/createSpanLink.tsx``:
  - tracesToLogsV2 with a custom query: the scoped variables ``__span`` (spanId,
    traceId, duration, name, tags = process tags overlaid by span tags), ``__trace``
    (traceId, duration, name) and ``__tags``; the link is shown only when every variable
    of the query is defined (``getVariableUsageInfo(...).allVariablesDefined``); its range
    is the span's start and end shifted by spanStartTimeShift / spanEndTimeShift.
  - Correlations (field links on the trace frame): every field of the span's row is a
    variable by its name (``getFieldLinksForExplore``: ``scopedVars[f.name]``), with the
    same all-defined rule; the range is the span's own, unshifted.
- ``getTimeRangeFromSpan``: from = floor(start ms + shift), to = floor(end ms + shift),
  one millisecond more when they are equal.

``LokiQuery.run`` then sends the filled query to Loki as Explore would (query_range,
backward, the datasource's maxLines).
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DATASOURCES_YAML = REPO / "grafana" / "provisioning" / "datasources" / "datasources.yaml"

# ${name}, ${name.path} or ${name:format} (templateSrv's variable syntax), and $name.
_VARIABLE = re.compile(r"\$\{(\w+)(?:\.([^:}]+))?(?::[^}]+)?\}|\$(\w+)")
_PATH_PART = re.compile(r'\.?(\w+)|\["([^"]+)"\]')
_DURATION = re.compile(r"(-?\d+)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def provisioned(uid: str) -> dict[str, Any]:
    """The provisioned datasource ``uid``, "$$" turned back into "$" as Grafana reads it."""
    text = DATASOURCES_YAML.read_text(encoding="utf-8").replace("$$", "$")
    for source in yaml.safe_load(text)["datasources"]:
        if source["uid"] == uid:
            return dict(source)
    raise KeyError(f"no provisioned datasource with uid {uid}")


@dataclass(frozen=True)
class SpanRow:
    """One row of Grafana's trace frame for a Jaeger span."""

    trace_id: str
    span_id: str
    operation: str
    service: str
    service_tags: dict[str, Any]
    tags: dict[str, Any]
    start_ms: float
    duration_ms: float

    @classmethod
    def from_jaeger(cls, trace: Mapping[str, Any], span: Mapping[str, Any]) -> SpanRow:
        """The row Grafana builds from a span of Jaeger's /api/traces/<id> answer."""
        process = trace["processes"][span["processID"]]
        return cls(
            trace_id=span["traceID"],
            span_id=span["spanID"],
            operation=span["operationName"],
            service=process["serviceName"],
            service_tags={t["key"]: t["value"] for t in process.get("tags") or []},
            tags={t["key"]: t["value"] for t in span.get("tags") or []},
            start_ms=span["startTime"] / 1000,
            duration_ms=span["duration"] / 1000,
        )

    def fields(self) -> dict[str, Any]:
        """The row's fields by name, as correlations see them."""
        return {
            "traceID": self.trace_id,
            "spanID": self.span_id,
            "operationName": self.operation,
            "serviceName": self.service,
            "startTime": self.start_ms,
            "duration": self.duration_ms,
        }

    def time_range_ms(self, start_shift_ms: int = 0, end_shift_ms: int = 0) -> tuple[int, int]:
        start = math.floor(self.start_ms + start_shift_ms)
        end = math.floor(self.start_ms + self.duration_ms + end_shift_ms)
        return start, end + 1 if end == start else end


def interval_ms(text: str | None) -> int:
    """rangeUtil.intervalToMs for the shifts used here ("-5m", "30s"); unset is 0."""
    if not text:
        return 0
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"time shift {text!r}: expected a number and ms, s, m, h or d")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def interpolate(template: str, scoped: Mapping[str, Any]) -> str | None:
    """``template`` with its variables replaced, or None when any is undefined (Grafana then
    shows no link)."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1) or match.group(3)
        found: Any = scoped.get(name)
        for part in _PATH_PART.finditer(match.group(2) or ""):
            key = part.group(1) or part.group(2)
            found = found.get(key) if isinstance(found, Mapping) else None
        if found is None:
            missing = True
            return ""
        return str(found)

    filled = _VARIABLE.sub(value, template)
    return None if missing else filled


@dataclass(frozen=True)
class LokiQuery:
    """A filled link: the LogQL query and its time range in ms."""

    expr: str
    start_ms: int
    end_ms: int

    def run(self, loki_url: str, limit: int) -> list[dict[str, Any]]:
        """Loki's answer (one entry per line: stream labels/metadata and the line)."""
        params = {
            "query": self.expr,
            "start": str(self.start_ms * 1_000_000),
            "end": str(self.end_ms * 1_000_000),
            "limit": str(limit),
            "direction": "backward",
        }
        url = f"{loki_url}/loki/api/v1/query_range?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return [
            {**stream["stream"], "line": line}
            for stream in body["data"]["result"]
            for _, line in stream["values"]
        ]


def span_logs_link(trace_datasource: Mapping[str, Any], row: SpanRow) -> LokiQuery | None:
    """The trace datasource's correlation to Loki on the traceID field, for this span."""
    (correlation,) = [
        c
        for c in trace_datasource.get("correlations", [])
        if c["targetUID"] == "loki" and c["config"]["field"] == "traceID"
    ]
    expr = interpolate(correlation["config"]["target"]["expr"], row.fields())
    if expr is None:
        return None
    return LokiQuery(expr, *row.time_range_ms())


def call_logs_link(
    trace_datasource: Mapping[str, Any], row: SpanRow, trace_name: str, trace_duration_ms: float
) -> LokiQuery | None:
    """The trace datasource's tracesToLogsV2 custom query, for this span."""
    options = trace_datasource["jsonData"]["tracesToLogsV2"]
    assert options.get("customQuery") is True
    scoped = {
        "__trace": {"traceId": row.trace_id, "duration": trace_duration_ms, "name": trace_name},
        "__span": {
            "spanId": row.span_id,
            "traceId": row.trace_id,
            "duration": row.duration_ms,
            "name": row.operation,
            "tags": {**row.service_tags, **row.tags},
        },
        "__tags": ", ".join(
            f'{t.get("value") or t["key"]}="{v}"'
            for t in options.get("tags", [])
            for k, v in {**row.service_tags, **row.tags}.items()
            if k == t["key"]
        ),
    }
    expr = interpolate(options["query"], scoped)
    if expr is None:
        return None
    shifts = (
        interval_ms(options.get("spanStartTimeShift")),
        interval_ms(options.get("spanEndTimeShift")),
    )
    return LokiQuery(expr, *row.time_range_ms(*shifts))
