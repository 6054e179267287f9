"""Zone (shelf) read points: a tag *arrives* when a zone's antennas start reading it and
*departs* once they have not read it for ``departure_timeout_s``.

Each arrival and each departure is one ``ObjectEvent`` (action ``OBSERVE``, no
direction). Business steps are the CBV's ``arriving`` and ``departing`` by default (what
the edge knows is that the tag came into or left the zone; whether that is put-away,
picking or a count is the server's reading of its read point) and can be set per zone.
An arrival carries ``biz_location`` = the zone's ``location`` (when set; otherwise the
server takes its read point's inbound location) and the reads that made it arrive; a
departure carries no ``biz_location`` and the evidence of the whole stay, and its
``event_time`` is the last read (the tag left after that).

``min_reads`` keeps a stray read from the next shelf from counting as an arrival; a tag
that never reaches it leaves no event. On shutdown, tags still present make no event
(they did not depart); after a restart they arrive again, which the server records as a
sighting. Pure: no I/O and no clock; departure is judged on the monotonic ``now`` the
caller passes, as in ``edge.pipeline``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, Literal

from edge.config import ZoneSettings
from edge.evidence import RSSI_RANGE, tag_event
from edge.readers.types import TagRead
from wire.models import Event

log = logging.getLogger(__name__)

MAX_ZONE_TAGS: Final = 100_000
"""Tags one zone follows at once; beyond it the least recently read one departs early."""


@dataclass(frozen=True, slots=True)
class ZoneEvent:
    """A tag arrived in or departed from a zone."""

    read_point: str
    epc_hex: str
    kind: Literal["arrive", "depart"]
    biz_step: str
    location: str | None
    count: int
    antennas: tuple[int, ...]
    peak_rssi: float | None
    first_seen_us: int
    last_seen_us: int

    def to_event(self, event_id: str) -> Event:
        """The business event.

        Raises:
            IdentifierError: the EPC is not hex or too long to be an EPC bank.
        """
        return tag_event(
            event_id,
            read_point=self.read_point,
            epc_hex=self.epc_hex,
            biz_step=self.biz_step,
            count=self.count,
            antennas=self.antennas,
            peak_rssi=self.peak_rssi,
            first_seen_us=self.first_seen_us,
            last_seen_us=self.last_seen_us,
            biz_location=self.location if self.kind == "arrive" else None,
        )


class _Stay:
    __slots__ = ("antennas", "arrived", "count", "first_us", "last_us", "peak_rssi", "seen_at")

    def __init__(self, now: float, first_us: int) -> None:
        self.seen_at = now
        self.first_us = first_us
        self.last_us = first_us
        self.count = 0
        self.peak_rssi: float | None = None
        self.antennas: set[int] = set()
        self.arrived = False


class ZoneTracker:
    """Arrivals and departures of tags in one zone.

    Args:
        zone: the zone's settings.
        max_tracked: most tags followed at once.
    """

    def __init__(self, zone: ZoneSettings, *, max_tracked: int = MAX_ZONE_TAGS) -> None:
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        self.zone = zone
        self.read_point = zone.read_point
        self.reader = zone.reader
        self._antennas = frozenset(zone.antennas) if zone.antennas else None
        self._timeout = zone.departure_timeout_s
        self._min_reads = zone.min_reads
        self._max_tracked = max_tracked
        self._stays: OrderedDict[str, _Stay] = OrderedDict()
        self._ended: list[ZoneEvent] = []
        self.arrivals = 0
        self.departures = 0
        self.strays = 0
        """Tags that left before ``min_reads`` reads (no event)."""
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._stays)

    def adopt(self, old: ZoneTracker) -> None:
        """Take over the tags ``old`` holds in the zone (a remote retune of this zone):
        no tag arrives again for it; from now on this zone's settings apply."""
        self._stays = old._stays
        self._ended = old._ended
        self.arrivals, self.departures = old.arrivals, old.departures
        self.strays, self.evicted = old.strays, old.evicted
        old._stays, old._ended = OrderedDict(), []

    def observe(self, read: TagRead, now: float) -> bool:
        """Add one read; False when its antenna is not one of this zone's."""
        antennas = self._antennas
        if antennas is not None and read.antenna not in antennas:
            return False
        epc = read.epc_hex
        first_us, last_us = read.first_seen_us, read.last_seen_us
        if last_us < first_us:
            first_us, last_us = last_us, first_us
        stays = self._stays
        stay = stays.get(epc)
        if stay is None:
            if len(stays) >= self._max_tracked:
                old_epc, old = stays.popitem(last=False)
                self.evicted += 1
                self._leave(old_epc, old)
            stay = stays[epc] = _Stay(now, first_us)
        else:
            stays.move_to_end(epc)
            stay.seen_at = now
            if first_us < stay.first_us:
                stay.first_us = first_us
        if last_us > stay.last_us:
            stay.last_us = last_us
        stay.count += read.seen_count if read.seen_count > 0 else 1
        rssi = read.rssi
        if (
            rssi is not None
            and RSSI_RANGE[0] <= rssi <= RSSI_RANGE[1]
            and (stay.peak_rssi is None or rssi > stay.peak_rssi)
        ):
            stay.peak_rssi = rssi
        stay.antennas.add(read.antenna)
        if not stay.arrived and stay.count >= self._min_reads:
            stay.arrived = True
            self.arrivals += 1
            self._ended.append(self._event(epc, stay, "arrive"))
        return True

    def tick(self, now: float) -> list[ZoneEvent]:
        """Arrivals since the last tick and the departures due by ``now``."""
        stays = self._stays
        deadline = now - self._timeout
        while stays:
            epc, stay = next(iter(stays.items()))
            if stay.seen_at > deadline:
                break
            del stays[epc]
            self._leave(epc, stay)
        ended, self._ended = self._ended, []
        return ended

    def drain(self) -> list[ZoneEvent]:
        """Events not yet handed out (shutdown); tags still present make none."""
        ended, self._ended = self._ended, []
        return ended

    def _leave(self, epc: str, stay: _Stay) -> None:
        if stay.arrived:
            self.departures += 1
            self._ended.append(self._event(epc, stay, "depart"))
        else:
            self.strays += 1

    def _event(self, epc: str, stay: _Stay, kind: Literal["arrive", "depart"]) -> ZoneEvent:
        zone = self.zone
        return ZoneEvent(
            read_point=self.read_point,
            epc_hex=epc,
            kind=kind,
            biz_step=zone.arrive_biz_step if kind == "arrive" else zone.depart_biz_step,
            location=zone.location,
            count=stay.count,
            antennas=tuple(sorted(stay.antennas)),
            peak_rssi=stay.peak_rssi,
            first_seen_us=stay.first_us,
            last_seen_us=stay.last_us,
        )
