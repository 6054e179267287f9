"""``GET /api/v1/history/movements`` (JSON or CSV) and ``GET /api/v1/history/stock``.

Windows: ``since`` (inclusive, rounded down to its bucket) and ``until`` (exclusive; a
bucket is in when its start is before it). Without them: the last 7 days of hours, the
last 90 days of days (movements), the last 30 days (stock). At most ``MAX_HOURS`` of hour
buckets and ``MAX_DAYS`` of day buckets per request. Times without an offset are UTC;
buckets are UTC hours and days.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from server.api.auth import Context, Viewer, check_locations, check_site
from server.api.params import Gtin, Location, Sku, as_utc, gtin14
from server.api.uploads import csv_download
from server.history.queries import (
    GROUP_BY,
    GroupBy,
    MovementHistoryQuery,
    item_of,
    movement_history,
    stock_history,
    stream_movement_history,
)
from server.store.database import Store
from server.store.schema.core import LEDGER_KINDS
from server.store.schema.history import Period, Side

router = APIRouter(prefix="/api/v1/history", tags=["history"])

MAX_HOURS: Final = timedelta(days=92)
MAX_DAYS: Final = timedelta(days=3660)
DEFAULT_WINDOW: Final[dict[str, timedelta]] = {
    "hour": timedelta(days=7),
    "day": timedelta(days=90),
    "stock": timedelta(days=30),
}
MAX_HISTORY_PAGE: Final = 10_000
DEFAULT_HISTORY_PAGE: Final = 1000
MAX_CURSOR: Final = 2048
"""A keyset cursor holds the last bucket's keys (locations and read points included)."""
CSV_MEDIA: Final = "text/csv"

Kind = Literal["receipt", "shipment", "transfer", "count_adjustment", "loss"]
assert set(LEDGER_KINDS) == set(Kind.__args__)  # type: ignore[attr-defined]


class MovementBucket(BaseModel):
    bucket: datetime
    """UTC start of the hour or day."""
    side: Side
    """``in``: into the location; ``out``: out of it."""
    site: str | None = None
    location: str | None = None
    read_point: str | None = None
    sku: str | None = None
    kind: str | None = None
    count: int
    """Ledger rows."""
    quantity: int


class MovementHistoryPage(BaseModel):
    bucket: Period
    group_by: list[GroupBy]
    since: datetime
    until: datetime
    items: list[MovementBucket]
    next_cursor: str | None


class StockDayView(BaseModel):
    day: datetime
    site: str
    sku: str
    quantity_in: int
    """Received into the site that day (from outside it)."""
    quantity_out: int
    """Gone out of the site that day."""
    closing: int
    """On hand at the site at the end of the day (UTC)."""


class StockHistoryPage(BaseModel):
    since: datetime
    until: datetime
    items: list[StockDayView]


EARLIEST: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9000, 1, 1, tzinfo=UTC)
"""Times a history or report query may name (windows are computed around them)."""


def bounded(value: datetime | None, name: str) -> datetime | None:
    """``value`` in UTC, refused (400) outside ``EARLIEST``..``LATEST``."""
    moment = as_utc(value, name)
    if moment is not None and not EARLIEST <= moment < LATEST:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"{name} must lie between {EARLIEST.year} and {LATEST.year}",
        )
    return moment


def _window(
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
            status.HTTP_400_BAD_REQUEST,
            f"since..until spans more than {widest.days} days for these buckets; narrow it",
        )
    return start, end


def _group_by(raw: str | None) -> tuple[GroupBy, ...]:
    if raw is None or raw == "":
        return ()
    names = [name.strip() for name in raw.split(",")]
    unknown = [name for name in names if name not in GROUP_BY]
    if unknown:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"group_by: unknown {unknown[0]!r}; choose from {', '.join(GROUP_BY)}",
        )
    if len(set(names)) != len(names):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "group_by names a column twice")
    return tuple(name for name in GROUP_BY if name in names)


def _position(cursor: str | None, query: MovementHistoryQuery) -> tuple[list[Any] | None, int]:
    """The keys a page starts after (``k:`` cursors), or the number of buckets it skips
    (``o:`` cursors, as pages were once given out)."""
    if cursor is None:
        return None, 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
        prefix, _, rest = text.partition(":")
        if prefix == "o":
            offset = int(rest)
            if offset < 0:
                raise ValueError(text)
            return None, offset
        if prefix != "k":
            raise ValueError(text)
        keys = json.loads(rest)
        if (
            not isinstance(keys, list)
            or len(keys) != len(query.columns) - 2
            or not all(isinstance(key, str) for key in keys)
        ):
            raise ValueError(text)
        bucket = datetime.fromisoformat(keys[0])
        if bucket.tzinfo is None:
            raise ValueError(text)
    except (ValueError, UnicodeError) as err:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "bad cursor") from err
    return [bucket, *keys[1:]], 0


def _cursor(keys: list[Any]) -> str:
    text = json.dumps([keys[0].isoformat(), *keys[1:]], separators=(",", ":"))
    return base64.urlsafe_b64encode(f"k:{text}".encode("ascii")).decode("ascii")


def _json(model: type[BaseModel], page: dict[str, Any]) -> Response:
    """``page`` validated as ``model`` and written as its JSON in one pass: the same body
    FastAPI writes for a returned model, without building a model per row and then
    validating and encoding the page again (most of a 1,000-row page's time)."""
    return Response(model.model_validate(page).model_dump_json(), media_type="application/json")


