"""How fast the dashboards answer: every voice panel query, sent the way Grafana sends it,
against days of synthetic voice metrics backfilled into the native stack's Prometheus.

The data: the series the demo writes (turn latency and stage histograms, calls, costs, provider
outcomes, jitter buffers, HTTP, process metrics) for ``instances`` workers, ``tenants`` tenants
and three pipelines, one sample every ``step_s`` seconds for ``days`` days, plus every series the
recording rules write (prometheus/rules/recording.yml), as the rules would have written them:
one series per combination of the rule's level labels (e.g. job_tenant_pipeline) that occurs in
the series its expression selects, one sample per evaluation of its group (every ``step_s``, or
every 5 minutes for the 5-minute group). It is written as OpenMetrics and turned into TSDB
blocks by ``promtool tsdb create-blocks-from openmetrics``. The full form is the size of a real
deployment (~7 600 series, 15 s, 7 days); ``--short`` is a day at 60 s with one worker and one
tenant (~1 600 series), to stay quick in CI.

The queries: each Prometheus target of each dashboard with the dashboards' default variables
(All), over the whole backfilled range. Range targets go to /api/v1/query_range with Grafana's
step (the range over ``MAX_DATA_POINTS``, rounded like Grafana's rangeUtil, at least the
datasource's 15 s and the panel's min interval, e.g. 1h on the daily panels) and
``$__rate_interval`` = max(step + 15 s, 4 x 15 s); instant targets go to /api/v1/query at the
end of the range. Each query runs ``repeats`` times; the figure is its
p95, beside the p95 of a trivial query (``vector(1)``) measured the same way.

Writing and backfilling the full form takes ~20 min. With ``VOICEOBS_PANELS_TSDB=DIR`` the
backfilled TSDB is kept in DIR (with ``backfill.json``: what was written and when the data ends)
and reused by the next run whose series set and size are the same, so the query phase can be
rerun, e.g. before and after a dashboard change, on the same data. A changed series set (a new
recording rule) backfills DIR again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.figures import Figure, Goal
from stack.build import go_binaries
from stack.control import free_port
from stack.settings import StackError
from voiceobs import semconv

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from tests.grafana.dashboard_queries import (  # noqa: E402
    DEFAULT_VALUES,
    iter_dashboards,
    iter_panels,
    substitute,
    target_type,
)
from tests.recording_rules import iter_recording_rules  # noqa: E402

GOAL_MS = 100.0
SCRAPE_S = 15
MAX_DATA_POINTS = 1000  # about a panel's width in pixels, what Grafana asks for
JOB = "voice/engine"  # service.namespace/service.name: the Kubernetes shape
PIPELINES = {
    # pipeline: (stt, llm, tts) provider and model
    "support": (("deepgram", "nova-3"), ("openai", "gpt-4o-mini"), ("cartesia", "sonic-2")),
    "sales": (("deepgram", "nova-3"), ("groq", "llama-3.1-8b"), ("elevenlabs", "flash-v2")),
    "booking": (("assemblyai", "universal"), ("openai", "gpt-4o"), ("cartesia", "sonic-2")),
}
_NICE_S = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 21600, 43200)


class PanelBenchError(RuntimeError):
    """The bench could not build its data or start Prometheus."""


@dataclass(frozen=True)
class Size:
    days: float
    step_s: int
    tenants: int
    instances: int
    repeats: int


FULL = Size(days=7, step_s=15, tenants=4, instances=2, repeats=20)  # ~7 600 series
SHORT = Size(days=1, step_s=60, tenants=1, instances=1, repeats=5)  # ~1 600 series


# --- synthetic series --------------------------------------------------------------------------


def _labels(**labels: str) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


_MATCHER_EQ = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Series:
    """One series: its name and labels, and how much it grows per step (counters) or its
    level (gauges), with a little noise."""

    name: str
    labels: str
    per_step: float
    counter: bool = True
    every_s: int = 0
    """Seconds between samples; 0: the size's step (a recording rule's group may be slower)."""


def _histogram(
    name: str, labels: dict[str, str], buckets: tuple[float, ...], rate: float, typical: float
) -> Iterator[Series]:
    """Cumulative buckets of a log-normal-ish distribution around ``typical``."""
    for bound in (*buckets, math.inf):
        if math.isinf(bound):
            share, le = 1.0, "+Inf"
        else:
            ratio = max(bound, typical / 50) / typical
            share, le = 1 / (1 + math.exp(-4 * math.log(ratio))), f"{bound:g}"
        yield Series(f"{name}_bucket", _labels(**labels, le=le), rate * share)
    yield Series(f"{name}_sum", _labels(**labels), rate * typical)
    yield Series(f"{name}_count", _labels(**labels), rate)


PROCESS_GAUGES = {
    "process_memory_usage_bytes": 2.5e8,
    "voiceobs_process_memory_limit_bytes": 1e9,
    "process_thread_count": 12,
    "process_open_file_descriptor_count": 40,
}
ROUTES = ("/v1/calls", "/v1/calls/{call_id}/turns", "/v1/calls/{call_id}/hangup", "/healthz")
OUTCOMES = {"ok": 0.93, "error": 0.03, "timeout": 0.01, "rate_limited": 0.005, "cancelled": 0.025}
STATUSES = {"completed": 0.9, "failed": 0.04, "abandoned": 0.04, "transferred": 0.02}
CALLS_PER_S = 0.2  # per worker, tenant and pipeline
TURNS_PER_S = 2.2


def _worker_series(inst: dict[str, str]) -> Iterator[Series]:
    """Process, HTTP and provider series of one worker."""
    yield Series("target_info", _labels(**inst), 1, counter=False)
    for name, level in PROCESS_GAUGES.items():
        yield Series(name, _labels(**inst), level, counter=False)
    yield Series("process_cpu_time_seconds_total", _labels(**inst), 0.3)
    for route in ROUTES:
        for code, rate in (("200", 3.0), ("503", 0.05)):
            http = {**inst, "http_route": route, "http_request_method": "POST"}
            http["http_response_status_code"] = code
            yield from _histogram(
                "http_server_request_duration_seconds",
                http,
                semconv.STAGE_LATENCY_BUCKETS,
                rate,
                0.02,
            )
    components = {
        provider: component
        for pipe in PIPELINES.values()
        for (provider, _), component in zip(pipe, ("stt", "llm", "tts"), strict=True)
    }
    for provider, component in sorted(components.items()):
        yield Series("voice_provider_circuit_state", _labels(**inst, provider=provider), 0, False)
        for outcome, share in OUTCOMES.items():
            labels = _labels(**inst, provider=provider, component=component, outcome=outcome)
            yield Series("voice_provider_requests_total", labels, 2.0 * share)


def _call_series(tp: dict[str, str], pipeline: tuple[tuple[str, str], ...]) -> Iterator[Series]:
    """The voice series of one worker, tenant and pipeline."""
    (stt, stt_m), (llm, llm_m), (tts, tts_m) = pipeline
    yield Series("voice_calls_active", _labels(**tp), 6, counter=False)
    for status, share in STATUSES.items():
        reason = "none" if status in ("completed", "transferred") else "llm_error"
        labels = _labels(**tp, status=status, failure_reason=reason)
        yield Series("voice_calls_total", labels, CALLS_PER_S * share)
        if status in ("completed", "failed"):
            yield from _histogram(
                "voice_call_duration_seconds", {**tp, "status": status},
                semconv.CALL_DURATION_BUCKETS, CALLS_PER_S * share, 180.0,
            )  # fmt: skip
    for interrupted, rate in (("true", 0.2), ("false", TURNS_PER_S - 0.2)):
        yield Series("voice_turns_total", _labels(**tp, interrupted=interrupted), rate)
    yield from _histogram(
        "voice_turn_latency_seconds", tp, semconv.TURN_LATENCY_BUCKETS, TURNS_PER_S, 0.7
    )
    yield from _histogram("voice_call_cost_usd", tp, semconv.CALL_COST_BUCKETS, CALLS_PER_S, 0.05)
    stages = (
        (semconv.EOU_DELAY, "silero", "v5", 0.12),
        (semconv.STT_LATENCY, stt, stt_m, 0.2),
        (semconv.LLM_TTFT, llm, llm_m, 0.35),
        (semconv.LLM_DURATION, llm, llm_m, 1.8),
        (semconv.TTS_TTFB, tts, tts_m, 0.15),
    )
    for spec, provider, model, typical in stages:
        labels = {**tp, "provider": provider, "model": model}
        assert spec.buckets is not None
        yield from _histogram(spec.prometheus, labels, spec.buckets, TURNS_PER_S, typical)
    for provider, model, component, usd in (
        (stt, stt_m, "stt", 0.002), (llm, llm_m, "llm", 0.004), (tts, tts_m, "tts", 0.003),
    ):  # fmt: skip
        labels = _labels(**tp, provider=provider, model=model, component=component)
        yield Series("voice_cost_usd_total", labels, usd)
    yield Series("voice_stt_audio_seconds_total", _labels(**tp, provider=stt, model=stt_m), 8.0)
    for kind, rate in (("input", 900.0), ("output", 60.0)):
        labels = _labels(**tp, provider=llm, model=llm_m, type=kind)
        yield Series("voice_llm_tokens_total", labels, rate)
    yield Series("voice_tts_characters_total", _labels(**tp, provider=tts, model=tts_m), 150.0)


def voice_series(size: Size) -> list[Series]:
    """The raw series the dashboards read, for ``size``'s workers and tenants."""
    out: list[Series] = []
    for w in range(1, size.instances + 1):
        inst = {"job": JOB, "instance": f"w{w}"}
        out += _worker_series(inst)
        for name, pipeline in PIPELINES.items():
            for direction in ("inbound", "outbound"):
                out += _histogram(
                    "voice_jitter_buffer_depth_seconds",
                    {**inst, "pipeline": name, "direction": direction},
                    semconv.JITTER_BUFFER_BUCKETS, 50.0, 0.045,
                )  # fmt: skip
            out += _histogram(
                "voice_call_stream_restarts", {**inst, "pipeline": name},
                semconv.RESTART_COUNT_BUCKETS, CALLS_PER_S * size.tenants, 1.0,
            )  # fmt: skip
            for (provider, _), component in ((pipeline[0], "stt"), (pipeline[2], "tts")):
                labels = _labels(
                    **inst, pipeline=name, provider=provider, component=component, reason="network"
                )
                out.append(Series("voice_stream_restarts_total", labels, 0.01))
            for t in range(1, size.tenants + 1):
                out += _call_series({**inst, "tenant": f"tenant-{t}", "pipeline": name}, pipeline)
    return out


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def _matchers(expr: str, name: str) -> list[list[tuple[str, str, str]]]:
    """The label matchers of each selector of ``name`` in ``expr`` ([] for a bare name)."""
    out = []
    for found in re.finditer(rf"(?<![\w:]){re.escape(name)}(?![\w:])(\{{[^}}]*\}})?", expr):
        out.append(_MATCHER.findall(found.group(1) or ""))
    return out


