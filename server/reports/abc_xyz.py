"""ABC/XYZ: items by value shipped over a period (ABC) and by how much their demand varies
from period to period (XYZ), from the valuation books (``server.reports.book_reads``) and
the shipments per period summed from the ledger.

The totals per item (``abc_totals``) are computed per shard of the items when the report
is split among processes (``server.reports.shards``); the ranking (``ranked``) needs all
of them at once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server.reports.book_reads import period_books, shipped_per_period
from server.reports.valuation import ZERO, Method
from server.reports.valuation_reports import DemandPeriod, Scope, scope_items


@dataclass(frozen=True, slots=True)
class AbcXyzRow:
    sku: str
    name: str
    shipped_quantity: int
    shipped_value: Decimal
    share: float
    """Of the value shipped by every item listed."""
    cumulative_share: float
    abc: str
    periods: int
    mean_demand: float
    """Quantity shipped per period (day or week)."""
    cv: float | None
    """Coefficient of variation of the demand per period (None: no demand)."""
    xyz: str


@dataclass(frozen=True, slots=True)
class ItemShipped:
    """What an item shipped over an ABC/XYZ period (``abc_totals``), before the ranking."""

    item_id: int
    sku: str
    name: str
    quantity: int
    value: Decimal
    demand: list[int]
    """Quantity shipped per period (day or week)."""


async def abc_totals(
    conn: AsyncConnection,
    since: datetime,
    until: datetime,
    method: Method,
    scope: Scope,
    *,
    per: DemandPeriod = "week",
    side: AsyncConnection | None = None,
) -> list[ItemShipped]:
    """Per item (over the sites in scope), the quantity and value shipped over
    ``since``..``until`` and the quantity per ``per`` (whole periods from ``since``; a last
    partial period counts as one); items whose books are not in scope are left out.

    With a ``side`` connection the demand is summed on it while the books are read on
    ``conn``: the database sums a quarter's shipments while Python reads the books.
    """
    step = timedelta(days=1 if per == "day" else 7)
    periods = max(1, math.ceil((until - since) / step))
    sites = [frozenset([scope.site])] if scope.site is not None else []
    if scope.sites:
        sites.append(scope.sites)
    infos, item_ids = await scope_items(conn, scope)

    def shipments(on: AsyncConnection) -> Coroutine[Any, Any, dict[int, dict[int, int]]]:
        return shipped_per_period(on, since, until, step, item_ids, sites)

    if side is None:
        books = await period_books(conn, since, until, item_ids)
        shipped = await shipments(conn)
    else:
        async with asyncio.TaskGroup() as group:
            reading = group.create_task(period_books(conn, since, until, item_ids))
            summing = group.create_task(shipments(side))
        books, shipped = reading.result(), summing.result()
    totals: dict[int, list[Any]] = {}
    for item_id, site in books.books:
        if item_id not in infos or not scope.allows(site):
            continue
        book = books.books[(item_id, site)]
        entry = totals.setdefault(item_id, [0, ZERO, [0] * periods])
        entry[0] += book.flow.shipped_quantity
        entry[1] += book.flow.shipped(method)
    for item_id, entry in totals.items():
        for index, quantity in shipped.get(item_id, {}).items():
            entry[2][min(periods - 1, index)] += quantity
    return [
        ItemShipped(item_id, infos[item_id].sku, infos[item_id].name, *entry)
        for item_id, entry in totals.items()
    ]


def ranked(
    totals: Iterable[ItemShipped],
    *,
    a_share: float = 0.8,
    b_share: float = 0.95,
    x_cv: float = 0.5,
    y_cv: float = 1.0,
) -> list[AbcXyzRow]:
    """The items of ``totals`` in ABC/XYZ classes, most value shipped first:

    - ABC: items sorted by value shipped, most first; an item is A while the cumulative
      share before it is below ``a_share``, B below ``b_share``, else C (so the item that
      crosses a limit still belongs to the class it started in). Items that shipped
      nothing are C.
    - XYZ: the coefficient of variation (population standard deviation / mean) of the
      quantity shipped per period: X up to ``x_cv``, Y up to ``y_cv``, else Z; Z for no
      demand.
    """
    listed = sorted(totals, key=lambda item: (-item.value, item.sku))
    grand = sum((item.value for item in listed), ZERO)
    rows: list[AbcXyzRow] = []
    running = ZERO
    for item in listed:
        before = float(running / grand) if grand > 0 else 1.0
        running += item.value
        share = float(item.value / grand) if grand > 0 else 0.0
        abc = (
            "C"
            if item.value <= 0
            else "A"
            if before < a_share
            else "B"
            if before < b_share
            else "C"
        )
        periods = len(item.demand)
        mean = sum(item.demand) / periods
        cv: float | None = None
        xyz = "Z"
        if mean > 0:
            variance = sum((period - mean) ** 2 for period in item.demand) / periods
            cv = round(math.sqrt(variance) / mean, 4)
            xyz = "X" if cv <= x_cv else "Y" if cv <= y_cv else "Z"
        rows.append(
            AbcXyzRow(
                sku=item.sku,
                name=item.name,
                shipped_quantity=item.quantity,
                shipped_value=item.value,
                share=round(share, 6),
                cumulative_share=round(float(running / grand) if grand > 0 else 0.0, 6),
                abc=abc,
                periods=periods,
                mean_demand=round(mean, 4),
                cv=cv,
                xyz=xyz,
            )
        )
    return rows


async def abc_xyz(
    conn: AsyncConnection,
    since: datetime,
    until: datetime,
    method: Method,
    scope: Scope,
    *,
    a_share: float = 0.8,
    b_share: float = 0.95,
    per: DemandPeriod = "week",
    x_cv: float = 0.5,
    y_cv: float = 1.0,
    side: AsyncConnection | None = None,
) -> list[AbcXyzRow]:
    """Items by value shipped over ``since``..``until`` (over the sites in scope) in ABC
    and XYZ classes (``abc_totals``, then ``ranked``)."""
    totals = await abc_totals(conn, since, until, method, scope, per=per, side=side)
    return ranked(totals, a_share=a_share, b_share=b_share, x_cv=x_cv, y_cv=y_cv)
