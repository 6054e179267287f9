"""Following the ledger by id into the history sinks, exactly where each one stopped.

A follower reads ledger rows in id order after its stored position
(``history_cursors.position``) and hands them to one sink. It runs in its own task, in its
own transactions, never inside ingest's: ingest does not wait for history, and a sink that
is down only makes its follower fall behind (it catches up when the sink is back).

Exactly once, per kind of sink:

- A *transactional* sink (the SQL rollups) writes in the same transaction that moves the
  position, so a crash or a failed commit leaves both as they were. The rows are read and
  summed before that transaction (on SQLite it holds the one writer, which ingest waits
  for), and written only if the position is still the one they were read from.
- An *external* sink (InfluxDB) is written first and the position moved after; a crash in
  between sends those rows again, and the sink makes each point unique by series and
  timestamp, so the second write replaces the first (``server.history.influx``).

Settled ids. Every id at or below the position is settled: its row has been handed over,
or it is known never to commit. On SQLite there is one writer and ids are assigned in
commit order, so any id missing below a visible one will never appear. On PostgreSQL ids
are taken from a sequence when a row is inserted and transactions commit in any order, so
id 11 can be visible while id 10 is still in an open transaction (or rolled back, leaving
a hole forever). The follower hands over only the unbroken run after its position and
waits at the first missing id: after ``[history] gap_settle_s`` it notes the newest
transaction id the database has handed out (the snapshot's ``xmax``); once every
transaction older than that has ended (the snapshot's ``xmin`` has passed it) and the id
is still missing in a read made after that, no transaction can commit it any more, and the
follower steps over it. Nothing is skipped on a timer alone.

Several instances: only the holder of a follower's lease (``owner``, ``lease_until``) reads
and writes; it renews the lease every step and releases it on shutdown, and another
instance takes over when a lease runs out. Every position change is conditional on the
lease and the old position, so an instance that lost its lease changes nothing. An instance
that finds the cursor row held by another one (a lease not run out, or a step of the holder
in progress: the row is locked, and the look skips it instead of waiting for the holder's
commit) leaves without writing anything.

Ingest first: while the instance's ingest has batches in hand (``busy``), a follower waits
up to ``[history] defer_to_ingest_s`` before it steps, and once it has waited that long it
catches up with the ledger before it waits again. Bursts of batches are applied without
the followers' reads, Python work and (on SQLite) write transactions in between; history
lags them by about that wait, and keeps up with a steady load all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from plumbing.records import record
from server.config.history import HistorySettings
from server.errors import LeaseLost, SinkUnavailable, StoreError
from server.history.gaps import GapWatch, transaction_horizon
from server.store.database import Store
from server.store.dialect import upsert
from server.store.schema.core import items, ledger
from server.store.schema.history import history_cursors

log = logging.getLogger(__name__)

READS_PER_STEP = 3
"""Reads a transactional step makes at most when the position moves under each one."""
DEFER_POLL_S = 0.1
"""How often a follower deferring to ingest looks again."""

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def instance_name() -> str:
    """A name for this process as a lease owner: host, pid and a random part."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@record
class LedgerRow:
    """One ledger row as the sinks need it (the item's SKU joined in)."""

    id: int
    event_time: datetime
    item_id: int
    sku: str
    epc: str | None
    event_id: str | None
    from_location: str | None
    to_location: str | None
    quantity: int
    kind: str
    read_point: str | None
    actor: str


class TransactionalSink(Protocol):
    """A sink in the server's own database: written in the follower's transaction."""

    name: str

    def prepare(self, rows: Sequence[LedgerRow]) -> Any:
        """What ``rows`` add to the sink, made before the write transaction (no I/O)."""

    async def apply(self, conn: AsyncConnection, prepared: Any) -> None:
        """Write what ``prepare`` made, in the follower's transaction."""

    async def after(self, store: Store, start: int, rows: Sequence[LedgerRow]) -> None:
        """Work of the sink's own after each step, in transactions of its own (the rollups'
        valuation books); run by the lease holder only. ``rows``: the step's rows, every
        ledger row after ``start`` up to the last of them, in id order (the sink may take
        them instead of reading them again)."""


class ExternalSink(Protocol):
    """A sink elsewhere: ``send`` returns once the rows are stored there.

    Raises (from ``send``):
        SinkUnavailable: the rows were not (all) stored; they will be sent again.
    """

    name: str

    async def send(self, rows: Sequence[LedgerRow]) -> None: ...


def _row_select(after: int, limit: int) -> sa.Select[Any]:
    # By id only: the primary key serves it whatever other indexes the ledger has.
    return (
        sa.select(
            ledger.c.id,
            ledger.c.event_time,
            ledger.c.item_id,
            items.c.sku,
            ledger.c.epc,
            ledger.c.event_id,
            ledger.c.from_location,
            ledger.c.to_location,
            ledger.c.quantity,
            ledger.c.kind,
            ledger.c.read_point,
            ledger.c.actor,
        )
        .join(items, items.c.id == ledger.c.item_id)
        .where(ledger.c.id > after)
        .order_by(ledger.c.id)
        .limit(limit)
    )


