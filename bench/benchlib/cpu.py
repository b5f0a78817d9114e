"""CPU time per job of each process of the pipeline, from /proc, before and after a run.

With every process on the same 2 cores, a rate says little about which one limits it; the
CPU seconds each one used over a run (user + system, all threads, for PostgreSQL every
backend of the postmaster) divided by the run's subtasks does. Linux only; elsewhere the
figures are empty.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

Processes = Callable[[], Mapping[str, list[int]]]
"""The pids of each named part of the pipeline, looked up at each snapshot (a profiled
process is restarted, so its pid changes)."""


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after it are split safely.
    return text[text.rindex(")") + 2 :].split()


def seconds(pid: int) -> float:
    """User plus system CPU seconds of a live process (all its threads), 0 when gone."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def with_children(pid: int | None) -> list[int]:
    """`pid` and its direct children (a PostgreSQL postmaster and its backends)."""
    if pid is None:
        return []
    found = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def snapshot(processes: Processes) -> dict[str, dict[int, float]]:
    """CPU seconds of every pid of every part now."""
    return {name: {pid: seconds(pid) for pid in pids} for name, pids in processes().items()}


def per_job(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], jobs: int
) -> dict[str, float]:
    """CPU milliseconds per job of each part between two snapshots (a backend that ended in
    between is not counted; one that started is counted whole)."""
    return {
        name: 1000
        * sum(cpu - before.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items())
        / jobs
        for name, pids in after.items()
    }
