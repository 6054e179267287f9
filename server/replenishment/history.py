"""Demand and lead-time history, read from the ledger and the purchase orders.

- **Demand** of an item at a site on a day = the quantity shipped out of the site to
  customers that day (ledger ``shipment`` rows from a location of the site), less the
  shipments reversed that day (a reversal of a shipment brings the goods back). Transfers
  between locations or sites are ``transfer`` rows and are not demand; neither are
  losses or count corrections. Days are UTC days; the series has one value per day of the
  window, zeros included. Summed per item, location and day by the database (one row per
  active day, not per movement).
- **Lead time** of a purchase order line = from the order's ``placed_at`` (when it was
  opened) to the first receipt of the item at the order's site after that, up to when the
  order was closed (receipts are counted against order lines without naming them, so the
  first arrival after placing is the line's delivery). Lines never received measure
  nothing. Grouped per (supplier, item); the supplier is the order's ``partner``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.rules.policy import TRANSIT_SITE
from server.store.schema.core import UtcDateTime, ledger
from server.store.schema.orders import order_lines, orders
from server.store.sites import site_of

DAY_S = 86_400.0


def _day(conn: AsyncConnection, column: sa.ColumnElement[datetime]) -> sa.ColumnElement[str]:
    """The UTC day of a timestamp as ``YYYY-MM-DD`` text, in the database."""
    if conn.dialect.name == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    # SQLite keeps UTC text ``YYYY-MM-DD HH:MM:SS.ffffff`` (server.store.schema.core.UtcDateTime).
    return sa.func.substr(column, 1, 10)


async def daily_demand(
    conn: AsyncConnection, start: date, days: int
) -> dict[tuple[int, str], list[float]]:
    """(item id, site) -> demand per day for ``days`` days from ``start`` (UTC)."""
    since = datetime(start.year, start.month, start.day, tzinfo=UTC)
    until = since + timedelta(days=days)
    day = _day(conn, ledger.c.event_time).label("day")
    window = (
        ledger.c.kind == "shipment",
        ledger.c.event_time >= since,
        ledger.c.event_time < until,
    )
    shipped = await conn.execute(
        sa.select(ledger.c.item_id, ledger.c.from_location, day, sa.func.sum(ledger.c.quantity))
        .where(*window, ledger.c.from_location.is_not(None), ledger.c.reverses.is_(None))
        .group_by(ledger.c.item_id, ledger.c.from_location, day)
    )
    returned = await conn.execute(
        sa.select(ledger.c.item_id, ledger.c.to_location, day, sa.func.sum(ledger.c.quantity))
        .where(*window, ledger.c.to_location.is_not(None), ledger.c.reverses.is_not(None))
        .group_by(ledger.c.item_id, ledger.c.to_location, day)
    )
    series: dict[tuple[int, str], list[float]] = {}
    for rows, sign in ((shipped, 1), (returned, -1)):
        for item_id, location, when, quantity in rows:
            site = site_of(location)
            if site == TRANSIT_SITE:
                continue
            index = (date.fromisoformat(when) - start).days
            if not 0 <= index < days:
                continue
            values = series.setdefault((item_id, site), [0.0] * days)
            values[index] += sign * float(quantity)
    for values in series.values():
        for index, value in enumerate(values):
            values[index] = max(value, 0.0)
    return series


async def lead_times(
    conn: AsyncConnection, since: datetime, now: datetime
) -> dict[tuple[str | None, int], list[float]]:
    """(supplier, item id) -> measured lead times in days, of orders placed since ``since``."""
    site = orders.c.site
    arrived = (
        sa.select(sa.func.min(ledger.c.event_time))
        .where(
            ledger.c.item_id == order_lines.c.item_id,
            ledger.c.kind == "receipt",
            ledger.c.reverses.is_(None),
            sa.or_(
                ledger.c.to_location == site,
                sa.and_(ledger.c.to_location > site + ".", ledger.c.to_location < site + "/"),
            ),
            ledger.c.event_time >= orders.c.placed_at,
            ledger.c.event_time <= sa.func.coalesce(orders.c.closed_at, now),
        )
        .scalar_subquery()
    )
    arrival = sa.type_coerce(arrived, UtcDateTime())
    rows = await conn.execute(
        sa.select(orders.c.partner, order_lines.c.item_id, orders.c.placed_at, arrival)
        .join(orders, orders.c.id == order_lines.c.order_id)
        .where(
            orders.c.kind == "purchase",
            orders.c.status.in_(("open", "closed")),
            orders.c.placed_at.is_not(None),
            orders.c.placed_at >= since,
            order_lines.c.received > 0,
        )
    )
    found: dict[tuple[str | None, int], list[float]] = defaultdict(list)
    for partner, item_id, placed_at, arrival in rows:
        if arrival is None or placed_at is None:
            continue
        found[(partner, item_id)].append((arrival - placed_at).total_seconds() / DAY_S)
    return dict(found)
