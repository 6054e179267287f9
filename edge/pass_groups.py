"""Pallet-level direction: the tags that crossed a portal together are judged together.

A pallet's cases cross the door within a fraction of a second of each other. Some of them
are read plainly on both sides; others (inner cases shielded by the load, tags facing
away) are read once or twice and cannot be judged alone. ``GroupJudge`` holds a portal's
finished passes until none has ended for ``hold_s`` (so the tags of one pallet, whose
passes end within moments of each other, are all there), then:

1. *Groups.* Passes read on both sides (anchors) whose strong-read windows overlap (within
   ``GROUP_GAP_US``) form a group. A pass read too little, or on one side only, joins the
   group whose window holds all its reads; otherwise it stands alone.
2. *The group's direction.* Anchors with a direction of confidence ``VOTE_CONFIDENCE`` or
   more vote for it, each vote weighing its confidence; anchors that clearly came and left
   on the same side vote ``returned`` (weight 1). At least ``MIN_VOTES`` voters, and
   ``AGREEMENT`` of the weight for one outcome, give
   the group that outcome; otherwise the group has none (two pallets crossing one wide
   door in opposite directions at once), and each tag keeps its own verdict.
3. *The members.* A tag that agrees keeps its verdict. A tag read plainly on both sides
   but without a clear direction of its own gets the group's (``decided_by`` ``group``)
   unless one of its own clues (entry, exit, peaks, centroids) says the opposite. A tag
   read too little or on one side only gets it when its reads fit the group's crossing:
   on its way in, reads outside only before the group's crossing time and inside only
   after it (``CROSSING_SLACK_US`` either way), and each side's reads only while the
   group's tags were strong on that side (``SIDE_SLACK_US`` either way). A tag read on one
   side only must also have been read at most ``ONE_SIDE_MAX_READS`` times (one read often
   on one side and never on the other was not near the other side), must not have been
   seen on one side of this door in the last ``LOITER_US`` (goods staged beside the door
   are read now and then and must not move with a passing pallet), and waits
   ``confirm_s`` on probation: read again meanwhile on one side (also when that new pass
   began before this one was judged), it keeps its own verdict.
   Probation is counted in the reader's time (the latest read timestamp at this door),
   not the host's: on a loaded gateway the reads of the next seconds may reach the
   judge late, and a staged case whose next read is still queued must not take the
   pallet's direction for want of it. A door that reads nothing at all for
   ``confirm_s + MAX_WAIT_S`` of host time ends the probation too.
   A tag whose own clear-cut evidence contradicts the group keeps its verdict; one whose
   weak evidence contradicts it is left without direction (``group_conflict``). Nothing
   is guessed: what does not fit stays unresolved.

Every pass of a group of two or more carries the group's id (the read point and the
group's first strong read, unique per gateway) and its size.

Pure: passes, the reader's clock (``clock``) and the caller's monotonic ``now`` in,
passes out.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from edge.passes import Pass

GROUP_GAP_US: Final = 250_000
"""Strong-read windows this close are one group."""
ATTACH_SLACK_US: Final = 500_000
"""A weak pass joins a group whose window, widened by this, holds all its reads."""
CROSSING_SLACK_US: Final = 400_000
"""How far a weak tag's reads may stray past the group's crossing time."""
SIDE_SLACK_US: Final = 200_000
"""How far a weak tag's reads on a side may stray outside the group's time near that side."""
VOTE_CONFIDENCE: Final = 0.3
MIN_VOTES: Final = 3
AGREEMENT: Final = 0.9
STAND_CONFIDENCE: Final = 0.6
"""A tag whose own clear-cut direction has this confidence keeps it against its group."""
ONE_SIDE_MAX_READS: Final = 3
"""A tag read more often than this on one side and never on the other was not near the
other side: it did not cross with its group (cross traffic, goods beside the door)."""
LOITER_US: Final = 120_000_000
"""A one-sided pass of the same tag this recently means it was standing beside the door."""
MAX_LOITERERS: Final = 20_000
CONFIRM_S: Final = 10.0
"""Default probation: a one-sided tag given its group's direction is published this much
later (the portal's ``group_confirm_s``). If the door
reads it again meanwhile, it waits for that pass: read again on one side without a
direction, the tag was standing beside the door and keeps its own verdict; crossing again,
it rode its pallet both times."""
MAX_WAIT_S: Final = 10.0
"""Longest a finished pass waits for its group (a door that is never quiet)."""
MAX_WAIT_US: Final = round(MAX_WAIT_S * 1_000_000)
MAX_PENDING: Final = 20_000


@dataclass(slots=True)
class _Group:
    start_us: int
    end_us: int
    anchors: list[Pass] = field(default_factory=list)
    weak: list[Pass] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.anchors) + len(self.weak)


def strong_window(p: Pass) -> tuple[int, int]:
    """The time the tag was strong on either side (all its reads, without RSSI)."""
    starts = [v.first_strong_us for v in (p.outside, p.inside) if v and v.first_strong_us]
    ends = [v.last_strong_us for v in (p.outside, p.inside) if v and v.last_strong_us]
    if starts and ends:
        return min(starts), max(ends)
    return p.first_seen_us, p.last_seen_us


def _is_anchor(p: Pass) -> bool:
    return (
        p.outside is not None
        and p.inside is not None
        and p.reason not in ("too_few_reads", "one_side", "parked")
    )


_SIGN: Final = {"in": 1, "out": -1}


def _one_sided(p: Pass) -> bool:
    return p.outside is None or p.inside is None


def crossing_us(p: Pass) -> float | None:
    """When the tag crossed: midway between its outside and inside RSSI peaks (or centroids)."""
    out, inn = p.outside, p.inside
    if out is None or inn is None:
        return None
    if out.peak_us is not None and inn.peak_us is not None:
        return (out.peak_us + inn.peak_us) / 2
    return (out.centroid_us + inn.centroid_us) / 2


def fits(p: Pass, direction: str, crossing: float, windows: _SideWindows) -> bool:
    """Whether ``p``'s reads are where a tag crossing ``direction`` with its group is: each
    side's reads while the group was near that side, and none on the wrong side of the
    group's crossing time."""
    before, after = (p.outside, p.inside) if direction == "in" else (p.inside, p.outside)
    if before is not None and before.last_us > crossing + CROSSING_SLACK_US:
        return False
    if after is not None and after.first_us < crossing - CROSSING_SLACK_US:
        return False
    for view, window in ((p.outside, windows.outside), (p.inside, windows.inside)):
        if view is None:
            continue
        if window is None:
            return False
        if view.first_us < window[0] - SIDE_SLACK_US or view.last_us > window[1] + SIDE_SLACK_US:
            return False
    return True


@dataclass(frozen=True, slots=True)
class _SideWindows:
    """When the group was near each side: from its tags' first to last strong read there."""

    outside: tuple[int, int] | None
    inside: tuple[int, int] | None


def side_windows(anchors: list[Pass]) -> _SideWindows:
    def window(views: list[tuple[int | None, int | None]]) -> tuple[int, int] | None:
        starts = [a for a, _ in views if a is not None]
        ends = [b for _, b in views if b is not None]
        return (min(starts), max(ends)) if starts and ends else None

    return _SideWindows(
        window(
            [(p.outside.first_strong_us, p.outside.last_strong_us) for p in anchors if p.outside]
        ),
        window([(p.inside.first_strong_us, p.inside.last_strong_us) for p in anchors if p.inside]),
    )


class GroupJudge:
    """Holds one portal's finished passes and judges them in groups (module docstring).

    Args:
        read_point: the portal (part of every group id).
        hold_s: quiet time before held passes are judged; 0 judges every pass alone.
        confirm_s: probation of a one-sided tag given its group's direction.
    """

    def __init__(
        self,
        read_point: str,
        hold_s: float,
        confirm_s: float = CONFIRM_S,
        reading: Callable[[str], bool] = lambda epc: False,
    ) -> None:
        if hold_s < 0 or confirm_s < 0:
            raise ValueError("hold_s and confirm_s must be >= 0")
        self.read_point = read_point
        self.hold_s = hold_s
        self.confirm_s = confirm_s
        self._reading = reading
        """Whether the door has a pass of this EPC open now (read again since)."""
        self._pending: list[Pass] = []
        self._first_at = 0.0
        self._last_at = 0.0
        self._loiterers: OrderedDict[str, int] = OrderedDict()
        self._batch_sides: dict[str, list[int]] = {}
        self._probation: dict[str, tuple[int, Pass, Pass]] = {}
        """One-sided tags given their group's direction, by EPC: (due in reader µs, with
        it, without)."""
        self._reader_us = 0
        """The latest read timestamp at this door (the reader's clock)."""
        self._read_at = 0.0
        """Host time that read was taken in at."""
        self._reread: set[str] = set()
        self.decided: Counter[str] = Counter()
        """Passes by who gave the direction: ``tag``, ``group``, ``none``."""
        self.groups = 0

    def __len__(self) -> int:
        return len(self._pending) + len(self._probation)

    def adopt(self, old: GroupJudge) -> None:
        """Take over what ``old`` holds (its portal was retuned): passes waiting for their
        group, tags on probation, the tags seen loitering."""
        self._pending, old._pending = old._pending, []
        self._first_at, self._last_at = old._first_at, old._last_at
        self._probation, old._probation = old._probation, {}
        self._reader_us, self._read_at = old._reader_us, old._read_at
        self._reread, old._reread = old._reread, set()
        self._loiterers = old._loiterers
        self.decided = old.decided
        self.groups = old.groups

    def clock(self, reader_us: int, now: float) -> None:
        """A read stamped ``reader_us`` by the reader was taken in at host time ``now``."""
        if reader_us > self._reader_us:
            self._reader_us = reader_us
        self._read_at = now

    def seen(self, epc: str) -> None:
        """A new pass of ``epc`` began (it is read again at this door)."""
        if epc in self._probation:
            self._reread.add(epc)

    def release(self, ended: list[tuple[float, Pass]], now: float) -> list[Pass]:
        """Take ``ended`` (each pass with the host time it ended at); hand back the held
        passes once no pass has ended for ``hold_s``."""
        if not self.hold_s:
            # Grouping is off (or was switched off while passes were held: out they go).
            held, self._pending = self._pending, []
            waiting = self._confirm(None) if self._probation else []
            return [*waiting, *held, *(p for _, p in ended)]
        out = self._confirm(now) if self._probation else []
        if ended:
            first = min(at for at, _ in ended)
            last = max(at for at, _ in ended)
            if not self._pending:
                self._first_at = first
            self._pending.extend(p for _, p in ended)
            self._last_at = max(self._last_at, last)
        if not self._pending:
            return out
        quiet = now - self._last_at >= self.hold_s
        if not quiet and now - self._first_at < MAX_WAIT_S and len(self._pending) < MAX_PENDING:
            return out
        held, self._pending = self._pending, []
        out.extend(self._judge(held, now))
        return out

    def drain(self, ended: list[Pass]) -> list[Pass]:
        """Judge everything held and ``ended`` now (shutdown)."""
        if not self.hold_s:
            return self.release([(0.0, p) for p in ended], 0.0)
        held, self._pending = [*self._pending, *ended], []
        out = self._judge(held, None) if held else []
        return self._confirm(None) + out

    def _confirm(self, now: float | None) -> list[Pass]:
        """Tags on probation that are due: not read again, they take the group's direction.
        (One read again waits for its new pass to be judged; see ``_settle``.)"""
        out: list[Pass] = []
        reader_us = self._reader_us
        quiet = now is not None and now - self._read_at >= self.confirm_s + MAX_WAIT_S
        for epc, (due_us, assigned, own) in list(self._probation.items()):
            if now is None:
                out.append(own if epc in self._reread else assigned)
            elif epc in self._reread:
                if reader_us < due_us + MAX_WAIT_US and not quiet:
                    continue
                out.append(own)
            elif reader_us >= due_us or quiet:
                out.append(assigned)
            else:
                continue
            del self._probation[epc]
            self._reread.discard(epc)
        return out

    def _settle(self, later: Pass) -> Pass | None:
        """The probation pass of ``later``'s tag, now that its next pass is judged: a tag
        that crossed again (a direction) rode its pallet both times; one read again on one
        side without a direction was standing beside the door."""
        held = self._probation.pop(later.epc_hex, None)
        self._reread.discard(later.epc_hex)
        if held is None:
            return None
        _, assigned, own = held
        if later.direction is not None:
            return assigned
        self._loiter(own)
        return own

    def _judge(self, passes: list[Pass], now: float | None) -> list[Pass]:
        groups: list[_Group] = []
        anchors = sorted((p for p in passes if _is_anchor(p)), key=lambda p: strong_window(p)[0])
        for p in anchors:
            start, end = strong_window(p)
            if groups and start <= groups[-1].end_us + GROUP_GAP_US:
                last = groups[-1]
                last.end_us = max(last.end_us, end)
                last.anchors.append(p)
            else:
                groups.append(_Group(start, end, [p]))
        alone: list[Pass] = []
        for p in passes:
            if _is_anchor(p):
                continue
            home = next(
                (
                    g
                    for g in groups
                    if g.start_us - ATTACH_SLACK_US <= p.first_seen_us
                    and p.last_seen_us <= g.end_us + ATTACH_SLACK_US
                ),
                None,
            )
            if home is None:
                alone.append(p)
            else:
                home.weak.append(p)
        # One-sided passes of this batch count as loitering for the later passes of it.
        self._batch_sides = {}
        for p in passes:
            if _one_sided(p):
                self._batch_sides.setdefault(p.epc_hex, []).append(p.last_seen_us)
        out: list[Pass] = []
        for group in groups:
            out.extend(self._decide(group) if group.size > 1 else group.anchors + group.weak)
        out.extend(alone)
        kept: list[Pass] = []
        settled = [q for p in out if (q := self._settle(p)) is not None] if self._probation else []
        for p in out:
            self.decided[p.decided_by or "none"] += 1
            if _one_sided(p) and p.direction is None:
                self._loiter(p)
            if now is not None and p.decided_by == "group" and _one_sided(p):
                own = next(
                    q
                    for q in passes
                    if q.epc_hex == p.epc_hex and q.first_seen_us == p.first_seen_us
                )
                self._probation[p.epc_hex] = (
                    p.last_seen_us + round(self.confirm_s * 1_000_000),
                    p,
                    dataclasses.replace(own, group=p.group, group_size=p.group_size),
                )
                if self._reading(p.epc_hex):
                    # Read again after this pass ended, before it was judged: its new pass
                    # began before the probation did, so ``seen`` could not flag it.
                    self._reread.add(p.epc_hex)
            else:
                kept.append(p)
        return settled + kept

    def _loiter(self, p: Pass) -> None:
        loiterers = self._loiterers
        loiterers[p.epc_hex] = p.last_seen_us
        loiterers.move_to_end(p.epc_hex)
        while len(loiterers) > MAX_LOITERERS:
            loiterers.popitem(last=False)

    def _loitering(self, p: Pass) -> bool:
        """Whether the tag had a one-sided pass here in the ``LOITER_US`` before ``p``."""
        since = p.first_seen_us - LOITER_US
        seen = self._loiterers.get(p.epc_hex)
        if seen is not None and since <= seen < p.first_seen_us:
            return True
        return any(since <= t < p.first_seen_us for t in self._batch_sides.get(p.epc_hex, ()))

    def _decide(self, group: _Group) -> list[Pass]:
        self.groups += 1
        # Each vote weighs its confidence (a returned tag's, 1): a doubtful dissenter does
        # not outvote a pallet.
        votes: dict[str, float] = {}
        voters = 0
        for p in group.anchors:
            if p.direction is not None and p.confidence >= VOTE_CONFIDENCE:
                votes[p.direction] = votes.get(p.direction, 0.0) + p.confidence
                voters += 1
            elif p.reason == "returned" and p.strong:
                votes["returned"] = votes.get("returned", 0.0) + 1.0
                voters += 1
        verdict: str | None = None
        share = 0.0
        if voters >= MIN_VOTES:
            verdict = max(votes, key=lambda outcome: votes[outcome])
            share = votes[verdict] / sum(votes.values())
            if share < AGREEMENT:
                verdict = None
        total = voters
        gid = f"{self.read_point}@{group.start_us}"
        size = group.size
        members = [*group.anchors, *group.weak]
        if verdict is None:
            return [dataclasses.replace(p, group=gid, group_size=size) for p in members]
        confidence = round(share * (1.0 - 0.5**total), 3)
        agreeing = [p for p in group.anchors if p.direction == verdict]
        crossings = [c for p in agreeing if (c := crossing_us(p)) is not None]
        crossing = statistics.median(crossings) if crossings else None
        windows = side_windows(agreeing)
        return [self._member(p, verdict, confidence, crossing, windows, gid, size) for p in members]

    def _member(
        self,
        p: Pass,
        verdict: str,
        confidence: float,
        crossing: float | None,
        windows: _SideWindows,
        gid: str,
        size: int,
    ) -> Pass:
        mine = dataclasses.replace(p, group=gid, group_size=size)
        if verdict == "returned":
            if p.direction is None:
                return mine if _one_sided(p) else dataclasses.replace(mine, reason="returned")
            if p.strong and p.confidence >= STAND_CONFIDENCE:
                return mine
            return dataclasses.replace(
                mine, direction=None, confidence=0.0, reason="group_conflict", decided_by=None
            )
        if p.direction == verdict:
            return dataclasses.replace(mine, confidence=max(p.confidence, confidence))
        if p.direction is not None:
            if p.strong and p.confidence >= STAND_CONFIDENCE:
                return mine
            return dataclasses.replace(
                mine, direction=None, confidence=0.0, reason="group_conflict", decided_by=None
            )
        if (p.reason == "returned" and p.strong) or p.reason == "parked":
            return mine
        if _is_anchor(p):
            # Read plainly on both sides, just not clear enough alone: it takes the group's
            # direction unless one of its own clues says the opposite.
            if -_SIGN[verdict] in p.signs:
                return dataclasses.replace(mine, reason="group_conflict")
        elif crossing is None or not fits(p, verdict, crossing, windows):
            return dataclasses.replace(mine, reason="group_conflict")
        if _one_sided(p) and (p.count > ONE_SIDE_MAX_READS or self._loitering(p)):
            return mine
        return dataclasses.replace(
            mine,
            direction=verdict,  # type: ignore[arg-type]
            confidence=round(confidence * 0.9, 3),
            reason=None,
            decided_by="group",
        )
