"""What the API's handlers need, built once by ``create_app`` and kept on ``app.state``."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from fastapi import Request

from server.config.settings import ApiSettings, Role
from server.metrics import Metrics
from server.reports.shards import ReportShards
from server.rules.policy import DEFAULT_POLICY, Policy
from server.store.database import Store

SCOPE_PRINCIPAL = "stockgate.principal"
"""ASGI scope key of a request the console makes in-process for a signed-in person
(``server.console.internal``): the ``Principal`` it acts as, in place of a bearer key.
Only code in this process can put it there (an HTTP request cannot set scope keys)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the key's name (recorded as actor), its role and its sites."""

    name: str
    role: Role
    sites: frozenset[str] = frozenset()
    """The sites the key may see and change; empty means every site."""

    def allows(self, site: str | None) -> bool:
        """Whether the key may see and change ``site`` (None: something of no site)."""
        return not self.sites or site in self.sites


class KeyRing:
    """The configured API keys, held only as their SHA-256 digests.

    A presented key is hashed and looked up by its digest: the time a lookup takes depends
    on the digest, which says nothing about how much of a real key was guessed, and no key
    stays in the ring's memory.
    """

    def __init__(self, api: ApiSettings) -> None:
        self._by_digest = {
            bytes.fromhex(entry.digest()): Principal(name, entry.role, frozenset(entry.sites))
            for entry, name in zip(api.keys, api.key_names(), strict=True)
        }
        self.failures = AuthFailures(api.auth_failures_per_minute)

    def find(self, presented: str) -> Principal | None:
        return self._by_digest.get(hashlib.sha256(presented.encode()).digest())


AUTH_WINDOW_S = 60.0
MAX_TRACKED_CLIENTS = 10_000
"""Client addresses whose failures are remembered at once (the oldest are forgotten)."""


class AuthFailures:
    """Failed authentications per client address in the last minute (a fixed window).

    Past ``per_minute`` failures a client is refused (429) until its window has passed,
    whatever it sends, so a key cannot be guessed by brute force. Bounded: at most
    ``MAX_TRACKED_CLIENTS`` addresses are remembered.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = per_minute
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}

    def blocked(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        window = self._windows.get(client)
        if window is None:
            return None
        started, count = window
        left = started + AUTH_WINDOW_S - self._clock()
        if left <= 0:
            del self._windows[client]
            return None
        return left if count >= self._limit else None

    def failed(self, client: str) -> None:
        """Count one failed authentication of ``client``."""
        now = self._clock()
        started, count = self._windows.get(client, (now, 0))
        if now - started >= AUTH_WINDOW_S:
            started, count = now, 0
        self._windows.pop(client, None)  # re-inserted last: dict order is age order
        self._windows[client] = (started, count + 1)
        while len(self._windows) > MAX_TRACKED_CLIENTS:
            del self._windows[next(iter(self._windows))]


@dataclass(frozen=True, slots=True)
class ApiContext:
    store: Store
    metrics: Metrics
    keys: KeyRing
    mqtt_connected: Callable[[], bool] | None
    """None when the app runs without MQTT (tests); health then leaves MQTT out."""
    reports: ReportShards
    """Runs the whole-ledger reports (split among worker processes when it has a pool)."""
    policy: Policy = DEFAULT_POLICY
    """What the stock rules and stock operations take from the config (resolving a pass
    applies the rules; negative stock per site)."""


def get_context(request: Request) -> ApiContext:
    """FastAPI dependency: the context ``create_app`` stored."""
    return cast(ApiContext, request.app.state.context)
