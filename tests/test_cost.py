"""Rate cards: parsing, validation errors, and cost per call and per component."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import make_telemetry
from voiceobs import RateCard, RateCardError
from voiceobs import semconv as sc
from voiceobs.cost import example_rate_card_path


def test_example_rate_card_loads_and_is_dated() -> None:
    path = example_rate_card_path()
    card = RateCard.load(path)
    assert "EXAMPLE PRICES" in path.read_text()
    assert card.cost("deepgram", "nova-3", audio_seconds=60) == pytest.approx(0.0043)
    assert card.cost(
        "openai", "gpt-4o-mini", input_tokens=1000, output_tokens=1000
    ) == pytest.approx(0.00075)
    assert card.cost("cartesia", "some-new-model", characters=1000) == pytest.approx(0.038)  # "*"
    assert card.cost("nobody", "nothing", characters=1000) == 0.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "needs a top-level 'providers' mapping"),
        ("version: 2\nproviders: {}", "version 2; supported: 1"),
        ("currency: EUR\nproviders: {}", "currency 'EUR'; supported: USD"),
        ("providers: {x: {m: {per_minute: 1}}}", "providers.x.m: unknown field(s) ['per_minute']"),
        (
            "providers: {x: {m: {audio_minute: -1}}}",
            "providers.x.m.audio_minute: -1 is not a price",
        ),
        ("providers: {x: [1]}", "providers.x must map models to prices"),
        ("providers: {x: {m: {audio_minute: [}}", "cannot be read"),
    ],
)
def test_bad_rate_cards_name_the_entry(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "rates.yaml"
    path.write_text(content)
    with pytest.raises(RateCardError, match=re.escape(message)):
        RateCard.load(path)


def test_json_rate_card(tmp_path: Path) -> None:
    path = tmp_path / "rates.json"
    path.write_text('{"providers": {"eleven": {"*": {"characters_1k": 0.1}}}}')
    assert RateCard.load(path).cost("eleven", "v2", characters=500) == pytest.approx(0.05)


def test_usage_becomes_cost_per_component_and_per_call() -> None:
    t = make_telemetry(rate_card_path=str(example_rate_card_path()))
    try:
        with t.obs.call("c-cost", tenant="acme", pipeline="support") as call:
            with call.turn() as turn:
                with turn.stt("deepgram", "nova-3") as stt:
                    stt.usage(audio_seconds=30)
                with turn.llm("openai", "gpt-4o") as llm:
                    llm.usage(input_tokens=2000, output_tokens=100)
                with turn.tts("cartesia", "sonic-2") as tts:
                    tts.usage(characters=500)
        expected = {"stt": 0.00215, "llm": 0.006, "tts": 0.019}
        metrics = t.metrics()
        by_component = {
            p.attributes[sc.L_COMPONENT]: p.value for p in metrics[sc.COST.name].data.data_points
        }
        assert by_component == pytest.approx(expected)
        (per_call,) = metrics[sc.CALL_COST_METRIC.name].data.data_points
        assert per_call.sum == pytest.approx(sum(expected.values()))
        assert t.span(sc.SPAN_CALL).attributes[sc.CALL_COST] == pytest.approx(
            sum(expected.values())
        )
        tokens = {
            p.attributes[sc.L_TYPE]: p.value for p in metrics[sc.LLM_TOKENS.name].data.data_points
        }
        assert tokens == {"input": 2000, "output": 100}
    finally:
        t.obs.shutdown()
