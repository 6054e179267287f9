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

from collections import defaultdict
from typing import Annotated, Any, Final, cast, get_args
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, HTTPException, Path, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError

from server.api.context import ApiContext, Principal
from server.api.read_points import get_catalog
from server.api.stream import _events, get_feed
from server.api.unresolved_passes import _resolve
from server.config import ROLE_RANK
from server.console.search import SearchError, search_stock
from server.console.sessions import COOKIE, SIGN_IN_COOKIE, Session, Sessions, new_token, same_token
from server.queries import MovementQuery, movements
from server.refusals import Refused
from server.schema_passes import Resolution
from server.sites import site_of
from server.unresolved import MAX_ROW_ID, BulkResolveRequest, PassQuery, ResolveRequest, list_passes
from server.views import MovementView

STATIC_PATH: Final = "/console/static"
MAX_FORM_BYTES: Final = 4096
"""A console form is a few short fields; anything longer is refused."""
RECENT_MOVEMENTS: Final = 200
"""Ledger rows read to fill the doors' recent passes when a page opens."""
RECENT_PER_DOOR: Final = 20
"""Passes listed per door (the script keeps the same number)."""
OPEN_PASSES: Final = 200
"""Unresolved passes listed on the Doors page."""
CSP: Final = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
DIRECTIONS: Final = get_args(Resolution)

router = APIRouter(include_in_schema=False)
templates = Environment(
    loader=PackageLoader("server.console", "templates"),
    autoescape=select_autoescape(default=True),
)


def install(app: FastAPI) -> None:
    """Add the console's pages and static files to ``app``."""
    app.state.console_sessions = Sessions()
    app.mount(STATIC_PATH, StaticFiles(packages=[("server.console", "static")]), name="console")
    app.include_router(router)


def _context(request: Request) -> ApiContext:
    return cast(ApiContext, request.app.state.context)


def _sessions(request: Request) -> Sessions:
    return cast(Sessions, request.app.state.console_sessions)


def _session(request: Request) -> Session | None:
    return _sessions(request).find(request.cookies.get(COOKIE))


