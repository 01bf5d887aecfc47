"""Docs stay in step with code: the metrics page against semconv, and every code example runs."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from voiceobs import semconv as sc

ROOT = Path(__file__).resolve().parent.parent
METRICS_DOC = ROOT / "docs" / "metrics.md"


def _backticked(text: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", text))


def test_metrics_page_lists_every_contract_name() -> None:
    names = _backticked(METRICS_DOC.read_text())
    expected = {m.prometheus for m in sc.VOICE_METRICS}
    expected |= {m.name for m in sc.VOICE_METRICS}
    expected |= set(sc.ENGINE_METRICS) | set(sc.SDK_SELF_METRICS)
    expected |= set(sc.SPAN_NAMES) | set(sc.SPAN_ATTRIBUTES)
    for spec in sc.VOICE_METRICS:
        expected |= set(spec.labels)
    missing = expected - names
    assert not missing, f"docs/metrics.md lacks {sorted(missing)}"


def test_metrics_page_is_generated_from_the_code() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import metrics_doc

    assert METRICS_DOC.read_text() == metrics_doc.render(), "run: python scripts/metrics_doc.py"


def _examples() -> list[tuple[str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for index, block in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S)):
            found.append((f"{path.relative_to(ROOT)}#{index + 1}", block))
    return found


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("where", "code"), _examples(), ids=[w for w, _ in _examples()])
def test_code_example_runs(where: str, code: str) -> None:
    # Built from nothing but PATH: the examples assert default behaviour (enabled, OTLP to a
    # closed port), which the machine's own VOICEOBS_* or OTEL_* settings could change.
    env = {"PATH": os.environ["PATH"]}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"  # nobody listens
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"{where} failed:\n{result.stderr[-3000:]}"


def test_there_are_examples_to_run() -> None:
    assert len(_examples()) >= 3
