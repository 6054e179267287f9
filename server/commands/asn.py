"""Advance shipping notices: the EPCs a supplier said it shipped, reconciled with receipts.

A supplier's EPCIS shipping events (``server.epcis.capture``) become ``asn_units`` rows: one
per EPC on an open purchase order. From then on:

- a portal **receipt** of a listed EPC at the order's site marks the unit received (in the
  batch's transaction, ``reconcile_receipts``), whichever instance applies the batch;
- a receipt of a unit of an item an open order's notice covers, at that order's site, that
  the notice does not list raises ``asn_unexpected_units`` (subject: the order number;
  evidence: how many and the first ``MAX_EVIDENCE_EPCS`` EPCs);
- **closing** the order raises ``asn_missing_units`` for the listed units never received
  (``asn_on_status``); cancelling it clears that alert;
- ``asn_report`` is the reconciliation on demand (``GET /api/v1/purchase-orders/{id}/asn``).

A unit received before its notice arrived (the notice came late) is marked received when
the notice is captured, if the unit is in stock at the order's site and its last event is
not older than the shipping event (``mark_received_before``).

The quantity side (line counters, ``short_receipt``, ``over_receipt``) stays with the order
book (``server.rules.orders``): a notice adds unit identity on top of it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from plumbing.records import record
from server.alerts.store import clear_alert, raise_alerts
from server.rules.alerts import ASN_MISSING_UNITS, ASN_UNEXPECTED_UNITS
from server.rules.model import AlertSpec
from server.store.dialect import one_of
from server.store.schema.core import items, units
from server.store.schema.orders import orders
from server.store.schema.supply import asn_units
from server.store.sites import site_of

MAX_EVIDENCE_EPCS = 100
"""EPCs listed in one alert's evidence (the count says how many there are)."""
MAX_REPORT_EPCS = 10_000
"""EPCs listed per group in ``asn_report``."""


@record
class Receipt:
    """A unit a batch received: what ``reconcile_receipts`` needs of a movement."""

    epc: str
    item_id: int
    location: str
    event_time: datetime
    event_id: str | None


def covering_query(item_ids: Iterable[int]) -> sa.Select[Any]:
    """(order id, item id, number, site) of the open purchase orders whose shipping notices
    list units of ``item_ids``."""
    return (
        sa.select(asn_units.c.order_id, asn_units.c.item_id, orders.c.number, orders.c.site)
        .join(orders, orders.c.id == asn_units.c.order_id)
        .where(
            asn_units.c.item_id.in_(sorted(set(item_ids))),
            orders.c.status == "open",
            orders.c.kind == "purchase",
        )
        .group_by(asn_units.c.order_id, asn_units.c.item_id, orders.c.number, orders.c.site)
    )


async def reconcile_receipts(conn: AsyncConnection, receipts: Sequence[Receipt]) -> list[AlertSpec]:
    """Mark the units a batch received on their notices; alerts for units not listed.

    One statement when no open order's notice covers the items received (the common case);
    two more when one does. Ingest does not call it when ``covering_query`` of these items,
    read earlier in its transaction, found none (receipts mark notices, they add none).
    """
    if not receipts:
        return []
    covering = (await conn.execute(covering_query(r.item_id for r in receipts))).all()
    if not covering:
        return []
    order_ids = sorted({row.order_id for row in covering})
    condition, params = one_of(conn, asn_units.c.epc, "asn_epcs", [r.epc for r in receipts])
    listed = (
        await conn.execute(
            sa.select(
                asn_units.c.id,
                asn_units.c.epc,
                asn_units.c.order_id,
                asn_units.c.received_at,
                orders.c.site,
            )
            .join(orders, orders.c.id == asn_units.c.order_id)
            .where(condition, asn_units.c.order_id.in_(order_ids)),
            params,
        )
    ).all()
    by_epc: dict[str, list[Any]] = defaultdict(list)
    for row in listed:
        by_epc[row.epc].append(row)
    marks: list[dict[str, Any]] = []
    unexpected: dict[int, list[str]] = defaultdict(list)
    covers: dict[tuple[int, str], set[int]] = defaultdict(set)
    numbers: dict[int, tuple[str, str]] = {}
    for entry in covering:
        covers[(entry.item_id, entry.site)].add(entry.order_id)
        numbers[entry.order_id] = (entry.number, entry.site)
    for receipt in receipts:
        site = site_of(receipt.location)
        rows = [row for row in by_epc.get(receipt.epc, ()) if row.site == site]
        if rows:
            marks.extend(
                {"row_id": row.id, "at": receipt.event_time, "event": receipt.event_id}
                for row in rows
                if row.received_at is None
            )
            continue
        for order_id in sorted(covers.get((receipt.item_id, site), ())):
            unexpected[order_id].append(receipt.epc)
    if marks:
        await conn.execute(
            asn_units.update()
            .where(asn_units.c.id == sa.bindparam("row_id"), asn_units.c.received_at.is_(None))
            .values(received_at=sa.bindparam("at"), received_event_id=sa.bindparam("event")),
            marks,
        )
    alerts: list[AlertSpec] = []
    for order_id, epcs in sorted(unexpected.items()):
        number, site = numbers[order_id]
        alerts.append(
            ASN_UNEXPECTED_UNITS.raise_(
                number,
                {
                    "order": number,
                    "order_id": order_id,
                    "site": site,
                    "count": len(epcs),
                    "epcs": sorted(epcs)[:MAX_EVIDENCE_EPCS],
                },
                site=site,
            )
        )
    return alerts


