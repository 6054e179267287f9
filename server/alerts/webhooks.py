"""Webhooks: alert changes POSTed to ``[[webhooks]]`` receivers, signed and retried.

The outbox is the ``webhook_deliveries`` table (filled by ``server.alerts.relay``), so a
pending delivery survives a restart. The dispatcher claims due rows with a lease (two
instances never send one delivery at the same time; a crash mid-send lets the lease run out
and the row is sent again), POSTs them with ``httpx``, and records the outcome:

- a 2xx answer: ``delivered``;
- anything else (another status, a timeout, a refused connection): attempt ``n`` is
  retried after ``min(cap, base * 2 ** (n - 1))`` seconds, scaled by a random factor in
  [0.5, 1] so receivers coming back are not hit by every sender at once; after
  ``[alerts] webhook_max_attempts`` the delivery is ``failed`` (kept, with its last error,
  for ``history_days``). Redirects are not followed.

Target policy: unless ``[alerts] webhook_allow_private`` is on, every delivery first
resolves the URL's host and refuses (as a failed attempt, retried like any other) when any
address it resolves to is not a global unicast address: loopback, link-local (cloud
metadata at 169.254.169.254), private, shared, multicast and reserved ranges are all out.
Redirects are not followed, so a public receiver cannot bounce a delivery inward. A
receiver's response body is read up to ``[alerts] webhook_response_bytes`` and no further.

Delivery is at least once and not ordered: a receiver tells repeats apart by the
``X-Stockgate-Delivery`` header (or ``event_id`` in the body) and orders changes of one
alert by ``event_id``.

Signature (``X-Stockgate-Signature: t=<unix seconds>,v1=<hex>``): HMAC-SHA256 with the
webhook's secret over ``"<t>." + body``. A receiver recomputes it over the raw body,
compares in constant time and refuses a ``t`` too far from its clock (replays); see
``verify_signature``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import httpx
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.ext.asyncio import AsyncConnection

from plumbing.backoff import Backoff
from server.config.alerts import AlertSettings, WebhookSettings, webhook_names
from server.errors import StoreError
from server.store.database import Store
from server.store.schema.alerts import MAX_DELIVERY_ERROR, alert_events, webhook_deliveries
from wire.models import now_utc

log = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-Stockgate-Signature"
DELIVERY_HEADER: Final = "X-Stockgate-Delivery"
EVENT_HEADER: Final = "X-Stockgate-Event"
WEBHOOK_HEADER: Final = "X-Stockgate-Webhook"
USER_AGENT: Final = "stockgate-webhooks/1"
SIGNATURE_TOLERANCE_S: Final = 300
CLAIM_BATCH: Final = 64
IDLE_POLL_S: Final = 5.0
"""Longest sleep between looks at the outbox when nothing is due sooner."""
BODY_VERSION: Final = 1


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + body`` under ``secret``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The value of ``X-Stockgate-Signature`` for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
) -> bool:
    """What a receiver does: check ``header`` against ``body`` and the clock.

    Returns:
        True when a ``v1`` signature matches and ``t`` is within ``tolerance_s`` of now.
    """
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    clock = time.time() if now is None else now
    if abs(clock - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in parts.get("v1", []))


def body_of(
    delivery_id: int, event_id: int, change: str, at: datetime, alert: dict[str, Any]
) -> bytes:
    """The JSON body of a delivery: the change and the alert after it."""
    document = {
        "version": BODY_VERSION,
        "delivery_id": delivery_id,
        "event_id": event_id,
        "change": change,
        "at": at.isoformat(),
        "alert": alert,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this instance holds the lease of, with the alert event it carries."""

    id: int
    webhook: str
    attempts: int
    event_id: int
    change: str
    at: datetime
    alert: dict[str, Any]


