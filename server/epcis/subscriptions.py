"""EPCIS subscriptions: our events pushed to partners as signed webhooks.

Each ``[[epcis.subscriptions]]`` entry is a standing SimpleEventQuery. Every ``interval_s``
the server looks for ledger rows past the subscription's cursor (``job_leases``, one
instance per turn) and POSTs their ObjectEvents as one ``EPCISQueryDocument`` with
``subscriptionID`` = the subscription's name, at most ``max_events`` per delivery (more go
out at once in the next ones). Headers as the alert webhooks (``server.alerts.webhooks``):
``X-Stockgate-Signature: t=<unix>,v1=<HMAC-SHA256 of "<t>." + body>``,
``X-Stockgate-Delivery: <name>:<first row>-<last row>`` (the same range again on a retry,
so a receiver can drop repeats), ``X-Stockgate-Webhook: <name>``, and the EPCIS version
headers.

- A 2xx answer moves the cursor past the delivered rows; anything else keeps it, and the
  same rows (the same body) go again after ``min(cap, interval * 2^(n-1))``. At least once.
- ``start = "now"``: a new subscription begins after the rows already in the ledger;
  ``"beginning"``: with the first row.
- Rows are read in id order, up to the first one recorded less than ``SETTLE_S`` ago:
  PostgreSQL hands out ids before commits, so a row with a smaller id can commit after a
  larger one; waiting lets such a transaction commit before the cursor passes its id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from plumbing.backoff import Backoff
from server.alerts.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    WEBHOOK_HEADER,
    signature_header,
)
from server.config.epcis import EpcisSettings, EpcisSubscriptionSettings
from server.epcis.documents import query_document
from server.epcis.query import EpcisPage, EpcisQuery, query_events
from server.errors import StoreError
from server.store import job_leases
from server.store.database import Store
from server.store.schema.core import ledger
from wire.models import now_utc

log = logging.getLogger(__name__)

SETTLE_S: Final = 5.0
"""Rows recorded less than this long ago wait for the next turn (see the module docstring)."""
TIMEOUT_S: Final = 10.0
USER_AGENT: Final = "stockgate-epcis/1"
JOB_PREFIX: Final = "epcis-subscription:"


class EpcisSubscriptions:
    """Delivers every configured subscription until cancelled.

    Args:
        store: the database.
        settings: ``[epcis]`` with its subscriptions.
        transport: an httpx transport (tests); default: real HTTP.
        clock: the current time (UTC).
        settle_s: how old a row must be before it is delivered.
    """

    def __init__(
        self,
        store: Store,
        settings: EpcisSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = now_utc,
        settle_s: float = SETTLE_S,
    ) -> None:
        self._store = store
        self._settings = settings
        self._transport = transport
        self._clock = clock
        self._settle_s = settle_s
        self._retry_at: dict[str, float] = {}

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=self._transport,
            timeout=TIMEOUT_S,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/ld+json"},
        )

    async def run(self) -> None:
        """Deliver until cancelled."""
        subscriptions = self._settings.subscriptions
        if not subscriptions:
            return
        pause = min(entry.interval_s for entry in subscriptions)
        async with self.client() as client:
            while True:
                for entry in subscriptions:
                    if time.monotonic() < self._retry_at.get(entry.name, 0.0):
                        continue
                    try:
                        while await self.deliver_once(client, entry) == entry.max_events:
                            pass
                    except StoreError as err:
                        log.warning("epcis subscription %s: %s", entry.name, err)
                await asyncio.sleep(pause)

    async def deliver_once(
        self, client: httpx.AsyncClient, entry: EpcisSubscriptionSettings
    ) -> int:
        """One delivery of ``entry``'s next rows; returns how many events it delivered."""
        name = JOB_PREFIX + entry.name
        now = self._clock()
        async with self._store.begin(f"claiming epcis subscription {entry.name}") as conn:
            turn = await job_leases.claim(conn, name, now, TIMEOUT_S * 2 + 5)
        if turn is None:
            return 0
        cursor = turn.cursor
        page: EpcisPage | None = None
        try:
            async with self._store.read(f"reading epcis subscription {entry.name}") as conn:
                if cursor is None and entry.start == "now":
                    cursor = int(await conn.scalar(sa.select(sa.func.max(ledger.c.id))) or 0)
                else:
                    cursor = cursor or 0
                    page = await self._page(conn, entry, cursor, now)
        except BaseException:
            async with self._store.begin("releasing an epcis subscription") as conn:
                await job_leases.release(conn, turn, now, error="reading the ledger failed")
            raise
        error: str | None = None
        delivered = 0
        if page is not None and page.events:
            error = await self._post(client, entry, page.events, cursor, page.last_row or cursor)
            delivered = len(page.events) if error is None else 0
        new_cursor = cursor if page is None or page.last_row is None else page.last_row
        async with self._store.begin(f"recording epcis subscription {entry.name}") as conn:
            await job_leases.release(
                conn, turn, now, cursor=new_cursor if error is None else None, error=error
            )
        if error is not None:
            attempts = turn.attempts + 1
            delay = Backoff(
                entry.interval_s, self._settings.subscription_backoff_cap_s, jitter=0.0
            ).delay(attempts)
            self._retry_at[entry.name] = time.monotonic() + delay
            log.info("epcis subscription %s: %s; retry in %.0fs", entry.name, error, delay)
        else:
            self._retry_at.pop(entry.name, None)
        return delivered

    async def _page(
        self, conn: AsyncConnection, entry: EpcisSubscriptionSettings, cursor: int, now: datetime
    ) -> EpcisPage:
        # The first row recorded too recently: the page stops before it, so a row with a
        # smaller id committing late is not passed by the cursor.
        settling = await conn.scalar(
            sa.select(sa.func.min(ledger.c.id)).where(
                ledger.c.id > cursor,
                ledger.c.recorded_at >= now - timedelta(seconds=self._settle_s),
            )
        )
        query = EpcisQuery(
            biz_steps=frozenset(entry.biz_steps),
            limit=entry.max_events,
            max_scan=self._settings.max_scan_rows,
            sites=frozenset(entry.sites),
            min_row=cursor,
            by_id=True,
            below_row=int(settling) if settling is not None else None,
        )
        return await query_events(conn, query)

    async def _post(
        self,
        client: httpx.AsyncClient,
        entry: EpcisSubscriptionSettings,
        events: list[dict[str, object]],
        first: int,
        last: int,
    ) -> str | None:
        document = query_document(events, self._clock(), subscription=entry.name)
        body = json.dumps(document, separators=(",", ":")).encode()
        headers = {
            SIGNATURE_HEADER: signature_header(
                entry.secret.get_secret_value(), int(time.time()), body
            ),
            DELIVERY_HEADER: f"{entry.name}:{first + 1}-{last}",
            WEBHOOK_HEADER: entry.name,
            "GS1-EPCIS-Version": "2.0.0",
        }
        try:
            response = await client.post(str(entry.url), content=body, headers=headers)
        except httpx.HTTPError as err:
            return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        if not 200 <= response.status_code < 300:
            return f"HTTP {response.status_code}"
        return None
