"""The API's front door: keys checked and bodies bounded before any route reads a byte.

An ASGI middleware (``RequestGuard``) in front of every route, because a route's own
dependencies run only after FastAPI has read and parsed the body: a 150 MB body sent
without a key would be read whole before its 401.

For every request:

1. A client address with too many failed authentications in the last minute
   (``[api] auth_failures_per_minute``) gets 429 with ``Retry-After``, whatever it sends.
2. Under ``/api/`` the ``Authorization: Bearer`` key must be known, else 401 at once (and
   the failure counts against the address). The body is not read. (The console's own
   in-process calls carry a principal in the ASGI scope instead; see ``SCOPE_PRINCIPAL``.)
3. The body is bounded: a declared ``Content-Length`` over the route's limit gets 413 at
   once; a body without one (chunked) is counted as it streams in and cut off with 413 the
   moment it passes the limit. The limit is ``[api] max_body_bytes``, or the larger one of
   a route listed in ``BodyLimits`` (the CSV imports).

Behind a reverse proxy every request comes from the proxy's address: the failure limit is
then one budget for all clients (a brute-force attempt still stops; legitimate clients
with a valid key are never counted).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Final

from fastapi import HTTPException, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.context import SCOPE_PRINCIPAL, KeyRing

PROTECTED_PREFIX: Final = "/api/"
"""Every route under this prefix needs a key (``server.api.auth``)."""


class BodyTooLarge(HTTPException):
    """A request body passed its route's limit while it was streaming in."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"the request body is larger than this route takes ({limit} bytes)",
        )


class BodyLimits:
    """The body limit of each route: the default, or a larger one for matching paths.

    Args:
        default: bytes any route takes.
        routes: (path pattern, bytes) of the routes that take more; called once, at the
            first request (when every route is known).
    """

    def __init__(
        self,
        default: int,
        routes: Callable[[], Sequence[tuple[re.Pattern[str], int]]] = tuple,
    ) -> None:
        self.default = default
        self._find = routes
        self._routes: Sequence[tuple[re.Pattern[str], int]] | None = None

    def of(self, path: str) -> int:
        """The most bytes a request to ``path`` may send."""
        if self._routes is None:
            self._routes = self._find()
        for pattern, limit in self._routes:
            if pattern.match(path):
                return limit
        return self.default


def _bearer(scope: Scope) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, as ``HTTPBearer`` parses it."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials:
                return credentials
            return None
    return None


def _declared_length(scope: Scope) -> int | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, code: int, detail: str, headers: dict[str, str]) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(key.lower().encode(), value.encode()) for key, value in headers.items()]
    await send({"type": "http.response.start", "status": code, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: failed-auth limit, key check before the body, body size limits.

    Args:
        app: the application behind it.
        keys: the API keys (and the failed-auth counter they carry).
        limits: body limits by route.
    """

    def __init__(self, app: ASGIApp, *, keys: KeyRing, limits: BodyLimits) -> None:
        self._app = app
        self._keys = keys
        self._limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        client = scope["client"][0] if scope.get("client") else "unknown"
        failures = self._keys.failures
        wait = failures.blocked(client)
        if wait is not None:
            await _refuse(
                send,
                status.HTTP_429_TOO_MANY_REQUESTS,
                "too many requests with a missing or unknown API key; try again later",
                {"Retry-After": str(int(wait) + 1)},
            )
            return
        # A console request made in-process carries its principal in the scope instead.
        if path.startswith(PROTECTED_PREFIX) and SCOPE_PRINCIPAL not in scope:
            presented = _bearer(scope)
            if presented is None or self._keys.find(presented) is None:
                failures.failed(client)
                detail = (
                    "missing API key: send 'Authorization: Bearer <key>'"
                    if presented is None
                    else "unknown API key"
                )
                await _refuse(
                    send, status.HTTP_401_UNAUTHORIZED, detail, {"WWW-Authenticate": "Bearer"}
                )
                return
        limit = self._limits.of(path)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, status.HTTP_413_CONTENT_TOO_LARGE, BodyTooLarge(limit).detail, {})
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, bounded_receive, tracking_send)
        except BodyTooLarge as err:
            # Normally the app's own handler answers; this covers a body read outside a route.
            if started:
                raise
            await _refuse(send, err.status_code, str(err.detail), {})
