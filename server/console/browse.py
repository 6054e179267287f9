"""Console pages over lists the API already serves: Movements, Alerts, Gateways.

Each page asks its ``/api/v1`` route in-process as the signed-in person (``web.api``), so
the route's validation, role and site rules are the page's. A refusal (a bad filter, a
site outside the key's) is shown on the page with the route's reason.

- **Movements** (``/movements``): the ledger newest first with the API's filters (time,
  item, location, read point, kind, actor, EPC), older pages by cursor, a live tail while
  on the first page (the script adds rows that match the filter), and ``/movements.csv``:
  every row of the current filter (up to ``MAX_EXPORT_ROWS``) as CSV.
- **Alerts** (``/alerts``): open, unacknowledged, acknowledged, closed or all; acknowledge
  (operator); each alert links to what raised it.
- **Gateways** (``/gateways``): the fleet view: online or not, last seen, versions, outbox,
  disk, temperature and throttling, readers with their antennas and read rates.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response, StreamingResponse

from server.console.internal import ApiCallError
from server.console.sessions import Session
from server.console.web import (
    api,
    back_to,
    base_values,
    given,
    page,
    secure,
    session_of,
    to_sign_in,
    writer,
)
from server.store.schema.core import LEDGER_KINDS

router = APIRouter(include_in_schema=False)

MOVEMENT_FILTERS: Final = (
    "since",
    "until",
    "item",
    "location",
    "read_point",
    "kind",
    "actor",
    "epc",
)
PAGE_ROWS: Final = 100
"""Movements per page."""
EXPORT_PAGE: Final = 1000
"""Rows asked of the API per step of a CSV export (its largest page)."""
MAX_EXPORT_ROWS: Final = 100_000
"""Rows one CSV export holds at most (the file says so in its last line when cut)."""
CSV_COLUMNS: Final = (
    "id",
    "event_time",
    "recorded_at",
    "kind",
    "sku",
    "gtin",
    "epc",
    "from_location",
    "to_location",
    "quantity",
    "reason",
    "actor",
    "read_point",
    "event_id",
)
ALERT_STATES: Final = ("open", "unacknowledged", "acknowledged", "closed", "all")
MAX_ALERT_ID: Final = 2**63 - 1


def movement_params(filters: dict[str, str]) -> list[tuple[str, str]]:
    """The API's query for the page's filters: ``item`` is a GTIN when all digits, else a
    SKU; times from a ``datetime-local`` box are UTC (the page says so)."""
    params: list[tuple[str, str]] = []
    for name, value in filters.items():
        if name == "item":
            params.append(("gtin" if value.isdigit() else "sku", value))
        else:
            params.append((name, value))
    return params


@router.get("/movements")
async def movements_page(request: Request) -> Response:
    session = session_of(request)
    if session is None:
        return to_sign_in()
    filters = given(request.query_params, MOVEMENT_FILTERS)
    cursor = request.query_params.get("cursor", "")[:200]
    params = [*movement_params(filters), ("limit", str(PAGE_ROWS))]
    if cursor:
        params.append(("cursor", cursor))
    answer = await api(request, session, "/api/v1/movements", params)
    data = answer.json() if answer.ok else {"items": [], "next_cursor": None}
    live_filter = {name: value for name, value in filters.items() if name not in ("since",)}
    return page(
        "movements.html",
        200 if answer.ok else 400,
        **base_values(session, "movements", request),
        filters=filters,
        kinds=LEDGER_KINDS,
        rows=data["items"],
        next_cursor=data.get("next_cursor"),
        error=None if answer.ok else answer.detail(),
        live=not cursor and "until" not in filters,
        live_filter=live_filter,
        query=request.url.query,
    )


@router.get("/movements.csv")
async def movements_csv(request: Request) -> Response:
    """Every row of the page's filter, newest first, as CSV (bounded)."""
    session = session_of(request)
    if session is None:
        return to_sign_in()
    params = movement_params(given(request.query_params, MOVEMENT_FILTERS))
    first = await api(request, session, "/api/v1/movements", [*params, ("limit", "1")])
    if not first.ok:
        response = Response(first.detail(), first.status, media_type="text/plain")
        secure(response.headers)
        return response
    response = StreamingResponse(
        _csv_rows(request, session, params),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="movements.csv"'},
    )
    secure(response.headers)
    return response


