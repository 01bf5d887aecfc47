"""Generate voiceobs' Grafana dashboards (grafana/dashboards/<folder>/<uid>.json).

The nine dashboards share variables, links and panel shapes, so they are built from one
set of helpers here instead of nine hand-edited JSON files that drift. The helpers use
Grafana's typed builders (``grafana-foundation-sdk``, a dev dependency, builders for
Grafana 11.6's dashboard schema). Run ``python grafana/build_dashboards.py`` after editing;
``tests/grafana`` fails when the committed JSON differs from what this script writes. Metric
names come from ``voiceobs/semconv.py`` (and ``grafana/external-metrics.txt`` for
non-voiceobs names).

The SDK writes a zero value for every option it models that is left unset, where Grafana
would use its own default (an unset heatmap palette has 0 steps and draws nothing; an unset
legend is hidden), so the helpers below set those options explicitly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Self

from grafana_foundation_sdk.builders import bargauge as sdk_bargauge
from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.builders import heatmap as sdk_heatmap
from grafana_foundation_sdk.builders import logs as sdk_logs
from grafana_foundation_sdk.builders import loki as sdk_loki
from grafana_foundation_sdk.builders import prometheus as sdk_prometheus
from grafana_foundation_sdk.builders import stat as sdk_stat
from grafana_foundation_sdk.builders import statetimeline as sdk_statetimeline
from grafana_foundation_sdk.builders import table as sdk_table
from grafana_foundation_sdk.builders import text as sdk_text
from grafana_foundation_sdk.builders import timeseries as sdk_timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import heatmap as heatmap_models
from grafana_foundation_sdk.models import loki as loki_models
from grafana_foundation_sdk.models import prometheus as prometheus_models
from grafana_foundation_sdk.models import text as text_models

Json = dict[str, Any]
Target = cogbuilder.Builder[cogvariants.Dataquery]
Link = sdk.DashboardLink
Row = sdk.Row
PanelBuilder = Any
"""One of the SDK's panel builders: they share the generic panel methods but no base class."""

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
sys.path.insert(0, str(HERE.parent))
from voiceobs import semconv  # noqa: E402  (the telemetry contract: buckets)

TURN_BUDGET_S = 0.8
COST_PER_MINUTE_BUDGET_USD = 0.20
LLM_DURATION_TOP_BUCKET_S = semconv.LLM_DURATION.buckets[-1]
TURN = "voice_turn_latency_seconds"
STAGE_LEVEL = "job_tenant_pipeline_provider_model"  # what stage percentiles are recorded by

PROM = models.DataSourceRef(type_val="prometheus", uid="prometheus")
LOKI = models.DataSourceRef(type_val="loki", uid="loki")
JAEGER = models.DataSourceRef(type_val="jaeger", uid="jaeger")

# Label filters shared by every voice query. Multi-value variables are always matched
# with =~ (Grafana renders a multi selection as a regex alternation).
# The service identity: Prometheus' job is service.namespace/service.name (remote write
# joins the two), Loki's service_name and Jaeger's service are service.name alone.
# $service holds jobs; a link that knows only service.name (a Loki log line) still
# selects its job, because the optional "<namespace>/" prefix is matched here.
SVC = 'job=~"(.+/)?($service)"'
# service.name of the selected jobs, for Loki stream selectors and Jaeger searches.
LOKI_SVC = 'service_name=~"$service_name"'
TP = f'{SVC}, tenant=~"$tenant", pipeline=~"$pipeline"'
TPP = f'{TP}, provider=~"$provider"'
PIPE = f'{SVC}, pipeline=~"$pipeline"'
PROV = f'{SVC}, provider=~"$provider"'

# A provider's faults among the requests it answered: a cancelled request (the engine
# stopped it, e.g. on barge-in) is neither a fault nor a success. The recording rule
# provider_component:voice_provider_requests:error_ratio_rate5m uses the same two.
PROVIDER_FAULT = 'outcome=~"error|timeout|rate_limited"'
PROVIDER_ANSWERED = 'outcome!="cancelled"'


# Recorded 5-minute rates (prometheus/rules/recording.yml) that the time-series panels plot
# instead of rating raw counters at every point of a long time range.
TURNS_BY_INTERRUPTED = "job_tenant_pipeline_interrupted:voice_turns:rate5m"
SERVED = 'status=~"completed|transferred"'
RECORDED_RATE_NOTE = "Recorded 5-minute rates."

# Recorded 5-minute increases, evaluated every 5 minutes so that the windows tile the time
# line (the group voiceobs-recording-panels-5m): a panel that sums them over its time range
# or its points' interval reads 12 samples an hour per series instead of 240.
SPEND_5M = "job_tenant_pipeline_provider_component:voice_cost_usd:increase5m"
CALLS_BY_STATUS_5M = "job_tenant_pipeline_status:voice_calls:increase5m"
FAILURES_5M = "job_tenant_pipeline_failure_reason:voice_calls:increase5m"
REQUESTS_5M = "job_provider_component_outcome:voice_provider_requests:increase5m"
CALL_COST_5M = "job_tenant_pipeline:voice_call_cost_usd_sum:increase5m"
CALLS_COSTED_5M = "job_tenant_pipeline:voice_call_cost_usd_count:increase5m"
CALL_SECONDS_5M = "job_tenant_pipeline:voice_call_duration_seconds_sum:increase5m"
STT_AUDIO_5M = "job_tenant_pipeline_provider_model:voice_stt_audio_seconds:increase5m"
LLM_TOKENS_5M = "job_tenant_pipeline_provider_model_type:voice_llm_tokens:increase5m"
TTS_CHARACTERS_5M = "job_tenant_pipeline_provider_model:voice_tts_characters:increase5m"
TURN_BUCKETS_5M = "job_tenant_pipeline_le:voice_turn_latency_seconds_bucket:increase5m"
JITTER_BUCKETS_5M = "job_pipeline_direction_le:voice_jitter_buffer_depth_seconds_bucket:increase5m"
WINDOWS_5M = "5m"
"""Min interval of a panel that plots 5-minute windows: a point never splits one."""
RANGE_EDGE_NOTE = (
    "Summed from recorded 5-minute windows: the oldest may begin up to 5 minutes before the "
    "time range, and the newest 5 minutes of the range are counted once their window closes."
)
POINT_NOTE = (
    "Each point sums the recorded 5-minute windows that close within its interval (at least "
    "5 minutes), so the newest point lags by up to 5 minutes."
)
HEATMAP_COLUMNS = 300
"""A heatmap's columns at most (Grafana's max data points): every column is one query step
over every bucket series, and 2-3 pixels are as narrow as a cell needs to be; over 7 days a
column is 30 minutes, over a day 5 minutes."""
# Daily panels step by a day (min interval 1d), so each 1-day window is read once, not once
# per point.
DAILY_NOTE = "One point per UTC day, at the day's end."


def summed(series: str, labels: str, window: str = "$__range", by: str | None = None) -> str:
    """The recorded 5-minute increases of ``series`` summed over ``window`` (and over the
    series, or ``by`` those labels)."""
    group = f"sum by ({by}) " if by is not None else "sum"
    return f"{group}(sum_over_time({series}{{{labels}}}[{window}]))"


def per_minute(series: str, labels: str, by: str, unit_s: int = 60) -> str:
    """Recorded 5-minute increases as a per-minute (or per ``unit_s``) figure for each point:
    the windows that close within the point's interval, over the interval's minutes."""
    return f"{summed(series, labels, '$__interval', by)} * {unit_s * 1000} / $__interval_ms"


def stage_buckets_5m(metric: str) -> str:
    """A stage histogram's recorded 5-minute bucket increases, per tenant, pipeline, provider
    and model."""
    return f"{STAGE_LEVEL}_le:{metric}_bucket:increase5m"


LLM_BUCKETS_5M = stage_buckets_5m("voice_llm_duration_seconds")


def cost_per_call_minute(labels: str, window: str, by: str | None = None) -> str:
    """Dollars per call-minute as the CostPerCallMinuteHigh rule computes it: the cost of
    the calls that ended (voice_call_cost_usd) over those same calls' minutes."""
    return (
        f"{summed(CALL_COST_5M, labels, window, by)} / "
        f"({summed(CALL_SECONDS_5M, labels, window, by)} / 60)"
    )


def call_success_ratio(window: str) -> str:
    """Share of the calls ended in ``window`` that were served (completed or transferred)."""
    return (
        f"{summed(CALLS_BY_STATUS_5M, f'{TP}, {SERVED}', window)} / "
        f"{summed(CALLS_BY_STATUS_5M, TP, window)}"
    )


def interrupted_turn_share() -> sdk_prometheus.Dataquery:
    """Share of turns in which the caller barged in, per pipeline."""
    return prom(
        f'sum by (pipeline) ({TURNS_BY_INTERRUPTED}{{{TP}, interrupted="true"}}) / '
        f"sum by (pipeline) ({TURNS_BY_INTERRUPTED}{{{TP}}})",
        "{{pipeline}}",
    )


VAR_QUERY = "&${service:queryparam}&${tenant:queryparam}&${pipeline:queryparam}"
RANGE = "?${__url_time_range}"

TITLES = {
    "voiceobs-overview": "Voice overview",
    "voiceobs-latency": "Turn latency breakdown",
    "voiceobs-call-explorer": "Call explorer",
    "voiceobs-cost": "Cost",
    "voiceobs-audio": "Audio & streaming",
    "voiceobs-providers": "Providers",
    "voiceobs-engine": "Engine & system",
    "voiceobs-pipeline": "Telemetry pipeline health",
    "voiceobs-executive": "Executive KPIs",
}


