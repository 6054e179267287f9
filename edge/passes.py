"""One tag's finished pass through a portal, and the business event it becomes.

``PassTracker`` (``edge.pipeline``) ends a pass and gives the tag its own verdict;
``GroupJudge`` (``edge.pass_groups``) may then give it its pallet's direction. Both hand
around ``Pass`` values; ``Pass.to_event`` turns one into the wire's ``Event`` with its
evidence (each side's reads as ``SideEvidence``, times in ms from the first read).

Business step: ``receiving`` for in, ``shipping`` for out, ``other`` for none (the server
lists it as an unresolved pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from edge.evidence import tag_event
from edge.pass_evidence import SideView
from wire.models import Direction, Event, SideEvidence

__all__ = ["BIZ_STEPS", "Pass", "side_evidence"]

BIZ_STEPS: Final[dict[Direction | None, str]] = {
    "in": "receiving",
    "out": "shipping",
    None: "other",
}


def _offset(us: int | float | None, first_us: int) -> int | None:
    return None if us is None else round((us - first_us) / 1000)


def side_evidence(view: SideView | None, first_us: int) -> SideEvidence | None:
    """A side's view as the wire's ``SideEvidence`` (times in ms from ``first_us``)."""
    if view is None:
        return None
    return SideEvidence(
        count=view.count,
        first_ms=round((view.first_us - first_us) / 1000),
        last_ms=round((view.last_us - first_us) / 1000),
        centroid_ms=round((view.centroid_us - first_us) / 1000),
        rssi_centroid_ms=_offset(view.rssi_centroid_us, first_us),
        peak_rssi=view.peak_rssi,
        peak_ms=_offset(view.peak_us, first_us),
        trend_db_per_s=None if view.trend_db_per_s is None else round(view.trend_db_per_s, 2),
        first_strong_ms=_offset(view.first_strong_us, first_us),
        last_strong_ms=_offset(view.last_strong_us, first_us),
    )


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
    """Why there is no direction (see ``edge.pipeline``); None when there is one."""
    outside: SideView | None = None
    inside: SideView | None = None
    strong: bool = False
    """The tag's own evidence is clear-cut (it may stand against its group)."""
    signs: tuple[int, ...] = ()
    """The tag's clues (``edge.pass_evidence.Verdict.signs``)."""
    decided_by: str | None = None
    """``tag`` or ``group`` when there is a direction."""
    group: str | None = None
    group_size: int | None = None

    @property
    def last_strong(self) -> tuple[str, ...] | None:
        """The sides in the order their strong reads ended (the last is where it went)."""
        ends = [
            (view.last_strong_us, name)
            for view, name in ((self.outside, "outside"), (self.inside, "inside"))
            if view is not None and view.last_strong_us is not None
        ]
        return tuple(name for _, name in sorted(ends)) if ends else None

    def to_event(self, event_id: str) -> Event:
        """The business event for this pass.

        Raises:
            IdentifierError: the EPC is not hex or too long to be an EPC bank.
        """
        last_strong = self.last_strong
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
                "outside": side_evidence(self.outside, self.first_seen_us),
                "inside": side_evidence(self.inside, self.first_seen_us),
                "last_strong": list(last_strong) if last_strong else None,
                "decided_by": self.decided_by,
                "group_size": self.group_size,
            },
            direction=self.direction,
            confidence=self.confidence,
            group=self.group,
        )
