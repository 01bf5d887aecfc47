"""The worker's memory limit, so memory use can be alerted on as a percentage."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from voiceobs.semconv import PROCESS_MEMORY_LIMIT

_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)


def memory_limit_bytes() -> int:
    """The cgroup memory limit if one is set, else the machine's physical memory."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < physical:
            return int(text)
    return physical


def observe_memory_limit(meter: Meter) -> None:
    """Register ``voiceobs_process_memory_limit_bytes`` (read at each collection)."""

    def observe(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(memory_limit_bytes())

    meter.create_observable_gauge(
        PROCESS_MEMORY_LIMIT.name,
        callbacks=[observe],
        unit=PROCESS_MEMORY_LIMIT.unit,
        description=PROCESS_MEMORY_LIMIT.description,
    )
