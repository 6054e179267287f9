"""The operations console's pages: sign-in, Doors (``/``), Stock, and their live stream.

Server-rendered (Jinja2 templates shipped in this package) with one small script of our
own (``static/console.js``) that listens to ``/console/stream`` and adds each new pass to
its door. No asset comes from elsewhere, so the console works on a site network without
Internet access. The pages call the same server functions as ``/api/v1`` (listing and
resolving unresolved passes, stock), never the API over HTTP.

The API's bearer keys stay the only credentials: sign-in takes a key and opens a session
(``server.console.sessions``). A viewer sees the pages without any write button, and a
write posted anyway is refused (403) like the API would; every form post must carry the
session's CSRF token.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime
from typing import Annotated, Any, Final, get_args

from fastapi import APIRouter, FastAPI, HTTPException, Path, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from server.api.read_points import get_catalog
from server.api.stream import _events, get_feed
from server.api.unresolved_passes import _resolve
from server.commands.unresolved import (
    MAX_ROW_ID,
    BulkResolveRequest,
    PassQuery,
    ResolveRequest,
    UnresolvedPassView,
    list_passes,
)
from server.console import browse, reports, things
from server.console.door_quality import LOW_CONFIDENCE, pass_quality
from server.console.search import SearchError, search_stock
from server.console.sessions import COOKIE, SIGN_IN_COOKIE, Session, Sessions, new_token, same_token
from server.console.things import AS_OF_ITEMS, parse_day, stock_as_of
from server.console.web import (
    STATIC_PATH,
    base_values,
    context_of,
    page,
    read_form,
    secure,
    session_of,
    sessions_of,
    to_sign_in,
    writer,
)
from server.errors import Refused
from server.queries.movements import MovementQuery, movements
from server.queries.views import MovementView
from server.store.schema.core import MAX_READ_POINT
from server.store.schema.passes import Resolution
from server.store.sites import site_of

RECENT_MOVEMENTS: Final = 200
"""Ledger rows read to fill the doors' recent passes when a page opens."""
RECENT_PER_DOOR: Final = 20
"""Passes listed per door (the script keeps the same number)."""
OPEN_PASSES: Final = 200
"""Unresolved passes listed on the Doors page."""
DIRECTIONS: Final = get_args(Resolution)

router = APIRouter(include_in_schema=False)


def install(app: FastAPI) -> None:
    """Add the console's pages and static files to ``app``."""
    app.state.console_sessions = Sessions()
    app.mount(STATIC_PATH, StaticFiles(packages=[("server.console", "static")]), name="console")
    app.include_router(router)
    for pages in (browse.router, things.router, reports.router):
        app.include_router(pages)


def _direction(form: dict[str, str]) -> str:
    direction = form.get("direction", "")
    if direction not in DIRECTIONS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"direction must be one of {', '.join(DIRECTIONS)}; got {direction[:20]!r}",
        )
    return direction


# --- sign-in ------------------------------------------------------------------------------


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    if session_of(request) is not None:
        return RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    return _sign_in_form()


def _sign_in_form(error: str | None = None, status_code: int = 200) -> HTMLResponse:
    token = new_token()
    response = page("sign_in.html", status_code, csrf=token, error=error, principal=None)
    response.set_cookie(
        SIGN_IN_COOKIE, token, max_age=600, path="/sign-in", httponly=True, samesite="strict"
    )
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await read_form(request)
    if not same_token(form.get("csrf"), request.cookies.get(SIGN_IN_COOKIE, "")):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the form's CSRF token is missing or stale")
    keys = context_of(request).keys
    principal = keys.find(form.get("key", ""))
    if principal is None:
        # Counted like an unknown bearer key: the guard stops the address after too many.
        keys.failures.failed(request.client.host if request.client else "unknown")
        return _sign_in_form("That key is not known.", status.HTTP_401_UNAUTHORIZED)
    token, _ = sessions_of(request).start(principal)
    response = RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    response.set_cookie(COOKIE, token, path="/", httponly=True, samesite="strict")
    response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session = session_of(request)
    if session is not None:
        form = await read_form(request)
        if not same_token(form.get("csrf"), session.csrf):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "the form's CSRF token is missing or stale"
            )
        sessions_of(request).end(request.cookies.get(COOKIE))
    response = to_sign_in()
    response.delete_cookie(COOKIE, path="/")
    return response


