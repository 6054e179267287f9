"""Value reports under ``/api/v1/reports/``, each as JSON, or as CSV with
``Accept: text/csv`` or the ``.csv`` path (``server.api.report_routes``):

- ``stock-value``: on hand and its value as of a moment (moving average or FIFO);
- ``turnover``: cost of goods shipped, turnover and days of supply over a period;
- ``aging``: how long the stock on hand has been on hand (FIFO layers, in age buckets);
- ``abc-xyz``: items by value shipped (ABC) and by demand variability (XYZ);
- ``losses``: stock lost, stolen, damaged, expired or counted short, by reason, site, item.

Amounts are numbers rounded to cents (unit costs to millionths). The JSON shapes are in
the README ("Reports"). Door throughput and count accuracy are in
``server.api.process_reports``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel

from server.api.auth import Context, Viewer
from server.api.history import SiteParam, bounded
from server.api.report_routes import (
    DEFAULT_PERIOD,
    MAX_PERIOD,
    AsOf,
    Category,
    ItemFilter,
    ItemParams,
    MethodParam,
    WindowParams,
    answer,
    cells_of,
    copied,
    report_route,
)
from server.reports.split_reports import (
    abc_xyz_report,
    aging_report,
    losses_report,
    stock_value_report,
    turnover_report,
)
from server.reports.valuation import Method
from server.reports.valuation_reports import (
    DEFAULT_AGE_BUCKETS,
    LOSS_GROUPS,
    DemandPeriod,
    LossGroup,
    StockValueGroup,
    bucket_labels,
    money,
    unit_money,
)

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])

MAX_AGE_BUCKETS: Final = 12
MAX_AGE_DAYS: Final = 36600
DEFAULT_DEMAND_PERIOD: Final = timedelta(days=90)


# --- stock value ----------------------------------------------------------------------------


class StockValueItem(BaseModel):
    site: str
    location: str | None = None
    """Set with ``group_by=location``."""
    sku: str | None = None
    name: str | None = None
    category: str | None = None
    on_hand: int
    unit_cost: float | None
    """Value / on hand (null when nothing is on hand, or per category)."""
    value: float
    unvalued: int
    """Of the quantity received at the site, how much came in with no cost known (valued 0)."""


class StockValueReport(BaseModel):
    as_of: datetime
    method: Method
    group_by: StockValueGroup
    total_value: float
    items: list[StockValueItem]


STOCK_VALUE_COLUMNS: Final = (
    "site",
    "location",
    "sku",
    "name",
    "category",
    "on_hand",
    "unit_cost",
    "value",
    "unvalued",
)


@report_route(router, "/stock-value", StockValueReport, "Stock and its value as of a moment")
async def get_stock_value(
    request: Request,
    context: Context,
    principal: Viewer,
    as_of: AsOf = None,
    method: MethodParam = "moving_average",
    group_by: Annotated[
        StockValueGroup, Query(description="item (per site and item), location, or category.")
    ] = "item",
    *,
    item_filter: ItemParams,
) -> Any:
    """On hand and its value as of ``as_of`` (default now), per site and item, per location
    and item, or per site and category."""
    scope = item_filter.scope(principal)
    moment = bounded(as_of, "as_of") or datetime.now(UTC)
    rows = await stock_value_report(context.store, context.reports, moment, method, group_by, scope)
    items = [
        copied(StockValueItem, row, unit_cost=unit_money(row.unit_cost), value=money(row.value))
        for row in rows
    ]
    report = StockValueReport(
        as_of=moment,
        method=method,
        group_by=group_by,
        total_value=money(sum((row.value for row in rows), Decimal(0))),
        items=items,
    )
    return answer(
        request, report, "stock-value", STOCK_VALUE_COLUMNS, cells_of(STOCK_VALUE_COLUMNS)
    )


# --- turnover -------------------------------------------------------------------------------


class TurnoverItem(BaseModel):
    site: str
    sku: str
    name: str
    opening_quantity: int
    opening_value: float
    closing_quantity: int
    closing_value: float
    received_quantity: int
    shipped_quantity: int
    cost_of_goods_shipped: float
    turnover: float | None
    """Cost of goods shipped / mean of opening and closing value (null: no value held)."""
    days_of_supply: float | None
    """Closing quantity / quantity shipped per day (null: nothing shipped)."""


class TurnoverReport(BaseModel):
    since: datetime
    until: datetime
    method: Method
    cost_of_goods_shipped: float
    items: list[TurnoverItem]


TURNOVER_COLUMNS: Final = tuple(TurnoverItem.model_fields)


@report_route(router, "/turnover", TurnoverReport, "Turnover and days of supply per item and site")
async def get_turnover(
    request: Request,
    context: Context,
    principal: Viewer,
    window: WindowParams,
    method: MethodParam = "moving_average",
    *,
    item_filter: ItemParams,
) -> Any:
    """Per site and item over ``since``..``until`` (default the last 30 days): stock and
    value at both ends, received and shipped quantities, cost of goods shipped, turnover
    and days of supply."""
    scope = item_filter.scope(principal)
    start, end = window.bounds(DEFAULT_PERIOD, MAX_PERIOD)
    rows = await turnover_report(context.reports, start, end, method, scope)
    items = [
        copied(
            TurnoverItem,
            row,
            opening_value=money(row.opening_value),
            closing_value=money(row.closing_value),
            cost_of_goods_shipped=money(row.cost_of_goods_shipped),
        )
        for row in rows
    ]
    report = TurnoverReport(
        since=start,
        until=end,
        method=method,
        cost_of_goods_shipped=round(sum(item.cost_of_goods_shipped for item in items), 2),
        items=items,
    )
    return answer(request, report, "turnover", TURNOVER_COLUMNS, cells_of(TURNOVER_COLUMNS))


# --- aging ----------------------------------------------------------------------------------


class AgeBucket(BaseModel):
    days: str
    """``0-30``, ``31-60``, ..., ``181+``: whole days on hand."""
    quantity: int
    value: float


class AgingItem(BaseModel):
    site: str
    sku: str
    name: str
    on_hand: int
    value: float
    oldest_received: datetime | None
    buckets: list[AgeBucket]


class AgingReport(BaseModel):
    as_of: datetime
    buckets: list[str]
    items: list[AgingItem]


AGING_COLUMNS: Final = ("site", "sku", "name", "on_hand", "value", "oldest_received")
"""The CSV's first columns; then quantity and value per bucket."""


