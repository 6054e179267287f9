"""From raw tag reads at a dock door to one business event per pass.

A *pass* is the time a tag spends in a portal's field: it starts at the tag's first read on
any of the portal's antennas and ends once the tag has not been read for
``departure_timeout_s``. Its reads collapse into one ``Event``.

Direction. Each side of the door (outside antennas, inside antennas) gets the read-count
weighted mean time of its reads, its *centroid*. A tag carried inwards is read mostly
outside early and mostly inside late, so the outside centroid comes first: direction
``in``; the reverse is ``out``. Centroids are sturdier than the first and last read alone,
which one stray read through the door frame can flip. No direction (``None``) is given
when only one side saw the tag (goods staged beside the door), when there were fewer than
``min_reads`` reads, when the centroids are closer than ``MIN_SEPARATION`` of the pass
length, or when the tag was *parked in the doorway*: the periods in which each side read
it overlap by more than the portal's ``max_dwell_s`` (both sides kept reading it, so it
sat between them; a pallet that waits on one side and then crosses is read by one side
at a time and keeps its direction). The evidence says which (``reason``) and how many
reads each side had.

Confidence is how strongly the reads support the direction given, 0..1: the product of a
support term, ``1 - 0.5 ** min(outside reads, inside reads)`` (one read per side is a coin
toss made good, five per side is near certain), and a separation term, the centroid gap as
a fraction of the pass length, full at ``FULL_SEPARATION``. A pass without a direction has
confidence 0.

Business step: ``receiving`` for in, ``shipping`` for out, ``other`` for none (the server
records the sighting but moves no stock on it).

Time. Evidence times (first/last seen, centroids, ``event_time`` = last seen) are the
reader's timestamps. Departure is judged on the host's monotonic clock, passed in by the
caller with each read and each ``tick``, because a reader clock that is off by minutes
must not end (or never end) every pass. Nothing here sleeps or reads a clock, so the
tracker is pure and tested without waiting.

Hot path: per read, a dict lookup for the side, an ordered-dict lookup and move for the tag,
and a few integer operations. Models are built only when a pass ends.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from edge.config import PortalSettings
from edge.evidence import RSSI_RANGE, tag_event
from edge.readers.types import TagRead
from wire.models import Direction, Event

log = logging.getLogger(__name__)

MAX_TRACKED_TAGS: Final = 20_000
"""Tags one portal follows at once; beyond it the least recently read pass ends early."""
MAX_PASS_S: Final = 300.0
"""A pass longer than this (a tag left in the field) ends and a new one starts."""
MIN_SEPARATION: Final = 0.15
"""Centroid gap, as a fraction of the pass length, below which no direction is given."""
FULL_SEPARATION: Final = 0.35
"""Centroid gap at which the separation term of the confidence reaches 1."""

BIZ_STEPS: Final[dict[Direction | None, str]] = {
    "in": "receiving",
    "out": "shipping",
    None: "other",
}
_RSSI_LOW, _RSSI_HIGH = RSSI_RANGE
_OUTSIDE: Final = 0
_INSIDE: Final = 1
_NEVER: Final = 1 << 62


@dataclass(frozen=True, slots=True)
class Pass:
    """One tag's finished pass through a portal."""

    read_point: str
    epc_hex: str
    direction: Direction | None
    confidence: float
    count: int
    antennas: tuple[int, ...]
    peak_rssi: float | None
    first_seen_us: int
    last_seen_us: int
    outside_count: int | None = None
    inside_count: int | None = None
    reason: str | None = None
    """Why there is no direction (see the module docstring); None when there is one."""

    def to_event(self, event_id: str) -> Event:
        """The business event for this pass.

        Raises:
            IdentifierError: the EPC is not hex or too long to be an EPC bank.
        """
        return tag_event(
            event_id,
            read_point=self.read_point,
            epc_hex=self.epc_hex,
            biz_step=BIZ_STEPS[self.direction],
            count=self.count,
            antennas=self.antennas,
            peak_rssi=self.peak_rssi,
            first_seen_us=self.first_seen_us,
            last_seen_us=self.last_seen_us,
            evidence={
                "outside_count": self.outside_count,
                "inside_count": self.inside_count,
                "reason": self.reason,
            },
            direction=self.direction,
            confidence=self.confidence,
        )