# --- Doors --------------------------------------------------------------------------------


def _today() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _groups(views: list[UnresolvedPassView]) -> list[str]:
    return sorted({p.group for p in views if p.group is not None})


@router.get("/")
async def doors_page(request: Request) -> Response:
    """Each read point: its recent passes (live), today's pass quality, and its unresolved
    passes to resolve (refreshed live)."""
    session = session_of(request)
    if session is None:
        return to_sign_in()
    principal = session.principal
    table = await get_catalog(request).table()
    doors = sorted(
        rp for rp, settings in table.items() if principal.allows(settings.site or site_of(rp))
    )
    async with context_of(request).store.read("console: doors") as conn:
        recent, _ = await movements(
            conn, MovementQuery(limit=RECENT_MOVEMENTS, sites=principal.sites)
        )
        passes, more = await list_passes(
            conn, PassQuery(state="open", limit=OPEN_PASSES, sites=principal.sites)
        )
        open_by_door: dict[str, list[UnresolvedPassView]] = defaultdict(list)
        for view in passes:
            open_by_door[view.read_point].append(view)
        # A door with open passes is shown even if it is no longer configured.
        shown = sorted(set(doors) | set(open_by_door))
        quality = await pass_quality(conn, shown, _today())
    by_door: dict[str, list[MovementView]] = defaultdict(list)
    for row in recent:
        if row.read_point is not None and len(by_door[row.read_point]) < RECENT_PER_DOOR:
            by_door[row.read_point].append(row)
    return page(
        "doors.html",
        **base_values(session, "doors", request),
        doors=shown,
        recent=by_door,
        open_passes=open_by_door,
        groups={door: _groups(views) for door, views in open_by_door.items()},
        quality=quality,
        low_confidence=LOW_CONFIDENCE,
        more=more,
        directions=DIRECTIONS,
        per_door=RECENT_PER_DOOR,
    )


@router.get("/doors/queue")
async def door_queue(request: Request) -> Response:
    """One door's pass quality and unresolved passes, as the HTML the Doors page puts in
    place when the stream says they changed."""
    session = session_of(request)
    if session is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in to the console first")
    door = request.query_params.get("read_point", "")
    if not 0 < len(door) <= MAX_READ_POINT or any(c.isspace() for c in door):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"read_point must be a read point id of at most {MAX_READ_POINT} characters",
        )
    table = await get_catalog(request).table()
    settings = table.get(door)
    if not session.principal.allows(settings.site if settings and settings.site else site_of(door)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"read point {door!r} is outside your sites")
    async with context_of(request).store.read("console: door queue") as conn:
        passes, more = await list_passes(
            conn,
            PassQuery(
                state="open", read_point=door, limit=OPEN_PASSES, sites=session.principal.sites
            ),
        )
        quality = await pass_quality(conn, [door], _today())
    return page(
        "door_queue.html",
        **base_values(session, "doors", request),
        door=door,
        open_passes={door: passes},
        groups={door: _groups(passes)},
        quality=quality,
        low_confidence=LOW_CONFIDENCE,
        more=more,
        directions=DIRECTIONS,
    )


@router.post("/doors/passes/{pass_id}/resolve")
async def resolve_pass(
    request: Request, pass_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
) -> Response:
    session, form = await writer(request)
    return await _resolve_from_console(
        request, session, pass_id, ResolveRequest.model_validate({"direction": _direction(form)})
    )