def dash_url(uid: str, extra: str = "") -> str:
    """A relative link to another voiceobs dashboard keeping time range and filters."""
    return f"/d/{uid}/{uid}{RANGE}{VAR_QUERY}{extra}"


def link_to(uid: str, title: str | None = None) -> Link:
    """A panel data link to another dashboard. The SDK types field links as dashboard
    links, so the JSON also carries a dashboard link's defaults, which data links ignore."""
    return Link(f"Open {title or TITLES[uid]}").url(dash_url(uid)).target_blank(False)


# --- Targets ---------------------------------------------------------------------------


def prom(
    expr: str,
    legend: str = "__auto",
    *,
    exemplar: bool = False,
    instant: bool = False,
    fmt: str = "time_series",
) -> sdk_prometheus.Dataquery:
    """A Prometheus target."""
    target = (
        sdk_prometheus.Dataquery()
        .datasource(PROM)
        .editor_mode(prometheus_models.QueryEditorMode.CODE)
        .expr(expr)
        .legend_format(legend)
        .exemplar(exemplar)
        .format(prometheus_models.PromQueryFormat(fmt))
    )
    return target.instant() if instant else target.range()


def table_query(expr: str, legend: str = "") -> sdk_prometheus.Dataquery:
    """A Prometheus instant query in table format (one row per series)."""
    return prom(expr, legend, instant=True, fmt="table")


class ExemplarsOnly(sdk_prometheus.Dataquery):
    """A Prometheus target whose series the panel hides: it is there for its exemplars."""


def quantile(q: float, metric: str, labels: str, by: str = "") -> str:
    """histogram_quantile over a classic histogram's buckets."""
    group = f"le, {by}" if by else "le"
    return (
        f"histogram_quantile({q}, sum by ({group}) "
        f"(rate({metric}_bucket{{{labels}}}[$__rate_interval])))"
    )


def recorded_quantile(q: float, metric: str, level: str, labels: str, by: str = "") -> str:
    """A percentile the recording rules keep (``<level>:<metric>:p<NN>_rate5m``), reading a
    few pre-computed series instead of every bucket over the whole time range. Percentiles do
    not add up: over several selected series the panel shows the highest."""
    name = f"{level}:{metric}:p{round(q * 100)}_rate5m"
    return f"max by ({by}) ({name}{{{labels}}})" if by else f"max({name}{{{labels}}})"


def percentiles(
    qs: tuple[float, ...],
    metric: str,
    level: str,
    labels: str,
    by: str,
    legend: str,
    *,
    exemplars: bool = True,
) -> list[Target]:
    """Targets for recorded percentiles, plus one exemplar-only target: the raw percentile as
    an instant query (one cheap point, hidden) whose exemplars Grafana fetches for the whole
    range, so dots still open traces."""
    targets: list[Target] = [
        prom(recorded_quantile(q, metric, level, labels, by), legend.format(p=round(q * 100)))
        for q in qs
    ]
    if exemplars:
        targets.append(exemplars_of(quantile(max(qs), metric, labels, by)))
    return targets


def exemplars_of(expr: str) -> ExemplarsOnly:
    """A raw query as an instant query (one cheap point, hidden) whose exemplars Grafana
    fetches for the whole range, so dots still open traces beside a recorded series."""
    return (
        ExemplarsOnly()
        .datasource(PROM)
        .editor_mode(prometheus_models.QueryEditorMode.CODE)
        .expr(expr)
        .legend_format("exemplars")
        .exemplar(True)
        .format(prometheus_models.PromQueryFormat.TIME_SERIES)
        .instant()
    )


def loki(expr: str, legend: str = "") -> sdk_loki.Dataquery:
    """A Loki range target."""
    return (
        sdk_loki.Dataquery()
        .datasource(LOKI)
        .editor_mode(loki_models.QueryEditorMode.CODE)
        .expr(expr)
        .legend_format(legend)
        .query_type(loki_models.LokiQueryType.RANGE)
    )


class JaegerSearch(cogbuilder.Builder[cogvariants.Dataquery], cogvariants.Dataquery):
    """A Jaeger trace search (one row per matching trace). The SDK has no Jaeger query
    type, so this is its own builder and model."""

    datasource = JAEGER

    def __init__(self, operation: str, tags: str, limit: int = 20) -> None:
        self.operation, self.tags, self.limit, self.ref = operation, tags, limit, ""

    def ref_id(self, ref_id: str) -> Self:
        self.ref = ref_id
        return self

    def build(self) -> JaegerSearch:
        return self

    def to_json(self) -> Json:
        return {
            "datasource": JAEGER,
            "queryType": "search",
            "service": "$service_name",
            "operation": self.operation,
            "tags": self.tags,
            "limit": self.limit,
            "refId": self.ref,
        }


# --- Panels ----------------------------------------------------------------------------

HIDE_SERIES = models.DynamicConfigValue(
    id_val="custom.hideFrom", value={"legend": True, "tooltip": True, "viz": True}
)
"""The override that hides one query's series (its exemplars stay)."""


def _thresholds(steps: list[tuple[float | None, str]] | None) -> sdk.ThresholdsConfig:
    return (
        sdk.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=v, color=c) for v, c in steps or [(None, "green")]])
    )


def _panel(
    panel: PanelBuilder,
    title: str,
    description: str,
    targets: list[Target],
    *,
    w: int = 12,
    h: int = 8,
    interval: str | None = None,
) -> PanelBuilder:
    """Title, description, size and targets (lettered A, B, …); the first target's datasource
    is the panel's."""
    panel.title(title).description(description).span(w).height(h)
    for i, target in enumerate(targets):
        ref = chr(ord("A") + i)
        panel.with_target(target.ref_id(ref))  # type: ignore[attr-defined]
        if isinstance(target, ExemplarsOnly):
            panel.override_by_query(ref, [HIDE_SERIES])
    if targets:
        panel.datasource(targets[0].build().datasource)  # type: ignore[attr-defined]
    if interval:
        panel.interval(interval)
    return panel


def _field_defaults(
    panel: PanelBuilder,
    unit: str,
    *,
    thresholds: list[tuple[float | None, str]] | None = None,
    data_links: list[Link] | None = None,
    mappings: list[models.ValueMapping] | None = None,
    decimals: int | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    color: models.FieldColorModeId = models.FieldColorModeId.PALETTE_CLASSIC,
) -> PanelBuilder:
    panel.unit(unit).thresholds(_thresholds(thresholds))
    panel.color_scheme(sdk.FieldColor().mode(color))
    panel.mappings(mappings or []).data_links(data_links or [])
    if decimals is not None:
        panel.decimals(decimals)
    if minimum is not None:
        panel.min(minimum)
    if maximum is not None:
        panel.max(maximum)
    return panel


