"""EPCIS 2.0 capture: a partner's document in, advance shipping notices out.

``POST /api/v1/epcis/capture`` takes an ``EPCISDocument`` (JSON or JSON-LD), or an
``EPCISQueryDocument`` a partner forwards (its ``queryResults`` events). What it does:

- **Bounded and validated.** The body is at most ``[epcis] max_capture_bytes``; it must be
  JSON, ``type`` ``EPCISDocument`` (or ``EPCISQueryDocument``), ``schemaVersion`` 2.x, with
  an event list
  of at most ``max_capture_events`` events and ``max_capture_epcs`` EPCs in all. Each event
  must have a ``type`` and a valid ``eventTime``. A document breaking any of these is
  refused whole (422, naming the event index and field). Extension fields are kept out of
  the way, not refused (EPCIS allows them).
- **What becomes a notice.** A supplier's ``ObjectEvent`` with ``bizStep`` ``shipping``
  (bare, CBV URI or CBV 1.x URN) and ``action`` ``OBSERVE`` or ``ADD``, with a business
  transaction of type ``po`` naming an open purchase order (the order number is the
  transaction id itself or its last ``/`` or ``:`` segment:
  ``http://transaction.acme.com/po/12345678`` names order ``12345678``). Each EPC in its
  ``epcList`` whose GTIN is an item in the master becomes an ``asn_units`` row on that
  order. Every other event (another type or step, no or an unknown order, a closed order)
  and every EPC that cannot be used is **accepted and reported** in the answer with the
  reason, so the standard's example documents are taken as they are.
- **Idempotent.** The document's SHA-256 is kept: the same bytes again return the first
  answer (``replayed: true``) and change nothing. Each event's ``eventID`` (or, without
  one, our CBV hash of it) is claimed once, so an event re-sent in another document is
  skipped; an EPC already on the order's notice is not added twice.
- **Sites.** A key restricted to sites may only give notices for orders at its sites
  (other events are reported as such).
- **Pallets.** An ``AggregationEvent`` whose ``parentID`` is an SSCC (EPC URN or Digital
  Link) records what the pallet holds (``server.commands.pallets``): ``ADD`` (or ``OBSERVE``) adds
  its ``childEPCs`` and its ``childQuantityList`` (classes as ``urn:epc:idpat:sgtin:``,
  ``urn:epc:class:lgtin:`` or Digital Link, a whole ``quantity``), ``DELETE`` takes the
  listed children off, or everything when it lists none. The answer lists the pallets
  (``pallets``); the caller then applies their held events. A shipping notice whose
  ``epcList`` names a pallet lists the tagged units recorded on it (pack the pallet first:
  an AggregationEvent before the shipping event, in this document or an earlier one).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from epcpy import ConvertException
from epcpy.epc_schemes.lgtin import LGTIN
from epcpy.utils.common import replace_uri_escapes
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.commands.asn import mark_received_before
from server.commands.pallets import check_lines, parse_parent, record, remove
from server.config.epcis import EpcisSettings
from server.epcis.documents import event_hash
from server.epcis.query import bare_step
from server.errors import Invalid, ServerError
from server.ingest.pallet_contents import load_contents
from server.rules.pallets import sscc_of
from server.store.dialect import upsert
from server.store.schema.core import MAX_EPC, MAX_EVENT_ID, items
from server.store.schema.orders import orders
from server.store.schema.supply import asn_units, epcis_captures, epcis_seen_events
from wire.gs1 import parse_label
from wire.identifiers import gtin_of
from wire.scans import MAX_QTY, BarcodeError, ItemScan

MAX_SKIPPED_REPORTED = 1000
"""Skipped events and EPCs listed in one answer (the counts cover all)."""
PO_TYPES = frozenset(
    {"po", "https://ref.gs1.org/cbv/BTT-po", "urn:epcglobal:cbv:btt:po", "cbv:BTT-po"}
)
NOTICE_ACTIONS = frozenset({"OBSERVE", "ADD"})
DOCUMENT_TYPES = ("EPCISDocument", "EPCISQueryDocument")


class CaptureRefused(ServerError, ValueError):
    """The document is not one capture takes; the message says what is wrong."""


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class BizTransaction(_Open):
    type: str | None = Field(default=None, max_length=1000)
    bizTransaction: str = Field(min_length=1, max_length=1000)


class CapturedEvent(_Open):
    """The parts of an EPCIS event capture reads (the rest is allowed and ignored)."""

    type: str = Field(min_length=1, max_length=64)
    eventTime: datetime
    eventID: str | None = Field(default=None, min_length=1, max_length=MAX_EVENT_ID)
    action: str | None = Field(default=None, max_length=16)
    bizStep: str | None = Field(default=None, max_length=1000)
    epcList: list[str] = Field(default_factory=list)
    parentID: str | None = Field(default=None, max_length=1000)
    childEPCs: list[str] = Field(default_factory=list)
    childQuantityList: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)
    bizTransactionList: list[BizTransaction] = Field(default_factory=list, max_length=100)


class CaptureBody(_Open):
    eventList: list[dict[str, Any]]


class QueryResultsBody(_Open):
    resultsBody: CaptureBody


class QueryBody(_Open):
    queryResults: QueryResultsBody


class CaptureDocument(_Open):
    type: Literal["EPCISDocument"]
    schemaVersion: str = Field(pattern=r"^2(\.\d+)*$")
    epcisBody: CaptureBody


class QueryDocument(_Open):
    """Query results a partner forwards (same events, one level deeper)."""

    type: Literal["EPCISQueryDocument"]
    schemaVersion: str = Field(pattern=r"^2(\.\d+)*$")
    epcisBody: QueryBody


class Skipped(BaseModel):
    """An event or EPC of the document that gave no notice, and why."""

    index: int
    """The event's position in ``eventList`` (0-based)."""
    event_id: str | None
    epc: str | None = None
    reason: str


