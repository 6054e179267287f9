"""The alert relay: every alert change goes out on MQTT and into the webhook outbox.

It reads ``alert_events`` (written with each alert change, in the same transaction), so
it catches changes from every code path (ingest, statuses, sweeps, the API, another
server instance) and a restart loses none. A round:

1. claims up to ``RELAY_BATCH`` unrelayed events with a lease (``UPDATE ... WHERE
   relayed_at IS NULL AND lease expired ... RETURNING``; two instances never claim the
   same row), and in that same transaction adds one ``webhook_deliveries`` row per
   matching ``[[webhooks]]`` entry (unique per webhook and event, so a repeat adds none);
2. publishes each event on ``stockgate/v1/{site}/alerts`` (QoS 1) as an ``AlertNotice``;
3. marks the published ones relayed.

If the broker is unreachable the round stops at the first failure and the events stay
unrelayed, to be published in order once it is back; after ``[alerts] mqtt_retry_s`` an
event is given up for MQTT (it was fanned out to the webhooks in step 1 regardless). An
alert of no site has no alerts topic; it is delivered by webhooks and the stream only.
MQTT delivery is at least once: a consumer tells repeats apart by ``event_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.config.alerts import AlertSettings, WebhookSettings, webhook_names
from server.errors import PublishFailed, StoreError
from server.queries.views import AlertState
from server.store.database import Store
from server.store.dialect import upsert
from server.store.schema.alerts import alert_events, webhook_deliveries
from wire import topics
from wire.models import Alert, AlertChange, now_utc

log = logging.getLogger(__name__)

Publisher = Callable[[str, bytes], Awaitable[None]]
RELAY_BATCH = 200
RELAY_LEASE_S = 30.0
"""How long a claimed event is left to its claimer before another instance may take it."""
MAX_ROUNDS_PER_FLUSH = 50


class AlertNotice(Alert):
    """An alert change on the MQTT alerts topic: the wire ``Alert`` plus what changed.

    ``change`` says what happened (opened, updated, cleared, acknowledged); ``event_id``
    increases with every change the server records (repeats carry the same one).
    """

    change: AlertChange
    event_id: int
    state: AlertState


def notice(event_id: int, change: str, snapshot: dict[str, Any]) -> AlertNotice:
    """The MQTT payload of one alert change.

    Raises:
        ValidationError: the stored snapshot does not fit the wire model.
    """
    fields = {name: snapshot.get(name) for name in AlertNotice.model_fields if name in snapshot}
    fields.pop("version", None)
    return AlertNotice.model_validate({**fields, "change": change, "event_id": event_id})


def _free(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(alert_events.c.lease_until.is_(None), alert_events.c.lease_until < now)


async def _any_pending(conn: AsyncConnection, now: datetime) -> bool:
    """Whether a change waits to be relayed (a read: no write lock, no row lock)."""
    pending = (
        sa.select(alert_events.c.id)
        .where(alert_events.c.relayed_at.is_(None), _free(now))
        .order_by(alert_events.c.id)
        .limit(1)
    )
    return (await conn.execute(pending)).first() is not None


async def _claim(conn: AsyncConnection, now: datetime) -> list[sa.Row[Any]]:
    free = _free(now)
    pending = (
        sa.select(alert_events.c.id)
        .where(alert_events.c.relayed_at.is_(None), free)
        .order_by(alert_events.c.id)
        .limit(RELAY_BATCH)
        .scalar_subquery()
    )
    result = await conn.execute(
        alert_events.update()
        # The outer conditions again: PostgreSQL re-checks them on a row another
        # transaction changed meanwhile, so a row claimed there is skipped here.
        .where(alert_events.c.id.in_(pending), alert_events.c.relayed_at.is_(None), free)
        .values(lease_until=now + timedelta(seconds=RELAY_LEASE_S))
        .returning(
            alert_events.c.id,
            alert_events.c.change,
            alert_events.c.at,
            alert_events.c.kind,
            alert_events.c.site,
            alert_events.c.alert,
        )
    )
    return sorted(result.all(), key=lambda row: row.id)


async def fan_out(
    conn: AsyncConnection,
    rows: Sequence[sa.Row[Any]],
    webhooks: Sequence[tuple[str, WebhookSettings]],
    now: datetime,
) -> int:
    """Add the webhook deliveries of ``rows`` (none twice); returns how many were wanted."""
    wanted = [
        {
            "webhook": name,
            "event_id": row.id,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for row in rows
        for name, hook in webhooks
        if hook.wants(row.kind, row.site, row.change)
    ]
    if wanted:
        await conn.execute(upsert(conn, webhook_deliveries).on_conflict_do_nothing(), wanted)
    return len(wanted)


class AlertRelay:
    """Publishes alert changes on MQTT and queues their webhook deliveries.

    Args:
        store: the database.
        publish: sends on MQTT with QoS 1 (raises ``PublishFailed``); None: no MQTT.
        settings: ``[alerts]``.
        webhooks: the ``[[webhooks]]`` entries.
        clock: the current time (UTC).
        on_deliveries: called when webhook deliveries were queued (wakes the dispatcher).
    """

    def __init__(
        self,
        store: Store,
        publish: Publisher | None,
        settings: AlertSettings,
        webhooks: Sequence[WebhookSettings] = (),
        *,
        clock: Callable[[], datetime] = now_utc,
        on_deliveries: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._publish = publish
        self._settings = settings
        self._webhooks = list(zip(webhook_names(list(webhooks)), webhooks, strict=True))
        self._clock = clock
        self._on_deliveries = on_deliveries
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def poke(self) -> None:
        """Ask the running relay to look for new changes now."""
        self._wake.set()

    async def flush(self) -> int:
        """Relay what is pending now (bounded rounds); returns how many events were done.

        Raises:
            StoreError: the database failed (nothing is lost: the events stay pending).
        """
        done = 0
        # One round at a time per process: the inline flush after a batch and the loop.
        async with self._lock:
            for _ in range(MAX_ROUNDS_PER_FLUSH):
                claimed, relayed = await self._round()
                done += relayed
                if claimed < RELAY_BATCH or relayed < claimed:
                    break
        return done

    async def run(self) -> None:
        """Relay until cancelled: when poked, and every ``relay_interval_s``."""
        while True:
            try:
                await self.flush()
            except StoreError as err:
                log.warning("alert relay: %s", err)
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that lands in the same loop turn as a poke (CPython gh-86296).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.relay_interval_s):
                    await self._wake.wait()
            self._wake.clear()

    async def _round(self) -> tuple[int, int]:
        now = self._clock()
        # Ingest pokes the relay after every commit, and nearly always nothing is pending:
        # look first, so that no write transaction is begun for nothing. On SQLite that
        # one took the write lock from ingest's next BEGIN IMMEDIATE, which then slept in
        # SQLite's busy handler (0.2-0.5 s per collision, measured in server.events_per_s).
        async with self._store.read("looking for alert changes") as conn:
            if not await _any_pending(conn, now):
                return 0, 0
        async with self._store.begin("claiming alert changes", stock=False) as conn:
            rows = await _claim(conn, now)
            queued = await fan_out(conn, rows, self._webhooks, now) if rows else 0
        if not rows:
            return 0, 0
        if queued and self._on_deliveries is not None:
            self._on_deliveries()
        relayed: list[int] = []
        for row in rows:
            if not await self._publish_one(row, now):
                break
            relayed.append(row.id)
        async with self._store.begin("marking alert changes relayed", stock=False) as conn:
            if relayed:
                await conn.execute(
                    alert_events.update()
                    .where(alert_events.c.id.in_(relayed))
                    .values(relayed_at=now, lease_until=None)
                )
            rest = [row.id for row in rows if row.id not in set(relayed)]
            if rest:
                # Released for the next round (the broker is down; keep their order).
                await conn.execute(
                    alert_events.update()
                    .where(alert_events.c.id.in_(rest))
                    .values(lease_until=None)
                )
        return len(rows), len(relayed)

    async def _publish_one(self, row: sa.Row[Any], now: datetime) -> bool:
        """Publish one event; False when the broker failed and it should be retried."""
        if self._publish is None or row.site is None:
            return True
        try:
            topic = topics.alerts(row.site)
            payload = notice(row.id, row.change, row.alert).model_dump_json().encode()
        except (topics.TopicError, ValidationError) as err:
            log.warning("alert event %d cannot go on MQTT: %s", row.id, err)
            return True
        try:
            await self._publish(topic, payload)
        except PublishFailed as err:
            age = (now - row.at).total_seconds()
            if age > self._settings.mqtt_retry_s:
                log.warning(
                    "alert event %d not published for %.0fs; giving up: %s", row.id, age, err
                )
                return True
            log.info("alert event %d not published yet: %s", row.id, err)
            return False
        return True