def _page(name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    response = HTMLResponse(templates.get_template(name).render(**values), status_code)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


def _to_sign_in() -> RedirectResponse:
    return RedirectResponse("/sign-in", status.HTTP_303_SEE_OTHER)


async def _form(request: Request) -> dict[str, str]:
    """The fields of an ``application/x-www-form-urlencoded`` post (first value of each).

    Raises:
        HTTPException: 415 for another content type, 413 over ``MAX_FORM_BYTES``, 400 for
            text that is not UTF-8.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"a console form is sent as application/x-www-form-urlencoded, not {kind!r}",
        )
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"a console form is at most {MAX_FORM_BYTES} bytes"
        )
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as err:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"unreadable form: {err}") from err
    return {name: values[0] for name, values in fields.items()}


async def _writer(request: Request) -> tuple[Session, dict[str, str]]:
    """The session and form of a console write: signed in, CSRF token matching, operator.

    Raises:
        HTTPException: 401 without a session, 403 for a wrong or missing CSRF token or a
            key below operator.
    """
    session = _session(request)
    if session is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in to the console first")
    form = await _form(request)
    if not same_token(form.get("csrf"), session.csrf):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the form's CSRF token is missing or stale")
    if not can_write(session.principal):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"a {session.principal.role} key may not do this; it needs operator or higher",
        )
    return session, form


def can_write(principal: Principal) -> bool:
    return ROLE_RANK[principal.role] >= ROLE_RANK["operator"]


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
    if _session(request) is not None:
        return RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    return _sign_in_form()


def _sign_in_form(error: str | None = None, status_code: int = 200) -> HTMLResponse:
    token = new_token()
    response = _page("sign_in.html", status_code, csrf=token, error=error, principal=None)
    response.set_cookie(
        SIGN_IN_COOKIE, token, max_age=600, path="/sign-in", httponly=True, samesite="strict"
    )
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await _form(request)
    if not same_token(form.get("csrf"), request.cookies.get(SIGN_IN_COOKIE, "")):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the form's CSRF token is missing or stale")
    keys = _context(request).keys
    principal = keys.find(form.get("key", ""))
    if principal is None:
        # Counted like an unknown bearer key: the guard stops the address after too many.
        keys.failures.failed(request.client.host if request.client else "unknown")
        return _sign_in_form("That key is not known.", status.HTTP_401_UNAUTHORIZED)
    token, _ = _sessions(request).start(principal)
    response = RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    response.set_cookie(COOKIE, token, path="/", httponly=True, samesite="strict")
    response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session = _session(request)
    if session is not None:
        form = await _form(request)
        if not same_token(form.get("csrf"), session.csrf):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "the form's CSRF token is missing or stale"
            )
        _sessions(request).end(request.cookies.get(COOKIE))
    response = _to_sign_in()
    response.delete_cookie(COOKIE, path="/")
    return response


# --- Doors --------------------------------------------------------------------------------


@router.get("/")
async def doors_page(request: Request) -> Response:
    """Each read point: its recent passes (live) and its unresolved passes to resolve."""
    session = _session(request)
    if session is None:
        return _to_sign_in()
    principal = session.principal
    context = _context(request)
    table = await get_catalog(request).table()
    doors = sorted(
        rp for rp, settings in table.items() if principal.allows(settings.site or site_of(rp))
    )
    async with context.store.read("console: doors") as conn:
        recent, _ = await movements(
            conn, MovementQuery(limit=RECENT_MOVEMENTS, sites=principal.sites)
        )
        passes, more = await list_passes(
            conn, PassQuery(state="open", limit=OPEN_PASSES, sites=principal.sites)
        )
    by_door: dict[str, list[MovementView]] = defaultdict(list)
    for row in recent:
        if row.read_point is not None and len(by_door[row.read_point]) < RECENT_PER_DOOR:
            by_door[row.read_point].append(row)
    open_by_door: dict[str, list[Any]] = defaultdict(list)
    for view in passes:
        open_by_door[view.read_point].append(view)
    groups = {
        door: sorted({p.group for p in views if p.group is not None})
        for door, views in open_by_door.items()
    }
    # A door with open passes is shown even if it is no longer configured.
    shown = sorted(set(doors) | set(open_by_door))
    return _page(
        "doors.html",
        principal=principal,
        csrf=session.csrf,
        writer=can_write(principal),
        doors=shown,
        recent=by_door,
        open_passes=open_by_door,
        groups=groups,
        more=more,
        directions=DIRECTIONS,
        per_door=RECENT_PER_DOOR,
        page="doors",
        notice=request.query_params.get("notice"),
    )


@router.post("/doors/passes/{pass_id}/resolve")
async def resolve_pass(
    request: Request, pass_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
) -> Response:
    session, form = await _writer(request)
    return await _resolve_from_console(
        request, session, pass_id, ResolveRequest.model_validate({"direction": _direction(form)})
    )


@router.post("/doors/groups/resolve")
async def resolve_group(request: Request) -> Response:
    session, form = await _writer(request)
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
            _context(request), get_catalog(request), session.principal, selection, how
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
    """``/api/v1/stream``'s movements for the signed-in session (EventSource sends no
    bearer header, only the cookie)."""
    session = _session(request)
    if session is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in to the console first")
    feed = get_feed(request)
    if feed.full() or feed.full(session.principal.name):
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, "too many streams are open", {"Retry-After": "10"}
        )
    return StreamingResponse(
        _events(feed, frozenset({"movements"}), session.principal),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# --- Stock --------------------------------------------------------------------------------


@router.get("/stock")
async def stock_page(request: Request) -> Response:
    """Stock by item and location for what the search box holds (typed or scanned)."""
    session = _session(request)
    if session is None:
        return _to_sign_in()
    text = request.query_params.get("q", "")
    error = None
    result = None
    try:
        async with _context(request).store.read("console: stock") as conn:
            result = await search_stock(conn, text, session.principal.sites)
    except SearchError as err:
        error = str(err)
    return _page(
        "stock.html",
        400 if error else 200,
        principal=session.principal,
        csrf=session.csrf,
        q=text[:200],
        result=result,
        error=error,
        page="stock",
    )