async def _csv_rows(
    request: Request, session: Session, params: list[tuple[str, str]]
) -> AsyncIterator[str]:
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\r\n")
    out.writerow(CSV_COLUMNS)
    cursor: str | None = None
    written = 0
    while True:
        step = [*params, ("limit", str(min(EXPORT_PAGE, MAX_EXPORT_ROWS - written)))]
        if cursor is not None:
            step.append(("cursor", cursor))
        try:
            answer = await api(request, session, "/api/v1/movements", step)
        except ApiCallError as err:
            out.writerow([f"# export stopped: {err}"])
            break
        if not answer.ok:
            out.writerow([f"# export stopped: {answer.detail()}"])
            break
        data = answer.json()
        for row in data["items"]:
            out.writerow("" if row.get(name) is None else row[name] for name in CSV_COLUMNS)
        written += len(data["items"])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        cursor = data.get("next_cursor")
        if cursor is None:
            return
        if written >= MAX_EXPORT_ROWS:
            out.writerow([f"# cut at {MAX_EXPORT_ROWS} rows; narrow the filter for the rest"])
            break
    yield buffer.getvalue()


# --- Alerts -------------------------------------------------------------------------------


def alert_link(alert: dict[str, Any]) -> tuple[str, str] | None:
    """Where the thing that raised an alert is shown in the console: (url, label)."""
    subject = str(alert.get("subject", ""))
    evidence = alert.get("evidence") or {}
    if subject.startswith("urn:epc:"):
        return f"/units/{subject}", "the unit"
    if isinstance(evidence, dict):
        epc = evidence.get("epc")
        if isinstance(epc, str) and epc.startswith("urn:epc:"):
            return f"/units/{epc}", "the unit"
        sku = evidence.get("sku")
        if isinstance(sku, str) and sku:
            return f"/items/{sku}", "the item"
        if evidence.get("read_point") or alert.get("kind") == "unresolved_passes":
            return "/", "the doors"
        if evidence.get("gateway"):
            return "/gateways", "the gateways"
    if str(alert.get("kind", "")).startswith("gateway"):
        return "/gateways", "the gateways"
    return None


@router.get("/alerts")
async def alerts_page(request: Request) -> Response:
    session = session_of(request)
    if session is None:
        return to_sign_in()
    state = request.query_params.get("state", "open")
    if state not in ALERT_STATES:
        state = "open"
    answer = await api(request, session, "/api/v1/alerts", {"state": state, "limit": "200"})
    found = answer.json()["items"] if answer.ok else []
    # The list route is not narrowed to the key's sites; the page is.
    mine = [alert for alert in found if session.principal.allows(alert.get("site"))]
    return page(
        "alerts.html",
        200 if answer.ok else 400,
        **base_values(session, "alerts", request),
        state=state,
        states=ALERT_STATES,
        alerts=[(alert, alert_link(alert)) for alert in mine],
        error=None if answer.ok else answer.detail(),
    )


@router.post("/alerts/{alert_id}/ack")
async def acknowledge_alert(
    request: Request, alert_id: Annotated[int, Path(ge=1, le=MAX_ALERT_ID)]
) -> Response:
    session, form = await writer(request)
    answer = await api(request, session, f"/api/v1/alerts/{alert_id}/ack", method="POST")
    notice = (
        f"Alert {alert_id} acknowledged." if answer.ok else f"Not acknowledged: {answer.detail()}"
    )
    state = form.get("state", "open")
    return back_to(f"/alerts?state={state if state in ALERT_STATES else 'open'}", notice)


# --- Gateways -----------------------------------------------------------------------------


@router.get("/gateways")
async def gateways_page(request: Request) -> Response:
    session = session_of(request)
    if session is None:
        return to_sign_in()
    answer = await api(request, session, "/api/v1/gateways")
    return page(
        "gateways.html",
        200 if answer.ok else 400,
        **base_values(session, "gateways", request),
        gateways=answer.json()["items"] if answer.ok else [],
        error=None if answer.ok else answer.detail(),
    )
