"""CPU time of a process and of every process below it (an export process voiceobs starts
counts as voiceobs' cost), read with psutil."""

from __future__ import annotations

import psutil


def children_cpu(pid: int) -> dict[int, float]:
    """User + system CPU seconds of each live descendant of ``pid``, by pid."""
    times = {}
    for child in psutil.Process(pid).children(recursive=True):
        try:
            cpu = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        times[child.pid] = cpu.user + cpu.system
    return times


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` itself, all its threads."""
    cpu = psutil.Process(pid).cpu_times()
    return cpu.user + cpu.system


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants."""
    return process_cpu(pid) + sum(children_cpu(pid).values())


def children_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU the descendants took between two :func:`children_cpu` readings (one that started
    in between counts from zero)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