def _age_limits(raw: str | None) -> list[int]:
    if raw is None or raw == "":
        return list(DEFAULT_AGE_BUCKETS)
    try:
        limits = [int(part) for part in raw.split(",")]
    except ValueError as err:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "buckets: give whole days separated by commas"
        ) from err
    if len(limits) > MAX_AGE_BUCKETS:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"buckets: at most {MAX_AGE_BUCKETS} limits"
        )
    if any(not 0 <= limit <= MAX_AGE_DAYS for limit in limits) or limits != sorted(set(limits)):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"buckets: increasing whole days between 0 and {MAX_AGE_DAYS}",
        )
    return limits


@report_route(router, "/aging", AgingReport, "Stock on hand by how long it has been on hand")
async def get_aging(
    request: Request,
    context: Context,
    principal: Viewer,
    as_of: AsOf = None,
    buckets: Annotated[
        str | None,
        Query(max_length=128, description="Upper limits in days, e.g. 30,60,90,180 (default)."),
    ] = None,
    *,
    item_filter: ItemParams,
) -> Any:
    """Per site and item, the quantity and value on hand at ``as_of`` in age buckets (days
    since its FIFO layer was received)."""
    scope = item_filter.scope(principal)
    limits = _age_limits(buckets)
    moment = bounded(as_of, "as_of") or datetime.now(UTC)
    rows = await aging_report(context.reports, moment, limits, scope)
    labels = bucket_labels(limits)
    items = [
        copied(
            AgingItem,
            row,
            value=money(row.value),
            buckets=[
                AgeBucket(days=label, quantity=quantity, value=money(value))
                for label, quantity, value in row.buckets
            ],
        )
        for row in rows
    ]
    header = [
        *AGING_COLUMNS,
        *(f"{kind}_{label}" for label in labels for kind in ("quantity", "value")),
    ]
    first = cells_of(AGING_COLUMNS)

    def flatten(item: AgingItem) -> list[Any]:
        cells = first(item)
        for bucket in item.buckets:
            cells += [bucket.quantity, bucket.value]
        return cells

    report = AgingReport(as_of=moment, buckets=labels, items=items)
    return answer(request, report, "aging", header, flatten)


# --- ABC / XYZ ------------------------------------------------------------------------------


class AbcXyzItem(BaseModel):
    sku: str
    name: str
    shipped_quantity: int
    shipped_value: float
    share: float
    cumulative_share: float
    abc: str
    mean_demand: float
    """Quantity shipped per ``per`` (day or week)."""
    cv: float | None
    """Coefficient of variation of that demand (null: none)."""
    xyz: str
    abc_xyz: str


