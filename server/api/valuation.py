"""Value and operations reports under ``/api/v1/reports/``, each as JSON, or as CSV with
``Accept: text/csv`` or the ``.csv`` path:

- ``stock-value``: on hand and its value as of a moment (moving average or FIFO);
- ``turnover``: cost of goods shipped, turnover and days of supply over a period;
- ``aging``: how long the stock on hand has been on hand (FIFO layers, in age buckets);
- ``abc-xyz``: items by value shipped (ABC) and by demand variability (XYZ);
- ``losses``: stock lost, stolen, damaged, expired or counted short, by reason, site, item;
- ``door-throughput``: per read point and hour, what moved and how many passes went
  unresolved;
- ``count-accuracy``: cycle counts, counted against expected, the share within tolerance.

Amounts are numbers rounded to cents (unit costs to millionths). The JSON shapes are in
the README ("Reports").
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from server.api.auth import Context, Viewer, check_locations, check_site
from server.api.history import CSV_MEDIA, SiteParam, bounded, wants_csv
from server.api.params import DEFAULT_PAGE, Limit, Location, Sku
from server.api.uploads import csv_download
from server.commands.masterdata import CATEGORY_PATTERN
from server.reports.count_accuracy import CountFilter, count_accuracy
from server.reports.doors import door_throughput
from server.reports.valuation import Method
from server.reports.valuation_reports import (
    DEFAULT_AGE_BUCKETS,
    LOSS_GROUPS,
    DemandPeriod,
    LossGroup,
    Scope,
    StockValueGroup,
    abc_xyz,
    aging,
    bucket_labels,
    losses,
    money,
    stock_value,
    turnover,
    unit_money,
)
from server.store.schema.core import LEDGER_KINDS

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])

MAX_PERIOD: Final = timedelta(days=3660)
MAX_DOOR_WINDOW: Final = timedelta(days=92)
DEFAULT_PERIOD: Final = timedelta(days=30)
DEFAULT_DOOR_WINDOW: Final = timedelta(days=1)
MAX_AGE_BUCKETS: Final = 12
MAX_AGE_DAYS: Final = 36600

AsOf = Annotated[datetime | None, Query(description="Default now; no offset means UTC.")]
Since = Annotated[datetime | None, Query(description="Inclusive; no offset means UTC.")]
Until = Annotated[datetime | None, Query(description="Exclusive; default now.")]
MethodParam = Annotated[Method, Query(description="moving_average (default) or fifo.")]
Category = Annotated[str | None, Query(pattern=CATEGORY_PATTERN, max_length=64)]
ReadPoint = Annotated[str | None, Query(min_length=1, max_length=256, pattern=r"^\S+$")]


def _scope(principal: Any, site: str | None, sku: str | None, category: str | None) -> Scope:
    if site is not None:
        check_site(principal, site)
    return Scope(site=site, sku=sku, category=category, sites=principal.sites)


def _period(
    since: datetime | None, until: datetime | None, default: timedelta, widest: timedelta
) -> tuple[datetime, datetime]:
    start, end = bounded(since, "since"), bounded(until, "until")
    if end is None:
        end = (start + default) if start is not None else datetime.now(UTC)
    if start is None:
        start = end - default
    if start >= end:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "since must be before until")
    if end - start > widest:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"since..until spans more than {widest.days} days"
        )
    return start, end


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


async def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(_cell(value) for value in row)
    yield buffer.getvalue()


def _answer(
    request: Request,
    report: BaseModel,
    name: str,
    header: Sequence[str],
    flatten: Callable[[Any], Sequence[Any]],
) -> Any:
    """The report as JSON, or its ``items`` as CSV (one line each, ``flatten``ed)."""
    if wants_csv(request) or request.url.path.endswith(".csv"):
        lines = [flatten(item) for item in getattr(report, "items")]  # noqa: B009
        return csv_download(_csv(header, lines), f"{name}.csv")
    return report


def _routes(path: str, model: type[BaseModel], summary: str) -> Callable[[Any], Any]:
    """Register a report under ``path`` (JSON, or CSV by Accept) and ``path.csv`` (CSV)."""

    def register(endpoint: Any) -> Any:
        router.add_api_route(
            path,
            endpoint,
            methods=["GET"],
            response_model=model,
            responses={200: {"content": {CSV_MEDIA: {}}}},
            summary=summary,
        )
        router.add_api_route(
            f"{path}.csv",
            endpoint,
            methods=["GET"],
            response_class=StreamingResponse,
            responses={200: {"content": {CSV_MEDIA: {}}, "description": f"{summary} (CSV)."}},
            summary=f"{summary} (CSV)",
        )
        return endpoint

    return register


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


@_routes("/stock-value", StockValueReport, "Stock and its value as of a moment")
async def get_stock_value(
    request: Request,
    context: Context,
    principal: Viewer,
    as_of: AsOf = None,
    method: MethodParam = "moving_average",
    group_by: Annotated[
        StockValueGroup, Query(description="item (per site and item), location, or category.")
    ] = "item",
    site: SiteParam = None,
    sku: Sku = None,
    category: Category = None,
) -> Any:
    """On hand and its value as of ``as_of`` (default now), per site and item, per location
    and item, or per site and category."""
    scope = _scope(principal, site, sku, category)
    moment = bounded(as_of, "as_of") or datetime.now(UTC)
    async with context.store.read("reporting stock value") as conn:
        rows = await stock_value(conn, moment, method, group_by, scope)
    items = [
        StockValueItem(
            site=row.site,
            location=row.location,
            sku=row.sku,
            name=row.name,
            category=row.category,
            on_hand=row.on_hand,
            unit_cost=unit_money(row.unit_cost),
            value=money(row.value),
            unvalued=row.unvalued,
        )
        for row in rows
    ]
    report = StockValueReport(
        as_of=moment,
        method=method,
        group_by=group_by,
        total_value=money(sum((row.value for row in rows), Decimal(0))),
        items=items,
    )
    return _answer(
        request,
        report,
        "stock-value",
        STOCK_VALUE_COLUMNS,
        lambda item: [getattr(item, name) for name in STOCK_VALUE_COLUMNS],
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


@_routes("/turnover", TurnoverReport, "Turnover and days of supply per item and site")
async def get_turnover(
    request: Request,
    context: Context,
    principal: Viewer,
    since: Since = None,
    until: Until = None,
    method: MethodParam = "moving_average",
    site: SiteParam = None,
    sku: Sku = None,
    category: Category = None,
) -> Any:
    """Per site and item over ``since``..``until`` (default the last 30 days): stock and
    value at both ends, received and shipped quantities, cost of goods shipped, turnover
    and days of supply."""
    scope = _scope(principal, site, sku, category)
    start, end = _period(since, until, DEFAULT_PERIOD, MAX_PERIOD)
    async with context.store.read("reporting turnover") as conn:
        rows = await turnover(conn, start, end, method, scope)
    items = [
        TurnoverItem(
            site=row.site,
            sku=row.sku,
            name=row.name,
            opening_quantity=row.opening_quantity,
            opening_value=money(row.opening_value),
            closing_quantity=row.closing_quantity,
            closing_value=money(row.closing_value),
            received_quantity=row.received_quantity,
            shipped_quantity=row.shipped_quantity,
            cost_of_goods_shipped=money(row.cost_of_goods_shipped),
            turnover=row.turnover,
            days_of_supply=row.days_of_supply,
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
    return _answer(
        request,
        report,
        "turnover",
        TURNOVER_COLUMNS,
        lambda item: [getattr(item, name) for name in TURNOVER_COLUMNS],
    )


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


@_routes("/aging", AgingReport, "Stock on hand by how long it has been on hand")
async def get_aging(
    request: Request,
    context: Context,
    principal: Viewer,
    as_of: AsOf = None,
    buckets: Annotated[
        str | None,
        Query(max_length=128, description="Upper limits in days, e.g. 30,60,90,180 (default)."),
    ] = None,
    site: SiteParam = None,
    sku: Sku = None,
    category: Category = None,
) -> Any:
    """Per site and item, the quantity and value on hand at ``as_of`` in age buckets (days
    since its FIFO layer was received)."""
    scope = _scope(principal, site, sku, category)
    limits = _age_limits(buckets)
    moment = bounded(as_of, "as_of") or datetime.now(UTC)
    async with context.store.read("reporting stock aging") as conn:
        rows = await aging(conn, moment, limits, scope)
    labels = bucket_labels(limits)
    items = [
        AgingItem(
            site=row.site,
            sku=row.sku,
            name=row.name,
            on_hand=row.on_hand,
            value=money(row.value),
            oldest_received=row.oldest_received,
            buckets=[
                AgeBucket(days=label, quantity=quantity, value=money(value))
                for label, quantity, value in row.buckets
            ],
        )
        for row in rows
    ]
    header = [
        "site",
        "sku",
        "name",
        "on_hand",
        "value",
        "oldest_received",
        *(f"{kind}_{label}" for label in labels for kind in ("quantity", "value")),
    ]

    def flatten(item: AgingItem) -> list[Any]:
        cells: list[Any] = [
            item.site,
            item.sku,
            item.name,
            item.on_hand,
            item.value,
            item.oldest_received,
        ]
        for bucket in item.buckets:
            cells += [bucket.quantity, bucket.value]
        return cells

    return _answer(
        request, AgingReport(as_of=moment, buckets=labels, items=items), "aging", header, flatten
    )


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


@_routes("/abc-xyz", AbcXyzReport, "ABC by value shipped, XYZ by demand variability")
async def get_abc_xyz(
    request: Request,
    context: Context,
    principal: Viewer,
    since: Since = None,
    until: Until = None,
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
    scope = _scope(principal, site, None, category)
    start, end = _period(since, until, timedelta(days=90), MAX_PERIOD)
    async with context.store.read("reporting ABC/XYZ") as conn:
        rows = await abc_xyz(
            conn,
            start,
            end,
            method,
            scope,
            a_share=a_share,
            b_share=b_share,
            per=per,
            x_cv=x_cv,
            y_cv=y_cv,
        )
    items = [
        AbcXyzItem(
            sku=row.sku,
            name=row.name,
            shipped_quantity=row.shipped_quantity,
            shipped_value=money(row.shipped_value),
            share=row.share,
            cumulative_share=row.cumulative_share,
            abc=row.abc,
            mean_demand=row.mean_demand,
            cv=row.cv,
            xyz=row.xyz,
            abc_xyz=row.abc + row.xyz,
        )
        for row in rows
    ]
    report = AbcXyzReport(
        since=start,
        until=end,
        method=method,
        per=per,
        periods=rows[0].periods if rows else 0,
        a_share=a_share,
        b_share=b_share,
        x_cv=x_cv,
        y_cv=y_cv,
        items=items,
    )
    return _answer(
        request,
        report,
        "abc-xyz",
        ABC_XYZ_COLUMNS,
        lambda item: [getattr(item, name) for name in ABC_XYZ_COLUMNS],
    )


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


@_routes("/losses", LossReport, "Shrinkage by reason, site and item, with its value")
async def get_losses(
    request: Request,
    context: Context,
    principal: Viewer,
    since: Since = None,
    until: Until = None,
    method: MethodParam = "moving_average",
    group_by: Annotated[
        str | None,
        Query(max_length=32, description="Any of reason,site,sku (default reason,site)."),
    ] = None,
    site: SiteParam = None,
    sku: Sku = None,
    category: Category = None,
) -> Any:
    """Stock that left a site other than by shipment (losses with their reason, counts and
    shelves that found less, negative corrections) over ``since``..``until`` (default the
    last 30 days), quantity and value, most valuable first."""
    groups = _loss_groups(group_by)
    scope = _scope(principal, site, sku, category)
    start, end = _period(since, until, DEFAULT_PERIOD, MAX_PERIOD)
    async with context.store.read("reporting losses") as conn:
        rows = await losses(conn, start, end, method, groups, scope)
    items = [
        LossItem(
            reason=row.reason,
            site=row.site,
            sku=row.sku,
            quantity=row.quantity,
            value=money(row.value),
        )
        for row in rows
    ]
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
    return _answer(
        request,
        report,
        "losses",
        header,
        lambda item: [getattr(item, name) for name in header],
    )


# --- door throughput ------------------------------------------------------------------------


class KindFigures(BaseModel):
    rows: int
    quantity: int


class DoorHourItem(BaseModel):
    bucket: datetime
    """UTC start of the hour."""
    read_point: str
    rows: int
    """Ledger rows the read point's events made in the hour."""
    quantity: int
    kinds: dict[str, KindFigures]
    unresolved: int
    """Passes without a direction in the hour."""
    resolved_later: int
    """Of those, resolved by an operator since."""
    pass_quality: float | None
    """rows / (rows + unresolved); null when the hour had neither."""


