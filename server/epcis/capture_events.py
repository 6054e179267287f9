"""What each event of a captured document does: a shipping notice, or what a pallet holds.

``capture_notice`` takes an ``ObjectEvent``: a shipping event naming an open purchase order
puts its EPCs on the order's advance shipping notice (``asn_units``). ``capture_aggregation``
takes an ``AggregationEvent`` of a pallet (an SSCC ``parentID``): what the pallet holds is
recorded (``server.commands.pallets``). Either claims the event's id once (``claim``); what
cannot be used is skipped with the reason (``Outcome``). ``server.epcis.capture`` has the
rules in full.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from epcpy import ConvertException
from epcpy.epc_schemes.lgtin import LGTIN
from epcpy.utils.common import replace_uri_escapes
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from server.commands.asn import mark_received_before
from server.commands.pallets import check_lines, parse_parent, record, remove
from server.epcis.capture_document import CapturedEvent
from server.epcis.query import bare_step
from server.errors import Invalid
from server.ingest.pallet_contents import load_contents
from server.rules.pallets import sscc_of
from server.store.dialect import upsert
from server.store.schema.core import MAX_EPC, items
from server.store.schema.orders import orders
from server.store.schema.supply import asn_units, epcis_seen_events
from wire.gs1 import parse_label
from wire.identifiers import gtin_of
from wire.scans import MAX_QTY, BarcodeError, ItemScan

PO_TYPES = frozenset(
    {"po", "https://ref.gs1.org/cbv/BTT-po", "urn:epcglobal:cbv:btt:po", "cbv:BTT-po"}
)
NOTICE_ACTIONS = frozenset({"OBSERVE", "ADD"})


class Skipped(BaseModel):
    """An event or EPC of the document that gave no notice, and why."""

    index: int
    """The event's position in ``eventList`` (0-based)."""
    event_id: str | None
    epc: str | None = None
    reason: str


@dataclass(slots=True)
class Outcome:
    """What the document's events did so far: the answer's counts and what was skipped."""

    notices: int = 0
    units: int = 0
    already_received: int = 0
    orders: set[str] = field(default_factory=set)
    aggregations: int = 0
    pallets: set[str] = field(default_factory=set)
    skipped: list[Skipped] = field(default_factory=list)

    def skip(self, index: int, event_id: str | None, reason: str, epc: str | None = None) -> None:
        self.skipped.append(Skipped(index=index, event_id=event_id, epc=epc, reason=reason))


def order_numbers(transaction: str) -> list[str]:
    """Order numbers a business transaction id may stand for (itself, its last segment)."""
    candidates = [transaction]
    for separator in ("/", ":", "#", "="):
        tail = transaction.rstrip(separator).rpartition(separator)[2]
        if tail and tail not in candidates:
            candidates.append(tail)
    return candidates


def _is_shipping(event: CapturedEvent) -> bool:
    return event.bizStep is not None and bare_step(event.bizStep) == "shipping"


