"""What a simulated reader has done, counted over all its sessions.

The simulator owns one ``ReaderCounters``; its sessions count into it (requests received,
reports and keepalives sent, messages a fault dropped) and record the tag reads of each
report once it has been handed to the socket, which is what ``emitted`` and ``stats``
read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

Reads = list[tuple[str, int, int]]
"""The tag reads of one report: (EPC hex, antenna, seen count) per TagReportData."""


@dataclass(frozen=True, slots=True)
class SimStats:
    """Counters of one simulator since it started (all sessions)."""

    connections: int
    refused: int
    requests: int
    reports_sent: int
    tag_entries_sent: int
    reads_emitted: int
    keepalives_sent: int
    keepalive_acks: int
    faults: int = 0
    reports_dropped: int = 0
    empty_reports: int = 0


class ReaderCounters:
    """Counts of one simulator: events by name, requests by message type, and the tag
    reads sent by (EPC hex, antenna)."""

    def __init__(self) -> None:
        self._emitted: Counter[tuple[str, int]] = Counter()
        self._counts: Counter[str] = Counter()
        self._requests: Counter[int] = Counter()

    @property
    def emitted(self) -> Counter[tuple[str, int]]:
        """Tag reads sent in reports so far, by (EPC hex, antenna) (sum of seen counts)."""
        return Counter(self._emitted)

    @property
    def requests(self) -> Counter[int]:
        """Client messages received so far, by LLRP message type."""
        return Counter(self._requests)

    def count(self, what: str) -> None:
        """One more of ``what`` (``connections``, ``keepalives``, ``fault_garbage``, ...)."""
        self._counts[what] += 1

    def count_request(self, msg_type: int) -> None:
        self._requests[msg_type] += 1

    def record(self, reads: Reads) -> None:
        """A report carrying ``reads`` went to the socket."""
        emitted = self._emitted
        total = 0
        for epc, antenna, count in reads:
            emitted[(epc, antenna)] += count
            total += count
        self._counts["reports"] += 1
        self._counts["entries"] += len(reads)
        self._counts["reads"] += total

    def stats(self, faults: int) -> SimStats:
        """The counters as ``SimStats``, with the number of ``faults`` injected."""
        c = self._counts
        return SimStats(
            connections=c["connections"],
            refused=c["refused"],
            requests=sum(self._requests.values()),
            reports_sent=c["reports"],
            tag_entries_sent=c["entries"],
            reads_emitted=c["reads"],
            keepalives_sent=c["keepalives"],
            keepalive_acks=c["keepalive_acks"],
            faults=faults,
            reports_dropped=c["reports_dropped"],
            empty_reports=c["empty_reports"],
        )
