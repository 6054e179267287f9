"""Retention: dead letters, batch records and (where safe) seen event ids are pruned.

``[retention]`` says how long each is kept; the server prunes every ``prune_interval_s``
(each instance; deleting what another instance already deleted is harmless) and
``stockgate server prune --config ...`` does it once. Deletes go in chunks of
``PRUNE_CHUNK`` rows, each its own short transaction, so pruning a large backlog never
holds the apply loop's lock for long.

- Dead letters older than ``dead_letter_days`` go, replayed or not: a quarantined event
  (``clock_skew``) that nobody replayed in that time goes with the rest, its alert having
  been open all along.
- Batch records (the receipt of each batch: ids, ranges, counts) older than ``batch_days``.
- Seen event ids make "applied exactly once" hold: a re-delivered event is skipped because
  its id is there. An id may only go once its event can never arrive again, and nothing
  bounds how long an edge can hold an unacknowledged event (an outbox offline for weeks,
  a broker's queue). So they are kept for ever unless ``seen_event_days`` is set; then ids
  older than that are pruned *and* ingest refuses events whose time is older than the same
  horizon (``stale_event`` dead letters, for a person to look at): an event old enough to
  have had its id pruned can no longer be applied a second time, because it can no longer
  be applied at all. (An event's time is never later than its first arrival, since events
  from the future are quarantined.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

import sqlalchemy as sa

from server.config.settings import RetentionSettings, ServerSettings
from server.errors import StoreError
from server.store.database import Store
from server.store.schema.core import batches, dead_letters, seen_events
from wire.models import now_utc

log = logging.getLogger(__name__)

PRUNE_CHUNK: Final = 5_000


async def _prune_table(
    store: Store, table: sa.Table, key: sa.Column[object], when: sa.Column[object], cut: datetime
) -> int:
    removed = 0
    while True:
        chunk = sa.select(key).where(when < cut).limit(PRUNE_CHUNK).scalar_subquery()
        async with store.begin(f"pruning {table.name}") as conn:
            result = await conn.execute(table.delete().where(key.in_(chunk)))
        count = int(result.rowcount or 0)
        removed += count
        if count < PRUNE_CHUNK:
            return removed
        await asyncio.sleep(0)  # let ingest take the lock between chunks


async def prune(store: Store, settings: RetentionSettings, now: datetime) -> dict[str, int]:
    """Delete what ``settings`` no longer keeps; rows removed per table."""
    removed = {
        "dead_letters": await _prune_table(
            store,
            dead_letters,
            dead_letters.c.id,
            dead_letters.c.received_at,
            now - timedelta(days=settings.dead_letter_days),
        ),
        "batches": await _prune_table(
            store,
            batches,
            batches.c.id,
            batches.c.received_at,
            now - timedelta(days=settings.batch_days),
        ),
    }
    if settings.seen_event_days:
        removed["seen_events"] = await _prune_table(
            store,
            seen_events,
            seen_events.c.event_id,
            seen_events.c.seen_at,
            now - timedelta(days=settings.seen_event_days),
        )
    return removed


async def prune_command(settings: ServerSettings) -> int:
    """``stockgate server prune``: prune once now and say what went."""
    store = Store.open(settings.database)
    try:
        await store.migrate()
        removed = await prune(store, settings.retention, now_utc())
    finally:
        await store.close()
    for table, count in removed.items():
        print(f"{table}: {count} row(s) pruned")
    return 0


class Pruner:
    """Prunes every ``prune_interval_s`` until cancelled."""

    def __init__(
        self, store: Store, settings: RetentionSettings, clock: Callable[[], datetime] = now_utc
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock

    async def run(self) -> None:
        while True:
            try:
                removed = await prune(self._store, self._settings, self._clock())
            except StoreError as err:
                log.warning("pruning failed, tried again later: %s", err)
            else:
                if any(removed.values()):
                    log.info("pruned %s", ", ".join(f"{n} {t}" for t, n in removed.items()))
            await asyncio.sleep(self._settings.prune_interval_s)