def _selected(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for label, op, value in matchers:
        have = labels.get(label, "")
        value = value.replace("\\\\", "\\")
        hit = re.fullmatch(value, have) is not None if "~" in op else have == value
        if hit == op.startswith("!"):
            return False
    return True


def recorded_series(size: Size, raw: list[Series]) -> list[Series]:
    """The series each recording rule writes, as the rule would write them: one per
    combination of the level's labels that occurs in the series its expression selects (raw
    or recorded by an earlier rule), one sample per evaluation of its group."""
    by_name: dict[str, list[dict[str, str]]] = {}
    for s in raw:
        by_name.setdefault(s.name, []).append(dict(_MATCHER_EQ.findall(s.labels)))
    out: list[Series] = []
    for rule in iter_recording_rules():
        combos: set[tuple[tuple[str, str], ...]] = set()
        for name in set(_NAME.findall(rule.expr)) & set(by_name):
            selectors = _matchers(rule.expr, name)
            for labels in by_name[name]:
                if set(rule.labels) <= set(labels) and any(_selected(labels, m) for m in selectors):
                    combos.add(tuple((label, labels[label]) for label in rule.labels))
        if not combos:
            raise PanelBenchError(f"{rule.record}: no synthetic series it would read")
        every = max(size.step_s, rule.interval_s or SCRAPE_S)
        written = [dict(c) for c in sorted(combos)]
        by_name[rule.record] = written
        out += [
            Series(rule.record, _labels(**c), 0.7, counter=False, every_s=every) for c in written
        ]
    return out


def write_openmetrics(path: Path, series: list[Series], size: Size, end: float) -> int:
    """OpenMetrics text of every series, grouped by name (families must not interleave)."""
    steps = int(size.days * 86400 // size.step_s)
    start = end - steps * size.step_s
    rng = random.Random(7)
    by_name: dict[str, list[Series]] = {}
    for s in series:
        by_name.setdefault(s.name, []).append(s)
    samples = 0
    with path.open("w") as out:
        for name, members in by_name.items():
            for s in members:
                head = f"{name}{{{s.labels}}} "
                every = s.every_s or size.step_s
                value = 0.0
                lines = []
                for i in range(0, steps + 1, every // size.step_s):
                    if s.counter:
                        value += s.per_step * every * rng.uniform(0.8, 1.2)
                    else:
                        value = s.per_step * rng.uniform(0.9, 1.1)
                    lines.append(f"{head}{value:.6g} {start + i * size.step_s:.0f}\n")
                out.writelines(lines)
                samples += len(lines)
        out.write("# EOF\n")
    return samples


# --- Prometheus --------------------------------------------------------------------------------


def _binary(name: str) -> str:
    """prometheus or promtool of the native stack's build (built on first use)."""
    try:
        return str(go_binaries()["prometheus"].build().with_name(name))
    except StackError as exc:
        raise PanelBenchError(f"building Prometheus failed: {exc}") from exc


KEEP_ENV = "VOICEOBS_PANELS_TSDB"


class BackfilledPrometheus:
    """Prometheus serving the backfilled blocks on a free loopback port (query only).

    The blocks live in a temporary directory, or in ``$VOICEOBS_PANELS_TSDB`` where they are
    kept and reused while the series set and size stay the same."""

    def __init__(self, size: Size) -> None:
        self.size = size
        self.end = float(int(time.time()) // 3600 * 3600)
        kept = os.environ.get(KEEP_ENV)
        self.keep = kept is not None
        self.dir = Path(kept) if kept else Path(tempfile.mkdtemp(prefix="voiceobs-panels-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.series = 0
        self.samples = 0

    def _backfill(self, series: list[Series]) -> None:
        """Write ``series`` into ``self.dir/tsdb``, or reuse the kept blocks of the same set."""
        key = hashlib.sha256(
            repr((self.size, [(s.name, s.labels, s.every_s) for s in series])).encode()
        ).hexdigest()
        manifest = self.dir / "backfill.json"
        if self.keep and manifest.exists():
            kept = json.loads(manifest.read_text())
            if kept["key"] == key:
                self.end, self.samples = kept["end"], kept["samples"]
                print(f"[bench] panels: reusing the {self.series} series kept in {self.dir}")
                return
            print(f"[bench] panels: the series set changed, backfilling {self.dir} again")
        shutil.rmtree(self.dir / "tsdb", ignore_errors=True)
        manifest.unlink(missing_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        text = self.dir / "data.om.txt"
        print("[bench] panels: backfilling synthetic voice metrics", flush=True)
        print(f"[bench] panels: writing {self.series} series over {self.size.days:g} d", flush=True)
        self.samples = write_openmetrics(text, series, self.size, self.end)
        result = subprocess.run(
            [_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics",
             "--max-block-duration=162h", str(text), str(self.dir / "tsdb")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        text.unlink()
        if result.returncode != 0:
            raise PanelBenchError(f"promtool backfill failed: {result.stderr[-2000:]}")
        manifest.write_text(json.dumps({"key": key, "end": self.end, "samples": self.samples}))

    def __enter__(self) -> BackfilledPrometheus:
        raw = voice_series(self.size)
        series = raw + recorded_series(self.size, raw)
        self.series = len(series)
        self._backfill(series)
        config = self.dir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 15s\n")
        self.proc = subprocess.Popen(
            [_binary("prometheus"), f"--config.file={config}",
             f"--storage.tsdb.path={self.dir / 'tsdb'}", "--storage.tsdb.retention.time=35d",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.__exit__()
        raise PanelBenchError("the backfilled Prometheus did not get ready in 120 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, params: dict[str, str]) -> tuple[float, Any]:
        """(seconds, answer) of one GET, as Grafana's proxy would send it."""
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        began = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as response:
            body = response.read()
        return time.perf_counter() - began, json.loads(body)


# --- Grafana's query shape ---------------------------------------------------------------------


_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def grafana_step(
    range_s: float, min_interval: str = "", max_data_points: int = MAX_DATA_POINTS
) -> int:
    """Grafana's interval for a time range: range / max data points (the panel's own, e.g. a
    heatmap's, or about its width), rounded to a nice value, never below the datasource's
    scrape interval (timeInterval: 15s) nor the panel's min interval (``interval``, e.g. "1h")."""
    raw = range_s / max_data_points
    nice = min(_NICE_S, key=lambda n: abs(n - raw))
    floor = int(min_interval[:-1]) * _UNIT_S[min_interval[-1]] if min_interval else 0
    return max(nice, SCRAPE_S, floor)


def grafana_values(range_s: float, step_s: int) -> dict[str, str]:
    rate_interval = max(step_s + SCRAPE_S, 4 * SCRAPE_S)
    return {
        **DEFAULT_VALUES,
        "__range": f"{int(range_s)}s",
        "__range_s": str(int(range_s)),
        "__range_ms": str(int(range_s * 1000)),
        "__interval": f"{step_s}s",
        "__interval_ms": str(step_s * 1000),
        "__auto": f"{step_s}s",
        "__rate_interval": f"{rate_interval}s",
    }


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    title: str
    ref: str
    expr: str
    instant: bool
    exemplar: bool
    step: int


def panel_queries(range_s: float) -> list[PanelQuery]:
    """Every Prometheus panel target with the dashboards' defaults and the panel's step."""
    out = []
    for dashboard in iter_dashboards():
        for panel in iter_panels(dashboard):
            step = grafana_step(
                range_s,
                panel.get("interval") or "",
                panel.get("maxDataPoints") or MAX_DATA_POINTS,
            )
            values = grafana_values(range_s, step)
            for target in panel.get("targets", []):
                if target_type(panel, target) != "prometheus":
                    continue
                ref, instant = target.get("refId", "A"), bool(target.get("instant"))
                expr = substitute(target["expr"], values)
                exemplar = bool(target.get("exemplar"))
                out.append(
                    PanelQuery(dashboard["uid"], panel["title"], ref, expr, instant, exemplar, step)
                )
    return out


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48]


def measure(short: bool) -> list[Figure]:
    """One figure per voice panel query that returns data: its p95 in ms."""
    size = SHORT if short else FULL
    with BackfilledPrometheus(size) as prom:
        range_s = size.days * 86400 - 3600  # inside the backfilled data
        end = prom.end

        def run(
            expr: str, instant: bool, exemplar: bool = False, step: int = SCRAPE_S
        ) -> tuple[float, int]:
            start = (end - range_s) // step * step
            span = {"start": f"{start:.0f}", "end": f"{end:.0f}"}
            if instant:
                took, body = prom.get("/api/v1/query", {"query": expr, "time": f"{end:.0f}"})
            else:
                took, body = prom.get(
                    "/api/v1/query_range", {"query": expr, **span, "step": str(step)}
                )
            if body.get("status") != "success":
                raise PanelBenchError(f"{expr}: {body}")
            if exemplar:  # Grafana asks for the exemplars of the whole range beside
                took += prom.get("/api/v1/query_exemplars", {"query": expr, **span})[0]
            return took, len(body["data"]["result"])

        step = grafana_step(range_s)
        baseline = _p95([run("vector(1)", False, step=step)[0] for _ in range(size.repeats)])
        baseline *= 1000
        figures: list[Figure] = []
        for q in panel_queries(range_s):
            took, found = run(q.expr, q.instant, q.exemplar, q.step)
            if not found or not re.search(r"\bvoice_|voiceobs_|:voice|job:", q.expr):
                continue  # a panel of another exporter, or no data in the synthetic set
            times = [took] + [
                run(q.expr, q.instant, q.exemplar, q.step)[0] for _ in range(size.repeats - 1)
            ]
            p95 = _p95(times) * 1000
            kind = "instant" if q.instant else "range"
            figures.append(
                Figure(
                    name=f"panel-{q.dashboard.removeprefix('voiceobs-')}-{_slug(q.title)}-{q.ref}",
                    group="Dashboard panels (p95 per query)",
                    title=f"{q.dashboard} / {q.title} ({q.ref}, {kind})",
                    value=p95,
                    unit="ms",
                    baseline=baseline,
                    baseline_name="vector(1)",
                    goal=Goal("<=", GOAL_MS, on_ratio=False),
                    note=(
                        f"{prom.series} series, {size.days:g} d at {size.step_s} s, step {q.step} s"
                    ),
                )
            )
        met = sum(1 for f in figures if f.met)
        print(
            f"[bench] panels: {met} of {len(figures)} voice panel queries with p95 ≤ "
            f"{GOAL_MS:g} ms ({prom.series} series, {prom.samples} samples)",
            flush=True,
        )
        return figures


if __name__ == "__main__":
    from bench import report

    report.print_table(measure("--short" in sys.argv))