REDUCE_LAST = sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def timeseries(
    title: str,
    description: str,
    targets: list[Target],
    unit: str,
    *,
    budget: float | None = None,
    stack: bool = False,
    data_links: list[Link] | None = None,
    minimum: float | None = 0,
    maximum: float | None = None,
    w: int = 12,
    h: int = 8,
    interval: str | None = None,
) -> sdk_timeseries.Panel:
    """A time series; ``budget`` draws a red threshold line (e.g. the 800 ms turn budget)."""
    panel = _panel(sdk_timeseries.Panel(), title, description, targets, w=w, h=h, interval=interval)
    _field_defaults(
        panel,
        unit,
        thresholds=[(None, "green"), (budget, "red")] if budget is not None else None,
        data_links=data_links,
        minimum=minimum,
        maximum=maximum,
    )
    stacking = common_models.StackingMode.NORMAL if stack else common_models.StackingMode.NONE
    threshold_style = (
        common_models.GraphThresholdsStyleMode.LINE_AND_AREA
        if budget is not None
        else common_models.GraphThresholdsStyleMode.OFF
    )
    return (
        panel.draw_style(common_models.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(60 if stack else 10)
        .show_points(common_models.VisibilityMode.NEVER)
        .span_nulls(False)
        .stacking(sdk_common.StackingConfig().mode(stacking).group("A"))
        .thresholds_style(sdk_common.GraphThresholdsStyleConfig().mode(threshold_style))
        .legend(
            sdk_common.VizLegendOptions()
            .show_legend(True)
            .display_mode(common_models.LegendDisplayMode.TABLE)
            .placement(common_models.LegendPlacement.BOTTOM)
            .calcs(["lastNotNull"])
        )
        .tooltip(
            sdk_common.VizTooltipOptions()
            .mode(common_models.TooltipDisplayMode.MULTI)
            .sort(common_models.SortOrder.DESCENDING)
        )
    )


def stat(
    title: str,
    description: str,
    targets: list[Target],
    unit: str,
    *,
    thresholds: list[tuple[float | None, str]] | None = None,
    data_links: list[Link] | None = None,
    decimals: int | None = None,
    w: int = 6,
    h: int = 5,
) -> sdk_stat.Panel:
    """A single number. Its Prometheus queries are instant: one evaluation at the end of the
    range, not one per step of a range query that the stat would reduce to its last value."""
    for target in targets:
        if isinstance(target, sdk_prometheus.Dataquery):
            target.instant()
    panel = _panel(sdk_stat.Panel(), title, description, targets, w=w, h=h)
    _field_defaults(panel, unit, thresholds=thresholds, data_links=data_links, decimals=decimals)
    return (
        panel.reduce_options(REDUCE_LAST)
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .color_mode(common_models.BigValueColorMode.VALUE)
        .justify_mode(common_models.BigValueJustifyMode.AUTO)
        .text_mode(common_models.BigValueTextMode.AUTO)
        .orientation(common_models.VizOrientation.AUTO)
    )


DROP_TIME: Json = {"id": "organize", "options": {"excludeByName": {"Time": True}}}
"""The table transformation that hides an instant query's Time column."""


def table(
    title: str,
    description: str,
    targets: list[Target],
    unit: str,
    *,
    transformations: list[Json] | None = None,
    w: int = 12,
    h: int = 8,
) -> sdk_table.Panel:
    """A table of instant values."""
    panel = _panel(sdk_table.Panel(), title, description, targets, w=w, h=h)
    _field_defaults(panel, unit)
    for step in transformations or []:
        panel.with_transformation(
            models.DataTransformerConfig(id_val=step["id"], options=step["options"])
        )
    return panel.show_header(True).cell_height(common_models.TableCellHeight.SM)


def bargauge(title: str, description: str, targets: list[Target], unit: str) -> sdk_bargauge.Panel:
    """Horizontal bars, one per series (e.g. failure reasons)."""
    panel = _panel(sdk_bargauge.Panel(), title, description, targets)
    _field_defaults(panel, unit)
    return (
        panel.orientation(common_models.VizOrientation.HORIZONTAL)
        .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(REDUCE_LAST)
        .show_unfilled(True)
    )


def heatmap(
    title: str,
    description: str,
    targets: list[Target],
    unit: str,
    *,
    w: int = 12,
    interval: str | None = None,
) -> sdk_heatmap.Panel:
    """A heatmap of pre-bucketed histogram data (targets use format: heatmap), at most
    HEATMAP_COLUMNS columns wide."""
    panel = _panel(sdk_heatmap.Panel(), title, description, targets, w=w, interval=interval)
    panel.max_data_points(HEATMAP_COLUMNS)
    _field_defaults(panel, unit)
    return (
        panel.calculate(False)
        .cell_gap(1)
        .color(
            # Grafana's own defaults for the palette, which the SDK would write as zeros.
            sdk_heatmap.HeatmapColorOptions()
            .mode(heatmap_models.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .scale(heatmap_models.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
            .steps(64)
            .fill("dark-orange")
            .reverse(False)
        )
        .y_axis(
            sdk_heatmap.YAxisConfig().unit(unit).axis_placement(common_models.AxisPlacement.LEFT)
        )
        .rows_frame(sdk_heatmap.RowsHeatmapOptions().layout(common_models.HeatmapCellLayout.AUTO))
        .exemplars_color("rgba(255,0,255,0.7)")
        .show_y_histogram()
        .show_legend()
    )


CIRCUIT_MAPPINGS: list[models.ValueMapping] = [
    models.ValueMap(
        options={
            "0": models.ValueMappingResult(text="closed", color="green", index=0),
            "1": models.ValueMappingResult(text="half-open", color="yellow", index=1),
            "2": models.ValueMappingResult(text="open", color="red", index=2),
        }
    )
]


def state_timeline(
    title: str,
    description: str,
    targets: list[Target],
    *,
    mappings: list[models.ValueMapping] | None = None,
    thresholds: list[tuple[float | None, str]] | None = None,
    w: int = 12,
) -> sdk_statetimeline.Panel:
    """States over time; defaults to circuit breakers, 0 closed / 1 half-open / 2 open."""
    panel = _panel(sdk_statetimeline.Panel(), title, description, targets, w=w)
    _field_defaults(
        panel,
        "none",
        mappings=mappings if mappings is not None else CIRCUIT_MAPPINGS,
        thresholds=thresholds or [(None, "green"), (1, "yellow"), (2, "red")],
        color=models.FieldColorModeId.THRESHOLDS,
    )
    return (
        panel.line_width(0)
        .fill_opacity(80)
        .merge_values(True)
        .show_value(common_models.VisibilityMode.AUTO)
        .align_value("left")
        .row_height(0.9)
        .legend(
            sdk_common.VizLegendOptions()
            .show_legend(True)
            .display_mode(common_models.LegendDisplayMode.LIST)
            .placement(common_models.LegendPlacement.BOTTOM)
        )
        .tooltip(
            sdk_common.VizTooltipOptions()
            .mode(common_models.TooltipDisplayMode.SINGLE)
            .sort(common_models.SortOrder.NONE)
        )
    )


UP_MAPPINGS: list[models.ValueMapping] = [
    models.ValueMap(
        options={
            "0": models.ValueMappingResult(text="down", color="red", index=0),
            "1": models.ValueMappingResult(text="up", color="green", index=1),
        }
    )
]


def logs(
    title: str, description: str, targets: list[Target], *, w: int = 24, h: int = 12
) -> sdk_logs.Panel:
    """A Loki logs panel."""
    return (
        _panel(sdk_logs.Panel(), title, description, targets, w=w, h=h)
        .show_time(True)
        .wrap_log_message(True)
        .sort_order(common_models.LogsSortOrder.ASCENDING)
        .enable_log_details(True)
        .prettify_log_message(False)
        .dedup_strategy(common_models.LogsDedupStrategy.NONE)
    )


def text(title: str, description: str, content: str) -> sdk_text.Panel:
    """A markdown note (no targets)."""
    panel = _panel(sdk_text.Panel(), title, description, [], w=24, h=3)
    return panel.mode(text_models.TextMode.MARKDOWN).content(content)


def row(title: str) -> Row:
    """A row header (a layout element, not a data panel)."""
    return Row(title).collapsed(False)


# --- Dashboard -------------------------------------------------------------------------


def _var(
    name: str, label: str, query: str, *, all_value: str | None = ".*", multi: bool = True
) -> sdk.QueryVariable:
    variable = (
        sdk.QueryVariable(name)
        .label(label)
        .datasource(PROM)
        .query(query)
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(multi)
        .include_all(multi)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
        .regex("")
        .hide(models.VariableHide.DONT_HIDE)
        .options([])
    )
    if multi:
        variable.current(models.VariableOption(selected=True, text=["All"], value=["$__all"]))
        if all_value is not None:
            variable.all_value(all_value)
    return variable


SERVICE_NAME_REGEX = r"/^(?:.*\/)?([^\/]+)$/"
"""Grafana variable regex: the service.name part of a job (``ns/name`` or ``name``)."""


def service_name_variable() -> sdk.QueryVariable:
    """Hidden: the service.name of every job ``$service`` selects (Loki, Jaeger).

    It has no All value of its own, so "All" (its only state) renders as the alternation
    of its options, which are exactly the selected services' names.
    """
    return (
        _var(
            "service_name",
            "Service name",
            f"label_values(voice_calls_total{{{SVC}}}, job)",
            all_value=None,
        )
        .regex(SERVICE_NAME_REGEX)
        .hide(models.VariableHide.HIDE_VARIABLE)
    )


def standard_variables(
    *, single_service: bool = False
) -> list[cogbuilder.Builder[models.VariableModel]]:
    """service (+ hidden service_name), tenant, pipeline and provider, from label_values.

    ``service`` is the Prometheus ``job`` (service.namespace/service.name, or service.name
    alone); its All value is ``.+``. ``service_name`` follows it for Loki and Jaeger.
    """
    service = _var(
        "service",
        "Service",
        "label_values(voice_calls_total, job)",
        all_value=".+",
        multi=not single_service,
    )
    return [
        service,
        service_name_variable(),
        _var("tenant", "Tenant", f"label_values(voice_calls_total{{{SVC}}}, tenant)"),
        _var(
            "pipeline",
            "Pipeline",
            f'label_values(voice_calls_total{{{SVC}, tenant=~"$tenant"}}, pipeline)',
        ),
        _var(
            "provider",
            "Provider",
            f"label_values(voice_provider_requests_total{{{SVC}}}, provider)",
        ),
    ]


def _layout(dash: sdk.Dashboard, items: list[Row | PanelBuilder]) -> None:
    """Flow panels left to right into a 24-column grid; rows start a new line. (The SDK's
    own flow lets a panel run past column 24 instead of starting a new line.)"""
    x = y = line_h = 0
    for pid, item in enumerate(items, start=1):
        item.id(pid)
        if isinstance(item, Row):
            y += line_h
            dash.with_row(item.grid_pos(models.GridPos(x=0, y=y, w=24, h=1)))
            y += 1
            x = line_h = 0
            continue
        size = item.build().grid_pos
        if x + size.w > 24:
            y += line_h
            x = line_h = 0
        dash.with_panel(item.grid_pos(models.GridPos(x=x, y=y, w=size.w, h=size.h)))
        x += size.w
        line_h = max(line_h, size.h)


BUILT_IN_ANNOTATIONS = (
    sdk.AnnotationQuery()
    .built_in(1)
    .datasource(models.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
    .enable(True)
    .hide(True)
    .icon_color("rgba(0, 211, 255, 1)")
    .name("Annotations & Alerts")
    .type("dashboard")
)

DASHBOARD_LINKS: list[cogbuilder.Builder[models.DashboardLink]] = [
    Link("voiceobs dashboards")
    .type(models.DashboardLinkType.DASHBOARDS)
    .tags(["voiceobs"])
    .as_dropdown(True)
    .include_vars(True)
    .keep_time(True)
    .icon("external link"),
    Link("Call explorer")
    .type(models.DashboardLinkType.LINK)
    .url(f"/d/voiceobs-call-explorer/voiceobs-call-explorer{RANGE}")
    .icon("search")
    .tooltip("Find one call's trace, logs and turns by call id"),
]
"""The shared links menu to every other voiceobs dashboard, and the call explorer."""


def dashboard(
    uid: str,
    description: str,
    panels: list[Row | PanelBuilder],
    *,
    variables: list[cogbuilder.Builder[models.VariableModel]] | None = None,
    tags: tuple[str, ...] = (),
    time_from: str = "now-6h",
) -> sdk.Dashboard:
    """A complete dashboard with the shared links menu to every other voiceobs dashboard."""
    dash = (
        sdk.Dashboard(TITLES[uid])
        .uid(uid)
        .description(description)
        .tags(["voiceobs", *tags])
        .version(1)
        .editable()
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .timezone("browser")
        .refresh("30s")
        .time(time_from, "now")
        .fiscal_year_start_month(0)
        .live_now(False)
        .week_start("")
        .annotation(BUILT_IN_ANNOTATIONS)
        .links(DASHBOARD_LINKS)
        .variables(variables if variables is not None else standard_variables())
    )
    _layout(dash, panels)
    return dash


# --- The dashboards --------------------------------------------------------------------

BUDGET_NOTE = "The red line is the 800 ms turn-latency budget (the P95 alert threshold)."


def overview() -> sdk.Dashboard:
    calls = f"voice_calls_total{{{TP}}}"
    panels = [
        row("Are calls working right now?"),
        stat(
            "Active calls",
            "Calls in progress now, summed over every worker (voice_calls_active).",
            [prom(f"sum(voice_calls_active{{{TP}}})", "active")],
            "short",
            data_links=[link_to("voiceobs-engine", "active calls per worker")],
        ),
        stat(
            "Call rate",
            "Calls ended per minute over the selected filters.",
            [prom(f"sum(rate({calls}[$__rate_interval])) * 60", "calls/min")],
            "cpm",
        ),
        stat(
            "Success rate",
            "Share of ended calls with status completed or transferred, over the time range. "
            + RANGE_EDGE_NOTE,
            [prom(call_success_ratio("$__range"), "success")],
            "percentunit",
            thresholds=[(None, "red"), (0.9, "yellow"), (0.97, "green")],
            decimals=1,
        ),
        stat(
            "Cost per call-minute",
            "Cost of the calls that ended in the time range divided by their minutes (as "
            "the CostPerCallMinuteHigh alert computes it); alert threshold $0.20/min. "
            + RANGE_EDGE_NOTE,
            [prom(cost_per_call_minute(TP, "$__range"), "USD/min", instant=True)],
            "currencyUSD",
            thresholds=[(None, "green"), (0.15, "yellow"), (COST_PER_MINUTE_BUDGET_USD, "red")],
            decimals=3,
            data_links=[link_to("voiceobs-cost")],
        ),
        timeseries(
            "Ended calls by status",
            "Calls ended per minute by status (completed, failed, abandoned, transferred). "
            + POINT_NOTE,
            [prom(per_minute(CALLS_BY_STATUS_5M, TP, "status"), "{{status}}")],
            "cpm",
            interval=WINDOWS_5M,
        ),
        timeseries(
            "Failure reasons",
            "Failed or abandoned calls per minute by failure_reason ('none' is excluded). "
            + POINT_NOTE,
            [prom(per_minute(FAILURES_5M, TP, "failure_reason"), "{{failure_reason}}")],
            "cpm",
            interval=WINDOWS_5M,
            stack=True,
        ),
        row("Are we fast?"),
        timeseries(
            "Turn latency P50 / P95 / P99 by pipeline",
            "User end of speech to agent first audio, percentiles of the "
            "voice_turn_latency_seconds histogram per pipeline (recorded every 5 min per "
            "tenant and pipeline; over several tenants, the highest). " + BUDGET_NOTE + " "
            "Exemplar dots open the turn's trace.",
            percentiles(
                (0.5, 0.95, 0.99),
                TURN,
                "job_tenant_pipeline",
                TP,
                "pipeline",
                "P{p} {{{{pipeline}}}}",
            ),
            "s",
            budget=TURN_BUDGET_S,
            w=16,
            h=9,
            data_links=[link_to("voiceobs-latency")],
        ),
        stat(
            "Turns within budget",
            "Share of turns whose latency was at most 800 ms, over the time range. "
            + RANGE_EDGE_NOTE,
            [
                prom(
                    summed(TURN_BUCKETS_5M, TP + ', le="0.8"')
                    + " / "
                    + summed(TURN_BUCKETS_5M, TP + ', le="+Inf"'),
                    "within budget",
                )
            ],
            "percentunit",
            thresholds=[(None, "red"), (0.9, "yellow"), (0.95, "green")],
            decimals=1,
            w=8,
            h=9,
        ),
        row("What does it cost?"),
        timeseries(
            "Cost per minute by component",
            "Spend in US dollars per wall-clock minute, by component (stt, llm, tts). "
            + POINT_NOTE,
            [prom(per_minute(SPEND_5M, TP, "component"), "{{component}}")],
            "currencyUSD",
            stack=True,
            interval=WINDOWS_5M,
            w=24,
            data_links=[link_to("voiceobs-cost")],
        ),
    ]
    return dashboard(
        "voiceobs-overview",
        "Are calls working, are we fast, what does it cost: the first dashboard to open.",
        panels,
        tags=("voice",),
    )


STAGES = (
    ("voice_eou_delay_seconds", "End-of-utterance delay"),
    ("voice_stt_latency_seconds", "STT finalisation"),
    ("voice_llm_ttft_seconds", "LLM time to first token"),
    ("voice_tts_ttfb_seconds", "TTS time to first byte"),
)


def latency() -> sdk.Dashboard:
    panels: list[Row | PanelBuilder] = [
        row("Turn latency"),
        timeseries(
            "Turn latency P50 / P95 / P99",
            "Percentiles of voice_turn_latency_seconds (recorded every 5 min per tenant "
            "and pipeline): over several tenants or pipelines, the highest. "
            + BUDGET_NOTE
            + " Click an exemplar to open that turn's trace.",
            percentiles((0.5, 0.95, 0.99), TURN, "job_tenant_pipeline", TP, "", "P{p}"),
            "s",
            budget=TURN_BUDGET_S,
            data_links=[link_to("voiceobs-call-explorer")],
        ),
        heatmap(
            "Turn latency heatmap",
            "Distribution of turn latency over time: turns in each histogram bucket per "
            "column. " + POINT_NOTE + " The percentile panels carry the exemplars.",
            [prom(summed(TURN_BUCKETS_5M, TP, "$__interval", "le"), "{{le}}", fmt="heatmap")],
            "s",
            interval=WINDOWS_5M,
        ),
        timeseries(
            "Turn latency P95 by tenant",
            "P95 turn latency per tenant, to spot one customer's slow pipeline. " + BUDGET_NOTE,
            percentiles((0.95,), TURN, "job_tenant_pipeline", TP, "tenant", "{{{{tenant}}}}"),
            "s",
            budget=TURN_BUDGET_S,
        ),
        timeseries(
            "Interrupted turn share",
            'Share of turns in which the user barged in (voice_turns_total{interrupted="true"}). '
            + RECORDED_RATE_NOTE,
            [interrupted_turn_share()],
            "percentunit",
            maximum=1,
            data_links=[link_to("voiceobs-audio")],
        ),
        row("Breakdown by provider and model (P95)"),
    ]
    for metric, name in STAGES:
        panels.append(
            timeseries(
                f"{name} P95 by provider and model",
                f"P95 of {metric} per provider and model (recorded every 5 min; over several "
                "tenants or pipelines, the highest); the turn budget line shows how much of "
                "the 800 ms this stage alone uses.",
                percentiles(
                    (0.95,),
                    metric,
                    STAGE_LEVEL,
                    TPP,
                    "provider, model",
                    "{{{{provider}}}} {{{{model}}}}",
                ),
                "s",
                budget=TURN_BUDGET_S,
                data_links=[link_to("voiceobs-providers")],
            )
        )
    panels.append(
        timeseries(
            "LLM full response duration P95 by provider and model",
            "P95 of voice_llm_duration_seconds (request to last token); beyond the turn "
            "budget, since the agent speaks while the LLM streams. A percentile cannot "
            "exceed the histogram's highest finite bucket: the panel beside it shows the "
            "share of responses beyond that bound.",
            percentiles(
                (0.95,),
                "voice_llm_duration_seconds",
                STAGE_LEVEL,
                TPP,
                "provider, model",
                "{{{{provider}}}} {{{{model}}}}",
            ),
            "s",
            w=16,
        )
    )
    top = f'le=~"{LLM_DURATION_TOP_BUCKET_S:g}(\\\\.0)?"'
    panels.append(
        timeseries(
            "LLM responses longer than the top bucket",
            f"Share of LLM responses (request to last token) longer than "
            f"{LLM_DURATION_TOP_BUCKET_S:g} s, the highest finite bucket of "
            "voice_llm_duration_seconds: where this is above 5 %, the P95 beside it is that "
            "bound, not the real duration. " + POINT_NOTE + " Exemplar dots open slow "
            "responses' traces.",
            [
                prom(
                    "1 - "
                    + summed(LLM_BUCKETS_5M, f"{TPP}, {top}", "$__interval", "provider")
                    + " / "
                    + summed(LLM_BUCKETS_5M, TPP + ', le="+Inf"', "$__interval", "provider"),
                    "{{provider}}",
                ),
                exemplars_of(
                    "1 - sum by (provider) (rate(voice_llm_duration_seconds_bucket"
                    f"{{{TPP}, {top}}}[$__rate_interval])) "
                    "/ sum by (provider) (rate(voice_llm_duration_seconds_count"
                    f"{{{TPP}}}[$__rate_interval]))"
                ),
            ],
            "percentunit",
            w=8,
            maximum=1,
            interval=WINDOWS_5M,
        )
    )
    panels.append(
        table(
            "Stage P95 per provider and model (time range)",
            "One row per provider and model with each stage's P95 over the whole time range, "
            "for comparing vendors. " + RANGE_EDGE_NOTE,
            [
                table_query(
                    "histogram_quantile(0.95, "
                    f"{summed(stage_buckets_5m(metric), TPP, by='le, provider, model')})",
                    name,
                )
                for metric, name in STAGES
            ],
            "s",
            w=24,
            transformations=[
                {"id": "merge", "options": {}},
                DROP_TIME,
            ],
        )
    )
    return dashboard(
        "voiceobs-latency",
        "Turn latency and its parts (EOU, STT, LLM TTFT, TTS TTFB) as percentiles, "
        "by provider and model, with exemplars to the slow turns' traces.",
        panels,
        tags=("voice",),
    )


def call_explorer() -> sdk.Dashboard:
    call_variable = (
        sdk.TextBoxVariable("call_id")
        .label("Call id")
        .default_value("")
        .current(models.VariableOption(selected=False, text="", value=""))
        .hide(models.VariableHide.DONT_HIDE)
        .options([])
        .description("The voice.call.id (from an exemplar, a log line or your engine)")
    )
    variables = [*standard_variables(single_service=True), call_variable]
    call_logs = f'{{{LOKI_SVC}}} | voice_call_id="$call_id"'
    panels = [
        text(
            "How to use",
            "Instructions for the call explorer.",
            "Paste a **call id** above (exemplars on latency panels, the *Call* link on a log "
            "line, or your engine's logs give one). The trace table opens the call's trace; "
            "in the trace, each span's log icon opens the call's logs.",
        ),
        table(
            "Call trace (Jaeger)",
            "Jaeger search for the voice.call span tagged voice.call.id=$call_id; click the "
            "trace id to open the whole call (every turn and stage span).",
            [JaegerSearch("voice.call", 'voice.call.id="$call_id"')],
            "none",
            w=12,
        ),
        table(
            "Turns of this call (Jaeger)",
            "Traces holding voice.turn spans of this call; each turn span carries "
            "voice.turn.number, voice.turn.latency and voice.turn.interrupted.",
            [JaegerSearch("voice.turn", 'voice.call.id="$call_id"', limit=50)],
            "none",
            w=12,
        ),
        logs(
            "Call logs (Loki)",
            "Every log line of the call: Loki structured metadata voice_call_id=$call_id. "
            "Expand a line and use its TraceID link to jump to the span that logged it.",
            [loki(call_logs)],
        ),
        timeseries(
            "Log lines of this call by level",
            "Log volume of the call per minute by detected level; a burst of errors shows "
            "where the call went wrong.",
            [
                loki(
                    f"sum by (detected_level) (count_over_time({call_logs} [$__auto]))",
                    "{{detected_level}}",
                )
            ],
            "short",
            stack=True,
        ),
        logs(
            "Turn and error lines",
            "Lines of the call that mention a turn, an interruption or an error, for a "
            "quick turn-by-turn reading.",
            [loki(f'{call_logs} |~ "(?i)turn|barge|interrupt|error|restart"')],
            w=12,
            h=8,
        ),
        row("Context: latency and cost around this call (exemplars link to calls)"),
        timeseries(
            "Turn latency P95 with exemplars",
            "P95 turn latency for the selected tenant/pipeline around the call's time; "
            "exemplar dots carry trace_id and voice_call_id and open the trace or this "
            "explorer for another call. " + BUDGET_NOTE,
            percentiles(
                (0.95,), TURN, "job_tenant_pipeline", TP, "pipeline", "P95 {{{{pipeline}}}}"
            ),
            "s",
            budget=TURN_BUDGET_S,
        ),
        timeseries(
            "Cost per call P95 with exemplars",
            "P95 of voice_call_cost_usd (cost of each call at its end); exemplars point at "
            "expensive calls.",
            percentiles(
                (0.95,),
                "voice_call_cost_usd",
                "job_tenant_pipeline",
                TP,
                "pipeline",
                "P95 {{{{pipeline}}}}",
            ),
            "currencyUSD",
        ),
    ]
    return dashboard(
        "voiceobs-call-explorer",
        "Why was this call bad? One call's trace, turns and logs by call id.",
        panels,
        variables=variables,
        tags=("voice",),
        time_from="now-24h",
    )


def cost() -> sdk.Dashboard:
    by_comp = f"voice_cost_usd_total{{{TPP}}}"
    spent = summed(SPEND_5M, TPP)
    panels = [
        row("Per call and per minute"),
        stat(
            "Average cost per call",
            "Total cost of ended calls divided by their number over the time range "
            "(voice_call_cost_usd sum / count; an average is fine for money). " + RANGE_EDGE_NOTE,
            [prom(f"{summed(CALL_COST_5M, TP)} / {summed(CALLS_COSTED_5M, TP)}", "avg/call")],
            "currencyUSD",
            decimals=4,
        ),
        stat(
            "Cost per call-minute",
            "Cost of the calls that ended in the time range divided by their minutes (as "
            "the CostPerCallMinuteHigh alert computes it); the alert fires above $0.20. "
            + RANGE_EDGE_NOTE,
            [prom(cost_per_call_minute(TP, "$__range"), "USD/min", instant=True)],
            "currencyUSD",
            thresholds=[(None, "green"), (0.15, "yellow"), (COST_PER_MINUTE_BUDGET_USD, "red")],
            decimals=3,
        ),
        stat(
            "Spend in time range",
            "Total AI spend over the time range for the selected filters. " + RANGE_EDGE_NOTE,
            [prom(spent, "USD")],
            "currencyUSD",
            decimals=2,
        ),
        stat(
            "Projected spend (30 days)",
            "Spend rate over the last hour extrapolated to 30 days.",
            [prom(f"sum(rate({by_comp}[1h])) * 86400 * 30", "USD/30d")],
            "currencyUSD",
            decimals=0,
        ),
        timeseries(
            "Cost per call P50 / P95 / P99",
            "Percentiles of the per-call cost histogram (voice_call_cost_usd), by pipeline.",
            percentiles(
                (0.5, 0.95, 0.99),
                "voice_call_cost_usd",
                "job_tenant_pipeline",
                TP,
                "pipeline",
                "P{p} {{{{pipeline}}}}",
            ),
            "currencyUSD",
        ),
        timeseries(
            "Cost per call-minute by pipeline",
            "Cost of the calls that ended over their minutes, per pipeline over 30-minute "
            "windows (six recorded 5-minute windows): the CostPerCallMinuteHigh alert's own "
            "figure; the red line is $0.20/min.",
            [prom(cost_per_call_minute(TP, "30m", "pipeline"), "{{pipeline}}")],
            "currencyUSD",
            budget=COST_PER_MINUTE_BUDGET_USD,
        ),
        row("By component and provider"),
        timeseries(
            "Spend per minute by component",
            "Dollars per wall-clock minute by component (stt, llm, tts, tool). " + POINT_NOTE,
            [prom(per_minute(SPEND_5M, TPP, "component"), "{{component}}")],
            "currencyUSD",
            stack=True,
            interval=WINDOWS_5M,
        ),
        timeseries(
            "Spend per minute by provider",
            "Dollars per wall-clock minute by provider and component. " + POINT_NOTE,
            [
                prom(
                    per_minute(SPEND_5M, TPP, "component, provider"),
                    "{{component}} {{provider}}",
                )
            ],
            "currencyUSD",
            stack=True,
            interval=WINDOWS_5M,
            data_links=[link_to("voiceobs-providers")],
        ),
        table(
            "Most expensive provider per component (optimisation hint)",
            "For each component, the provider with the highest spend over the time range: "
            "the first place to look for a cheaper model or vendor. " + RANGE_EDGE_NOTE,
            [
                table_query(
                    f"topk by (component) (1, {summed(SPEND_5M, TPP, by='component, provider')})",
                )
            ],
            "currencyUSD",
            transformations=[DROP_TIME],
        ),
        bargauge(
            "Spend by provider (time range)",
            "Total spend per provider over the time range. " + RANGE_EDGE_NOTE,
            [
                prom(
                    f"sort_desc({summed(SPEND_5M, TPP, by='provider')})",
                    "{{provider}}",
                    instant=True,
                )
            ],
            "currencyUSD",
        ),
        row("Per tenant"),
        table(
            "Spend per tenant, last 30 days",
            "Each tenant's spend over the last 30 days by component, for monthly billing and "
            "budget checks (from the recorded 5-minute windows, so the 30 days' edges are "
            "blurred by up to 5 minutes).",
            [table_query(summed(SPEND_5M, TPP, "30d", "tenant, component"))],
            "currencyUSD",
            transformations=[DROP_TIME],
        ),
        timeseries(
            "Daily spend per tenant",
            "Spend per tenant per day, the month's trend (each day's recorded 5-minute "
            "windows, so a day's edges are blurred by up to 5 minutes). " + DAILY_NOTE,
            [prom(summed(SPEND_5M, TPP, "1d", "tenant"), "{{tenant}}")],
            "currencyUSD",
            interval="1d",
        ),
        row("Usage behind the cost"),
        timeseries(
            "STT audio minutes per minute",
            "Audio seconds sent to STT, per provider and model, as minutes per minute. "
            + POINT_NOTE,
            [
                prom(
                    per_minute(STT_AUDIO_5M, TPP, "provider, model", unit_s=1),
                    "{{provider}} {{model}}",
                )
            ],
            "none",
            w=8,
            interval=WINDOWS_5M,
        ),
        timeseries(
            "LLM tokens per second",
            "Input and output tokens per provider and model. " + POINT_NOTE,
            [
                prom(
                    per_minute(LLM_TOKENS_5M, TPP, "provider, model, type", unit_s=1),
                    "{{provider}} {{model}} {{type}}",
                )
            ],
            "short",
            w=8,
            interval=WINDOWS_5M,
        ),
        timeseries(
            "TTS characters per second",
            "Characters synthesised per provider and model. " + POINT_NOTE,
            [
                prom(
                    per_minute(TTS_CHARACTERS_5M, TPP, "provider, model", unit_s=1),
                    "{{provider}} {{model}}",
                )
            ],
            "short",
            w=8,
            interval=WINDOWS_5M,
        ),
    ]
    return dashboard(
        "voiceobs-cost",
        "AI cost from the rate card: per call, per call-minute, per tenant per month, "
        "by component and provider, with optimisation hints.",
        panels,
        tags=("business",),
        time_from="now-24h",
    )


def audio() -> sdk.Dashboard:
    panels = [
        row("Streaming restarts"),
        timeseries(
            "Restarts per call P50 / P95 / P99",
            "Percentiles of voice_call_stream_restarts (streaming restarts counted per call, "
            "recorded at call end), by pipeline.",
            percentiles(
                (0.5, 0.95, 0.99),
                "voice_call_stream_restarts",
                "job_pipeline",
                PIPE,
                "pipeline",
                "P{p} {{{{pipeline}}}}",
                exemplars=False,
            ),
            "short",
        ),
        stat(
            "Calls with at least one restart",
            "Share of calls that needed one or more streaming restarts, over the time range.",
            [
                prom(
                    f'1 - sum(increase(voice_call_stream_restarts_bucket{{{PIPE}, le=~"0|0.0"}}'
                    f"[$__range] anchored)) / sum(increase("
                    f"voice_call_stream_restarts_count{{{PIPE}}}[$__range] anchored))",
                    "restarted",
                )
            ],
            "percentunit",
            thresholds=[(None, "green"), (0.05, "yellow"), (0.2, "red")],
            decimals=1,
            h=8,
        ),
        stat(
            "Restarts in time range",
            "Streaming connection restarts over the time range, all providers.",
            [
                prom(
                    f'sum(increase(voice_stream_restarts_total{{{PIPE}, provider=~"$provider"}}'
                    "[$__range] anchored))",
                    "restarts",
                )
            ],
            "short",
            decimals=0,
            h=8,
        ),
        timeseries(
            "Restarts by provider and reason",
            "Streaming restarts per minute by provider, component and reason "
            "(voice_stream_restarts_total).",
            [
                prom(
                    f"sum by (provider, component, reason) (rate(voice_stream_restarts_total"
                    f'{{{PIPE}, provider=~"$provider"}}[$__rate_interval])) * 60',
                    "{{provider}} {{component}} {{reason}}",
                )
            ],
            "short",
            stack=True,
            w=24,
            data_links=[link_to("voiceobs-providers")],
        ),
        row("Jitter buffer"),
    ]
    for direction in ("inbound", "outbound"):
        panels.append(
            timeseries(
                f"Jitter-buffer depth ({direction}) P50 / P95",
                f"Depth of the {direction} jitter buffer (seconds of audio buffered), "
                "percentiles over calls by pipeline; rising P95 means network jitter or a "
                "slow consumer.",
                percentiles(
                    (0.5, 0.95),
                    "voice_jitter_buffer_depth_seconds",
                    "job_pipeline_direction",
                    f'{PIPE}, direction="{direction}"',
                    "pipeline",
                    "P{p} {{{{pipeline}}}}",
                    exemplars=False,
                ),
                "s",
            )
        )
    panels += [
        heatmap(
            "Jitter-buffer depth distribution",
            "All directions: depth samples in each bucket per column. " + POINT_NOTE,
            [prom(summed(JITTER_BUCKETS_5M, PIPE, "$__interval", "le"), "{{le}}", fmt="heatmap")],
            "s",
            w=24,
            interval=WINDOWS_5M,
        ),
        row("Interruptions (barge-in)"),
        timeseries(
            "Interrupted turns per minute",
            "Turns in which the user spoke over the agent, per pipeline. " + RECORDED_RATE_NOTE,
            [
                prom(
                    f'sum by (pipeline) ({TURNS_BY_INTERRUPTED}{{{TP}, interrupted="true"}}) * 60',
                    "{{pipeline}}",
                )
            ],
            "short",
        ),
        timeseries(
            "Interrupted turn share",
            "Share of turns interrupted by the user, per pipeline. " + RECORDED_RATE_NOTE,
            [interrupted_turn_share()],
            "percentunit",
            maximum=1,
            data_links=[link_to("voiceobs-latency")],
        ),
    ]
    return dashboard(
        "voiceobs-audio",
        "Is the audio path healthy? Streaming restarts per call and per provider, "
        "jitter-buffer depth and interruptions.",
        panels,
        tags=("voice",),
    )


def providers() -> sdk.Dashboard:
    def point_share(outcomes: str) -> str:
        """Share of the answered requests with ``outcomes``, per provider, over each point."""
        return (
            f"{summed(REQUESTS_5M, f'{PROV}, {outcomes}', '$__interval', 'provider')} / "
            f"{summed(REQUESTS_5M, f'{PROV}, {PROVIDER_ANSWERED}', '$__interval', 'provider')}"
        )

    panels = [
        row("Outcomes and errors"),
        timeseries(
            "Requests by outcome",
            "Provider requests per minute by provider and outcome (ok, error, timeout, "
            "rate_limited, cancelled). " + POINT_NOTE,
            [
                prom(
                    per_minute(REQUESTS_5M, PROV, "provider, outcome"),
                    "{{provider}} {{outcome}}",
                )
            ],
            "reqpm",
            stack=True,
            interval=WINDOWS_5M,
        ),
        timeseries(
            "Error rate by provider",
            "Share of the requests a provider answered whose outcome is error, timeout or "
            "rate_limited. Cancelled requests (the engine stopped them, e.g. on barge-in) "
            "count neither as errors nor as answered. " + POINT_NOTE,
            [prom(point_share(PROVIDER_FAULT), "{{provider}}")],
            "percentunit",
            budget=0.05,
            maximum=1,
            interval=WINDOWS_5M,
        ),
        table(
            "Provider uptime (share of ok, time range)",
            "Share of the requests each provider answered with outcome ok over the time "
            "range, by component: the provider uptime as the engine saw it (cancelled "
            "requests left out). " + RANGE_EDGE_NOTE,
            [
                table_query(
                    summed(REQUESTS_5M, PROV + ', outcome="ok"', by="provider, component")
                    + " / "
                    + summed(REQUESTS_5M, f"{PROV}, {PROVIDER_ANSWERED}", by="provider, component"),
                )
            ],
            "percentunit",
            transformations=[DROP_TIME],
        ),
        timeseries(
            "Provider uptime over time",
            "Share of ok among answered requests per provider (cancelled left out); dips are "
            "outages. " + POINT_NOTE,
            [prom(point_share('outcome="ok"'), "{{provider}}")],
            "percentunit",
            minimum=None,
            maximum=1,
            interval=WINDOWS_5M,
        ),
        row("Circuit breakers"),
        state_timeline(
            "Circuit-breaker state",
            "Circuit breaker per provider: closed (0), half-open (1), open (2). The alert "
            "fires when one stays open for 5 minutes.",
            [prom(f"max by (provider) (voice_provider_circuit_state{{{PROV}}})", "{{provider}}")],
            w=16,
        ),
        stat(
            "Open circuits now",
            "Number of providers whose circuit breaker is open right now.",
            [
                prom(
                    f"count(max by (provider) (voice_provider_circuit_state{{{PROV}}}) == 2)"
                    " or vector(0)",
                    "open",
                )
            ],
            "short",
            thresholds=[(None, "green"), (1, "red")],
            w=8,
            h=8,
        ),
        row("Latency by provider"),
        timeseries(
            "Stage P95 by provider",
            "P95 of the provider-facing stage latencies (STT finalisation, LLM TTFT, TTS "
            "TTFB) per provider. " + BUDGET_NOTE,
            [
                target
                for metric, name in STAGES[1:]
                for target in percentiles(
                    (0.95,),
                    metric,
                    STAGE_LEVEL,
                    TPP,
                    "provider",
                    f"{name} {{{{{{{{provider}}}}}}}}",
                )
            ],
            "s",
            budget=TURN_BUDGET_S,
            w=24,
            data_links=[link_to("voiceobs-latency")],
        ),
    ]
    return dashboard(
        "voiceobs-providers",
        "STT/LLM/TTS providers: request outcomes, error rates, uptime and circuit breakers.",
        panels,
        tags=("voice",),
    )


def engine() -> sdk.Dashboard:
    http = f"http_server_request_duration_seconds_count{{{SVC}}}"
    panels = [
        row("Engine HTTP API"),
        timeseries(
            "Request rate by route",
            "HTTP requests per second by route and method (FastAPI instrumentation).",
            [
                prom(
                    f"sum by (http_route, http_request_method) (rate({http}[$__rate_interval]))",
                    "{{http_request_method}} {{http_route}}",
                )
            ],
            "reqps",
            w=8,
        ),
        timeseries(
            "Request latency P95 by route",
            "P95 HTTP server duration per route from the histogram; the red line is the "
            "2 s response-time alert.",
            [
                prom(
                    quantile(0.95, "http_server_request_duration_seconds", SVC, "http_route"),
                    "{{http_route}}",
                    exemplar=True,
                )
            ],
            "s",
            budget=2.0,
            w=8,
        ),
        timeseries(
            "5xx error share",
            "Share of requests answered with a 5xx status, per route.",
            [
                prom(
                    f"sum by (http_route) (rate(http_server_request_duration_seconds_count"
                    f'{{{SVC}, http_response_status_code=~"5.."}}[$__rate_interval])) / '
                    f"sum by (http_route) (rate({http}[$__rate_interval]))",
                    "{{http_route}}",
                )
            ],
            "percentunit",
            budget=0.05,
            w=8,
        ),
        row("Workers"),
        timeseries(
            "CPU per worker",
            "CPU seconds per second used by each worker process (1 = one full core).",
            [
                prom(
                    f"sum by (instance) (rate(process_cpu_time_seconds_total{{{SVC}}}"
                    "[$__rate_interval]))",
                    "{{instance}}",
                )
            ],
            "percentunit",
            w=8,
        ),
        timeseries(
            "Memory per worker",
            "Resident memory of each worker process (process_memory_usage_bytes).",
            [
                prom(
                    f"sum by (instance) (process_memory_usage_bytes{{{SVC}}})",
                    "{{instance}}",
                )
            ],
            "bytes",
            w=8,
        ),
        timeseries(
            "Memory % of limit per worker",
            "Worker memory as a share of its limit (cgroup limit, else machine RAM). Alerts "
            "fire at 80 % and 90 %.",
            [
                prom(
                    f"sum by (instance) (process_memory_usage_bytes{{{SVC}}}) / "
                    f"max by (instance) (voiceobs_process_memory_limit_bytes{{{SVC}}})",
                    "{{instance}}",
                )
            ],
            "percentunit",
            budget=0.8,
            maximum=1,
            w=8,
        ),
        timeseries(
            "Active calls per worker",
            "Calls in progress in each worker process (instance = service.instance.id).",
            [
                prom(
                    f"sum by (instance) (voice_calls_active{{{TP}}})",
                    "{{instance}}",
                )
            ],
            "short",
            stack=True,
            w=12,
            data_links=[link_to("voiceobs-overview")],
        ),
        timeseries(
            "Threads and open files per worker",
            "Thread count and open file descriptors per worker: leaks show as steady growth.",
            [
                prom(f"sum by (instance) (process_thread_count{{{SVC}}})", "threads {{instance}}"),
                prom(
                    f"sum by (instance) (process_open_file_descriptor_count{{{SVC}}})",
                    "fds {{instance}}",
                ),
            ],
            "short",
            w=12,
        ),
        row("Probes and host"),
        table(
            "Blackbox probe results",
            "Latest result of each blackbox probe (1 = up) with its duration.",
            [
                table_query("max by (job, instance) (probe_success)"),
                table_query("max by (job, instance) (probe_duration_seconds)"),
            ],
            "none",
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "renameByName": {"Value #A": "up", "Value #B": "duration (s)"},
                    },
                },
            ],
            w=12,
        ),
        table(
            "TLS certificate expiry",
            "Time until each probed endpoint's earliest TLS certificate expires "
            "(probe_ssl_earliest_cert_expiry - time()); red under 14 days.",
            [table_query("min by (instance) (probe_ssl_earliest_cert_expiry) - time()")],
            "s",
            transformations=[DROP_TIME],
            w=12,
        ),
        timeseries(
            "Host CPU busy",
            "Share of host CPU not idle (node exporter), where node exporter runs.",
            [
                prom(
                    '1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}'
                    "[$__rate_interval]))",
                    "{{instance}}",
                )
            ],
            "percentunit",
            maximum=1,
        ),
        timeseries(
            "Host memory used",
            "Share of host memory in use (1 - MemAvailable / MemTotal, node exporter).",
            [
                prom(
                    "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
                    "{{instance}}",
                )
            ],
            "percentunit",
            maximum=1,
        ),
    ]
    return dashboard(
        "voiceobs-engine",
        "Is the machine healthy? Engine HTTP API, worker CPU/memory/active calls, "
        "blackbox probes and host.",
        panels,
        tags=("platform",),
    )


def _otelcol(kind: str, signal: str) -> str:
    """A Collector self-metric name. The Collector (v0.155 and v0.161 measured) exposes them
    without unit or _total suffixes: otelcol_receiver_accepted_spans, otelcol_process_memory_rss."""
    return f"otelcol_{kind}_{signal}"


SIGNALS = (("spans", "spans"), ("metric_points", "metric points"), ("log_records", "log records"))


def pipeline() -> sdk.Dashboard:
    panels: list[Row | PanelBuilder] = [row("Collector: in")]
    for signal, name in SIGNALS:
        panels.append(
            timeseries(
                f"Collector {name} accepted / refused / failed",
                f"{name.capitalize()} per second the Collector's receivers accepted, refused "
                "(back-pressure: memory_limiter or a full pipeline) and failed (errors).",
                [
                    prom(
                        f"sum by (receiver) (rate({_otelcol(f'receiver_{outcome}', signal)}"
                        "[$__rate_interval]))",
                        f"{outcome} {{{{receiver}}}}",
                    )
                    for outcome in ("accepted", "refused", "failed")
                ],
                "short",
                w=8,
            )
        )
    panels.append(row("Collector: out"))
    for signal, name in SIGNALS:
        panels.append(
            timeseries(
                f"Collector {name} sent / failed by exporter",
                f"{name.capitalize()} per second each exporter delivered, failed to send "
                "(after retries) and dropped because its sending queue was full.",
                [
                    prom(
                        f"sum by (exporter) (rate({_otelcol('exporter_sent', signal)}"
                        "[$__rate_interval]))",
                        "sent {{exporter}}",
                    ),
                    prom(
                        f"sum by (exporter) (rate({_otelcol('exporter_send_failed', signal)}"
                        "[$__rate_interval]))",
                        "failed {{exporter}}",
                    ),
                    prom(
                        f"sum by (exporter) (rate({_otelcol('exporter_enqueue_failed', signal)}"
                        "[$__rate_interval]))",
                        "dropped, queue full {{exporter}}",
                    ),
                    *(
                        [
                            prom(
                                "sum(rate(otelcol_processor_filter_datapoints_filtered"
                                '{filter="filter/older_than_prometheus_window"}[$__rate_interval]))',
                                "dropped, older than Prometheus' out-of-order window",
                            )
                        ]
                        if signal == "metric_points"
                        else []
                    ),
                ],
                "short",
                w=8,
            )
        )
    panels += [
        timeseries(
            "Exporter queue fill",
            "Sending-queue size as a share of its capacity per exporter; near 1 means the "
            "backend is slow or down and data will be dropped.",
            [
                prom(
                    "max by (exporter) (otelcol_exporter_queue_size) / "
                    "max by (exporter) (otelcol_exporter_queue_capacity)",
                    "{{exporter}}",
                )
            ],
            "percentunit",
            budget=0.8,
            maximum=1,
        ),
        timeseries(
            "Collector memory",
            "Collector process resident memory, for the monitoring resource budget.",
            [prom("sum by (instance) (otelcol_process_memory_rss)", "{{instance}}")],
            "bytes",
            w=6,
        ),
        timeseries(
            "Collector CPU",
            "Collector CPU in cores (CPU seconds per second).",
            [
                prom(
                    "sum by (instance) (rate(otelcol_process_cpu_seconds[$__rate_interval]))",
                    "{{instance}}",
                )
            ],
            "short",
            w=6,
        ),
        row("Backends"),
        state_timeline(
            "Scrape targets up",
            "Prometheus 'up' per scrape job (backends, Collector, exporters): up when the "
            "last scrape succeeded, down otherwise.",
            [prom("min by (job) (up)", "{{job}}")],
            mappings=UP_MAPPINGS,
            thresholds=[(None, "red"), (1, "green")],
            w=24,
        ),
        row("Engine SDK (in-process)"),
        timeseries(
            "SDK spans and logs dropped",
            "Items the OpenTelemetry SDK processors dropped (error_type set, e.g. queue_full) "
            "per worker, from the SDK's own metrics.",
            [
                prom(
                    "sum by (instance, error_type) (rate(otel_sdk_processor_span_processed_total"
                    f'{{{SVC}, error_type!=""}}[$__rate_interval]))',
                    "spans {{error_type}} {{instance}}",
                ),
                prom(
                    "sum by (instance, error_type) (rate(otel_sdk_processor_log_processed_total"
                    f'{{{SVC}, error_type!=""}}[$__rate_interval]))',
                    "logs {{error_type}} {{instance}}",
                ),
            ],
            "short",
        ),
        timeseries(
            "SDK processor queue size",
            "Spans and log records waiting in the SDK batch processors per worker.",
            [
                prom(
                    f"sum by (instance) (otel_sdk_processor_span_queue_size{{{SVC}}})",
                    "spans {{instance}}",
                ),
                prom(
                    f"sum by (instance) (otel_sdk_processor_log_queue_size{{{SVC}}})",
                    "logs {{instance}}",
                ),
            ],
            "short",
        ),
        timeseries(
            "SDK exports by outcome",
            "Spans, log records and metric points the SDK exporters sent, by error_type "
            "(empty = success).",
            [
                prom(
                    f"sum by (error_type) (rate(otel_sdk_exporter_span_exported_total{{{SVC}}}"
                    "[$__rate_interval]))",
                    "spans {{error_type}}",
                ),
                prom(
                    f"sum by (error_type) (rate(otel_sdk_exporter_log_exported_total{{{SVC}}}"
                    "[$__rate_interval]))",
                    "logs {{error_type}}",
                ),
                prom(
                    "sum by (error_type) (rate("
                    f"otel_sdk_exporter_metric_data_point_exported_total{{{SVC}}}"
                    "[$__rate_interval]))",
                    "points {{error_type}}",
                ),
            ],
            "short",
        ),
        timeseries(
            "voiceobs dropped telemetry and failed exports",
            "Telemetry voiceobs dropped before the SDK saw it, by signal and reason, and "
            "export batches that failed after retries.",
            [
                prom(
                    f"sum by (signal, reason) (rate(voiceobs_telemetry_dropped_total{{{SVC}}}"
                    "[$__rate_interval]))",
                    "dropped {{signal}} {{reason}}",
                ),
                prom(
                    "sum by (signal) (rate(voiceobs_telemetry_export_failures_total"
                    f"{{{SVC}}}[$__rate_interval]))",
                    "failed batches {{signal}}",
                ),
            ],
            "short",
        ),
        row("Monitoring stack containers (cAdvisor, Docker stack only)"),
        timeseries(
            "Container CPU",
            "CPU cores used per container of the monitoring stack (cAdvisor).",
            [
                prom(
                    'sum by (name) (rate(container_cpu_usage_seconds_total{name!=""}'
                    "[$__rate_interval]))",
                    "{{name}}",
                )
            ],
            "short",
        ),
        timeseries(
            "Container memory",
            "Working-set memory per container of the monitoring stack (cAdvisor).",
            [
                prom(
                    'sum by (name) (container_memory_working_set_bytes{name!=""})',
                    "{{name}}",
                )
            ],
            "bytes",
        ),
    ]
    return dashboard(
        "voiceobs-pipeline",
        "Is the telemetry pipeline itself healthy? Collector in/out, queues, backends up, "
        "SDK and voiceobs drops.",
        panels,
        tags=("platform",),
    )


def _trend(expr_now: str, expr_then: str) -> list[Target]:
    return [prom(expr_now, "now"), prom(expr_then, "7 days ago")]


def executive() -> sdk.Dashboard:
    calls = f"voice_calls_total{{{TP}}}"
    ok = f'voice_calls_total{{{TP}, status=~"completed|transferred"}}'
    success = f"sum(increase({ok}[1d] anchored)) / sum(increase({calls}[1d] anchored))"
    p95 = (
        "histogram_quantile(0.95, sum by (le) "
        f"(rate(voice_turn_latency_seconds_bucket{{{TP}}}[1h]{{off}})))"
    )
    http_err = (
        "sum(rate(http_server_request_duration_seconds_count"
        f'{{{SVC}, http_response_status_code=~"5.."}}'
        "[1d]{off})) / sum(rate(http_server_request_duration_seconds_count"
        f"{{{SVC}}}[1d]{{off}}))"
    )
    spend = f"sum(increase(voice_cost_usd_total{{{TP}}}[1d]{{off}} anchored))"

    def at(expr: str, offset: str) -> str:
        return expr.replace("{off}", offset)

    panels = [
        row("Today vs 7 days ago"),
        stat(
            "Engine uptime (24h)",
            "Share of the last 24 hours in which the engine was up: it pushed telemetry "
            "within 3 minutes (job:voiceobs_engine_up:bool, the ServiceTelemetryMissing "
            "bound), averaged over the selected services. Second value: 7 days ago.",
            _trend(
                f"avg(avg_over_time(job:voiceobs_engine_up:bool{{{SVC}}}[1d]))",
                f"avg(avg_over_time(job:voiceobs_engine_up:bool{{{SVC}}}[1d] offset 7d))",
            ),
            "percentunit",
            thresholds=[(None, "red"), (0.99, "yellow"), (0.999, "green")],
            decimals=2,
            data_links=[link_to("voiceobs-engine")],
        ),
        stat(
            "Call success rate (24h)",
            "Share of calls completed or transferred over the last 24 hours, now and 7 days ago.",
            _trend(success, success.replace("[1d]", "[1d] offset 7d")),
            "percentunit",
            thresholds=[(None, "red"), (0.9, "yellow"), (0.97, "green")],
            decimals=1,
            data_links=[link_to("voiceobs-overview")],
        ),
        stat(
            "Response time: turn latency P95 (1h)",
            "P95 of turn latency over the last hour, now and 7 days ago; budget 800 ms.",
            _trend(at(p95, ""), at(p95, " offset 7d")),
            "s",
            thresholds=[(None, "green"), (0.7, "yellow"), (TURN_BUDGET_S, "red")],
            decimals=2,
            data_links=[link_to("voiceobs-latency")],
        ),
        stat(
            "API error rate (24h)",
            "Share of engine HTTP requests answered 5xx over the last 24 hours, now and "
            "7 days ago.",
            _trend(at(http_err, ""), at(http_err, " offset 7d")),
            "percentunit",
            thresholds=[(None, "green"), (0.01, "yellow"), (0.05, "red")],
            decimals=2,
            data_links=[link_to("voiceobs-engine")],
        ),
        stat(
            "AI cost (24h)",
            "AI spend (STT + LLM + TTS) over the last 24 hours, now and 7 days ago.",
            _trend(at(spend, ""), at(spend, " offset 7d")),
            "currencyUSD",
            decimals=2,
            data_links=[link_to("voiceobs-cost")],
        ),
        stat(
            "Calls (24h)",
            "Calls ended over the last 24 hours, now and 7 days ago.",
            _trend(
                f"sum(increase({calls}[1d] anchored))",
                f"sum(increase({calls}[1d] offset 7d anchored))",
            ),
            "short",
            decimals=0,
        ),
        stat(
            "Cost change vs last week",
            "Relative change of the 24-hour AI spend against the same 24 hours a week ago.",
            [prom(f"{at(spend, '')} / {at(spend, ' offset 7d')} - 1", "change")],
            "percentunit",
            thresholds=[(None, "green"), (0.1, "yellow"), (0.3, "red")],
            decimals=1,
        ),
        stat(
            "Latency change vs last week",
            "Relative change of the 1-hour P95 turn latency against a week ago.",
            [prom(f"{at(p95, '')} / {at(p95, ' offset 7d')} - 1", "change")],
            "percentunit",
            thresholds=[(None, "green"), (0.1, "yellow"), (0.25, "red")],
            decimals=1,
        ),
        row("Trends"),
        timeseries(
            "Daily call success rate",
            "Share of calls completed or transferred per day (from the recorded 5-minute "
            "windows, so each day's edges are blurred by up to 5 minutes). " + DAILY_NOTE,
            [prom(call_success_ratio("1d"), "success rate")],
            "percentunit",
            minimum=None,
            maximum=1,
            interval="1d",
        ),
        timeseries(
            "Daily AI cost by tenant",
            "AI spend per tenant per day (from the recorded 5-minute windows, so each day's "
            "edges are blurred by up to 5 minutes). " + DAILY_NOTE,
            [prom(summed(SPEND_5M, TP, "1d", "tenant"), "{{tenant}}")],
            "currencyUSD",
            interval="1d",
            stack=True,
        ),
    ]
    return dashboard(
        "voiceobs-executive",
        "Executive KPIs: uptime, response time, error rate and AI cost, with week-over-week "
        "comparison.",
        panels,
        tags=("business",),
        time_from="now-7d",
    )


FOLDERS: dict[str, tuple[str, ...]] = {
    "voice": (
        "voiceobs-overview",
        "voiceobs-latency",
        "voiceobs-call-explorer",
        "voiceobs-audio",
        "voiceobs-providers",
    ),
    "platform": ("voiceobs-engine", "voiceobs-pipeline"),
    "business": ("voiceobs-cost", "voiceobs-executive"),
}

BUILDERS = {
    "voiceobs-overview": overview,
    "voiceobs-latency": latency,
    "voiceobs-call-explorer": call_explorer,
    "voiceobs-cost": cost,
    "voiceobs-audio": audio,
    "voiceobs-providers": providers,
    "voiceobs-engine": engine,
    "voiceobs-pipeline": pipeline,
    "voiceobs-executive": executive,
}


def render() -> dict[Path, str]:
    """Every dashboard file (path relative to grafana/dashboards) and its JSON text."""
    files: dict[Path, str] = {}
    for folder, uids in FOLDERS.items():
        for uid in uids:
            dash = BUILDERS[uid]().build()
            text_ = json.dumps(dash, cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"
            files[Path(folder) / f"{uid.removeprefix('voiceobs-')}.json"] = text_
    return files


def main() -> int:
    for rel, content in render().items():
        path = OUT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