class DoorThroughputReport(BaseModel):
    since: datetime
    until: datetime
    items: list[DoorHourItem]


DOOR_COLUMNS: Final = (
    "bucket",
    "read_point",
    "rows",
    "quantity",
    *(f"{kind}_{figure}" for kind in LEDGER_KINDS for figure in ("rows", "quantity")),
    "unresolved",
    "resolved_later",
    "pass_quality",
)


def _door_cells(item: DoorHourItem) -> list[Any]:
    cells: list[Any] = [item.bucket, item.read_point, item.rows, item.quantity]
    for kind in LEDGER_KINDS:
        figures = item.kinds.get(kind)
        cells += [figures.rows, figures.quantity] if figures else [0, 0]
    return [*cells, item.unresolved, item.resolved_later, item.pass_quality]


@_routes("/door-throughput", DoorThroughputReport, "Door throughput and pass quality per hour")
async def get_door_throughput(
    request: Request,
    context: Context,
    principal: Viewer,
    since: Since = None,
    until: Until = None,
    read_point: ReadPoint = None,
    site: SiteParam = None,
) -> Any:
    """Per read point and UTC hour over ``since``..``until`` (default the last day, at most
    92 days): ledger rows and quantity by kind, unresolved passes, and the pass quality."""
    if site is not None:
        check_site(principal, site)
    start, end = _period(since, until, DEFAULT_DOOR_WINDOW, MAX_DOOR_WINDOW)
    async with context.store.read("reporting door throughput") as conn:
        hours = await door_throughput(conn, start, end, read_point, site, principal.sites)
    items = [
        DoorHourItem(
            bucket=hour.bucket,
            read_point=hour.read_point,
            rows=hour.rows,
            quantity=sum(figures[1] for figures in hour.kinds.values()),
            kinds={
                kind: KindFigures(rows=figures[0], quantity=figures[1])
                for kind, figures in sorted(hour.kinds.items())
            },
            unresolved=hour.unresolved,
            resolved_later=hour.resolved_later,
            pass_quality=hour.pass_quality,
        )
        for hour in hours
    ]
    return _answer(
        request,
        DoorThroughputReport(since=start, until=end, items=items),
        "door-throughput",
        DOOR_COLUMNS,
        _door_cells,
    )


