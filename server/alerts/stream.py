"""The live stream of movements and alerts behind ``GET /api/v1/stream`` (SSE).

One ``StreamFeed`` per server instance reads the database and fans out to the open
streams. It tails two append-only tables by id: ``ledger`` (movements) and
``alert_events`` (alert changes). Reading the database rather than hooking into ingest is
what makes a stream complete when several server instances share the work: a client on
instance A sees the batches instance B applied.

Tailing by id on PostgreSQL has one trap: ids are taken when a row is inserted, and
transactions commit in any order, so id 11 may be visible before id 10. ``IdTail`` keeps
the ids it skipped ("missing") and looks for them again on every poll for
``[stream] gap_grace_s``; an id still missing then was rolled back (or its transaction is
stuck) and is given up. SQLite has one writer at a time, so there the gap list stays empty.

Bounds: at most ``[stream] max_clients`` streams (one more gets 429); each has a queue of
``queue_size`` events; a client that falls that far behind gets an ``end`` event and the
stream closes (it reconnects and catches up through ``GET /api/v1/movements`` and
``/alerts``). The poll task runs only while at least one stream is open.

Wire format (``text/event-stream``): ``event: movement`` (data: a ``MovementView``) or
``event: alert`` (data: ``{"event_id", "change", "at", "alert"}``), each with an ``id``
(``m-<ledger id>`` / ``a-<alert event id>``); a comment line ``: heartbeat`` after
``heartbeat_s`` without an event; ``event: end`` with a reason before the server closes a
stream.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

import sqlalchemy as sa

from server.config.alerts import StreamSettings
from server.errors import ServerError, StoreError
from server.queries.views import MovementView
from server.store.database import Store
from server.store.schema.alerts import alert_events
from server.store.schema.core import items, ledger

log = logging.getLogger(__name__)

Topic = Literal["movements", "alerts"]
TOPICS: Final[tuple[Topic, ...]] = ("movements", "alerts")
POLL_ROWS: Final = 2000
"""Rows read per table per poll; a full page is followed by another poll at once."""
RECHECK_IDS: Final = 1000
"""Missing ids looked for again per poll (the oldest first)."""
MAX_MISSING: Final = 20_000
"""Missing ids remembered at most (the oldest are given up beyond it)."""


class StreamFull(ServerError):
    """Every stream slot is taken."""


class StreamEnded(ServerError):
    """The server ended this stream (too slow a client, shutdown); ``str`` says why."""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event for the streams: what it is, who may see it, its SSE bytes."""

    topic: Topic
    sites: frozenset[str | None]
    """Sites it concerns (a movement: of its from and to locations; an alert: its site)."""
    sse: bytes


def sse_event(event: str, event_id: str, data: Any) -> bytes:
    body = json.dumps(data, separators=(",", ":"), default=str)
    return f"id: {event_id}\nevent: {event}\ndata: {body}\n\n".encode()


def sse_comment(text: str) -> bytes:
    return f": {text}\n\n".encode()


class IdTail:
    """Which ids of an append-only table have been delivered (see the module docstring).

    Args:
        start: deliver ids above this one.
        grace_s: how long a skipped id is looked for before it is given up.
    """

    def __init__(self, start: int, grace_s: float) -> None:
        self.high = start
        """The highest id delivered (or the start)."""
        self._grace_s = grace_s
        self._missing: dict[int, float] = {}

    def missing(self) -> list[int]:
        """Ids below ``high`` not seen yet (the oldest ``RECHECK_IDS``)."""
        return sorted(self._missing)[:RECHECK_IDS]

    def accept(self, ids: Iterable[int], now: float) -> list[int]:
        """Take the ids a poll found; returns those not delivered before, in order."""
        fresh: list[int] = []
        for row_id in sorted(set(ids)):
            if row_id > self.high:
                first_gap = max(self.high + 1, row_id - MAX_MISSING)
                for gap in range(first_gap, row_id):
                    self._missing[gap] = now
                self.high = row_id
                fresh.append(row_id)
            elif self._missing.pop(row_id, None) is not None:
                fresh.append(row_id)
        expired = [gap for gap, since in self._missing.items() if now - since >= self._grace_s]
        for gap in expired:
            del self._missing[gap]
        if len(self._missing) > MAX_MISSING:
            for gap in sorted(self._missing)[: len(self._missing) - MAX_MISSING]:
                del self._missing[gap]
        return fresh


