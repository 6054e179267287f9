"""Console sessions: an API key exchanged once for a cookie, kept on the server.

Why server-side rather than a signed cookie: sign-out must end the session at once (a signed
cookie stays valid until it expires), and nothing secret needs to be configured or rotated.
The price is that a session lives in one server process: behind several instances the
console needs sticky sessions, and a restart signs everyone out.

The cookie holds only a random token (``HttpOnly``, ``SameSite=Strict``, path ``/``). Each
session has its own CSRF token that every form carries; a form post whose token is not the
session's is refused (SameSite already keeps other sites' posts from carrying the cookie;
the token is the second lock).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from server.api.context import Principal

COOKIE: Final = "stockgate_session"
SIGN_IN_COOKIE: Final = "stockgate_sign_in"
"""Holds the CSRF token of the sign-in form (there is no session yet to hold it)."""
LIFETIME_S: Final = 12 * 3600
"""A session ends this long after sign-in (a shift), whatever happens in between."""
MAX_SESSIONS: Final = 1000
"""Sessions kept at most; signing in beyond it ends the oldest."""
TOKEN_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class Session:
    """Who signed in, the CSRF token of their forms, and when the session ends."""

    principal: Principal
    csrf: str
    expires: float


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison; a missing token never matches."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class Sessions:
    """The open sessions of this server process, by cookie token (bounded, expiring)."""

    def __init__(
        self,
        lifetime_s: float = LIFETIME_S,
        max_sessions: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lifetime = lifetime_s
        self._max = max_sessions
        self._clock = clock
        self._open: OrderedDict[str, Session] = OrderedDict()

    def start(self, principal: Principal) -> tuple[str, Session]:
        """A new session for ``principal``: its cookie token and the session."""
        while len(self._open) >= self._max:
            self._open.popitem(last=False)
        token = new_token()
        session = Session(principal, new_token(), self._clock() + self._lifetime)
        self._open[token] = session
        return token, session

    def find(self, token: str | None) -> Session | None:
        """The live session of a cookie token (None: no cookie, unknown, or expired)."""
        if token is None:
            return None
        session = self._open.get(token)
        if session is None:
            return None
        if session.expires <= self._clock():
            del self._open[token]
            return None
        return session

    def end(self, token: str | None) -> None:
        if token is not None:
            self._open.pop(token, None)