# --- count accuracy -------------------------------------------------------------------------


class CountItem(BaseModel):
    event_id: str
    counted_at: datetime
    location: str
    read_point: str
    lines: int
    """Items counted (and items the books held there that the count did not list)."""
    lines_within: int
    expected: int
    counted: int
    absolute_difference: int
    accuracy: float
    """lines_within / lines."""


class CountAccuracyReport(BaseModel):
    since: datetime
    until: datetime
    tolerance: int
    tolerance_pct: float
    counts: int
    """Counts in the window (``items`` lists the newest ``limit``)."""
    counts_within: int
    """Counts with every line within tolerance."""
    lines: int
    lines_within: int
    line_accuracy: float | None
    """lines_within / lines over the window (null: no counts)."""
    items: list[CountItem]


COUNT_COLUMNS: Final = tuple(CountItem.model_fields)


@_routes("/count-accuracy", CountAccuracyReport, "Cycle counts against the books")
async def get_count_accuracy(
    request: Request,
    context: Context,
    principal: Viewer,
    since: Since = None,
    until: Until = None,
    site: SiteParam = None,
    location: Location = None,
    tolerance: Annotated[
        int, Query(ge=0, le=1_000_000, description="Units a line may be off and still count.")
    ] = 0,
    tolerance_pct: Annotated[
        float, Query(ge=0, le=100, description="Or this percentage of the expected quantity.")
    ] = 0.0,
    limit: Limit = DEFAULT_PAGE,
) -> Any:
    """Cycle counts over ``since``..``until`` (default the last 30 days), newest first:
    expected against counted per count, and the share of lines within tolerance."""
    if site is not None:
        check_site(principal, site)
    check_locations(principal, location)
    start, end = _period(since, until, DEFAULT_PERIOD, MAX_PERIOD)
    where = CountFilter(
        since=start,
        until=end,
        site=site,
        location=location,
        sites=principal.sites,
        tolerance=tolerance,
        tolerance_pct=tolerance_pct,
    )
    async with context.store.read("reporting count accuracy") as conn:
        rows, summary = await count_accuracy(conn, where, limit)
    items = [
        CountItem(
            event_id=row.event_id,
            counted_at=row.counted_at,
            location=row.location,
            read_point=row.read_point,
            lines=row.lines,
            lines_within=row.lines_within,
            expected=row.expected,
            counted=row.counted,
            absolute_difference=row.absolute_difference,
            accuracy=round(row.lines_within / row.lines, 6),
        )
        for row in rows
    ]
    report = CountAccuracyReport(
        since=start,
        until=end,
        tolerance=tolerance,
        tolerance_pct=tolerance_pct,
        counts=summary.counts,
        counts_within=summary.counts_within,
        lines=summary.lines,
        lines_within=summary.lines_within,
        line_accuracy=round(summary.lines_within / summary.lines, 6) if summary.lines else None,
        items=items,
    )
    return _answer(
        request,
        report,
        "count-accuracy",
        COUNT_COLUMNS,
        lambda item: [getattr(item, name) for name in COUNT_COLUMNS],
    )