class AbcXyzReport(BaseModel):
    since: datetime
    until: datetime
    method: Method
    per: DemandPeriod
    periods: int
    a_share: float
    b_share: float
    x_cv: float
    y_cv: float
    items: list[AbcXyzItem]


ABC_XYZ_COLUMNS: Final = tuple(AbcXyzItem.model_fields)
Share = Annotated[float, Query(gt=0, le=1)]
CvLimit = Annotated[float, Query(gt=0, le=100)]


@report_route(router, "/abc-xyz", AbcXyzReport, "ABC by value shipped, XYZ by demand variability")
async def get_abc_xyz(
    request: Request,
    context: Context,
    principal: Viewer,
    window: WindowParams,
    method: MethodParam = "moving_average",
    per: Annotated[DemandPeriod, Query(description="Demand buckets: day or week.")] = "week",
    a_share: Share = 0.8,
    b_share: Share = 0.95,
    x_cv: CvLimit = 0.5,
    y_cv: CvLimit = 1.0,
    site: SiteParam = None,
    category: Category = None,
) -> Any:
    """Items by value shipped over ``since``..``until`` (default the last 90 days), with
    their ABC class and XYZ class (see the README for the rules)."""
    if a_share >= b_share:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "a_share must be below b_share")
    if x_cv >= y_cv:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "x_cv must be below y_cv")
    scope = ItemFilter(site=site, category=category).scope(principal)
    start, end = window.bounds(DEFAULT_DEMAND_PERIOD, MAX_PERIOD)
    rows, periods = await abc_xyz_report(
        context.store,
        context.reports,
        start,
        end,
        method,
        scope,
        per,
        a_share=a_share,
        b_share=b_share,
        x_cv=x_cv,
        y_cv=y_cv,
    )
    items = [
        copied(AbcXyzItem, row, shipped_value=money(row.shipped_value), abc_xyz=row.abc + row.xyz)
        for row in rows
    ]
    report = AbcXyzReport(
        since=start,
        until=end,
        method=method,
        per=per,
        periods=periods,
        a_share=a_share,
        b_share=b_share,
        x_cv=x_cv,
        y_cv=y_cv,
        items=items,
    )
    return answer(request, report, "abc-xyz", ABC_XYZ_COLUMNS, cells_of(ABC_XYZ_COLUMNS))


# --- losses ---------------------------------------------------------------------------------


class LossItem(BaseModel):
    reason: str | None = None
    """``lost``, ``stolen``, ``damaged``, ``expired``, ``cycle_counting``, ``shrinkage``
    (shelf readers), ``correction``, ..."""
    site: str | None = None
    sku: str | None = None
    quantity: int
    value: float


class LossReport(BaseModel):
    since: datetime
    until: datetime
    method: Method
    group_by: list[LossGroup]
    total_quantity: int
    total_value: float
    items: list[LossItem]


def _loss_groups(raw: str | None) -> list[LossGroup]:
    if raw is None or raw == "":
        return ["reason", "site"]
    names = [name.strip() for name in raw.split(",")]
    for name in names:
        if name not in LOSS_GROUPS:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                f"group_by: unknown {name!r}; choose from {', '.join(LOSS_GROUPS)}",
            )
    if len(set(names)) != len(names):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "group_by names a column twice")
    return [name for name in LOSS_GROUPS if name in names]


@report_route(router, "/losses", LossReport, "Shrinkage by reason, site and item, with its value")
async def get_losses(
    request: Request,
    context: Context,
    principal: Viewer,
    window: WindowParams,
    method: MethodParam = "moving_average",
    group_by: Annotated[
        str | None,
        Query(max_length=32, description="Any of reason,site,sku (default reason,site)."),
    ] = None,
    *,
    item_filter: ItemParams,
) -> Any:
    """Stock that left a site other than by shipment (losses with their reason, counts and
    shelves that found less, negative corrections) over ``since``..``until`` (default the
    last 30 days), quantity and value, most valuable first."""
    groups = _loss_groups(group_by)
    scope = item_filter.scope(principal)
    start, end = window.bounds(DEFAULT_PERIOD, MAX_PERIOD)
    rows = await losses_report(context.reports, start, end, method, groups, scope)
    items = [copied(LossItem, row, value=money(row.value)) for row in rows]
    report = LossReport(
        since=start,
        until=end,
        method=method,
        group_by=groups,
        total_quantity=sum(item.quantity for item in items),
        total_value=round(sum(item.value for item in items), 2),
        items=items,
    )
    header = [*groups, "quantity", "value"]
    return answer(request, report, "losses", header, cells_of(header))
