"""Which item an event is about.

- A barcode event (``quantity``) names its GTIN.
- An SGTIN EPC carries its GTIN (``wire.identifiers.gtin_of``).
- Any other EPC (SSCC, GRAI, a raw ``urn:epc:raw:`` tag, ...) has no GTIN. Decision: it
  still moves stock, under one reserved item per EPC scheme with SKU ``epc:<scheme>`` (for
  example ``epc:sscc``, ``epc:raw``). Dropping it would lose a read; dead-lettering every
  foreign tag that passes a door would bury real problems. The first such EPC of a scheme
  raises one ``unidentified_epc`` alert, so someone can decide what these tags are.
"""

from __future__ import annotations

import functools
import re

from server.rules.model import ItemKey
from wire.identifiers import gtin_of
from wire.models import Event

UNIDENTIFIED_SKU_PREFIX = "epc:"
EPC_ITEM_CACHE = 8192
_SCHEME = re.compile(r"^[a-z0-9-]{1,16}$")


def epc_scheme(urn: str) -> str:
    """The EPC scheme of a URN: ``sgtin``, ``sscc``, ... or ``raw``; ``unknown`` if odd."""
    parts = urn.split(":")
    if len(parts) >= 4 and parts[2] == "id":
        scheme = parts[3].lower()
    elif len(parts) >= 3:
        scheme = parts[2].lower()
    else:
        return "unknown"
    return scheme if _SCHEME.match(scheme) else "unknown"


@functools.lru_cache(maxsize=EPC_ITEM_CACHE)
def gtin_item(gtin: str) -> ItemKey:
    """The key of a GTIN's item; a new one gets the GTIN as placeholder SKU and name."""
    return ItemKey(gtin=gtin, sku=gtin, name=f"Unreviewed item {gtin}")


NO_ITEM = ItemKey(gtin=None, sku="", name="")
"""Stands in as ``RuleInput.item`` for a count that lists no lines (counted empty)."""


def event_items(event: Event) -> list[ItemKey]:
    """Every item an event names: one, or for a count one per distinct GTIN it lists."""
    if event.quantities is not None:
        gtins = dict.fromkeys(line.gtin for line in event.quantities)
        return [gtin_item(gtin) for gtin in gtins]
    return [identify(event)]


def identify(event: Event) -> ItemKey:
    """The item an event is about (see the module docstring for non-GTIN EPCs)."""
    if event.quantity is not None:
        return gtin_item(event.quantity.gtin)
    assert event.epc is not None  # Event's validator guarantees exactly one identity
    return epc_item(event.epc)


@functools.lru_cache(maxsize=EPC_ITEM_CACHE)
def epc_item(epc: str) -> ItemKey:
    """The item of an EPC (cached: ingest asks for each event's item more than once, and
    decoding an SGTIN is the dearest part of it)."""
    gtin = gtin_of(epc)
    if gtin is not None:
        return gtin_item(gtin)
    scheme = epc_scheme(epc)
    return ItemKey(
        gtin=None,
        sku=f"{UNIDENTIFIED_SKU_PREFIX}{scheme}",
        name=f"Unidentified EPC ({scheme})",
    )