def judge(
    outside_reads: int,
    outside_time_sum: int,
    inside_reads: int,
    inside_time_sum: int,
    first_us: int,
    last_us: int,
    min_reads: int,
) -> tuple[Direction | None, float]:
    """Direction and confidence of a pass from its per-side read counts and time sums.

    Args:
        outside_reads: reads on outside antennas (weights of the time sum).
        outside_time_sum: sum over those reads of read time times weight, in µs.
        inside_reads: as ``outside_reads`` for the inside antennas.
        inside_time_sum: as ``outside_time_sum`` for the inside antennas.
        first_us: the pass's first read time.
        last_us: the pass's last read time.
        min_reads: fewest reads that may carry a direction.
    """
    if outside_reads + inside_reads < min_reads or not outside_reads or not inside_reads:
        return None, 0.0
    span = last_us - first_us
    if span <= 0:
        return None, 0.0
    gap = (inside_time_sum / inside_reads - outside_time_sum / outside_reads) / span
    if abs(gap) < MIN_SEPARATION:
        return None, 0.0
    support = 1.0 - 0.5 ** min(outside_reads, inside_reads)
    separation = min(1.0, abs(gap) / FULL_SEPARATION)
    return ("in" if gap > 0 else "out"), round(support * separation, 3)


def no_direction_reason(outside_reads: int, inside_reads: int, min_reads: int) -> str:
    """Why ``judge`` gave no direction, for the evidence."""
    if outside_reads + inside_reads < min_reads:
        return "too_few_reads"
    if not outside_reads or not inside_reads:
        return "one_side"
    return "no_separation"


class _Track:
    """What a portal knows of one tag during its current pass (mutable, one per tag)."""

    __slots__ = (
        "antennas",
        "count",
        "first_us",
        "in_first",
        "in_last",
        "in_n",
        "in_t",
        "last_us",
        "out_first",
        "out_last",
        "out_n",
        "out_t",
        "peak_rssi",
        "seen_at",
        "started_at",
    )

    def __init__(self, now: float, first_us: int) -> None:
        self.started_at = now
        self.seen_at = now
        self.first_us = first_us
        self.last_us = first_us
        self.count = 0
        self.out_n = 0
        self.out_t = 0
        self.in_n = 0
        self.in_t = 0
        # Each side's first and last read time, for the parked-in-the-doorway test.
        self.out_first = _NEVER
        self.out_last = -1
        self.in_first = _NEVER
        self.in_last = -1
        self.peak_rssi: float | None = None
        self.antennas: set[int] = set()


