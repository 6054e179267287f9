"""The console's calls to ``/api/v1``, made in-process for the signed-in person.

Most console pages show what an API route answers (alerts, gateways, units, history,
reports, drafts). Rather than repeat each route's validation, role and site checks, the
console sends the route an ASGI request of its own through the whole application (its
guard, its error handlers), with the session's ``Principal`` in the scope
(``SCOPE_PRINCIPAL``) in place of a bearer key. The route then checks that principal like
any key: a viewer's write is a 403, a site-restricted key sees its sites. No key is kept
in the session and nothing goes over the network.

Answers are read whole and bounded (``MAX_ANSWER_BYTES``): the console asks for pages and
reports, never for unbounded streams.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from starlette.types import ASGIApp, Message

from server.api.context import SCOPE_PRINCIPAL, Principal
from server.errors import ServerError

MAX_ANSWER_BYTES: Final = 32 * 1024 * 1024
"""An answer longer than this is cut off and reported as an error (a report or a page is
far smaller)."""
CALL_TIMEOUT_S: Final = 120.0
"""A route that has not answered by then is given up (a report over years of history)."""

Params = Mapping[str, str] | Sequence[tuple[str, str]]


class ApiCallError(ServerError, RuntimeError):
    """The in-process call did not complete (too long an answer, or no answer in time)."""


@dataclass(frozen=True, slots=True)
class ApiAnswer:
    """A route's answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)

    def detail(self) -> str:
        """The route's reason for a refusal, as a sentence for the page."""
        try:
            data = self.json()
        except ValueError:
            return f"the server answered {self.status}"
        detail = data.get("detail") if isinstance(data, dict) else None
        if isinstance(detail, list):
            # FastAPI's validation errors: where, and what was wrong.
            parts = [
                f"{'.'.join(str(p) for p in error.get('loc', [])[1:])}: {error.get('msg')}"
                for error in detail
                if isinstance(error, dict)
            ]
            return "; ".join(parts) or f"the server answered {self.status}"
        return str(detail) if detail else f"the server answered {self.status}"


async def call_api(
    app: ASGIApp,
    principal: Principal,
    method: str,
    path: str,
    params: Params = (),
    *,
    accept: str = "application/json",
) -> ApiAnswer:
    """Send ``method path?params`` to ``app`` as ``principal``; the whole answer.

    Raises:
        ApiCallError: the answer passed ``MAX_ANSWER_BYTES`` or took over ``CALL_TIMEOUT_S``.
    """
    query = urlencode(list(params.items()) if isinstance(params, Mapping) else list(params))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"console.internal"), (b"accept", accept.encode())],
        "client": ("127.0.0.1", 0),
        "server": ("console.internal", 80),
        SCOPE_PRINCIPAL: principal,
    }
    done = asyncio.Event()
    sent_request = False
    status = 500
    headers: dict[str, str] = {}
    body = bytearray()

    async def receive() -> Message:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers.update(
                (name.decode("latin-1").lower(), value.decode("latin-1"))
                for name, value in message.get("headers", [])
            )
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            if len(body) > MAX_ANSWER_BYTES:
                raise ApiCallError(f"{path} answered more than {MAX_ANSWER_BYTES} bytes")
            if not message.get("more_body", False):
                done.set()

    try:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await app(scope, receive, send)
    except TimeoutError as err:
        raise ApiCallError(f"{path} did not answer within {CALL_TIMEOUT_S:.0f} s") from err
    finally:
        done.set()
    return ApiAnswer(status, headers, bytes(body))
