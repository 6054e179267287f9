"""What every console page shares: templates, the session of a request, forms and CSRF,
the answer's security headers, and calls to ``/api/v1`` as the signed-in person."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast
from urllib.parse import parse_qs, quote

from fastapi import HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from server.api.context import ApiContext, Principal
from server.config.settings import ROLE_RANK
from server.console.internal import ApiAnswer, Params, call_api
from server.console.sessions import COOKIE, Session, Sessions, same_token

STATIC_PATH: Final = "/console/static"
MAX_FORM_BYTES: Final = 4096
"""A console form is a few short fields; anything longer is refused."""
CSP: Final = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
"""Nothing from elsewhere, no inline script or style, no framing."""

templates = Environment(
    loader=PackageLoader("server.console", "templates"),
    autoescape=select_autoescape(default=True),
)


def context_of(request: Request) -> ApiContext:
    return cast(ApiContext, request.app.state.context)


def sessions_of(request: Request) -> Sessions:
    return cast(Sessions, request.app.state.console_sessions)


def session_of(request: Request) -> Session | None:
    return sessions_of(request).find(request.cookies.get(COOKIE))


def page(name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    response = HTMLResponse(templates.get_template(name).render(**values), status_code)
    secure(response.headers)
    return response


def secure(headers: Any) -> None:
    """The headers every console answer carries."""
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Cache-Control"] = "no-store"


def to_sign_in() -> RedirectResponse:
    return RedirectResponse("/sign-in", status.HTTP_303_SEE_OTHER)


def back_to(url: str, notice: str) -> RedirectResponse:
    """After a write: to ``url`` (a console path) with ``notice`` shown on it."""
    separator = "&" if "?" in url else "?"
    return RedirectResponse(
        f"{url}{separator}notice={quote(notice[:300])}", status.HTTP_303_SEE_OTHER
    )


async def read_form(request: Request) -> dict[str, str]:
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


async def writer(request: Request) -> tuple[Session, dict[str, str]]:
    """The session and form of a console write: signed in, CSRF token matching, operator.

    Raises:
        HTTPException: 401 without a session, 403 for a wrong or missing CSRF token or a
            key below operator.
    """
    session = session_of(request)
    if session is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in to the console first")
    form = await read_form(request)
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


async def api(
    request: Request,
    session: Session,
    path: str,
    params: Params = (),
    *,
    method: str = "GET",
    accept: str = "application/json",
) -> ApiAnswer:
    """``path`` of ``/api/v1`` answered for the session's principal (see ``internal``)."""
    return await call_api(request.app, session.principal, method, path, params, accept=accept)


def given(query: Mapping[str, str], names: tuple[str, ...], limit: int = 200) -> dict[str, str]:
    """The non-empty ``names`` of a page's query string, trimmed and bounded."""
    found = {}
    for name in names:
        value = query.get(name, "").strip()[:limit]
        if value:
            found[name] = value
    return found


def base_values(session: Session, page_name: str, request: Request) -> dict[str, Any]:
    """What the base template needs on every signed-in page."""
    return {
        "principal": session.principal,
        "csrf": session.csrf,
        "writer": can_write(session.principal),
        "page": page_name,
        "notice": request.query_params.get("notice", "")[:300] or None,
    }
