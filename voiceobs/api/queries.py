"""PromQL, Jaeger and LogQL selectors for one caller's scope.

Every backend query the API sends is built from a :class:`Scope`, which puts the service and,
for a tenant-scoped credential, its tenant into the query itself: a scoped caller's query can
only ever match its own tenant's series and traces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voiceobs import semconv as sc

TENANT_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
CALL_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
TRACE_ID_PATTERN = r"^[0-9a-fA-F]{16,32}$"
WINDOW_PATTERN = r"^[1-9][0-9]{0,4}[smhd]$"
MAX_WINDOW_S = 90 * 86400

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def window_seconds(window: str) -> int:
    """Seconds in a PromQL duration such as ``5m``; ValueError outside 10 s … 90 d."""
    if not re.match(WINDOW_PATTERN, window):
        raise ValueError("a duration such as 30s, 5m, 6h or 7d")
    seconds = int(window[:-1]) * _UNITS[window[-1]]
    if not 10 <= seconds <= MAX_WINDOW_S:
        raise ValueError("between 10s and 90d")
    return seconds


def counted(selector: str, window: str) -> str:
    """How much the counters of ``selector`` rose over ``window``, exactly.

    ``increase`` extrapolates to the window's edges, so five calls of a series that began
    inside the window read as 5.8. The ``anchored`` modifier (stable since Prometheus 3.16)
    takes the last sample at or before the window's start and the last inside it, with no
    extrapolation: five calls read as five, and a series' zero start point is its start.
    """
    return f"increase({selector}[{window}] anchored)"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Scope:
    """The service the API watches and the tenant this request is limited to (None: all)."""

    service: str
    tenant: str | None

    def sel(self, metric: str, *extra: str, tenant_label: bool = True) -> str:
        """``metric{job="…",tenant="…",extra…}``; ``tenant_label`` False for series without it."""
        matchers = [f"job={_quote(self.service)}"]
        if self.tenant is not None and tenant_label:
            matchers.append(f"{sc.L_TENANT}={_quote(self.tenant)}")
        matchers.extend(extra)
        return f"{metric}{{{','.join(matchers)}}}"

    def jaeger_tags(self, **tags: str) -> dict[str, str]:
        """Jaeger search tags, the tenant's always among them when scoped."""
        if self.tenant is not None:
            tags = {**tags, sc.TENANT: self.tenant}
        return tags

    def owns(self, tenant: object) -> bool:
        """Whether a trace of ``tenant`` may be shown in this scope."""
        return self.tenant is None or tenant == self.tenant

    def call_logs(self, call_id: str) -> str:
        """LogQL for one call's lines. Log records carry no tenant: callers check the call's
        tenant in its trace before they send this."""
        return f"{{service_name={_quote(self.service)}}} | {sc.EXEMPLAR_CALL_ID}={_quote(call_id)}"
