"""From raw tag reads at a dock door to one business event per pass.

A *pass* is the time a tag spends in a portal's field: it starts at the tag's first read on
any of the portal's antennas and ends once the tag has not been read for
``departure_timeout_s``. Its reads collapse into one ``Event``.

Direction. Each read is kept as a sample (time, RSSI, count) of its side (outside or
inside antennas). When the pass ends, ``edge.pass_evidence`` turns each side's samples
into evidence (counts, centroids, RSSI-weighted centroid, smoothed RSSI peak, trend, first,
last and strong reads) and gives the tag its own verdict: ``in`` when it was strong
outside first and strong inside last, ``out`` the reverse, none with a reason otherwise
(``one_side``, ``returned``, ``too_few_reads``, ``no_separation``, ``conflict``). A tag
read on both sides for longer than ``max_dwell_s`` in all is ``parked``: no direction.

Pallet-level direction. Tags that cross one portal together (a pallet, a cart) are judged
together (``edge.pass_groups``): a finished pass waits until no pass of the portal has
ended for ``group_hold_s``, then the passes whose strong reads overlap in time form a
group, its direction is what its confident tags agree on, and that direction goes to every
tag of the group whose own evidence is weak and does not contradict it. Each event of a
group carries its id (``group``). ``group_hold_s = 0`` judges every tag alone.

Confidence is how strongly the reads support the direction given, 0..1 (see
``edge.pass_evidence``; a direction from the group carries the group's confidence). A pass
without a direction has confidence 0.

A finished pass is a ``Pass`` (``edge.passes``), which becomes the business event.

Time. Evidence times (first/last seen, centroids, ``event_time`` = last seen) are the
reader's timestamps. Departure is judged on the host's monotonic clock, passed in by the
caller with each read and each ``tick``, because a reader clock that is off by minutes
must not end (or never end) every pass. Nothing here sleeps or reads a clock, so the
tracker is pure and tested without waiting.

Hot path: per read, a dict lookup for the side, an ordered-dict lookup and move for the tag,
a few integer operations and one sample appended. Evidence and models are built only when a
pass ends.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Final

from edge.config import PortalSettings
from edge.evidence import RSSI_RANGE
from edge.pass_evidence import (
    FULL_SEPARATION,
    MIN_SEPARATION,
    Sample,
    judge_tag,
    side_view,
    with_strong,
)
from edge.pass_groups import GroupJudge
from edge.passes import Pass
from edge.readers.types import TagRead
from wire.models import Direction

log = logging.getLogger(__name__)

MAX_TRACKED_TAGS: Final = 20_000
"""Tags one portal follows at once; beyond it the least recently read pass ends early."""
MAX_PASS_S: Final = 300.0
"""A pass longer than this (a tag left in the field) ends and a new one starts."""
MAX_SAMPLES: Final = 4096
"""Samples kept per pass; beyond, reads still count but add no sample (a tag parked for
minutes has said all its samples can say)."""

_RSSI_LOW, _RSSI_HIGH = RSSI_RANGE
_OUTSIDE: Final = 0
_INSIDE: Final = 1
_NEVER: Final = 1 << 62


def judge(
    outside_reads: int,
    outside_time_sum: int,
    inside_reads: int,
    inside_time_sum: int,
    first_us: int,
    last_us: int,
    min_reads: int,
) -> tuple[Direction | None, float]:
    """Direction and confidence from read counts and time sums alone (no RSSI): the
    read-count centroids' order, as readers without RSSI have always been judged.

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
        "in_samples",
        "last_us",
        "out_first",
        "out_last",
        "out_samples",
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
        self.out_samples: list[Sample] = []
        self.in_samples: list[Sample] = []
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
    regularly (every 100-200 ms); ``tick`` returns the passes that have ended (after
    their group has been judged).

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
        self.groups = GroupJudge(
            portal.read_point,
            portal.group_hold_s,
            portal.group_confirm_s,
            self._tracks.__contains__,
        )
        self.evicted = 0
        """Passes ended early because ``max_tracked`` tags were in the field."""

    def __len__(self) -> int:
        return len(self._tracks) + len(self.groups)

    def adopt(self, old: PassTracker) -> None:
        """Take over the passes ``old`` has open (a remote retune of this portal).

        Reads so far keep the side they were counted on; reads from now on, the
        departure timeout and the direction judgement follow this tracker's settings.
        """
        self._tracks = old._tracks
        self._ended = old._ended
        self.evicted = old.evicted
        old._tracks, old._ended = OrderedDict(), []
        self.groups.adopt(old.groups)

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
            self.groups.seen(epc)
        else:
            tracks.move_to_end(epc)
            track.seen_at = now
            if first_us < track.first_us:
                track.first_us = first_us
        if last_us > track.last_us:
            track.last_us = last_us
        self.groups.clock(last_us, now)
        weight = read.seen_count if read.seen_count > 0 else 1
        track.count += weight
        rssi = read.rssi
        if rssi is not None and not _RSSI_LOW <= rssi <= _RSSI_HIGH:
            rssi = None
        if side == _OUTSIDE:
            samples = track.out_samples
            if first_us < track.out_first:
                track.out_first = first_us
            if last_us > track.out_last:
                track.out_last = last_us
        else:
            samples = track.in_samples
            if first_us < track.in_first:
                track.in_first = first_us
            if last_us > track.in_last:
                track.in_last = last_us
        if len(samples) < MAX_SAMPLES:
            samples.append(((first_us + last_us) // 2, rssi, weight, read.antenna))
        if rssi is not None and (track.peak_rssi is None or rssi > track.peak_rssi):
            track.peak_rssi = rssi
        track.antennas.add(read.antenna)
        return True

    def tick(self, now: float) -> list[Pass]:
        """The passes whose tags were not read for ``departure_timeout_s`` by ``now``,
        once their group has been judged.

        Also passes ended early since the last tick (capacity, maximum length).
        """
        # Each with the host time it ended at: the door is quiet since the last of them.
        ended = [(now, p) for p in self._ended]
        self._ended = []
        tracks = self._tracks
        timeout = self._timeout
        deadline = now - timeout
        while tracks:
            epc, track = next(iter(tracks.items()))
            if track.seen_at > deadline:
                break
            del tracks[epc]
            ended.append((track.seen_at + timeout, self._finish(epc, track)))
        return self.groups.release(ended, now)

    def drain(self) -> list[Pass]:
        """End every pass now (shutdown: what was read is kept, not dropped)."""
        ended, self._ended = self._ended, []
        ended.extend(self._finish(epc, track) for epc, track in self._tracks.items())
        self._tracks.clear()
        return self.groups.drain(ended)

    def _finish(self, epc: str, track: _Track) -> Pass:
        outside, inside = with_strong(side_view(track.out_samples), side_view(track.in_samples))
        both_sides = min(track.out_last, track.in_last) - max(track.out_first, track.in_first)
        out_n = outside.count if outside else 0
        in_n = inside.count if inside else 0
        if out_n and in_n and both_sides > self._max_dwell_us:
            direction: Direction | None = None
            confidence = 0.0
            reason: str | None = "parked"
            strong = False
            signs: tuple[int, ...] = ()
        else:
            verdict = judge_tag(outside, inside, min_reads=self._min_reads)
            direction, confidence, reason, strong = (
                verdict.direction,
                verdict.confidence,
                verdict.reason,
                verdict.strong,
            )
            signs = verdict.signs
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
            outside_count=out_n,
            inside_count=in_n,
            reason=reason,
            outside=outside,
            inside=inside,
            strong=strong,
            signs=signs,
            decided_by="tag" if direction is not None else None,
        )


__all__ = [
    "MAX_PASS_S",
    "MAX_TRACKED_TAGS",
    "PassTracker",
    "judge",
    "no_direction_reason",
]