@router.post("/doors/groups/resolve")
async def resolve_group(request: Request) -> Response:
    session, form = await writer(request)
    try:
        bulk = BulkResolveRequest.model_validate(
            {
                "direction": _direction(form),
                "group": form.get("group"),
                "read_point": form.get("read_point") or None,
            }
        )
    except ValidationError as err:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid group resolve: {err}"
        ) from err
    return await _resolve_from_console(request, session, bulk, bulk)


async def _resolve_from_console(
    request: Request,
    session: Session,
    selection: int | BulkResolveRequest,
    how: ResolveRequest,
) -> Response:
    try:
        result = await _resolve(
            context_of(request), get_catalog(request), session.principal, selection, how
        )
    except Refused as err:
        # Someone else resolved it first, or the door is gone: say so on the page.
        notice = f"Not resolved: {err.reason}"
    else:
        notice = f"Resolved {len(result.items)} pass(es) as {how.direction}."
    return RedirectResponse(
        request.url_for("doors_page").include_query_params(notice=notice),
        status.HTTP_303_SEE_OTHER,
    )


@router.get("/console/stream")
async def console_stream(request: Request) -> Response:
    """``/api/v1/stream``'s movements and alert changes for the signed-in session
    (EventSource sends no bearer header, only the cookie)."""
    session = session_of(request)
    if session is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in to the console first")
    feed = get_feed(request)
    if feed.full() or feed.full(session.principal.name):
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, "too many streams are open", {"Retry-After": "10"}
        )
    return StreamingResponse(
        _events(feed, frozenset({"movements", "alerts"}), session.principal),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# --- Stock --------------------------------------------------------------------------------


@router.get("/stock")
async def stock_page(request: Request) -> Response:
    """Stock by item and location for what the search box holds (typed or scanned), and
    closing stock per site at the end of a past day when ``as_of`` is given."""
    session = session_of(request)
    if session is None:
        return to_sign_in()
    text = request.query_params.get("q", "")
    error = None
    result = None
    try:
        async with context_of(request).store.read("console: stock") as conn:
            result = await search_stock(conn, text, session.principal.sites)
    except SearchError as err:
        error = str(err)
    day = parse_day(request.query_params.get("as_of", ""))
    as_of_rows: list[dict[str, Any]] = []
    as_of_errors: list[str] = []
    skus: list[str] = []
    if day is not None and result is not None:
        skus = list(dict.fromkeys(row.sku for row in result.rows))
        as_of_rows, as_of_errors = await stock_as_of(request, session, skus, day)
    return page(
        "stock.html",
        400 if error else 200,
        **base_values(session, "stock", request),
        q=text[:200],
        result=result,
        error=error,
        as_of=day.isoformat() if day is not None else None,
        as_of_rows=as_of_rows,
        as_of_error="; ".join(as_of_errors) or None,
        as_of_more=len(skus) > AS_OF_ITEMS,
        as_of_limit=AS_OF_ITEMS,
    )


STOCK_CSV_COLUMNS: Final = (
    "sku",
    "gtin",
    "name",
    "location",
    "on_hand",
    "on_order",
    "allocated",
    "available",
)


@router.get("/stock.csv")
async def stock_csv(request: Request) -> Response:
    """The Stock page's rows for the same search, as CSV."""
    session = session_of(request)
    if session is None:
        return to_sign_in()
    try:
        async with context_of(request).store.read("console: stock") as conn:
            result = await search_stock(
                conn, request.query_params.get("q", ""), session.principal.sites
            )
    except SearchError as err:
        response = Response(str(err), 400, media_type="text/plain; charset=utf-8")
        secure(response.headers)
        return response
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\r\n")
    out.writerow(STOCK_CSV_COLUMNS)
    for row in result.rows:
        values = row.model_dump()
        out.writerow("" if values.get(name) is None else values[name] for name in STOCK_CSV_COLUMNS)
    response = Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="stock.csv"'},
    )
    secure(response.headers)
    return response