class PassTracker:
    """Per-tag pass tracking for one portal.

    Feed it every read of the portal's reader with ``observe`` and call ``tick``
    regularly (every 100-200 ms); ``tick`` returns the passes that have ended.

    Args:
        portal: the door: its read point, reader and the antennas on each side.
        max_tracked: most tags followed at once.
        max_pass_s: longest pass before it is ended and a new one begins.
    """

    def __init__(
        self,
        portal: PortalSettings,
        *,
        max_tracked: int = MAX_TRACKED_TAGS,
        max_pass_s: float = MAX_PASS_S,
    ) -> None:
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        self.portal = portal
        self.read_point = portal.read_point
        self.reader = portal.reader
        self._side = {antenna: _OUTSIDE for antenna in portal.outside_antennas}
        self._side.update({antenna: _INSIDE for antenna in portal.inside_antennas})
        self._timeout = portal.departure_timeout_s
        self._min_reads = portal.min_reads
        self._max_dwell_us = round(portal.max_dwell_s * 1_000_000)
        self._max_tracked = max_tracked
        self._max_pass_s = max_pass_s
        # Ordered by the host time of each tag's latest read: departures sit at the front.
        self._tracks: OrderedDict[str, _Track] = OrderedDict()
        self._ended: list[Pass] = []
        self.evicted = 0
        """Passes ended early because ``max_tracked`` tags were in the field."""

    def __len__(self) -> int:
        return len(self._tracks)

    def adopt(self, old: PassTracker) -> None:
        """Take over the passes ``old`` has open (a remote retune of this portal).

        Reads so far keep the side they were counted on; reads from now on, the
        departure timeout and the direction judgement follow this tracker's settings.
        """
        self._tracks = old._tracks
        self._ended = old._ended
        self.evicted = old.evicted
        old._tracks, old._ended = OrderedDict(), []

    def observe(self, read: TagRead, now: float) -> bool:
        """Add one read; ``now`` is the host's monotonic time in seconds.

        Returns:
            False when the read's antenna is not one of this portal's (nothing changed).
        """
        side = self._side.get(read.antenna)
        if side is None:
            return False
        epc = read.epc_hex
        first_us = read.first_seen_us
        last_us = read.last_seen_us
        if last_us < first_us:
            first_us, last_us = last_us, first_us
        tracks = self._tracks
        track = tracks.get(epc)
        if track is not None and now - track.started_at >= self._max_pass_s:
            self._ended.append(self._finish(epc, tracks.pop(epc)))
            track = None
        if track is None:
            if len(tracks) >= self._max_tracked:
                # Full: the pass read least recently is the one closest to departing anyway.
                old_epc, old_track = tracks.popitem(last=False)
                self._ended.append(self._finish(old_epc, old_track))
                self.evicted += 1
            track = tracks[epc] = _Track(now, first_us)
        else:
            tracks.move_to_end(epc)
            track.seen_at = now
            if first_us < track.first_us:
                track.first_us = first_us
        if last_us > track.last_us:
            track.last_us = last_us
        weight = read.seen_count if read.seen_count > 0 else 1
        moment = (first_us + last_us) // 2 * weight
        track.count += weight
        if side == _OUTSIDE:
            track.out_n += weight
            track.out_t += moment
            if first_us < track.out_first:
                track.out_first = first_us
            if last_us > track.out_last:
                track.out_last = last_us
        else:
            track.in_n += weight
            track.in_t += moment
            if first_us < track.in_first:
                track.in_first = first_us
            if last_us > track.in_last:
                track.in_last = last_us
        rssi = read.rssi
        if (
            rssi is not None
            and _RSSI_LOW <= rssi <= _RSSI_HIGH
            and (track.peak_rssi is None or rssi > track.peak_rssi)
        ):
            track.peak_rssi = rssi
        track.antennas.add(read.antenna)
        return True

    def tick(self, now: float) -> list[Pass]:
        """End and return the passes of tags not read for ``departure_timeout_s`` by ``now``.

        Also returns passes ended early since the last tick (capacity, maximum length).
        """
        ended, self._ended = self._ended, []
        tracks = self._tracks
        deadline = now - self._timeout
        while tracks:
            epc, track = next(iter(tracks.items()))
            if track.seen_at > deadline:
                break
            del tracks[epc]
            ended.append(self._finish(epc, track))
        return ended

    def drain(self) -> list[Pass]:
        """End every pass now (shutdown: what was read is kept, not dropped)."""
        ended, self._ended = self._ended, []
        ended.extend(self._finish(epc, track) for epc, track in self._tracks.items())
        self._tracks.clear()
        return ended

    def _finish(self, epc: str, track: _Track) -> Pass:
        both_sides = min(track.out_last, track.in_last) - max(track.out_first, track.in_first)
        reason: str | None = None
        if track.out_n and track.in_n and both_sides > self._max_dwell_us:
            direction: Direction | None = None
            confidence = 0.0
            reason = "parked"
        else:
            direction, confidence = judge(
                track.out_n,
                track.out_t,
                track.in_n,
                track.in_t,
                track.first_us,
                track.last_us,
                self._min_reads,
            )
            if direction is None:
                reason = no_direction_reason(track.out_n, track.in_n, self._min_reads)
        return Pass(
            read_point=self.read_point,
            epc_hex=epc,
            direction=direction,
            confidence=confidence,
            count=track.count,
            antennas=tuple(sorted(track.antennas)),
            peak_rssi=track.peak_rssi,
            first_seen_us=track.first_us,
            last_seen_us=track.last_us,
            outside_count=track.out_n,
            inside_count=track.in_n,
            reason=reason,
        )


__all__ = [
    "BIZ_STEPS",
    "MAX_PASS_S",
    "MAX_TRACKED_TAGS",
    "Pass",
    "PassTracker",
    "judge",
    "no_direction_reason",
]