def wants_csv(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip() == CSV_MEDIA for part in accept.split(","))


async def _csv_lines(store: Store, query: MovementHistoryQuery) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(query.columns)
    yield buffer.getvalue()
    async with store.read("streaming movement history") as conn:
        async for chunk in stream_movement_history(conn, query):
            buffer.seek(0)
            buffer.truncate()
            for row in chunk:
                values = [row[name] for name in query.columns]
                values[0] = values[0].isoformat()
                writer.writerow("" if value is None else value for value in values)
            yield buffer.getvalue()


HistoryBucket = Annotated[Period, Query(description="Bucket size: hour or day (UTC).")]
GroupByParam = Annotated[
    str | None,
    Query(
        max_length=64,
        description=f"Comma-separated, any of: {', '.join(GROUP_BY)} (side is always kept).",
    ),
]
Since = Annotated[datetime | None, Query(description="Inclusive; no offset means UTC.")]
Until = Annotated[datetime | None, Query(description="Exclusive; no offset means UTC.")]
ReadPoint = Annotated[str | None, Query(min_length=1, max_length=256, pattern=r"^\S+$")]
SiteParam = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


async def _movement_query(
    principal: Any,
    bucket: Period,
    group_by: str | None,
    since: datetime | None,
    until: datetime | None,
    gtin: str | None,
    sku: str | None,
    location: str | None,
    read_point: str | None,
    kind: Kind | None,
    side: Side | None,
) -> MovementHistoryQuery:
    check_locations(principal, location)
    widest = MAX_HOURS if bucket == "hour" else MAX_DAYS
    start, end = _window(since, until, DEFAULT_WINDOW[bucket], widest)
    return MovementHistoryQuery(
        period=bucket,
        since=start,
        until=end,
        group_by=_group_by(group_by),
        gtin=gtin14(gtin),
        sku=sku,
        location=location,
        read_point=read_point,
        kind=kind,
        side=side,
        sites=principal.sites,
    )


@router.get(
    "/movements",
    response_model=MovementHistoryPage,
    responses={200: {"content": {CSV_MEDIA: {}}}},
)
async def get_movement_history(
    request: Request,
    context: Context,
    principal: Viewer,
    bucket: HistoryBucket = "hour",
    group_by: GroupByParam = None,
    since: Since = None,
    until: Until = None,
    gtin: Gtin = None,
    sku: Sku = None,
    location: Location = None,
    read_point: ReadPoint = None,
    kind: Kind | None = None,
    side: Side | None = None,
    cursor: Annotated[str | None, Query(min_length=1, max_length=MAX_CURSOR)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY_PAGE)] = DEFAULT_HISTORY_PAGE,
) -> Any:
    """Ledger rows and quantities per bucket, per side and per the ``group_by`` columns,
    oldest first. With ``Accept: text/csv`` the whole window streams as CSV."""
    query = await _movement_query(
        principal, bucket, group_by, since, until, gtin, sku, location, read_point, kind, side
    )
    if wants_csv(request):
        return csv_download(_csv_lines(context.store, query), "movement-history.csv")
    after, offset = _position(cursor, query)
    async with context.store.read("reading movement history") as conn:
        rows, more = await movement_history(conn, query, after, limit, offset)
    page = {
        "bucket": bucket,
        "group_by": list(query.group_by),
        "since": query.since,
        "until": query.until,
        "items": rows,
        "next_cursor": _cursor(more) if more is not None else None,
    }
    return _json(MovementHistoryPage, page)


@router.get(
    "/movements.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {CSV_MEDIA: {}}, "description": "Every bucket of the window."}},
)
async def get_movement_history_csv(
    context: Context,
    principal: Viewer,
    bucket: HistoryBucket = "hour",
    group_by: GroupByParam = None,
    since: Since = None,
    until: Until = None,
    gtin: Gtin = None,
    sku: Sku = None,
    location: Location = None,
    read_point: ReadPoint = None,
    kind: Kind | None = None,
    side: Side | None = None,
) -> StreamingResponse:
    """The same buckets as ``/history/movements``, the whole window as streamed CSV."""
    query = await _movement_query(
        principal, bucket, group_by, since, until, gtin, sku, location, read_point, kind, side
    )
    return csv_download(_csv_lines(context.store, query), "movement-history.csv")


@router.get("/stock", response_model=StockHistoryPage)
async def get_stock_history(
    context: Context,
    principal: Viewer,
    sku: Sku = None,
    gtin: Gtin = None,
    site: SiteParam = None,
    since: Since = None,
    until: Until = None,
) -> Response:
    """Closing stock of one item (``sku`` or ``gtin``) per site and UTC day."""
    if (sku is None) == (gtin is None):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "give exactly one of sku and gtin")
    if site is not None:
        check_site(principal, site)
    start, end = _window(since, until, DEFAULT_WINDOW["stock"], MAX_DAYS)
    async with context.store.read("reading stock history") as conn:
        item = await item_of(conn, sku, gtin14(gtin))
        if item is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no item {sku or gtin}")
        days = await stock_history(conn, item[0], item[1], start, end, site, principal.sites)
    page = {
        "since": start,
        "until": end,
        "items": [
            {
                "day": day.day,
                "site": day.site,
                "sku": day.sku,
                "quantity_in": day.quantity_in,
                "quantity_out": day.quantity_out,
                "closing": day.closing,
            }
            for day in days
        ],
    }
    return _json(StockHistoryPage, page)