class WebhookDispatcher:
    """Sends due webhook deliveries until cancelled.

    Args:
        store: the database.
        settings: ``[alerts]`` (retry policy, timeout, concurrency).
        webhooks: the ``[[webhooks]]`` entries.
        registry: where the delivery counters go (the server's metrics registry).
        transport: an httpx transport (tests); default: real HTTP.
        clock: the current time (UTC).
    """

    def __init__(
        self,
        store: Store,
        settings: AlertSettings,
        webhooks: Sequence[WebhookSettings],
        *,
        registry: CollectorRegistry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self._store = store
        self._settings = settings
        self._hooks = dict(zip(webhook_names(list(webhooks)), webhooks, strict=True))
        self._transport = transport
        self._clock = clock
        self._wake = asyncio.Event()
        self._outcomes = Counter(
            "stockgate_webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, retry, failed).",
            ["outcome"],
            registry=registry if registry is not None else CollectorRegistry(),
        )
        for outcome in ("delivered", "retry", "failed"):
            self._outcomes.labels(outcome=outcome)

    def poke(self) -> None:
        """Look at the outbox now (new deliveries were queued)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled."""
        async with self._client() as client:
            while True:
                try:
                    await self.deliver_due(client)
                    pause = await self._next_due_in()
                except StoreError as err:
                    log.warning("webhooks: %s", err)
                    pause = IDLE_POLL_S
                # Not wait_for, which can swallow a cancellation on 3.11 (gh-86296).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await self._wake.wait()
                self._wake.clear()

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=self._transport,
            timeout=self._settings.webhook_timeout_s,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
        )

    async def _next_due_in(self) -> float:
        async with self._store.read("looking for due webhook deliveries") as conn:
            due = await conn.scalar(
                sa.select(sa.func.min(webhook_deliveries.c.next_attempt_at)).where(
                    webhook_deliveries.c.state == "pending"
                )
            )
        if due is None:
            return IDLE_POLL_S
        wait: float = (due - self._clock()).total_seconds()
        return min(IDLE_POLL_S, max(0.0, wait))

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """Send every delivery due now (in rounds of ``CLAIM_BATCH``); returns how many."""
        sent = 0
        while True:
            claimed = await self._claim()
            if not claimed:
                return sent
            limit = asyncio.Semaphore(self._settings.webhook_concurrency)
            async with asyncio.TaskGroup() as group:
                for delivery in claimed:
                    group.create_task(
                        self._deliver_limited(limit, client, delivery),
                        name=f"webhook-{delivery.id}",
                    )
            sent += len(claimed)
            if len(claimed) < CLAIM_BATCH:
                return sent

    async def _claim(self) -> list[Claimed]:
        now = self._clock()
        lease = timedelta(seconds=self._settings.webhook_timeout_s * 2 + 5)
        free = sa.or_(
            webhook_deliveries.c.lease_until.is_(None), webhook_deliveries.c.lease_until < now
        )
        due = sa.and_(
            webhook_deliveries.c.state == "pending",
            webhook_deliveries.c.next_attempt_at <= now,
            free,
        )
        ids = (
            sa.select(webhook_deliveries.c.id)
            .where(due)
            .order_by(webhook_deliveries.c.next_attempt_at, webhook_deliveries.c.id)
            .limit(CLAIM_BATCH)
            .scalar_subquery()
        )
        async with self._store.begin("claiming webhook deliveries", stock=False) as conn:
            claimed = (
                await conn.execute(
                    webhook_deliveries.update()
                    .where(webhook_deliveries.c.id.in_(ids), due)
                    .values(lease_until=now + lease)
                    .returning(
                        webhook_deliveries.c.id,
                        webhook_deliveries.c.webhook,
                        webhook_deliveries.c.event_id,
                        webhook_deliveries.c.attempts,
                    )
                )
            ).all()
            if not claimed:
                return []
            events = {
                row.id: row
                for row in await conn.execute(
                    sa.select(
                        alert_events.c.id,
                        alert_events.c.change,
                        alert_events.c.at,
                        alert_events.c.alert,
                    ).where(alert_events.c.id.in_({row.event_id for row in claimed}))
                )
            }
        return [
            Claimed(
                row.id,
                row.webhook,
                row.attempts,
                row.event_id,
                events[row.event_id].change,
                events[row.event_id].at,
                events[row.event_id].alert,
            )
            for row in claimed
            if row.event_id in events
        ]

    async def _deliver_limited(
        self, limit: asyncio.Semaphore, client: httpx.AsyncClient, delivery: Claimed
    ) -> None:
        async with limit:
            await self._deliver(client, delivery)

    async def _deliver(self, client: httpx.AsyncClient, delivery: Claimed) -> None:
        hook = self._hooks.get(delivery.webhook)
        if hook is None:
            await self._finish(delivery, None, "webhook no longer configured", failed=True)
            return
        body = body_of(delivery.id, delivery.event_id, delivery.change, delivery.at, delivery.alert)
        headers = {
            SIGNATURE_HEADER: signature_header(
                hook.secret.get_secret_value(), int(time.time()), body
            ),
            DELIVERY_HEADER: str(delivery.id),
            EVENT_HEADER: delivery.change,
            WEBHOOK_HEADER: delivery.webhook,
        }
        status: int | None = None
        error: str | None = None
        try:
            refused = None
            if not self._settings.webhook_allow_private:
                refused = await target_problem(hook.url.host or "")
            if refused is not None:
                error = refused
            else:
                request = client.build_request("POST", str(hook.url), content=body, headers=headers)
                response = await client.send(request, stream=True)
                try:
                    status = response.status_code
                    await _read_bounded(response, self._settings.webhook_response_bytes)
                finally:
                    await response.aclose()
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
        except httpx.HTTPError as err:
            error = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        await self._finish(delivery, status, error, failed=False)

    async def _finish(
        self, delivery: Claimed, status: int | None, error: str | None, *, failed: bool
    ) -> None:
        now = self._clock()
        attempts = delivery.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "lease_until": None,
            "last_status": status,
            "last_error": error[:MAX_DELIVERY_ERROR] if error is not None else None,
        }
        if error is None:
            values.update(state="delivered", finished_at=now)
            outcome = "delivered"
        elif failed or attempts >= self._settings.webhook_max_attempts:
            values.update(state="failed", finished_at=now)
            outcome = "failed"
            log.warning(
                "webhook %s: delivery %d failed for good after %d attempts: %s",
                delivery.webhook,
                delivery.id,
                attempts,
                error,
            )
        else:
            delay = Backoff(
                self._settings.webhook_backoff_s, self._settings.webhook_backoff_cap_s
            ).delay(attempts)
            values.update(next_attempt_at=now + timedelta(seconds=delay))
            outcome = "retry"
            log.info(
                "webhook %s: delivery %d attempt %d failed (%s); next in %.1fs",
                delivery.webhook,
                delivery.id,
                attempts,
                error,
                delay,
            )
        try:
            async with self._store.begin(
                f"recording webhook delivery {delivery.id}", stock=False
            ) as conn:
                await _record_outcome(conn, delivery.id, values)
        except StoreError as err:
            # The lease runs out and the delivery is sent again: at least once.
            log.warning("webhook delivery %d outcome not stored: %s", delivery.id, err)
            return
        self._outcomes.labels(outcome=outcome).inc()


