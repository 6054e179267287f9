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

The document is read and bounded in ``server.epcis.capture_document``; what each event does
is in ``server.epcis.capture_events``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from server.config.epcis import EpcisSettings
from server.epcis.capture_document import CapturedEvent, content_id, digest_of, parse_document
from server.epcis.capture_events import Outcome, Skipped, capture_aggregation, capture_notice
from server.store.dialect import upsert
from server.store.schema.supply import epcis_captures

MAX_SKIPPED_REPORTED = 1000
"""Skipped events and EPCs listed in one answer (the counts cover all)."""


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
    outcome = Outcome()
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
    outcome: Outcome,
) -> None:
    event_id = event.eventID or content_id(event, prefixes)
    if event.type == "AggregationEvent":
        await capture_aggregation(conn, index, event_id, event, capture_id, outcome)
    elif event.type == "ObjectEvent":
        await capture_notice(conn, index, event_id, event, capture_id, sites, outcome)
    else:
        outcome.skip(index, event_id, f"a {event.type} is not a shipping notice")