class Subscription:
    """One open stream: the topics it wants, who may see what, its bounded queue."""

    def __init__(
        self, topics: frozenset[Topic], allows: Callable[[str | None], bool], size: int
    ) -> None:
        self.topics = topics
        self._allows = allows
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(size)
        self.ended: str | None = None

    def wants(self, event: StreamEvent) -> bool:
        return event.topic in self.topics and any(self._allows(site) for site in event.sites)

    def offer(self, event: StreamEvent) -> None:
        if self.ended is not None or not self.wants(event):
            return
        try:
            self._queue.put_nowait(event.sse)
        except asyncio.QueueFull:
            self.end("the client fell too far behind; reconnect and catch up through the API")

    def end(self, reason: str) -> None:
        """End the stream; the reader gets ``StreamEnded`` once it has what was queued."""
        if self.ended is not None:
            return
        self.ended = reason
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def next(self, timeout: float) -> bytes | None:
        """The next event's bytes, or None after ``timeout`` seconds without one.

        Raises:
            StreamEnded: the stream was ended.
        """
        try:
            # Not wait_for, which can swallow a cancellation on 3.11 (gh-86296).
            async with asyncio.timeout(timeout):
                item = await self._queue.get()
        except TimeoutError:
            return None
        if item is None:
            raise StreamEnded(self.ended or "stream ended")
        return item


