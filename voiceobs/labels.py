"""Bounded metric label values: allow-lists, or a cap on distinct values seen.

A label value outside the allow-list (or past the cap) becomes ``other``, so a misbehaving
caller cannot explode Prometheus cardinality. Look-ups are one dict access on the hot path.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from voiceobs.semconv import OTHER

MAX_VALUE_LENGTH = 64


class LabelGuard:
    """Maps raw label values to bounded ones, for one label."""

    __slots__ = ("_admitted", "_allowed", "_limit", "_lock", "_seen", "name")

    def __init__(self, name: str, allowed: Iterable[str] = (), limit: int = 50) -> None:
        self.name = name
        self._allowed = frozenset(allowed)
        self._limit = limit
        self._seen: dict[str, str] = {v: v for v in self._allowed}
        self._admitted = 0
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        """Return ``value`` if it may be a label value, else ``other``."""
        if value is None:
            return OTHER
        hit = self._seen.get(value)
        if hit is not None:
            return hit
        return self._admit(value)

    def _admit(self, value: str) -> str:
        with self._lock:
            if value in self._seen:
                return self._seen[value]
            admitted = (
                not self._allowed
                and self._admitted < self._limit
                and 0 < len(value) <= MAX_VALUE_LENGTH
            )
            self._admitted += admitted
            # Remember rejections too (bounded by the same cap) so repeats stay one look-up.
            result = value if admitted else OTHER
            if admitted or len(self._seen) < 4 * self._limit:
                self._seen[value] = result
            return result


def fixed(name: str, vocabulary: Iterable[str]) -> LabelGuard:
    """A guard for a closed vocabulary (status, outcome…): anything else is ``other``."""
    values = tuple(vocabulary)
    return LabelGuard(name, values, limit=len(values))
