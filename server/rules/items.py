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

import re

from server.rules.model import ItemKey
from wire.identifiers import gtin_of
from wire.models import Event

UNIDENTIFIED_SKU_PREFIX = "epc:"
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


def gtin_item(gtin: str) -> ItemKey:
    """The key of a GTIN's item; a new one gets the GTIN as placeholder SKU and name."""
    return ItemKey(gtin=gtin, sku=gtin, name=f"Unreviewed item {gtin}")


def identify(event: Event) -> ItemKey:
    """The item an event is about (see the module docstring for non-GTIN EPCs)."""
    if event.quantity is not None:
        return gtin_item(event.quantity.gtin)
    assert event.epc is not None  # Event's validator guarantees exactly one identity
    gtin = gtin_of(event.epc)
    if gtin is not None:
        return gtin_item(gtin)
    scheme = epc_scheme(event.epc)
    return ItemKey(
        gtin=None,
        sku=f"{UNIDENTIFIED_SKU_PREFIX}{scheme}",
        name=f"Unidentified EPC ({scheme})",
    )