class CaptureSummary(BaseModel):
    """What a captured document did."""

    capture_id: int
    replayed: bool = False
    events: int
    """Events in the document."""
    notices: int
    """Events that became (part of) an advance shipping notice."""
    units: int
    """EPCs added to notices."""
    already_received: int
    """Of those, units the portals had received before the notice came."""
    orders: list[str]
    """The purchase orders that got units."""
    aggregations: int = 0
    """AggregationEvents that changed what a pallet holds."""
    pallets: list[str] = Field(default_factory=list)
    """The SSCCs of those pallets."""
    skipped_count: int
    skipped: list[Skipped]


@dataclass(slots=True)
class _Outcome:
    notices: int = 0
    units: int = 0
    already_received: int = 0
    orders: set[str] = field(default_factory=set)
    aggregations: int = 0
    pallets: set[str] = field(default_factory=set)
    skipped: list[Skipped] = field(default_factory=list)

    def skip(self, index: int, event_id: str | None, reason: str, epc: str | None = None) -> None:
        self.skipped.append(Skipped(index=index, event_id=event_id, epc=epc, reason=reason))


def digest_of(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def parse_document(
    body: bytes, settings: EpcisSettings
) -> tuple[list[CapturedEvent], dict[str, str]]:
    """The document's events and its JSON-LD prefixes, or ``CaptureRefused`` saying why."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CaptureRefused(f"the body is not JSON: {err}") from err
    if not isinstance(raw, dict):
        raise CaptureRefused("an EPCIS document is a JSON object")
    kind = raw.get("type")
    if kind not in DOCUMENT_TYPES:
        raise CaptureRefused(f"type must be one of {list(DOCUMENT_TYPES)}, not {kind!r}")
    try:
        if kind == "EPCISDocument":
            listed = CaptureDocument.model_validate(raw).epcisBody.eventList
        else:
            listed = QueryDocument.model_validate(raw).epcisBody.queryResults.resultsBody.eventList
    except ValidationError as err:
        raise CaptureRefused(_first_error(err, "document")) from err
    if len(listed) > settings.max_capture_events:
        raise CaptureRefused(
            f"epcisBody.eventList holds {len(listed)} events; at most "
            f"{settings.max_capture_events} per document"
        )
    events: list[CapturedEvent] = []
    epcs = 0
    for index, entry in enumerate(listed):
        try:
            event = CapturedEvent.model_validate(entry)
        except ValidationError as err:
            raise CaptureRefused(_first_error(err, f"eventList[{index}]")) from err
        epcs += len(event.epcList) + len(event.childEPCs)
        if epcs > settings.max_capture_epcs:
            raise CaptureRefused(
                f"the document lists more than {settings.max_capture_epcs} EPCs "
                f"(reached at eventList[{index}])"
            )
        events.append(event)
    return events, _prefixes(raw.get("@context"))


def _first_error(err: ValidationError, where: str) -> str:
    first = err.errors()[0]
    path = ".".join(str(part) for part in first["loc"])
    return f"{where}.{path}: {first['msg']}" if path else f"{where}: {first['msg']}"


def _prefixes(context: Any) -> dict[str, str]:
    """JSON-LD prefixes of the document's ``@context`` (for hashing extension fields)."""
    found: dict[str, str] = {}
    entries = context if isinstance(context, list) else [context]
    for entry in entries:
        if isinstance(entry, Mapping):
            found.update({k: v for k, v in entry.items() if isinstance(v, str)})
    return found


def _content_id(event: CapturedEvent, prefixes: Mapping[str, str]) -> str:
    """An id for an event that has none: our CBV hash of it, or (when a field the hash reads
    is malformed, e.g. a ``quantityList`` entry without ``epcClass``) the SHA-256 of its
    canonical JSON; either way the same event gives the same id."""
    content = event.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    try:
        return event_hash(content, prefixes)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        return "ni:///sha-256;" + hashlib.sha256(text.encode()).hexdigest() + "?ver=stockgate"


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


async def capture(
    conn: AsyncConnection,
    body: bytes,
    settings: EpcisSettings,
    *,
    actor: str,
    sites: frozenset[str],
    now: datetime,
) -> CaptureSummary:
    """Apply one EPCIS document in the caller's transaction (module docstring).

    Raises:
        CaptureRefused: the document is malformed or too large.
    """
    digest = digest_of(body)
    seen = (
        await conn.execute(
            sa.select(epcis_captures.c.summary).where(epcis_captures.c.digest == digest)
        )
    ).first()
    if seen is not None:
        return CaptureSummary.model_validate(seen.summary | {"replayed": True})
    events, prefixes = parse_document(body, settings)
    capture_id = await conn.scalar(
        upsert(conn, epcis_captures)
        .values(digest=digest, received_at=now, actor=actor, events=len(events), summary={})
        .on_conflict_do_nothing()
        .returning(epcis_captures.c.id)
    )
    if capture_id is None:
        # The same document, captured by a request that committed while this one ran.
        first = await conn.scalar(
            sa.select(epcis_captures.c.summary).where(epcis_captures.c.digest == digest)
        )
        return CaptureSummary.model_validate(dict(first or {}) | {"replayed": True})
    outcome = _Outcome()
    for index, event in enumerate(events):
        await _capture_event(conn, index, event, prefixes, capture_id, sites, outcome)
    summary = CaptureSummary(
        capture_id=capture_id,
        events=len(events),
        notices=outcome.notices,
        units=outcome.units,
        already_received=outcome.already_received,
        orders=sorted(outcome.orders),
        aggregations=outcome.aggregations,
        pallets=sorted(outcome.pallets),
        skipped_count=len(outcome.skipped),
        skipped=outcome.skipped[:MAX_SKIPPED_REPORTED],
    )
    await conn.execute(
        epcis_captures.update()
        .where(epcis_captures.c.id == capture_id)
        .values(summary=summary.model_dump(mode="json"))
    )
    return summary


async def _capture_event(
    conn: AsyncConnection,
    index: int,
    event: CapturedEvent,
    prefixes: Mapping[str, str],
    capture_id: int,
    sites: frozenset[str],
    outcome: _Outcome,
) -> None:
    event_id = event.eventID or _content_id(event, prefixes)
    if event.type == "AggregationEvent":
        await _capture_aggregation(conn, index, event_id, event, capture_id, outcome)
        return
    if event.type != "ObjectEvent":
        outcome.skip(index, event_id, f"a {event.type} is not a shipping notice")
        return
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
    if not await _claim(conn, event_id, capture_id):
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


async def _claim(conn: AsyncConnection, event_id: str, capture_id: int) -> bool:
    claimed = await conn.execute(
        upsert(conn, epcis_seen_events)
        .values(event_id=event_id, capture_id=capture_id)
        .on_conflict_do_nothing()
        .returning(epcis_seen_events.c.event_id)
    )
    return claimed.first() is not None


async def _capture_aggregation(
    conn: AsyncConnection,
    index: int,
    event_id: str,
    event: CapturedEvent,
    capture_id: int,
    outcome: _Outcome,
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
    if not await _claim(conn, event_id, capture_id):
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
    outcome: _Outcome,
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