async def read_rows(conn: AsyncConnection, after: int, limit: int) -> list[LedgerRow]:
    """Up to ``limit`` ledger rows with ids above ``after``, in id order."""
    return [LedgerRow(*row) for row in await conn.execute(_row_select(after, limit))]


class LedgerFollower:
    """Follows the ledger into one sink, holding the lease of its cursor while it does.

    Args:
        store: the server's database.
        sink: where the rows go (transactional or external; see the module docstring).
        settings: ``[history]``.
        owner: this instance's name as a lease holder.
        clock: wall-clock time for leases (tests pass their own).
        on_rows: told (sink name, rows) after rows are handed over and the position moved
            (the server counts them in its metrics).
        busy: True while the instance's ingest has batches in hand (``Ingestor.busy``); the
            follower defers to it (``[history] defer_to_ingest_s``).
        monotonic: the clock of that wait (tests pass their own).
    """

    def __init__(
        self,
        store: Store,
        sink: TransactionalSink | ExternalSink,
        settings: HistorySettings,
        *,
        owner: str | None = None,
        clock: Clock = utc_now,
        on_rows: Callable[[str, Sequence[LedgerRow]], None] | None = None,
        busy: Callable[[], bool] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._busy = busy
        self._monotonic = monotonic
        self._deferred_since: float | None = None
        self._catching_up = False
        self._sink = sink
        self._settings = settings
        self.owner = owner or instance_name()
        self._clock = clock
        self._gaps = GapWatch(store.dialect, settings.gap_settle_s)
        self._on_rows = on_rows
        self.rows_followed = 0
        """Rows handed to the sink by this follower since it was made."""

    @property
    def name(self) -> str:
        return self._sink.name

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Follow until cancelled (or ``stop`` is set); failures are logged and retried."""
        try:
            while stop is None or not stop.is_set():
                if self.deferring():
                    await self._sleep(DEFER_POLL_S, stop)
                    continue
                try:
                    moved = await self.step()
                except (StoreError, SinkUnavailable) as err:
                    log.warning(
                        "history %s: %s; retrying in %.0f s", self.name, err, self._settings.retry_s
                    )
                    await self._sleep(self._settings.retry_s, stop)
                    continue
                if not moved:
                    self._catching_up = False
                    await self._sleep(self._settings.poll_interval_s, stop)
        finally:
            with contextlib.suppress(StoreError, OSError):
                await asyncio.shield(self.release())

    @property
    def catching_up(self) -> bool:
        """True from the moment a wait for ingest ran out until the follower caught up."""
        return self._catching_up

    def deferring(self) -> bool:
        """Whether to wait for ingest now (see the module docstring, "Ingest first")."""
        limit = self._settings.defer_to_ingest_s
        if self._busy is None or limit <= 0 or self._catching_up or not self._busy():
            self._deferred_since = None
            return False
        now = self._monotonic()
        if self._deferred_since is None:
            self._deferred_since = now
        if now - self._deferred_since < limit:
            return True
        # Waited long enough: follow until caught up, whatever ingest does meanwhile.
        self._deferred_since = None
        self._catching_up = True
        return False

    @staticmethod
    async def _sleep(seconds: float, stop: asyncio.Event | None) -> None:
        if stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    async def step(self) -> int:
        """Hand the next settled rows to the sink; returns how many (0: nothing to do now,
        caught up, waiting on a missing id, or another instance holds the lease).

        Raises:
            StoreError: the database failed (nothing moved).
            SinkUnavailable: the external sink did not take the rows (nothing moved).
        """
        if hasattr(self._sink, "apply"):
            return await self._step_transactional()
        return await self._step_external()

    async def _step_transactional(self) -> int:
        sink: TransactionalSink = self._sink  # type: ignore[assignment]
        for _ in range(READS_PER_STEP):
            # The rows are read and summed before the write transaction: on SQLite that
            # transaction holds the one writer, which ingest waits for, so it only writes.
            async with self._store.read(f"reading the ledger for {self.name}") as conn:
                looked = await self._look(conn)
                if looked is None:
                    return 0
                rows = await self._settled(conn, looked)
            prepared = sink.prepare(rows)
            try:
                async with self._store.begin(
                    f"following the ledger into {self.name}", stock=False
                ) as conn:
                    position = await self._claim(conn)
                    if position is None:
                        return 0
                    if position != looked:
                        continue  # moved since the read (a rebuild, the lease's last holder)
                    if rows:
                        await sink.apply(conn, prepared)
                        await self._advance(conn, position, rows[-1].id)
            except LeaseLost:
                return 0
            if rows:
                self._handed_over(rows)
            await sink.after(self._store, looked, rows)
            return len(rows)
        return 0

    def _handed_over(self, rows: Sequence[LedgerRow]) -> None:
        self.rows_followed += len(rows)
        if self._on_rows is not None:
            self._on_rows(self.name, rows)

    async def _step_external(self) -> int:
        sink: ExternalSink = self._sink  # type: ignore[assignment]
        async with self._store.begin(f"renewing the {self.name} lease", stock=False) as conn:
            position = await self._claim(conn)
        if position is None:
            return 0
        async with self._store.read(f"reading the ledger for {self.name}") as conn:
            rows = await self._settled(conn, position)
        if not rows:
            return 0
        await sink.send(rows)
        try:
            async with self._store.begin(f"moving the {self.name} position", stock=False) as conn:
                await self._advance(conn, position, rows[-1].id)
        except LeaseLost:
            # Whoever holds the lease now sends these rows again; the points replace these.
            return 0
        self._handed_over(rows)
        return len(rows)

    async def _settled(self, conn: AsyncConnection, position: int) -> list[LedgerRow]:
        xmin: int | None = None
        if self._store.dialect == "postgresql":
            xmin, xmax = await transaction_horizon(conn)
            if self._gaps.wants_horizon():
                self._gaps.note_horizon(xmax)
        rows = await read_rows(conn, position, self._settings.batch_rows)
        return self._gaps.settled(position, rows, xmin)

    async def _look(self, conn: AsyncConnection) -> int | None:
        """The position, read without writing; None while another instance's lease runs."""
        cursor = history_cursors.c
        row = (
            await conn.execute(
                sa.select(cursor.position, cursor.owner, cursor.lease_until).where(
                    cursor.name == self.name
                )
            )
        ).first()
        if row is None:
            return 0
        held = self._held_by_another(row.owner, row.lease_until, self._clock())
        return None if held else int(row.position)

    def _held_by_another(
        self, owner: str | None, lease_until: datetime | None, now: datetime
    ) -> bool:
        """Whether a cursor row with ``owner`` and ``lease_until`` is another's lease."""
        return owner not in (None, self.owner) and lease_until is not None and lease_until >= now

    async def _claim(self, conn: AsyncConnection) -> int | None:
        """Take or renew the lease; the position when this instance holds it, else None.

        The cursor row is looked at first, skipping it if it is locked (PostgreSQL: the
        holder is in the middle of a step), so an instance that does not hold the lease
        neither waits for the holder's transaction nor writes anything.
        """
        now = self._clock()
        cursor = history_cursors.c
        row = (
            await conn.execute(
                sa.select(cursor.owner, cursor.lease_until)
                .where(cursor.name == self.name)
                .with_for_update(skip_locked=True)
            )
        ).first()
        if row is None:
            exists = await conn.scalar(sa.select(cursor.name).where(cursor.name == self.name))
            if exists is not None:
                return None
            await conn.execute(
                upsert(conn, history_cursors)
                .values(name=self.name, position=0, owner=None, lease_until=None, updated_at=now)
                .on_conflict_do_nothing()
            )
        elif self._held_by_another(row.owner, row.lease_until, now):
            return None
        claimed = await conn.execute(
            sa.update(history_cursors)
            .where(
                cursor.name == self.name,
                sa.or_(
                    cursor.owner.is_(None), cursor.owner == self.owner, cursor.lease_until < now
                ),
            )
            .values(owner=self.owner, lease_until=now + timedelta(seconds=self._settings.lease_s))
        )
        if claimed.rowcount != 1:
            return None
        position = await conn.scalar(sa.select(cursor.position).where(cursor.name == self.name))
        return int(position) if position is not None else None

    async def _advance(self, conn: AsyncConnection, old: int, new: int) -> None:
        cursor = history_cursors.c
        moved = await conn.execute(
            sa.update(history_cursors)
            .where(cursor.name == self.name, cursor.owner == self.owner, cursor.position == old)
            .values(position=new, updated_at=self._clock())
        )
        if moved.rowcount != 1:
            log.warning(
                "history %s: lost the lease (or the position moved); stepping back", self.name
            )
            raise LeaseLost(f"{self.name}: the lease or the position changed under this instance")

    async def release(self) -> None:
        """Give the lease up so another instance can take over at once."""
        async with self._store.begin(f"releasing the {self.name} lease", stock=False) as conn:
            await conn.execute(
                sa.update(history_cursors)
                .where(history_cursors.c.name == self.name, history_cursors.c.owner == self.owner)
                .values(owner=None, lease_until=None)
            )


async def position_on(conn: AsyncConnection, name: str) -> int:
    """Where the follower ``name`` stands, read on ``conn`` (0 when it never ran)."""
    position = await conn.scalar(
        sa.select(history_cursors.c.position).where(history_cursors.c.name == name)
    )
    return int(position) if position is not None else 0


async def cursor_position(store: Store, name: str) -> int:
    """Where a follower stands (0 when it never ran)."""
    async with store.read(f"reading the {name} position") as conn:
        return await position_on(conn, name)


async def last_ledger_id(store: Store) -> int:
    """The highest ledger id committed (0 for an empty ledger)."""
    async with store.read("reading the newest ledger id") as conn:
        newest = await conn.scalar(sa.select(sa.func.max(ledger.c.id)))
    return int(newest) if newest is not None else 0
