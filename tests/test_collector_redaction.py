"""The Collector's second line of defence (collector/config.yaml) masks what the library
masks, with the library's own expressions, wherever the redaction processor cannot look,
and never the call id. Read statically; the running Collector is tested in
tests/stack/test_collector_redaction_live.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.pii_cases import ORDINARY, SENSITIVE
from voiceobs.redaction import ANY_PATTERN, COLLECTOR_PATTERNS, NEVER_REDACTED

CONFIG = Path(__file__).resolve().parents[1] / "collector" / "config.yaml"
_OTTL = re.compile(r'replace_pattern\(([\w.]+), "((?:[^"\\]|\\.)*)", "\*\*\*\*"\)')


def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return loaded


def collector_mask(text: str) -> str:
    """What the redaction processor does to a string value, in Python's ``re``."""
    for pattern in config()["processors"]["redaction"]["blocked_values"]:
        text = re.sub(pattern, "****", text, flags=re.ASCII)
    return text


def ottl_replacements() -> dict[str, str]:
    """Field -> regular expression of every ``replace_pattern`` in ``transform/redact``."""
    transform = config()["processors"]["transform/redact"]
    found: dict[str, str] = {}
    for group in transform["trace_statements"] + transform["log_statements"]:
        for statement in group["statements"]:
            match = _OTTL.fullmatch(statement)
            assert match, f"unexpected statement {statement!r}"
            found[match.group(1)] = re.sub(r"\\(.)", r"\1", match.group(2))
    return found


def test_blocked_values_are_the_librarys_expressions() -> None:
    redaction = config()["processors"]["redaction"]
    expected = "\n".join(f"      - '{p}'" for p in COLLECTOR_PATTERNS)
    assert redaction["blocked_values"] == list(COLLECTOR_PATTERNS), (
        f"blocked_values must be voiceobs.redaction.COLLECTOR_PATTERNS:\n{expected}"
    )
    assert redaction["redact_all_types"] is True, "arrays and numbers are checked too"


def test_text_the_redaction_processor_never_sees_is_masked_by_transform() -> None:
    assert ottl_replacements() == dict.fromkeys(
        ["span.name", "span.status.message", "spanevent.name", "log.event_name"], ANY_PATTERN
    )


def test_call_id_field_is_never_masked() -> None:
    assert set(config()["processors"]["redaction"]["ignored_keys"]) == NEVER_REDACTED


def test_every_pipeline_redacts_before_queueing() -> None:
    """Batching happens in the exporters' disk queues, after every processor: each pipeline
    redacts before anything is written to disk or sent."""
    pipelines = config()["service"]["pipelines"]
    wanted = {
        "traces": ["redaction", "transform/redact"],
        "logs": ["redaction", "transform/redact"],
        "metrics": ["redaction"],
    }
    for name, processors in wanted.items():
        chain = pipelines[name]["processors"]
        assert set(processors) <= set(chain), (name, chain)
        assert "batch" not in chain, (name, chain)


@pytest.mark.parametrize(("text", "secret"), SENSITIVE)
def test_collector_masks_the_personal_data_the_library_masks(text: str, secret: str) -> None:
    assert secret not in collector_mask(text)


@pytest.mark.parametrize("text", ORDINARY)
def test_collector_leaves_ordinary_text_alone(text: str) -> None:
    assert collector_mask(text) == text
