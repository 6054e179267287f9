"""Console pages of one thing: an item (``/items/{sku}``) and a unit (``/units/{epc}``),
and the Stock page's "as of" figures.

The item page shows the item's master data, its stock by location now, two charts drawn
on the server from the history API (closing stock per site per day; quantity in and out
per day) and its newest movements. The unit page is one EPC's whole life: status, where it
is, and every ledger row of it. Both ask ``/api/v1`` in-process as the signed-in person.

"As of" a past day reads ``/api/v1/history/stock`` (closing stock per site at the end of
that UTC day); the history keeps sites, not locations, so that is what it shows.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from server.api.params import EPC_PATTERN
from server.commands.masterdata import SKU_PATTERN
from server.console.charts import bar_chart, line_chart
from server.console.sessions import Session
from server.console.web import api, base_values, page, session_of, to_sign_in

router = APIRouter(include_in_schema=False)

CHART_DAYS: Final = 30
"""Days the item page's charts cover."""
ITEM_MOVEMENTS: Final = 50
UNIT_HISTORY: Final = 500
AS_OF_ITEMS: Final = 20
"""Items an "as of" search looks up at most (one history query each)."""


def _day(text: str) -> datetime:
    parsed = date.fromisoformat(text[:10])
    return datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC)


def _days(since: datetime, count: int) -> list[datetime]:
    return [since + timedelta(days=offset) for offset in range(count)]


async def item_charts(request: Request, session: Session, sku: str) -> dict[str, Any]:
    """The item's two charts over the last ``CHART_DAYS`` days (and what went wrong)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since = today - timedelta(days=CHART_DAYS - 1)
    days = _days(since, CHART_DAYS)
    window = {"since": since.isoformat(), "until": (today + timedelta(days=1)).isoformat()}
    stock = await api(request, session, "/api/v1/history/stock", {"sku": sku, **window})
    rates = await api(
        request,
        session,
        "/api/v1/history/movements",
        {"sku": sku, "bucket": "day", "group_by": "site", "limit": "10000", **window},
    )
    values: dict[str, Any] = {"errors": []}
    if stock.ok:
        series: dict[str, list[float]] = {}
        index = {day: i for i, day in enumerate(days)}
        for row in stock.json()["items"]:
            at = index.get(_day(row["day"]))
            if at is not None:
                series.setdefault(row["site"], [0.0] * len(days))[at] = float(row["closing"])
        values["stock_chart"] = line_chart(f"Closing stock of {sku} per site", days, series)
    else:
        values["errors"].append(f"stock history: {stock.detail()}")
    if rates.ok:
        came = [0.0] * len(days)
        went = [0.0] * len(days)
        index = {day: i for i, day in enumerate(days)}
        for row in rates.json()["items"]:
            at = index.get(_day(row["bucket"]))
            if at is None:
                continue
            # Per site, so a move inside a site counts in and out of it (net zero) and a
            # movement between sites counts for both.
            (came if row["side"] == "in" else went)[at] += float(row["quantity"])
        values["rate_chart"] = bar_chart(f"Quantity of {sku} in and out per day", days, came, went)
    else:
        values["errors"].append(f"movement history: {rates.detail()}")
    return values


@router.get("/items/{sku}")
async def item_page(
    request: Request, sku: Annotated[str, Path(pattern=SKU_PATTERN, max_length=64)]
) -> Response:
    session = session_of(request)
    if session is None:
        return to_sign_in()
    item = await api(request, session, f"/api/v1/items/{sku}")
    if not item.ok:
        return page(
            "item.html",
            item.status,
            **base_values(session, "stock", request),
            item=None,
            error=item.detail(),
        )
    stock = await api(request, session, "/api/v1/stock", {"sku": sku, "limit": "1000"})
    moves = await api(
        request, session, "/api/v1/movements", {"sku": sku, "limit": str(ITEM_MOVEMENTS)}
    )
    charts = await item_charts(request, session, sku)
    return page(
        "item.html",
        **base_values(session, "stock", request),
        item=item.json(),
        stock=stock.json()["items"] if stock.ok else [],
        movements=moves.json()["items"] if moves.ok else [],
        chart_days=CHART_DAYS,
        error="; ".join(charts.pop("errors")) or None,
        **charts,
    )


@router.get("/units/{epc:path}")
async def unit_page(request: Request, epc: str) -> Response:
    session = session_of(request)
    if session is None:
        return to_sign_in()
    if len(epc) > 200 or not re.fullmatch(EPC_PATTERN, epc):
        answer_error = f"{epc[:60]!r} is not an EPC URN (urn:epc:...)"
        return page(
            "unit.html",
            400,
            **base_values(session, "stock", request),
            unit=None,
            error=answer_error,
        )
    answer = await api(
        request, session, f"/api/v1/units/{epc}", {"history_limit": str(UNIT_HISTORY)}
    )
    return page(
        "unit.html",
        answer.status if not answer.ok else 200,
        **base_values(session, "stock", request),
        unit=answer.json() if answer.ok else None,
        error=None if answer.ok else answer.detail(),
    )


def parse_day(text: str) -> date | None:
    """A ``YYYY-MM-DD`` from the page's date box; None for an empty or bad one."""
    try:
        return date.fromisoformat(text.strip()[:10]) if text.strip() else None
    except ValueError:
        return None


async def stock_as_of(
    request: Request, session: Session, skus: list[str], day: date
) -> tuple[list[dict[str, Any]], list[str]]:
    """Closing stock per site at the end of ``day`` (UTC) of the first ``AS_OF_ITEMS``
    of ``skus``: rows ``{sku, site, closing}`` and the refusals met."""
    since = datetime(day.year, day.month, day.day, tzinfo=UTC)
    window = {"since": since.isoformat(), "until": (since + timedelta(days=1)).isoformat()}
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    for sku in skus[:AS_OF_ITEMS]:
        answer = await api(request, session, "/api/v1/history/stock", {"sku": sku, **window})
        if not answer.ok:
            errors.append(f"{sku}: {answer.detail()}")
            continue
        rows.extend(
            {"sku": sku, "site": row["site"], "closing": row["closing"]}
            for row in answer.json()["items"]
        )
    return rows, errors
