"""``[epcis]``: limits of EPCIS capture and queries, and ``[[epcis.subscriptions]]``.

A subscription is the standing query of EPCIS 2.0 delivered as a signed webhook: every
``interval_s`` the server POSTs the ObjectEvents of the ledger rows recorded since the last
delivery (an ``EPCISQueryDocument`` with the subscription's name as ``subscriptionID``),
signed like the alert webhooks (``X-Stockgate-Signature``, ``server.alerts.webhooks``). See
``server.epcis.subscriptions``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator

from plumbing.settings import Section
from server.config.alerts import MAX_WEBHOOK_SECRET, MIN_WEBHOOK_SECRET
from wire.cbv import CBV_STEPS
from wire.topics import ID_PATTERN

MAX_SUBSCRIPTIONS = 32


class EpcisSubscriptionSettings(Section):
    """``[[epcis.subscriptions]]``: one partner receiving our events as they happen."""

    name: str = Field(pattern=ID_PATTERN)
    """The ``subscriptionID`` of the documents, and the job's name (unique)."""
    url: AnyHttpUrl
    secret: SecretStr
    """Signs every delivery (HMAC-SHA256 over ``"<t>." + body``)."""
    sites: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(
        default_factory=list, max_length=1000
    )
    """Only rows of these sites; empty: all."""
    biz_steps: list[str] = Field(default_factory=list, max_length=len(CBV_STEPS))
    """Only events of these CBV business steps; empty: all."""
    interval_s: float = Field(default=30.0, ge=1, le=86_400)
    """How often new rows are looked for (and a failed delivery retried at the earliest)."""
    max_events: int = Field(default=500, ge=1, le=10_000)
    """Events per delivery at most (more rows go in the next one at once)."""
    start: str = Field(default="now", pattern="^(now|beginning)$")
    """``now``: only rows recorded after the subscription first ran; ``beginning``: all."""

    @field_validator("secret")
    @classmethod
    def _strong_enough(cls, value: SecretStr) -> SecretStr:
        if not MIN_WEBHOOK_SECRET <= len(value.get_secret_value()) <= MAX_WEBHOOK_SECRET:
            raise ValueError(
                f"subscription secret must be {MIN_WEBHOOK_SECRET} to {MAX_WEBHOOK_SECRET} "
                "characters"
            )
        return value

    @field_validator("biz_steps")
    @classmethod
    def _known_steps(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - CBV_STEPS)
        if unknown:
            raise ValueError(f"not CBV business steps: {unknown}")
        return value


class EpcisSettings(Section):
    """``[epcis]``: capture and query limits, and subscriptions."""

    max_capture_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    """Largest EPCIS document ``POST /api/v1/epcis/capture`` takes (413 beyond)."""
    max_capture_events: int = Field(default=10_000, ge=1, le=100_000)
    """Events one captured document may hold."""
    max_capture_epcs: int = Field(default=100_000, ge=1, le=1_000_000)
    """EPCs one captured document may list in all."""
    max_scan_rows: int = Field(default=20_000, ge=100, le=1_000_000)
    """Ledger rows one ``GET /api/v1/epcis/events`` page reads at most; a page that filters
    out more than that ends early with a ``nextPageToken``."""
    subscription_backoff_cap_s: float = Field(default=600.0, ge=1, le=86_400)
    subscriptions: list[EpcisSubscriptionSettings] = Field(
        default_factory=list, max_length=MAX_SUBSCRIPTIONS
    )

    @field_validator("subscriptions")
    @classmethod
    def _unique_names(
        cls, value: list[EpcisSubscriptionSettings]
    ) -> list[EpcisSubscriptionSettings]:
        names = [entry.name for entry in value]
        if len(names) != len(set(names)):
            raise ValueError("[[epcis.subscriptions]] names must be unique")
        return value
