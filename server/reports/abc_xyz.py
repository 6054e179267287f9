"""ABC/XYZ: items by value shipped over a period (ABC) and by how much their demand varies
from period to period (XYZ), from the valuation books (``server.reports.book_reads``) and
the shipments per period summed from the ledger.

The value shipped per item (``shipped_values``, from the books) is computed per shard of
the items when the report is split among processes (``server.reports.shards``); the
demand per period (``demand``) is summed once for every item, beside the shards; the
ranking (``ranked``) needs all of both.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server.reports.book_reads import period_books, period_count, shipped_per_period
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
    """What an item shipped over an ABC/XYZ period (``shipped_values``), before the
    ranking."""

    item_id: int
    sku: str
    name: str
    quantity: int
    value: Decimal


Demand = dict[int, dict[int, int]]
"""Item id -> {period: quantity shipped} (``demand``)."""


def periods_of(since: datetime, until: datetime, per: DemandPeriod) -> tuple[timedelta, int]:
    step = timedelta(days=1 if per == "day" else 7)
    return step, period_count(since, until, step)


def _sites(scope: Scope) -> list[frozenset[str]]:
    sites = [frozenset([scope.site])] if scope.site is not None else []
    if scope.sites:
        sites.append(scope.sites)
    return sites


async def shipped_values(
    conn: AsyncConnection, since: datetime, until: datetime, method: Method, scope: Scope
) -> list[ItemShipped]:
    """Per item (over the sites in scope), the quantity and value shipped over
    ``since``..``until``, from the books (``period_books``); items whose books are not in
    scope are left out. Per shard of the items when the report is split."""
    infos, item_ids = await scope_items(conn, scope)
    books = await period_books(conn, since, until, item_ids)
    totals: dict[int, list[Any]] = {}
    for (item_id, site), book in books.books.items():
        if item_id not in infos or not scope.allows(site):
            continue
        entry = totals.setdefault(item_id, [0, ZERO])
        entry[0] += book.flow.shipped_quantity
        entry[1] += book.flow.shipped(method)
    return [
        ItemShipped(item_id, infos[item_id].sku, infos[item_id].name, *entry)
        for item_id, entry in totals.items()
    ]


async def demand(
    conn: AsyncConnection, since: datetime, until: datetime, per: DemandPeriod, scope: Scope
) -> Demand:
    """The quantity each item shipped per ``per`` (whole periods from ``since``; a last
    partial period counts as one), summed in SQL (``shipped_per_period``) for every item
    in scope at once: one range of the ledger's time, where a list of half the items is
    an index range per item."""
    step, _ = periods_of(since, until, per)
    _, item_ids = await scope_items(conn, scope)
    return await shipped_per_period(conn, since, until, step, item_ids, _sites(scope))


def ranked(
    totals: Iterable[ItemShipped],
    shipped: Demand,
    periods: int,
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
        per_period = [0] * periods
        for index, quantity in shipped.get(item.item_id, {}).items():
            per_period[min(periods - 1, index)] += quantity
        mean = sum(per_period) / periods
        cv: float | None = None
        xyz = "Z"
        if mean > 0:
            variance = sum((period - mean) ** 2 for period in per_period) / periods
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
    and XYZ classes (``shipped_values`` and ``demand``, then ``ranked``). With a ``side``
    connection the demand is summed on it while the books are read on ``conn``: the
    database sums a quarter's shipments while Python reads the books."""
    if side is None:
        totals = await shipped_values(conn, since, until, method, scope)
        shipped = await demand(conn, since, until, per, scope)
    else:
        async with asyncio.TaskGroup() as group:
            reading = group.create_task(shipped_values(conn, since, until, method, scope))
            summing = group.create_task(demand(side, since, until, per, scope))
        totals, shipped = reading.result(), summing.result()
    _, periods = periods_of(since, until, per)
    return ranked(totals, shipped, periods, a_share=a_share, b_share=b_share, x_cv=x_cv, y_cv=y_cv)
