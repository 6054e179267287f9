"""Settings of alerts and their delivery: ``[alerts]``, ``[[webhooks]]`` and ``[stream]``.

Decisions written down here:

- A gateway is marked offline when the server has heard nothing from it (no status) for
  ``gateway_stale_s``; the edge publishes a status every ``[status] interval_s`` (10 s by
  default), so the default of 60 s is six missed statuses.
- A webhook secret must be at least ``MIN_WEBHOOK_SECRET`` characters; it signs every
  delivery (HMAC-SHA256, see ``server.alerts.webhooks``). ``kinds``/``sites``/``changes`` narrow
  what a webhook receives; empty ``kinds`` or ``sites`` means all.
- Every knob is bounded, so a typo cannot make the server poll a database in a busy loop
  or retry a dead receiver forever.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, AnyHttpUrl, Field, SecretStr, field_validator

from plumbing.settings import Section
from server.rules.alerts import ALERT_KINDS
from wire.models import AlertChange
from wire.topics import ID_PATTERN

Change = AlertChange
ALL_CHANGES: tuple[Change, ...] = ("opened", "updated", "cleared", "acknowledged")
MIN_WEBHOOK_SECRET = 16
MAX_WEBHOOK_SECRET = 256
MAX_WEBHOOKS = 32
MAX_KINDS = 64


class AlertSettings(Section):
    """``[alerts]``: when conditions are checked, thresholds, and delivery retries."""

    gateway_stale_s: float = Field(default=60.0, ge=5, le=86_400)
    """A gateway with no status for this long is marked offline (``gateway_offline``)."""
    sweep_interval_s: float = Field(default=10.0, ge=0.1, le=3600)
    """How often stock levels, stale gateways, reviewed items and quiet periods are checked."""
    occurrence_quiet_s: float = Field(default=86_400.0, ge=1, le=30 * 86_400)
    """An occurrence alert (a unit seen after shipped, ...) closes after this long without
    happening again."""
    min_update_s: float = Field(default=60.0, ge=0, le=86_400)
    """Least time between two evidence updates of one open condition alert (a severity
    change is recorded at once)."""
    backlog_depth: int = Field(default=10_000, ge=1, le=100_000_000)
    """``outbox_backlog`` when a gateway holds at least this many unacknowledged events."""
    backlog_age_s: float = Field(default=300.0, ge=1, le=30 * 86_400)
    """``outbox_backlog`` when a gateway's oldest unacknowledged event is this old."""
    history_days: int = Field(default=30, ge=1, le=3650)
    """Alert change events and finished webhook deliveries are kept this long."""
    relay_interval_s: float = Field(default=1.0, ge=0.05, le=60)
    """How often alert changes made elsewhere (another instance, the API) are looked for."""
    mqtt_retry_s: float = Field(default=300.0, ge=0, le=86_400)
    """An alert change not yet published (broker unreachable) is retried this long."""
    webhook_max_attempts: int = Field(default=10, ge=1, le=50)
    webhook_backoff_s: float = Field(default=1.0, ge=0.01, le=3600)
    """Delay before the second attempt; it doubles per attempt up to the cap."""
    webhook_backoff_cap_s: float = Field(default=600.0, ge=0.01, le=86_400)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    webhook_concurrency: int = Field(default=4, ge=1, le=64)
    """Deliveries in flight at once (per server instance)."""
    webhook_allow_private: bool = False
    """Let webhooks target loopback, link-local, private and other non-global addresses
    (checked on every delivery, after DNS). Off by default: a webhook URL must not become a
    way to reach the server's own host or the site network's internal services."""
    webhook_response_bytes: int = Field(default=65_536, ge=0, le=16 * 1024 * 1024)
    """Most bytes of a receiver's response body read (the rest is not read)."""


def _known_kinds(kinds: list[str]) -> list[str]:
    unknown = sorted(set(kinds) - set(ALERT_KINDS))
    if unknown:
        raise ValueError(f"unknown alert kinds {unknown}; known: {sorted(ALERT_KINDS)}")
    return kinds


class WebhookSettings(Section):
    """``[[webhooks]]``: one HTTP receiver of alert changes."""

    url: AnyHttpUrl
    secret: SecretStr
    name: str | None = Field(default=None, pattern=ID_PATTERN)
    """Names the webhook in the delivery table and logs (default ``webhook-<n>``)."""
    kinds: Annotated[list[str], AfterValidator(_known_kinds)] = Field(
        default_factory=list, max_length=MAX_KINDS
    )
    """Alert kinds to deliver; empty: all."""
    sites: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(
        default_factory=list, max_length=1000
    )
    """Sites whose alerts to deliver; empty: all (alerts of no site included)."""
    changes: list[Change] = Field(default_factory=lambda: list(ALL_CHANGES), min_length=1)
    """Which changes to deliver."""

    @field_validator("secret")
    @classmethod
    def _strong_enough(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if not MIN_WEBHOOK_SECRET <= len(secret) <= MAX_WEBHOOK_SECRET:
            raise ValueError(
                f"webhook secret must be {MIN_WEBHOOK_SECRET} to {MAX_WEBHOOK_SECRET} "
                "characters; generate one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if value.username or value.password:
            raise ValueError("put no credentials in a webhook url; the secret signs requests")
        return value

    def wants(self, kind: str, site: str | None, change: str) -> bool:
        """Whether a change of an alert of ``kind`` at ``site`` goes to this webhook."""
        return (
            change in self.changes
            and (not self.kinds or kind in self.kinds)
            and (not self.sites or site in self.sites)
        )


def _unique_names(hooks: list[WebhookSettings]) -> list[WebhookSettings]:
    names = webhook_names(hooks)
    if len(set(names)) != len(names):
        raise ValueError("two [[webhooks]] entries share a name")
    return hooks


def webhook_names(hooks: list[WebhookSettings]) -> list[str]:
    """The name of each webhook, in file order."""
    return [hook.name or f"webhook-{index}" for index, hook in enumerate(hooks, 1)]


Webhooks = Annotated[list[WebhookSettings], AfterValidator(_unique_names)]


class StreamSettings(Section):
    """``[stream]``: the live stream of movements and alerts (``GET /api/v1/stream``)."""

    max_clients: int = Field(default=64, ge=1, le=10_000)
    """Streams open at once per instance; one more gets 429."""
    max_clients_per_key: int = Field(default=4, ge=1, le=10_000)
    """Streams one API key may hold open at once per instance (one more gets 429), so one
    viewer cannot take every slot."""
    heartbeat_s: float = Field(default=15.0, ge=0.05, le=300)
    """A comment line is sent after this long without an event (keeps proxies open)."""
    poll_interval_s: float = Field(default=0.5, ge=0.02, le=10)
    """How often the ledger and the alert change log are read for new rows."""
    queue_size: int = Field(default=2000, ge=10, le=1_000_000)
    """Events held for one slow client; when full the stream ends (the client reconnects)."""
    gap_grace_s: float = Field(default=10.0, ge=0.1, le=600)
    """How long a missing row id is waited for (a transaction not yet committed)."""
