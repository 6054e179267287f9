"""Gateway health: the issues listed in the status, and the process's CPU and memory.

Issues are how the gateway raises alerts. The alerts topic belongs to the server (its
ACL lets a gateway publish only under its own topics), so the gateway lists what is
wrong in its retained status, one ``HealthIssue`` per ``(kind, subject)``, and the server
opens an alert for an issue that appears and closes it when a status no longer lists
it. Because the status is retained and re-sent on every connect, an issue raised while
the broker was away still reaches the server, and nothing is lost if one status message
is.

Two kinds of issue:

* *conditions* last as long as the cause (a reader down, an antenna unplugged, the
  outbox filling): ``set`` them on every evaluation while true, ``clear`` when not;
* *occurrences* are moments (a reader exception, a window that closed unread): ``note``
  them; they stay listed for ``hold_s`` after the latest one, with a count, so a status
  sent every few seconds cannot miss them.

CPU and memory come from the standard library: ``os.times()`` for CPU seconds (user and
system, this process) and ``/proc/self/statm`` for the resident set, falling back to
``resource.getrusage`` (peak, not current) where ``/proc`` is missing.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from wire.models import MAX_ISSUES, HealthIssue, Severity, now_utc

HOLD_S: Final = 300.0
"""How long an occurrence stays listed after its latest repeat."""
MAX_MESSAGE: Final = 1000


@dataclass(slots=True)
class _Entry:
    severity: Severity
    message: str
    since: datetime
    count: int
    until: float | None
    """Monotonic expiry of an occurrence; None for a condition."""


class IssueBoard:
    """The issues a gateway lists in its status (see the module docstring).

    Args:
        hold_s: how long an occurrence stays listed after its latest repeat.
    """

    def __init__(self, hold_s: float = HOLD_S) -> None:
        self._hold_s = hold_s
        self._entries: dict[tuple[str, str], _Entry] = {}

    def set(self, kind: str, subject: str, severity: Severity, message: str) -> bool:
        """List a condition (or update its message); True when it is new."""
        key = (kind, subject)
        entry = self._entries.get(key)
        if entry is not None:
            entry.severity = severity
            entry.message = message[:MAX_MESSAGE]
            return False
        if len(self._entries) >= MAX_ISSUES:
            return False
        self._entries[key] = _Entry(severity, message[:MAX_MESSAGE], now_utc(), 1, None)
        return True

    def clear(self, kind: str, subject: str) -> bool:
        """Stop listing a condition; True when it was listed."""
        return self._entries.pop((kind, subject), None) is not None

    def clear_kind(self, kind: str, keep: Container[str]) -> None:
        """Stop listing conditions of ``kind`` whose subject is not in ``keep``."""
        for key in [k for k in self._entries if k[0] == kind and k[1] not in keep]:
            del self._entries[key]

    def note(self, kind: str, subject: str, severity: Severity, message: str, now: float) -> None:
        """Record an occurrence at monotonic ``now``; repeats raise its count."""
        key = (kind, subject)
        entry = self._entries.get(key)
        until = now + self._hold_s
        if entry is not None:
            entry.count += 1
            entry.message = message[:MAX_MESSAGE]
            entry.severity = severity
            entry.until = until
            return
        if len(self._entries) >= MAX_ISSUES:
            return
        self._entries[key] = _Entry(severity, message[:MAX_MESSAGE], now_utc(), 1, until)

    def issues(self, now: float) -> list[HealthIssue]:
        """What to list now (occurrences past their hold are dropped)."""
        expired = [k for k, e in self._entries.items() if e.until is not None and e.until <= now]
        for key in expired:
            del self._entries[key]
        return [
            HealthIssue(
                kind=kind,
                subject=subject,
                severity=entry.severity,
                message=entry.message,
                since=entry.since,
                count=entry.count,
            )
            for (kind, subject), entry in sorted(self._entries.items())
        ]

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._entries


def rss_bytes() -> int | None:
    """Resident memory of this process now (peak where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            fields = statm.read(256).split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports kilobytes, macOS bytes.
        return int(peak if sys.platform == "darwin" else peak * 1024)


class CpuMeter:
    """CPU use of this process between two readings, in percent of one core."""

    def __init__(self) -> None:
        self._cpu = self._cpu_s()
        self._wall = time.monotonic()

    @staticmethod
    def _cpu_s() -> float:
        times = os.times()
        return times.user + times.system

    def percent(self) -> float | None:
        """Use since the previous call; None when no time has passed."""
        cpu, wall = self._cpu_s(), time.monotonic()
        elapsed = wall - self._wall
        used = cpu - self._cpu
        self._cpu, self._wall = cpu, wall
        if elapsed <= 0:
            return None
        return round(max(0.0, used / elapsed * 100.0), 1)
