"""Rate cards: turning usage (audio seconds, tokens, characters) into US dollars.

A rate card is a YAML or JSON file mapping provider → model → prices::

    version: 1
    currency: USD
    providers:
      deepgram:
        nova-3: {audio_minute: 0.0043}
      openai:
        gpt-4o-mini: {input_1k_tokens: 0.00015, output_1k_tokens: 0.0006}
        "*": {input_1k_tokens: 0.0025, output_1k_tokens: 0.01}
      cartesia:
        sonic-2: {characters_1k: 0.03}

``"*"`` is a provider's fallback for models not listed. Unknown providers cost nothing and
are reported once in the log, so a missing price is visible rather than silently zero.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_log = logging.getLogger(__name__)

PRICE_FIELDS = ("audio_minute", "input_1k_tokens", "output_1k_tokens", "characters_1k")
WILDCARD = "*"


class RateCardError(ValueError):
    """A rate card that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Prices:
    """Prices of one provider model, in US dollars."""

    audio_minute: float = 0.0
    input_1k_tokens: float = 0.0
    output_1k_tokens: float = 0.0
    characters_1k: float = 0.0

    def cost(
        self,
        *,
        audio_seconds: float = 0.0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        characters: int = 0,
    ) -> float:
        return (
            audio_seconds / 60.0 * self.audio_minute
            + input_tokens / 1000.0 * self.input_1k_tokens
            + output_tokens / 1000.0 * self.output_1k_tokens
            + characters / 1000.0 * self.characters_1k
        )


class RateCard:
    """Looks up :class:`Prices` by provider and model."""

    def __init__(self, prices: dict[str, dict[str, Prices]], source: str = "<memory>") -> None:
        self._prices = prices
        self.source = source
        self._unpriced: set[tuple[str, str]] = set()

    @classmethod
    def empty(cls) -> RateCard:
        return cls({})

    @classmethod
    def load(cls, path: Path | str) -> RateCard:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise RateCardError(f"rate card {path}: cannot be read: {exc}") from None
        return cls(_parse(data, str(path)), str(path))

    def prices(self, provider: str, model: str) -> Prices | None:
        models = self._prices.get(provider, {})
        found = models.get(model) or models.get(WILDCARD)
        if found is None and self._prices and (provider, model) not in self._unpriced:
            self._unpriced.add((provider, model))
            _log.info(
                "rate card %s has no price for %s/%s: counted as $0", self.source, provider, model
            )
        return found

    def cost(self, provider: str, model: str, **usage: Any) -> float:
        prices = self.prices(provider, model)
        return prices.cost(**usage) if prices is not None else 0.0


def _parse(data: Any, source: str) -> dict[str, dict[str, Prices]]:
    if not isinstance(data, dict) or not isinstance(data.get("providers"), dict):
        raise RateCardError(f"rate card {source}: needs a top-level 'providers' mapping")
    if data.get("version", 1) != 1:
        raise RateCardError(f"rate card {source}: version {data.get('version')!r}; supported: 1")
    if data.get("currency", "USD") != "USD":
        raise RateCardError(
            f"rate card {source}: currency {data.get('currency')!r}; supported: USD"
        )
    result: dict[str, dict[str, Prices]] = {}
    for provider, models in data["providers"].items():
        if not isinstance(models, dict):
            raise RateCardError(
                f"rate card {source}: providers.{provider} must map models to prices"
            )
        result[str(provider)] = {}
        for model, fields in models.items():
            where = f"rate card {source}: providers.{provider}.{model}"
            if not isinstance(fields, dict):
                raise RateCardError(f"{where} must be a mapping of {', '.join(PRICE_FIELDS)}")
            unknown = set(fields) - set(PRICE_FIELDS)
            if unknown:
                raise RateCardError(
                    f"{where}: unknown field(s) {sorted(unknown)}; "
                    f"allowed: {', '.join(PRICE_FIELDS)}"
                )
            for name, value in fields.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise RateCardError(f"{where}.{name}: {value!r} is not a price ≥ 0")
            result[str(provider)][str(model)] = Prices(**{k: float(v) for k, v in fields.items()})
    return result


def example_rate_card_path() -> Path:
    """The example rate card shipped with voiceobs (example prices, dated in the file)."""
    return Path(__file__).parent / "data" / "rate_card.example.yaml"