async def _record_outcome(conn: AsyncConnection, delivery_id: int, values: dict[str, Any]) -> None:
    await conn.execute(
        webhook_deliveries.update()
        .where(webhook_deliveries.c.id == delivery_id, webhook_deliveries.c.state == "pending")
        .values(**values)
    )


async def _read_bounded(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of a streamed response body; the rest is left unread."""
    kept = bytearray()
    async for chunk in response.aiter_raw():
        kept.extend(chunk[: limit - len(kept)])
        if len(kept) >= limit:
            break
    return bytes(kept)


def address_problem(address: str) -> str | None:
    """Why a webhook may not target ``address`` (an IP), or None when it is global unicast."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_global and not ip.is_multicast:
        return None
    return (
        f"webhook target address {ip} is not a public address (loopback, link-local, private "
        "or reserved); set [alerts] webhook_allow_private = true to allow it"
    )


async def target_problem(host: str) -> str | None:
    """Why a webhook may not target ``host``: an address of it is not public, or it does not
    resolve. None when every address it resolves to is public."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host.strip("[]"), None, type=socket.SOCK_STREAM
        )
    except OSError as err:
        return f"webhook host {host!r} does not resolve: {err}"
    for info in infos:
        problem = address_problem(str(info[4][0]))
        if problem is not None:
            return problem
    return None