async def capture_notice(
    conn: AsyncConnection,
    index: int,
    event_id: str,
    event: CapturedEvent,
    capture_id: int,
    sites: frozenset[str],
    outcome: Outcome,
) -> None:
    """A shipping ObjectEvent naming an open purchase order of the key's sites: its EPCs
    on that order's notice; any other ObjectEvent skipped with the reason."""
    if not _is_shipping(event) or (event.action or "") not in NOTICE_ACTIONS:
        outcome.skip(
            index, event_id, "only shipping ObjectEvents (OBSERVE or ADD) are shipping notices"
        )
        return
    references = [
        transaction.bizTransaction
        for transaction in event.bizTransactionList
        if transaction.type in PO_TYPES
    ]
    if not references:
        outcome.skip(index, event_id, "no business transaction of type 'po' names an order")
        return
    order = await _open_order(conn, references)
    if order is None:
        outcome.skip(index, event_id, f"no purchase order matches {references}")
        return
    if order.status != "open":
        outcome.skip(index, event_id, f"purchase order {order.number} is {order.status}")
        return
    if sites and order.site not in sites:
        outcome.skip(index, event_id, f"purchase order {order.number} is outside this key's sites")
        return
    if not await claim(conn, event_id, capture_id):
        outcome.skip(index, event_id, "event captured before (same eventID)")
        return
    rows = await _units(conn, index, event_id, event, order, capture_id, outcome)
    if not rows:
        return
    added = await conn.execute(
        upsert(conn, asn_units)
        .on_conflict_do_nothing(index_elements=[asn_units.c.order_id, asn_units.c.epc])
        .returning(asn_units.c.epc),
        rows,
    )
    new = [row.epc for row in added]
    shipped_at = rows[0]["shipped_at"]
    outcome.notices += 1
    outcome.units += len(new)
    outcome.orders.add(order.number)
    outcome.already_received += await mark_received_before(
        conn, order.id, order.site, shipped_at, new
    )


async def claim(conn: AsyncConnection, event_id: str, capture_id: int) -> bool:
    """Whether ``event_id`` is this capture's to apply (False: captured before)."""
    claimed = await conn.execute(
        upsert(conn, epcis_seen_events)
        .values(event_id=event_id, capture_id=capture_id)
        .on_conflict_do_nothing()
        .returning(epcis_seen_events.c.event_id)
    )
    return claimed.first() is not None


async def capture_aggregation(
    conn: AsyncConnection,
    index: int,
    event_id: str,
    event: CapturedEvent,
    capture_id: int,
    outcome: Outcome,
) -> None:
    if event.parentID is None:
        outcome.skip(index, event_id, "an AggregationEvent without parentID names no pallet")
        return
    try:
        parent = parse_parent(event.parentID)
    except Invalid as err:
        outcome.skip(index, event_id, f"parentID: {err.reason}")
        return
    action = event.action or ""
    if action not in ("ADD", "OBSERVE", "DELETE"):
        outcome.skip(index, event_id, f"action {action!r} is not ADD, OBSERVE or DELETE")
        return
    quantities: list[tuple[str, str | None, int]] = []
    for position, entry in enumerate(event.childQuantityList):
        line = _quantity_line(entry)
        if isinstance(line, str):
            outcome.skip(index, event_id, f"childQuantityList[{position}]: {line}")
            return
        quantities.append(line)
    try:
        lines = check_lines(event.childEPCs, quantities, "")
    except Invalid as err:
        outcome.skip(index, event_id, err.reason)
        return
    if not await claim(conn, event_id, capture_id):
        outcome.skip(index, event_id, "event captured before (same eventID)")
        return
    if action == "DELETE":
        await remove(conn, parent.sscc, list(lines.epcs) if lines.epcs else None)
    else:
        await record(
            conn,
            parent,
            lines,
            source="epcis",
            actor=f"epcis:{capture_id}",
            now=event.eventTime if event.eventTime.tzinfo else event.eventTime.replace(tzinfo=UTC),
            event_id=event_id,
            replace=False,
        )
    outcome.aggregations += 1
    outcome.pallets.add(parent.sscc)


