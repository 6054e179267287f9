"""What the edge agent counts, in one object the agent owns and metrics and status read.

The agent increments these as reads, scans and events go by; ``edge.metrics`` exposes
them at scrape time and the status publishes some of them. Plain attributes: the agent's
read loop adds to them for every tag read, so they cost one attribute update each.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class EdgeCounters:
    """The agent's running totals since it started."""

    reads: int = 0
    """Tag reads received from every reader."""
    reads_by_reader: Counter[str] = field(default_factory=Counter)
    ignored_reads: int = 0
    """Reads on an antenna (or a reader) no read point uses."""
    passes: int = 0
    """Passes stored in the outbox."""
    refused: int = 0
    """Events refused by a full outbox."""
    bad_passes: int = 0
    """Passes that could not become an event (e.g. an EPC that is not hex)."""
    scans: int = 0
    """Well-formed scans received from every scanner."""
    scan_events: int = 0
    """Events from scans stored in the outbox."""
    reader_events: Counter[str] = field(default_factory=Counter)
    """Reader events by kind, plus ``scan_notice``, ``scan_refused``, ``refused_by_server``."""
