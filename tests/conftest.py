"""Shared fixtures: voiceobs wired to the SDK's in-memory exporters, and a clean environment."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from voiceobs import Exporters, Instrumentation, VoiceobsSettings, setup_instrumentation


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no VOICEOBS_* or OTEL_* variables from the machine: these in-process tests
    assert the library's defaults, which the machine's own settings would change. What a
    user's environment does is tested where it runs as is: the engine started by the real
    Makefile (tests/test_stack_prefix.py) and the demo runs on the live stack (tests/stack)."""
    for name in list(os.environ):
        if name.startswith(("VOICEOBS_", "OTEL_")) and not name.startswith("OTEL_PYTHON_SDK"):
            monkeypatch.delenv(name)


@dataclass
class Telemetry:
    """An Instrumentation plus what it exported."""

    obs: Instrumentation
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    logs: InMemoryLogRecordExporter

    def flush(self) -> None:
        assert self.obs.transport.recorder.flush(5.0)
        for provider in (self.obs.tracer_provider, self.obs.logger_provider):
            if provider is not None:
                provider.force_flush(5000)

    def finished_spans(self) -> list[ReadableSpan]:
        self.flush()
        return list(self.spans.get_finished_spans())

    def span(self, name: str, **attributes: Any) -> ReadableSpan:
        found = [
            s
            for s in self.finished_spans()
            if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())
        ]
        assert len(found) == 1, f"{len(found)} spans named {name} with {attributes}"
        return found[0]

    def metrics(self) -> dict[str, Metric]:
        """Collect once (exemplars reset on each collection) and index by instrument name."""
        self.flush()
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        }


def make_telemetry(**settings: Any) -> Telemetry:
    spans, reader, logs = (
        InMemorySpanExporter(),
        InMemoryMetricReader(),
        InMemoryLogRecordExporter(),
    )
    obs = setup_instrumentation(
        settings=VoiceobsSettings.load(**settings),
        exporters=Exporters(span=spans, metric_readers=[reader], log=logs),
        set_global=False,
    )
    if obs.log_handler is not None:  # what set_global=True does with the root logger
        engine_logs = logging.getLogger("voiceobs")
        engine_logs.addHandler(obs.log_handler)
        engine_logs.setLevel(logging.INFO)
        obs._undo.append(lambda: engine_logs.removeHandler(obs.log_handler))
    return Telemetry(obs, spans, reader, logs)


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = make_telemetry()
    yield t
    t.obs.shutdown()
