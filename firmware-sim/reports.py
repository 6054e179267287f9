"""The reads a simulated reader gathers between two reports (sans-I/O).

Readers aggregate: within one report window every tag and antenna pair becomes one
TagReportData with its first and last sighting, how often it was seen and its peak RSSI.
"""

from __future__ import annotations

from firmware_sim.llrp_types import TagReportEntry

_FIRST, _LAST, _COUNT, _PEAK, _CHANNEL = range(5)


class ReadWindow:
    """Reads since the last report, one slot per (EPC, antenna)."""

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: dict[tuple[str, int], list[int]] = {}

    def __len__(self) -> int:
        """Number of TagReportData entries a report would carry now."""
        return len(self._slots)

    def add(self, epc_hex: str, antenna: int, rssi: int, utc_us: int, channel: int) -> None:
        """Count one read of ``epc_hex`` on ``antenna`` at ``utc_us``."""
        slot = self._slots.get((epc_hex, antenna))
        if slot is None:
            self._slots[(epc_hex, antenna)] = [utc_us, utc_us, 1, rssi, channel]
            return
        if utc_us < slot[_FIRST]:
            slot[_FIRST] = utc_us
        if utc_us > slot[_LAST]:
            slot[_LAST] = utc_us
            slot[_CHANNEL] = channel
        slot[_COUNT] += 1
        if rssi > slot[_PEAK]:
            slot[_PEAK] = rssi

    def drain(self) -> list[TagReportEntry]:
        """The entries of one report, in first-seen order; the window starts empty again."""
        slots, self._slots = self._slots, {}
        entries = [
            TagReportEntry(epc, antenna, s[_PEAK], s[_FIRST], s[_LAST], s[_COUNT], s[_CHANNEL])
            for (epc, antenna), s in slots.items()
        ]
        entries.sort(key=lambda e: e.first_seen_us)
        return entries
