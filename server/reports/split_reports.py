"""The whole-ledger reports as the API runs them: split by item among processes
(``server.reports.shards``), the shards' rows put together in the report's order; for
stock by location and ABC/XYZ, the part summed for every item at once (what each location
held, the demand per period) runs beside the shards on a connection of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from server.reports.abc_xyz import (
    AbcXyzRow,
    ItemShipped,
    demand,
    periods_of,
    ranked,
    shipped_values,
)
from server.reports.shards import Combine, ReportShards, added, concatenated
from server.reports.valuation import Method
from server.reports.valuation_reports import (
    AgingRow,
    DemandPeriod,
    LossGroup,
    LossRow,
    Scope,
    StockValueGroup,
    StockValueRow,
    TurnoverRow,
    UnitCost,
    aging,
    located,
    location_holdings,
    losses,
    stock_value,
    turnover,
    unit_costs,
)
from server.store.database import Store

Split = TypeVar("Split")
Whole = TypeVar("Whole")


async def _beside(
    store: Store,
    split: Coroutine[Any, Any, Split],
    whole: Callable[[AsyncConnection], Coroutine[Any, Any, Whole]],
) -> tuple[Split, Whole]:
    """``split`` (a report's shards) and, at the same time on a read connection of its
    own, ``whole`` (a sum in SQL for every item at once). Their errors come as they are
    (not in an ``ExceptionGroup``), so the API's handlers answer them."""
    async with store.read("summing beside the shards") as conn:
        summing = asyncio.create_task(whole(conn))
        try:
            rows = await split
        finally:
            summed = await summing
    return rows, summed


BY_SITE_AND_SKU: Final[Combine[Any]] = concatenated(lambda row: (row.site, row.sku))
UNIT_COSTS: Final[Combine[UnitCost]] = concatenated(lambda row: (row.item_id, row.site))
STOCK_VALUES: Final[dict[StockValueGroup, Combine[StockValueRow]]] = {
    "item": BY_SITE_AND_SKU,
    "category": added(
        lambda row: (row.site, row.category),
        ("on_hand", "value", "unvalued"),
        lambda row: (row.site, row.category or ""),
    ),
}
SHIPPED: Final[Combine[ItemShipped]] = concatenated(lambda row: row.item_id)
LOSSES: Final[Combine[LossRow]] = added(
    lambda row: (row.reason, row.site, row.sku),
    ("quantity", "value"),
    lambda row: (-row.value, row.reason or "", row.site or "", row.sku or ""),
)


async def stock_value_report(
    store: Store,
    shards: ReportShards,
    as_of: datetime,
    method: Method,
    group_by: StockValueGroup,
    scope: Scope,
) -> list[StockValueRow]:
    """``valuation_reports.stock_value``, split."""
    doing = "reporting stock value"
    if group_by != "location":
        args = (as_of, method, group_by)
        return await shards.rows(doing, stock_value, args, scope, STOCK_VALUES[group_by])
    costs, (held, infos) = await _beside(
        store,
        shards.rows(doing, unit_costs, (as_of, method), scope, UNIT_COSTS),
        lambda conn: location_holdings(conn, as_of, scope),
    )
    return located(held, infos, costs, scope)


async def turnover_report(
    shards: ReportShards, since: datetime, until: datetime, method: Method, scope: Scope
) -> list[TurnoverRow]:
    """``valuation_reports.turnover``, split."""
    doing, args = "reporting turnover", (since, until, method)
    return await shards.rows(doing, turnover, args, scope, BY_SITE_AND_SKU, side=True)


async def aging_report(
    shards: ReportShards, as_of: datetime, limits: Sequence[int], scope: Scope
) -> list[AgingRow]:
    """``valuation_reports.aging``, split."""
    doing, args = "reporting stock aging", (as_of, limits)
    return await shards.rows(doing, aging, args, scope, BY_SITE_AND_SKU)


async def abc_xyz_report(
    store: Store,
    shards: ReportShards,
    since: datetime,
    until: datetime,
    method: Method,
    scope: Scope,
    per: DemandPeriod,
    **limits: float,
) -> tuple[list[AbcXyzRow], int]:
    """``abc_xyz.abc_xyz`` (``limits``: its shares and CV limits), split; and its number of
    periods."""
    totals, shipped = await _beside(
        store,
        shards.rows("reporting ABC/XYZ", shipped_values, (since, until, method), scope, SHIPPED),
        lambda conn: demand(conn, since, until, per, scope),
    )
    _, periods = periods_of(since, until, per)
    return ranked(totals, shipped, periods, **limits), periods


async def losses_report(
    shards: ReportShards,
    since: datetime,
    until: datetime,
    method: Method,
    group_by: Sequence[LossGroup],
    scope: Scope,
) -> list[LossRow]:
    """``valuation_reports.losses``, split."""
    args = (since, until, method, group_by)
    return await shards.rows("reporting losses", losses, args, scope, LOSSES, side=True)
