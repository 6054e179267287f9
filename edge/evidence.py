"""One tag's reads as an edge event: portals, zones and cooldowns build it the same way.

Reader timestamps are microseconds since the Unix epoch (LLRP's FirstSeen/LastSeen); the
event time is the last read. A peak RSSI outside ``RSSI_RANGE`` is a reader quirk and is
left out of the evidence rather than sent as a value the server would refuse.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from wire.identifiers import epc_urn
from wire.models import Event, ReadEvidence

RSSI_RANGE: Final = (-200.0, 50.0)
"""Plausible peak RSSI in dBm (the range ``ReadEvidence`` accepts)."""
SOURCE: Final = "llrp"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def reader_time(us: int) -> datetime:
    """A reader timestamp (microseconds since the epoch) as an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=us)


def plausible_rssi(rssi: float | None) -> float | None:
    """``rssi`` when it lies in ``RSSI_RANGE``, else None."""
    if rssi is None or not RSSI_RANGE[0] <= rssi <= RSSI_RANGE[1]:
        return None
    return rssi


def tag_event(
    event_id: str,
    *,
    read_point: str,
    epc_hex: str,
    biz_step: str,
    count: int,
    antennas: Iterable[int],
    peak_rssi: float | None,
    first_seen_us: int,
    last_seen_us: int,
    evidence: dict[str, Any] | None = None,
    **fields: Any,
) -> Event:
    """The ObjectEvent of one tag's reads.

    Args:
        evidence: further ``ReadEvidence`` fields (a portal's side counts and reason).
        fields: further ``Event`` fields (direction and confidence, a zone's location).

    Raises:
        IdentifierError: the EPC is not hex or too long to be an EPC bank.
    """
    return Event(
        event_id=event_id,
        event_time=reader_time(last_seen_us),
        action="OBSERVE",
        biz_step=biz_step,
        read_point=read_point,
        epc=epc_urn(epc_hex),
        reads=ReadEvidence(
            count=count,
            antennas=list(antennas),
            peak_rssi=plausible_rssi(peak_rssi),
            first_seen=reader_time(first_seen_us),
            last_seen=reader_time(last_seen_us),
            **(evidence or {}),
        ),
        source=SOURCE,
        **fields,
    )
