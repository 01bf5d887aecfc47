"""collector/config.yaml acknowledges only what is on disk: read statically, the rules that
tests/stack/test_faults.py measures live (a Collector SIGKILLed, a backend down, a batch
refused for good)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CONFIG = Path(__file__).resolve().parents[1] / "collector" / "config.yaml"
PULL_EXPORTERS = {"prometheus", "debug"}
"""Exporters that hold no data to deliver: a scrape endpoint, a console."""


def _config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return config


def _pipelines_fed_by(config: dict[str, Any], receiver: str) -> dict[str, Any]:
    pipelines = config["service"]["pipelines"]
    return {name: p for name, p in pipelines.items() if receiver in p["receivers"]}


def _trace_exporters(config: dict[str, Any]) -> list[str]:
    # The traces pipeline's exporters come from a variable whose default is a YAML list.
    default = config["service"]["pipelines"]["traces"]["exporters"].split(":-", 1)[1][:-1]
    return [*yaml.safe_load(default), "otlp_grpc/tempo"]


def test_no_processor_holds_acknowledged_data_in_memory() -> None:
    config = _config()
    assert not [name for name in config.get("processors", {}) if name.split("/")[0] == "batch"]


def test_every_exporter_of_the_intake_writes_to_a_persistent_queue_and_never_gives_up() -> None:
    config = _config()
    exporters: list[str] = []
    for name, pipeline in _pipelines_fed_by(config, "otlp").items():
        exporters += _trace_exporters(config) if name == "traces" else pipeline["exporters"]
    delivering = sorted(set(exporters) - PULL_EXPORTERS)
    assert "otlp_grpc/remote_write_stage" in delivering
    for name in delivering:
        exporter = config["exporters"][name]
        queue = exporter.get("sending_queue", {})
        assert queue.get("enabled") and queue.get("storage") == "file_storage/queue", name
        assert queue.get("sizer") == "bytes", f"{name}: bounded by size on disk"
        assert exporter["retry_on_failure"]["max_elapsed_time"] == 0, name


def test_remote_write_is_fed_only_from_the_metrics_queue_and_holds_nothing_itself() -> None:
    config = _config()
    stage = config["receivers"]["otlp/remote_write_stage"]["protocols"]["grpc"]["endpoint"]
    assert stage.endswith(":-127.0.0.1:4319}"), "the stage listens on loopback by default"
    assert config["exporters"]["otlp_grpc/remote_write_stage"]["endpoint"] == stage
    fed = _pipelines_fed_by(config, "otlp/remote_write_stage")
    assert [p["exporters"] for p in fed.values()] == [["prometheus_remote_write"]]
    remote_write = config["exporters"]["prometheus_remote_write"]
    # Synchronous: a batch leaves the queue in front only once Prometheus answered.
    assert remote_write["remote_write_queue"] == {"enabled": False}
    assert remote_write["retry_on_failure"] == {"enabled": False}
    assert "wal" not in remote_write
    # Nothing but the queue's exporter sends to remote write directly.
    direct = [
        n
        for n, p in config["service"]["pipelines"].items()
        if "prometheus_remote_write" in p["exporters"]
    ]
    assert direct == list(fed)
