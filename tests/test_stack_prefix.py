"""The monitoring stack's knobs and the library's settings share the ``VOICEOBS_`` namespace
without colliding: ``VOICEOBS_STACK_*`` belongs to the stack, the library ignores it, and every
other unknown ``VOICEOBS_*`` name still stops start-up (typo protection)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from voiceobs import SettingsError, VoiceobsSettings

ROOT = Path(__file__).resolve().parents[1]
STACK_PREFIX = "VOICEOBS_STACK_"
# Every place the stack reads or documents its knobs.
STACK_SOURCES = [
    "Makefile",
    "monitor.mk",
    "compose.monitoring.yml",
    "stack/stack.mk",
    *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "stack").glob("*.py"))),
    "collector/config.yaml",
]
ENGINE = """
from voiceobs import VoiceobsSettings, setup_instrumentation
obs = setup_instrumentation(settings=VoiceobsSettings.load(), set_global=False)
with obs.call("c-1", tenant="acme") as call:
    with call.turn():
        pass
obs.shutdown()
print("engine started")
"""


def _stack_variables() -> set[str]:
    names: set[str] = set()
    for source in STACK_SOURCES:
        names |= set(re.findall(r"\bVOICEOBS_[A-Z0-9_]+", (ROOT / source).read_text()))
    return names


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_stack_knob_uses_the_reserved_prefix() -> None:
    names = _stack_variables()
    assert {"VOICEOBS_STACK_BIND", "VOICEOBS_STACK_TRACE_EXPORTERS"} <= names
    assert sorted(n for n in names if not n.startswith(STACK_PREFIX)) == []


def test_no_library_setting_lives_under_the_reserved_prefix() -> None:
    assert [f for f in VoiceobsSettings.model_fields if f.startswith("stack_")] == []


def test_stack_variables_are_ignored_and_typos_still_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in _stack_variables():
        monkeypatch.setenv(name, "[otlp_grpc/jaeger]")
    assert VoiceobsSettings.load() == VoiceobsSettings()
    monkeypatch.setenv("VOICEOBS_QUEUE_SIZ", "100")
    with pytest.raises(SettingsError, match=r"unknown voiceobs setting.*VOICEOBS_QUEUE_SIZ"):
        VoiceobsSettings.load()


def test_an_engine_started_by_make_with_the_stacks_variables_starts(tmp_path: Path) -> None:
    """The engine runs as a recipe of the real Makefile, so it gets exactly the environment
    ``make demo`` gives the demo engine (monitor.mk exports the Collector's trace exporters),
    plus every other stack knob set the way a user of the stack would."""
    engine = tmp_path / "engine.py"
    engine.write_text(ENGINE)
    env = {
        **os.environ,
        **dict.fromkeys(_stack_variables() - {"VOICEOBS_STACK_TRACE_EXPORTERS"}, "1"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",  # nobody listens
        "VOICEOBS_SHUTDOWN_TIMEOUT_S": "1",
    }
    recipe = f"engine-probe: ; @{sys.executable} {engine}"
    result = subprocess.run(
        [
            "make",
            "-s",
            "--no-print-directory",
            "-f",
            "Makefile",
            f"--eval={recipe}",
            "engine-probe",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "engine started" in result.stdout
