"""Plain cooldown de-duplication: one event per tag (or per tag and antenna) per cooldown.

For read points that are neither a door nor a shelf (a reader on a conveyor, a table, a
gate without direction): the first read of a key makes an event at once; further reads of
that key make none until ``cooldown_s`` has passed since that event. The cooldown counts
from the event, not from the latest read, so a tag that stays in the field is reported
again once per cooldown (a heartbeat) rather than never. The key is the EPC, or the EPC
and the antenna with ``per = "epc_antenna"`` (a reader whose antennas watch different
lanes).

Each event is an ``ObjectEvent`` (``OBSERVE``, no direction, ``biz_step`` from config,
``other`` by default) whose evidence is the read that made it. Pure: no I/O and no clock.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from edge.config import DedupeSettings
from edge.evidence import tag_event
from edge.readers.types import TagRead
from wire.models import Event

MAX_KEYS: Final = 100_000
"""Keys remembered at once; beyond it the oldest is forgotten (it may report early)."""


@dataclass(frozen=True, slots=True)
class Sighting:
    """The read that opened a cooldown."""

    read_point: str
    epc_hex: str
    biz_step: str
    antenna: int
    rssi: float | None
    count: int
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
            antennas=(self.antenna,),
            peak_rssi=self.rssi,
            first_seen_us=self.first_seen_us,
            last_seen_us=self.last_seen_us,
        )


class CooldownDeduper:
    """Cooldown de-duplication for one read point.

    Args:
        settings: the ``[[dedupe]]`` table.
        max_keys: most keys remembered at once.
    """

    def __init__(self, settings: DedupeSettings, *, max_keys: int = MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.settings = settings
        self.read_point = settings.read_point
        self.reader = settings.reader
        self._antennas = frozenset(settings.antennas) if settings.antennas else None
        self._per_antenna = settings.per == "epc_antenna"
        self._cooldown = settings.cooldown_s
        self._max_keys = max_keys
        # Ordered by event time: the front is the first cooldown to run out.
        self._last: OrderedDict[str, float] = OrderedDict()
        self._pending: list[Sighting] = []
        self.emitted = 0
        self.suppressed = 0

    def __len__(self) -> int:
        return len(self._pending)

    def adopt(self, old: CooldownDeduper) -> None:
        """Take over the cooldowns ``old`` runs (a remote retune of this read point): a
        tag in its cooldown stays quiet; later cooldowns take this one's length."""
        self._last = old._last
        self._pending = old._pending
        self.emitted, self.suppressed = old.emitted, old.suppressed
        old._last, old._pending = OrderedDict(), []

    def observe(self, read: TagRead, now: float) -> bool:
        """Add one read; False when its antenna is not one of this read point's."""
        antennas = self._antennas
        if antennas is not None and read.antenna not in antennas:
            return False
        key = f"{read.epc_hex}/{read.antenna}" if self._per_antenna else read.epc_hex
        last = self._last
        at = last.get(key)
        if at is not None and now - at < self._cooldown:
            self.suppressed += 1
            return True
        if at is not None:
            del last[key]
        elif len(last) >= self._max_keys:
            last.popitem(last=False)
        last[key] = now
        first_us, last_us = read.first_seen_us, read.last_seen_us
        if last_us < first_us:
            first_us, last_us = last_us, first_us
        self.emitted += 1
        self._pending.append(
            Sighting(
                read_point=self.read_point,
                epc_hex=read.epc_hex,
                biz_step=self.settings.biz_step,
                antenna=read.antenna,
                rssi=read.rssi,
                count=read.seen_count if read.seen_count > 0 else 1,
                first_seen_us=first_us,
                last_seen_us=last_us,
            )
        )
        return True

    def tick(self, now: float) -> list[Sighting]:
        """The events made since the last tick; forgets cooldowns that ran out."""
        last = self._last
        deadline = now - self._cooldown
        while last:
            key, at = next(iter(last.items()))
            if at > deadline:
                break
            del last[key]
        ended, self._pending = self._pending, []
        return ended

    def drain(self) -> list[Sighting]:
        """Events not yet handed out (shutdown)."""
        ended, self._pending = self._pending, []
        return ended