class StreamFeed:
    """Reads new movements and alert changes and hands them to the open streams.

    Args:
        store: the database.
        settings: ``[stream]``.
    """

    def __init__(self, store: Store, settings: StreamSettings) -> None:
        self._store = store
        self._settings = settings
        self._subscriptions: set[Subscription] = set()
        self._owners: collections.Counter[str] = collections.Counter()
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._closed = False

    @property
    def settings(self) -> StreamSettings:
        return self._settings

    @property
    def clients(self) -> int:
        """Streams open now."""
        return len(self._subscriptions)

    def full(self, owner: str | None = None) -> bool:
        """Whether one more stream (of ``owner``, when given) would pass a limit."""
        if len(self._subscriptions) >= self._settings.max_clients:
            return True
        return owner is not None and self._owners[owner] >= self._settings.max_clients_per_key

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        topics: frozenset[Topic],
        allows: Callable[[str | None], bool],
        owner: str | None = None,
    ) -> AsyncIterator[Subscription]:
        """Open a stream; events committed after this returns are delivered to it.

        Args:
            topics: what the stream wants.
            allows: which sites its reader may see.
            owner: the API key's name (``[stream] max_clients_per_key`` applies to it).

        Raises:
            StreamFull: ``max_clients`` streams are open (or ``owner``'s share is).
            StreamEnded: the feed is closed (the server is stopping).
        """
        if self._closed:
            raise StreamEnded("the server is stopping")
        if self.full(owner):
            raise StreamFull(f"{self._settings.max_clients} streams are open already")
        subscription = Subscription(topics, allows, self._settings.queue_size)
        self._subscriptions.add(subscription)
        if owner is not None:
            self._owners[owner] += 1
        try:
            await self._ensure_polling()
            yield subscription
        finally:
            self._subscriptions.discard(subscription)
            if owner is not None:
                self._owners[owner] -= 1
                if not self._owners[owner]:
                    del self._owners[owner]
            if not self._subscriptions:
                await self._stop_polling()

    async def close(self) -> None:
        """End every stream and stop polling (server shutdown)."""
        self._closed = True
        for subscription in list(self._subscriptions):
            subscription.end("the server is stopping")
        await self._stop_polling()

    async def _ensure_polling(self) -> None:
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.create_task(self._poll(self._ready), name="stream-feed")
        assert self._ready is not None
        # The tails start at the current end of the tables: wait until they are placed, so
        # whatever is committed after ``subscribe`` returns is delivered.
        waiter = asyncio.ensure_future(self._ready.wait())
        done, _ = await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            raise StreamEnded("the stream feed stopped; try again")

    async def _stop_polling(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _poll(self, ready: asyncio.Event) -> None:
        while True:
            try:
                async with self._store.read("starting the stream") as conn:
                    movements = IdTail(
                        int(await conn.scalar(sa.select(sa.func.max(ledger.c.id))) or 0),
                        self._settings.gap_grace_s,
                    )
                    changes = IdTail(
                        int(await conn.scalar(sa.select(sa.func.max(alert_events.c.id))) or 0),
                        self._settings.gap_grace_s,
                    )
                break
            except StoreError as err:
                log.warning("stream: %s", err)
                await asyncio.sleep(self._settings.poll_interval_s)
        ready.set()
        while True:
            full = False
            try:
                async with self._store.read("reading new rows for the stream") as conn:
                    wanted = {topic for s in self._subscriptions for topic in s.topics}
                    events: list[StreamEvent] = []
                    if "movements" in wanted:
                        found, full_page = await _new_movements(conn, movements)
                        events.extend(found)
                        full = full or full_page
                    if "alerts" in wanted:
                        found, full_page = await _new_alert_changes(conn, changes)
                        events.extend(found)
                        full = full or full_page
            except StoreError as err:
                log.warning("stream: %s", err)
                events = []
            for event in events:
                for subscription in list(self._subscriptions):
                    subscription.offer(event)
            if not full:
                await asyncio.sleep(self._settings.poll_interval_s)


def _site_of(location: str | None) -> str | None:
    return location.partition(".")[0] if location is not None else None


async def _rows(
    conn: Any, select: sa.Select[Any], id_column: sa.ColumnElement[int], tail: IdTail
) -> tuple[list[Any], bool]:
    rows = list(
        await conn.execute(select.where(id_column > tail.high).order_by(id_column).limit(POLL_ROWS))
    )
    full = len(rows) == POLL_ROWS
    missing = tail.missing()
    if missing:
        rows.extend(await conn.execute(select.where(id_column.in_(missing))))
    fresh = set(tail.accept((row.id for row in rows), time.monotonic()))
    return sorted((row for row in rows if row.id in fresh), key=lambda row: row.id), full


async def _new_movements(conn: Any, tail: IdTail) -> tuple[list[StreamEvent], bool]:
    select = sa.select(ledger, items.c.sku, items.c.gtin).join(
        items, items.c.id == ledger.c.item_id
    )
    rows, full = await _rows(conn, select, ledger.c.id, tail)
    events = []
    for row in rows:
        view = MovementView.model_validate(row._mapping)
        events.append(
            StreamEvent(
                "movements",
                frozenset({_site_of(view.from_location), _site_of(view.to_location)} - {None}),
                sse_event("movement", f"m-{row.id}", view.model_dump(mode="json")),
            )
        )
    return events, full


async def _new_alert_changes(conn: Any, tail: IdTail) -> tuple[list[StreamEvent], bool]:
    select = sa.select(
        alert_events.c.id,
        alert_events.c.change,
        alert_events.c.at,
        alert_events.c.site,
        alert_events.c.alert,
    )
    rows, full = await _rows(conn, select, alert_events.c.id, tail)
    events = [
        StreamEvent(
            "alerts",
            frozenset({row.site}),
            sse_event(
                "alert",
                f"a-{row.id}",
                {
                    "event_id": row.id,
                    "change": row.change,
                    "at": row.at.isoformat(),
                    "alert": row.alert,
                },
            ),
        )
        for row in rows
    ]
    return events, full
