"""What the API's handlers need, built once by ``create_app`` and kept on ``app.state``."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from fastapi import Request

from server.config import ApiSettings, Role
from server.metrics import Metrics
from server.rules.policy import DEFAULT_POLICY, Policy
from server.store import Store


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
    """The configured API keys; lookups compare every key in constant time."""

    def __init__(self, api: ApiSettings) -> None:
        self._entries = [
            (
                entry.key.get_secret_value().encode(),
                Principal(name, entry.role, frozenset(entry.sites)),
            )
            for entry, name in zip(api.keys, api.key_names(), strict=True)
        ]

    def find(self, presented: str) -> Principal | None:
        candidate = presented.encode()
        found: Principal | None = None
        # No early exit: the time taken does not say which key (or how much of one) matched.
        for secret, principal in self._entries:
            if hmac.compare_digest(secret, candidate):
                found = principal
        return found


@dataclass(frozen=True, slots=True)
class ApiContext:
    store: Store
    metrics: Metrics
    keys: KeyRing
    mqtt_connected: Callable[[], bool] | None
    """None when the app runs without MQTT (tests); health then leaves MQTT out."""
    policy: Policy = DEFAULT_POLICY
    """What the stock rules take from the config (resolving a pass applies them)."""


def get_context(request: Request) -> ApiContext:
    """FastAPI dependency: the context ``create_app`` stored."""
    return cast(ApiContext, request.app.state.context)
