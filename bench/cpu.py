"""Pinning a measurement to one core, and the statistics the figures use."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

SAMPLE_S: Final = 0.25
"""How long CPU usage is sampled to find the idlest core."""


def _idle_ticks() -> dict[int, int]:
    """Idle plus iowait ticks per CPU, from /proc/stat (empty where it is not readable)."""
    try:
        lines = Path("/proc/stat").read_text(encoding="ascii").splitlines()
    except OSError:
        return {}
    ticks: dict[int, int] = {}
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu" and len(fields) >= 5:
            ticks[int(name[3:])] = int(fields[3]) + int(fields[4])
    return ticks


def idlest_cpu(allowed: set[int]) -> int:
    """The allowed CPU that was idle most over the last ``SAMPLE_S`` seconds.

    Other work on the machine (it may be shared) then disturbs the pinned run least.
    """
    before = _idle_ticks()
    time.sleep(SAMPLE_S)
    after = _idle_ticks()
    idle = {cpu: after.get(cpu, 0) - before.get(cpu, 0) for cpu in allowed}
    return max(sorted(allowed), key=lambda cpu: idle[cpu])


@contextlib.contextmanager
def one_core() -> Iterator[int | None]:
    """Run the block on one CPU, the idlest one; yields its number (None: cannot pin).

    Threads started inside the block (aiosqlite's worker) inherit the pinning, so the whole
    measured path shares one core, as on a small edge box.
    """
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    allowed = os.sched_getaffinity(0)
    cpu = idlest_cpu(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, allowed)


def _task_files(pid: int, name: str) -> dict[int, str]:
    """The text of ``/proc/PID/task/*/NAME`` by thread id; a thread whose file cannot be
    read (it ended meanwhile) is left out, and none where ``/proc`` is not readable."""
    texts: dict[int, str] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return texts
    for task in tasks:
        with contextlib.suppress(OSError):
            texts[int(task.name)] = (task / name).read_text(encoding="ascii", errors="replace")
    return texts


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user and system) each thread of process ``pid`` has used, by thread id
    (from ``/proc/PID/task/*/stat``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[int, float] = {}
    for tid, stat in _task_files(pid, "stat").items():
        # Fields after the command name, which is in parentheses and may hold spaces:
        # state is field 3, utime field 14 and stime field 15 (proc(5)).
        fields = stat.rpartition(")")[2].split()
        used[tid] = (int(fields[11]) + int(fields[12])) / ticks
    return used


def child_processes(pid: int) -> list[int]:
    """The processes ``pid`` started and that still run (children of any of its threads,
    from ``/proc/PID/task/*/children``)."""
    children = _task_files(pid, "children").values()
    return sorted({int(child) for text in children for child in text.split()})


def process_tree_cpu_seconds(pid: int) -> dict[tuple[int, int], float]:
    """CPU seconds of each thread of ``pid`` and of the processes it started, by (process,
    thread)."""
    return {
        (process, tid): seconds
        for process in (pid, *child_processes(pid))
        for tid, seconds in thread_cpu_seconds(process).items()
    }


def run_queue_seconds(pid: int) -> float:
    """Seconds the main thread of ``pid`` was ready to run but waited for a CPU (the second
    field of ``/proc/PID/task/PID/schedstat``; 0.0 where it cannot be read)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    return int(text.split()[1]) / 1e9


def machine_cpu_seconds(names: Sequence[str]) -> dict[str, float]:
    """CPU seconds used so far: ``busy`` by the whole machine (every CPU, idle and iowait
    left out, from ``/proc/stat``), and by every process whose command is one of ``names``
    (from ``/proc/*/stat``; a process that ends between two readings takes its seconds
    with it). Empty where ``/proc`` is not readable."""
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()[1:]
    except OSError:
        return {}
    values = [int(field) for field in fields]
    used = {"busy": (sum(values) - values[3] - values[4]) / ticks}
    used.update(dict.fromkeys(names, 0.0))
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
            command = stat.partition("(")[2].rpartition(")")[0]
            if command in used and command != "busy":
                rest = stat.rpartition(")")[2].split()
                used[command] += (int(rest[11]) + int(rest[12])) / ticks
    return used


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile by the nearest-rank method (p99 of 1,000 samples: the 990th)."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return float(ordered[int(rank) - 1])