def _quantity_line(entry: Mapping[str, Any]) -> tuple[str, str | None, int] | str:
    """(GTIN, lot, quantity) of a ``childQuantityList`` entry, or why it cannot be used."""
    epc_class = entry.get("epcClass")
    quantity = entry.get("quantity")
    if not isinstance(epc_class, str) or len(epc_class) > MAX_EPC:
        return "epcClass is missing or too long"
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QTY:
        return f"quantity must be a whole number of units 1..{MAX_QTY} (uom is not taken)"
    if entry.get("uom") is not None:
        return "a quantity with a unit of measure is not a count of items"
    try:
        if epc_class.startswith("urn:epc:idpat:sgtin:"):
            company, reference = epc_class.removeprefix("urn:epc:idpat:sgtin:").split(".")[:2]
            gtin = gtin_of(f"urn:epc:id:sgtin:{company}.{reference}.0")
            lot = None
        elif epc_class.startswith("urn:epc:class:lgtin:"):
            gtin = LGTIN(epc_class).gtin()
            lot = replace_uri_escapes(epc_class.split(".", 2)[2])
        else:
            item = parse_label(epc_class)
            if not isinstance(item, ItemScan):
                return f"{epc_class[:80]!r} is not a class of trade items"
            gtin, lot = item.gtin, item.lot
    except (BarcodeError, ConvertException, ValueError, IndexError) as err:
        return f"epcClass {epc_class[:80]!r}: {err}"
    if gtin is None:
        return f"epcClass {epc_class[:80]!r} names no GTIN"
    return gtin, lot, quantity


@dataclass(frozen=True, slots=True)
class _Order:
    id: int
    number: str
    status: str
    site: str


async def _open_order(conn: AsyncConnection, references: Sequence[str]) -> _Order | None:
    candidates = [number for ref in references for number in order_numbers(ref)]
    rows = (
        await conn.execute(
            sa.select(orders.c.id, orders.c.number, orders.c.status, orders.c.site).where(
                orders.c.kind == "purchase", orders.c.number.in_(candidates)
            )
        )
    ).all()
    if not rows:
        return None
    by_number = {row.number: row for row in rows}
    # The most specific candidate first (the whole id before its last segment); open first.
    ranked = sorted(
        (by_number[number] for number in candidates if number in by_number),
        key=lambda row: row.status != "open",
    )
    row = ranked[0]
    return _Order(row.id, row.number, row.status, row.site)


async def _units(
    conn: AsyncConnection,
    index: int,
    event_id: str,
    event: CapturedEvent,
    order: _Order,
    capture_id: int,
    outcome: Outcome,
) -> list[dict[str, Any]]:
    gtins: dict[str, str] = {}
    listed = list(dict.fromkeys(event.epcList))
    pallets = {epc: sscc for epc in listed if (sscc := sscc_of(epc[:MAX_EPC])) is not None}
    if pallets:
        # A pallet shipped: the notice lists the tagged units it holds, as recorded (an
        # AggregationEvent earlier in this document or before; server.commands.pallets).
        contents = await load_contents(conn, list(pallets.values()))
        for epc, sscc in pallets.items():
            held = contents.get(sscc)
            if held is None or not held.epcs:
                outcome.skip(index, event_id, "a pallet with no tagged units recorded", epc=epc)
        listed = [epc for epc in listed if epc not in pallets]
        listed += [
            child
            for sscc in pallets.values()
            if (held := contents.get(sscc)) is not None
            for child in held.epcs
        ]
    for epc in dict.fromkeys(listed):
        gtin = gtin_of(epc) if epc.startswith("urn:epc:id:") and len(epc) <= MAX_EPC else None
        if gtin is None:
            outcome.skip(index, event_id, "not an SGTIN EPC URN", epc=epc[:MAX_EPC])
            continue
        gtins[epc] = gtin
    if not gtins:
        return []
    known = dict(
        (
            await conn.execute(
                sa.select(items.c.gtin, items.c.id).where(items.c.gtin.in_(set(gtins.values())))
            )
        ).all()
    )
    shipped_at = event.eventTime
    if shipped_at.tzinfo is None:
        shipped_at = shipped_at.replace(tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    for epc, gtin in gtins.items():
        item_id = known.get(gtin)
        if item_id is None:
            outcome.skip(index, event_id, f"GTIN {gtin} is not in the item master", epc=epc)
            continue
        rows.append(
            {
                "order_id": order.id,
                "epc": epc,
                "item_id": item_id,
                "event_id": event_id,
                "shipped_at": shipped_at,
                "capture_id": capture_id,
            }
        )
    return rows