async def mark_received_before(
    conn: AsyncConnection, order_id: int, site: str, shipped_at: datetime, epcs: Sequence[str]
) -> int:
    """Mark units of a late notice that are already in stock at ``site``; how many."""
    if not epcs:
        return 0
    condition, params = one_of(conn, units.c.epc, "late_epcs", epcs)
    found = (
        await conn.execute(
            sa.select(units.c.epc, units.c.last_event_time, units.c.last_event_id).where(
                condition,
                units.c.status == "in_stock",
                units.c.site == site,
                units.c.last_event_time >= shipped_at,
            ),
            params,
        )
    ).all()
    if not found:
        return 0
    await conn.execute(
        asn_units.update()
        .where(
            asn_units.c.order_id == order_id,
            asn_units.c.epc == sa.bindparam("unit_epc"),
            asn_units.c.received_at.is_(None),
        )
        .values(received_at=sa.bindparam("at"), received_event_id=sa.bindparam("event")),
        [
            {"unit_epc": row.epc, "at": row.last_event_time, "event": row.last_event_id}
            for row in found
        ],
    )
    return len(found)


class AsnLine(BaseModel):
    """One item of a notice: how many units were listed, received and are missing."""

    sku: str
    gtin: str | None
    listed: int
    received: int
    missing: int


class AsnReport(BaseModel):
    """A purchase order's notice against what the portals received."""

    order_id: int
    number: str
    status: str
    site: str
    listed: int
    received: int
    missing: int
    lines: list[AsnLine]
    missing_epcs: list[str]
    """The first ``MAX_REPORT_EPCS`` units listed and not received."""


async def asn_report(conn: AsyncConnection, order_id: int) -> AsnReport | None:
    """The reconciliation of one purchase order's notice; None: no such purchase order."""
    order = (
        await conn.execute(
            sa.select(orders.c.id, orders.c.number, orders.c.status, orders.c.site).where(
                orders.c.id == order_id, orders.c.kind == "purchase"
            )
        )
    ).first()
    if order is None:
        return None
    received = sa.func.count(asn_units.c.received_at)
    rows = (
        await conn.execute(
            sa.select(items.c.sku, items.c.gtin, sa.func.count().label("listed"), received)
            .select_from(asn_units.join(items, items.c.id == asn_units.c.item_id))
            .where(asn_units.c.order_id == order_id)
            .group_by(items.c.sku, items.c.gtin)
            .order_by(items.c.sku)
        )
    ).all()
    missing = (
        (
            await conn.execute(
                sa.select(asn_units.c.epc)
                .where(asn_units.c.order_id == order_id, asn_units.c.received_at.is_(None))
                .order_by(asn_units.c.epc)
                .limit(MAX_REPORT_EPCS)
            )
        )
        .scalars()
        .all()
    )
    lines = [
        AsnLine(
            sku=row.sku,
            gtin=row.gtin,
            listed=int(row.listed),
            received=int(row[3]),
            missing=int(row.listed) - int(row[3]),
        )
        for row in rows
    ]
    return AsnReport(
        order_id=order.id,
        number=order.number,
        status=order.status,
        site=order.site,
        listed=sum(line.listed for line in lines),
        received=sum(line.received for line in lines),
        missing=sum(line.missing for line in lines),
        lines=lines,
        missing_epcs=list(missing),
    )


async def asn_on_status(
    conn: AsyncConnection, order_id: int, number: str, site: str, status: str, now: datetime
) -> None:
    """A purchase order changed status: closed -> missing units alerted; cancelled -> cleared."""
    if status == "cancelled":
        await clear_alert(conn, ASN_MISSING_UNITS.kind, number, reason="order cancelled", now=now)
        return
    if status != "closed":
        return
    report = await asn_report(conn, order_id)
    if report is None or not report.missing:
        return
    evidence = {
        "order": number,
        "order_id": order_id,
        "site": site,
        "count": report.missing,
        "listed": report.listed,
        "received": report.received,
        "epcs": report.missing_epcs[:MAX_EVIDENCE_EPCS],
    }
    await raise_alerts(conn, [ASN_MISSING_UNITS.raise_(number, evidence, site=site)], site, now)
