"""Pallets (logistic units named by an SSCC): an event of a pallet is an event of its contents.

A dock door reads a pallet's SSCC tag, a handheld scans its SSCC label or its Digital Link
QR code: either way the wire event names the pallet's EPC (``urn:epc:id:sscc:...``). The
pallet itself is not stock; what it holds is. Decisions:

- An SSCC event that has a stock effect (a rule takes it: a directed pass, a receipt, a
  pick, a move) stands for its contents as the server knows them (``Contents``: tagged
  units and quantities of items, from ``POST /api/v1/aggregations`` or a partner's EPCIS
  aggregation). It becomes one event per content line, each the pallet event with the
  pallet's identity replaced by the line's (same event id, time, read point, step,
  direction and locations), and the ordinary rules move each line. One event id, claimed
  once: the whole pallet moves exactly once, or (refused for negative stock) not at all.
- An SSCC event whose contents are not known moves nothing (not a pseudo-item ``epc:sscc``,
  which would put a pallet in the books as if it were one unit). It raises
  ``unknown_pallet`` and is held (``server.commands.pallets``) until the contents are recorded.
- An SSCC event without a stock effect (a sighting, a departure, a pass without a
  direction) is left as it is: an undirected pass is kept for an operator like any other,
  and expands when it is resolved.
- Nested pallets are not expanded: contents are units and item quantities, not SSCCs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from epcpy import ConvertException
from epcpy.epc_schemes.sscc import SSCC

from server.rules.alerts import UNKNOWN_PALLET
from server.rules.model import AlertSpec
from wire.models import Event, Quantity

SSCC_URN_PREFIX: Final = "urn:epc:id:sscc:"
SSCC_CACHE: Final = 4096


@dataclass(frozen=True, slots=True)
class QuantityLine:
    """Items without serials on a pallet: ``qty`` of ``gtin`` (and ``lot``)."""

    gtin: str
    lot: str | None
    qty: int


@dataclass(frozen=True, slots=True)
class Contents:
    """What a pallet holds."""

    sscc: str
    epcs: tuple[str, ...] = ()
    quantities: tuple[QuantityLine, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.epcs and not self.quantities


def is_pallet_epc(epc: str | None) -> bool:
    """The EPC is an SSCC pure identity (a pallet)."""
    return epc is not None and epc.startswith(SSCC_URN_PREFIX)


@lru_cache(maxsize=SSCC_CACHE)
def sscc_of(epc: str) -> str | None:
    """The 18-digit SSCC of an SSCC EPC URN (epcpy), or None when it is not a valid one."""
    if not is_pallet_epc(epc):
        return None
    try:
        key: str = SSCC(epc).gs1_key()
    except (ConvertException, ValueError, IndexError):
        return None
    return key


def pallet_events(event: Event, contents: Contents) -> list[Event]:
    """``event`` (of a pallet) as one event per line of ``contents``."""
    units = [event.model_copy(update={"epc": epc}) for epc in contents.epcs]
    loose = [
        event.model_copy(
            update={
                "epc": None,
                "reads": None,
                "quantity": Quantity(gtin=line.gtin, lot=line.lot, qty=line.qty),
            }
        )
        for line in contents.quantities
    ]
    return units + loose


def unknown_pallet(event: Event, sscc: str, site: str | None) -> AlertSpec:
    """``unknown_pallet`` for an event of a pallet whose contents are not known."""
    evidence: dict[str, object] = {
        "event_id": event.event_id,
        "event_time": event.event_time.isoformat(),
        "read_point": event.read_point,
        "epc": event.epc,
        "biz_step": event.biz_step,
        "direction": event.direction,
        "biz_location": event.biz_location,
        "source_location": event.source_location,
    }
    return UNKNOWN_PALLET.raise_(sscc, evidence, site=site)


__all__ = [
    "SSCC_URN_PREFIX",
    "Contents",
    "QuantityLine",
    "is_pallet_epc",
    "pallet_events",
    "sscc_of",
    "unknown_pallet",
]
