"""The durable edge outbox: every business event lives here until the server acknowledges it.

It is the only durable store on the edge (docs/architecture.md §4): one SQLite file,
whose schema, opening, lock and statements are ``edge.buffer.storage``'s (WAL mode,
``synchronous=FULL``, event ids ``{gateway}:{epoch}:{seq}`` whose numbers are never
reused, one process at a time). This module holds the policies: when a commit happens,
what is refused, what the publisher gets and when an event is deleted.

Durability point. ``append`` is synchronous and cheap: it gives the event its id, turns it
into JSON and puts it on a pending list. A flusher task owned by the outbox commits the
pending list in one transaction at most ``commit_interval_ms`` after the first pending
append, or sooner when ``flush_threshold`` events are pending. An event is *committed*
(survives a crash or power loss) once a flush that included it has returned; ``flush()``
forces one. Only committed events are ever handed to the publisher, so nothing leaves the
box that is not on its disk first.

Delivery. The publisher takes committed events oldest first (``next_batch``) and deletes
them only when the server's Ack names them (``ack``); an Ack of another epoch (an earlier
disk's) deletes nothing.

Capacity policy. The outbox holds at most ``max_events`` events (committed plus pending).
When it is full it *keeps the oldest and refuses new ones*: ``append`` raises
``OutboxFull``, ``full`` turns true (health and status report it) and an error is logged
once. The oldest unacknowledged events are receipts and shipments that have physically
happened; dropping them silently would corrupt stock, while a refused new read is visible
and alarmed, and the portal reads it again if the goods are still there. The agent raises
an earlier alarm at ``[buffer] alarm_ratio`` of the bound (``edge.monitor``), so the
refusing starts only after someone has been told. Age is bounded the same way: an
oldest event older than ``[buffer] max_age_s`` raises an alarm and is kept, never deleted
for its age.

Disk full (or any failing commit). The events of a failed commit stay pending, in order,
and the flusher retries them every ``FLUSH_RETRY_S``; ``commit_error`` says why (the
status lists it as the critical issue ``outbox_unwritable``). Memory is bounded meanwhile:
past ``max_uncommitted`` pending events ``append`` refuses new ones (``OutboxFull``, as
when the outbox is full), so a disk that stays full costs a bounded amount of RAM and the
refusals are loud. Nothing committed is touched, and nothing is acknowledged to anyone
before its commit, so a crash while the disk is full loses at most the pending events
(never more than ``max_uncommitted``), which no one was told were stored. Once the disk
has room again the next retry commits them. ``max_file_mb`` bounds the outbox file itself
(SQLite's ``max_page_count``): past it a commit fails exactly as on a full disk, so the
outbox cannot take the last free bytes of a disk it shares with the system.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, Final, TypeVar

import aiosqlite

import edge.buffer.storage as storage
from edge.buffer.errors import OutboxError, OutboxFull, OutboxLocked
from wire.models import Event

__all__ = [
    "DEFAULT_COMMIT_INTERVAL_MS",
    "DEFAULT_FLUSH_THRESHOLD",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_UNCOMMITTED",
    "FLUSH_RETRY_S",
    "MAX_READ_BATCH",
    "CommitListener",
    "Outbox",
    "OutboxError",
    "OutboxFull",
    "OutboxLocked",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_COMMIT_INTERVAL_MS: Final = 200
DEFAULT_MAX_EVENTS: Final = 5_000_000
DEFAULT_MAX_UNCOMMITTED: Final = 20_000
"""Events held in memory while commits fail, before new ones are refused."""
DEFAULT_FLUSH_THRESHOLD: Final = 2_000
"""Pending events that trigger a commit before the interval is over."""
MAX_READ_BATCH: Final = 1_000
"""Most events one ``next_batch`` call returns (the wire's MAX_BATCH_EVENTS)."""
FLUSH_RETRY_S: Final = 1.0
"""Pause before the flusher retries a failed commit (disk full, I/O error)."""

CommitListener = Callable[[], None]


class Outbox:
    """A durable, bounded, ordered store of events waiting for the server's Ack.

    Build one with ``Outbox.open(...)``; it is usable only inside that context.
    """

    def __init__(
        self,
        db: aiosqlite.Connection,
        path: Path,
        gateway: str,
        epoch: str,
        next_seq: int,
        depth: int,
        *,
        commit_interval_ms: int,
        max_events: int,
        flush_threshold: int,
        max_uncommitted: int = DEFAULT_MAX_UNCOMMITTED,
    ) -> None:
        self._db = db
        self.max_uncommitted = max_uncommitted
        self.commit_error: str | None = None
        """Why the last commit failed; None while commits work."""
        self.path = path
        self.gateway = gateway
        self.epoch = epoch
        self._next_seq = next_seq
        self._committed_depth = depth
        self._commit_interval_s = commit_interval_ms / 1000
        self.max_events = max_events
        self._flush_threshold = flush_threshold
        self._prefix = f"{gateway}:{epoch}:"
        self._pending: list[tuple[int, str, float]] = []
        self._flushing = 0
        """Events taken off ``_pending`` by a commit still running (counted in the depth)."""
        self._lock = asyncio.Lock()
        self._has_pending = asyncio.Event()
        self._threshold_reached = asyncio.Event()
        self._listeners: list[CommitListener] = []
        self._full = False
        self.refused = 0
        """Events refused because the outbox was full, since it was opened."""
        self.last_committed_seq = next_seq - 1

    # -- opening ----------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        path: Path | str,
        gateway: str,
        *,
        commit_interval_ms: int = DEFAULT_COMMIT_INTERVAL_MS,
        max_events: int = DEFAULT_MAX_EVENTS,
        flush_threshold: int = DEFAULT_FLUSH_THRESHOLD,
        max_uncommitted: int = DEFAULT_MAX_UNCOMMITTED,
        max_file_mb: int | None = None,
    ) -> AsyncIterator[Outbox]:
        """Open (or create) the outbox at ``path`` and run its flusher until the context ends.

        Leaving the context commits whatever is pending, also on cancellation.

        Args:
            path: the SQLite file; its directory must exist.
            gateway: this gateway's id, the first part of every event id.
            commit_interval_ms: longest time an appended event waits for its commit.
            max_events: capacity (committed plus pending events).
            flush_threshold: pending events that trigger an early commit.
            max_uncommitted: pending events held while commits fail before new ones are
                refused.
            max_file_mb: largest size of the outbox file; None: only the disk bounds it.

        Raises:
            OutboxLocked: another process has this outbox open.
            OutboxError: the file cannot be opened, is not an outbox, or belongs to
                another gateway.
        """
        if min(commit_interval_ms, max_events, flush_threshold, max_uncommitted) <= 0:
            raise ValueError(
                "commit_interval_ms, max_events, flush_threshold and max_uncommitted must be > 0"
            )
        path = Path(path)
        lock_fd = storage.lock(path)
        try:
            db = await storage.connect(path)
            try:
                outbox = await cls._load(
                    db,
                    path,
                    gateway,
                    commit_interval_ms=commit_interval_ms,
                    max_events=max_events,
                    flush_threshold=flush_threshold,
                )
                outbox.max_uncommitted = max_uncommitted
                if max_file_mb is not None:
                    await storage.bound_file(db, path, max_file_mb)
                flusher = asyncio.create_task(outbox._flush_loop(), name=f"outbox-flush:{path}")
                try:
                    yield outbox
                finally:
                    flusher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await flusher
                    # A cancelled agent must still keep its reads: flush() runs to the end.
                    await outbox.flush()
            finally:
                await db.close()
        finally:
            os.close(lock_fd)

    @classmethod
    async def _load(
        cls,
        db: aiosqlite.Connection,
        path: Path,
        gateway: str,
        *,
        commit_interval_ms: int,
        max_events: int,
        flush_threshold: int,
    ) -> Outbox:
        stored = await storage.load(db, path, gateway)
        if stored.created:
            log.info("outbox %s created with epoch %s", path, stored.epoch)
        log.info(
            "outbox %s open: epoch %s, %d unacknowledged events, next seq %d",
            path,
            stored.epoch,
            stored.depth,
            stored.next_seq,
        )
        return cls(
            db,
            path,
            gateway,
            stored.epoch,
            stored.next_seq,
            stored.depth,
            commit_interval_ms=commit_interval_ms,
            max_events=max_events,
            flush_threshold=flush_threshold,
        )

    # -- writing ----------------------------------------------------------------------

    def append(self, build: Callable[[str], Event]) -> str:
        """Give a new event its id, build it and queue it for the next commit.

        Cheap and synchronous: no I/O happens here. The event is durable once the next
        flush returns (at most ``commit_interval_ms`` later).

        Args:
            build: called once with the new event id; returns the event carrying it.

        Returns:
            The event id.

        Raises:
            OutboxFull: the outbox holds ``max_events`` events; nothing was queued.
        """
        if self.commit_error is not None and self.uncommitted() >= self.max_uncommitted:
            self.refused += 1
            raise OutboxFull(
                f"outbox {self.path} cannot commit ({self.commit_error}) and holds "
                f"{self.max_uncommitted} events in memory already"
            )
        if self.depth() >= self.max_events:
            self.refused += 1
            if not self._full:
                self._full = True
                log.error(
                    "ALARM outbox %s is full (%d events): refusing new events and keeping the "
                    "oldest until the server acknowledges some",
                    self.path,
                    self.max_events,
                )
            raise OutboxFull(f"outbox {self.path} is full ({self.max_events} events)")
        seq = self._next_seq
        event_id = f"{self._prefix}{seq}"
        body = build(event_id).model_dump_json()
        # Only now is the number used: a failing build must not leave a gap.
        self._next_seq = seq + 1
        self._pending.append((seq, body, time.time()))
        self._has_pending.set()
        if len(self._pending) >= self._flush_threshold:
            self._threshold_reached.set()
        return event_id

    async def flush(self) -> int:
        """Commit every pending event now.

        The commit runs to its end even if the caller is cancelled meanwhile (the
        cancellation is raised afterwards), so a transaction is never left half done.

        Returns:
            How many events this call committed.

        Raises:
            OutboxError: the commit failed; the events stay pending and are retried.
        """
        return await _complete(self._flush())

    async def _flush(self) -> int:
        async with self._lock:
            rows, self._pending = self._pending, []
            self._threshold_reached.clear()
            if not rows:
                self._has_pending.clear()
                return 0
            next_seq = rows[-1][0] + 1
            self._flushing = len(rows)
            try:
                await storage.insert_events(self._db, rows, next_seq)
            except sqlite3.Error as err:
                # Put them back in front, in order, so the retry commits the same ids.
                self._pending[:0] = rows
                if self.commit_error is None:
                    log.error(
                        "ALARM outbox %s cannot commit (%s): %d events held in memory, new "
                        "events refused past %d",
                        self.path,
                        err,
                        len(self._pending),
                        self.max_uncommitted,
                    )
                self.commit_error = str(err)
                raise OutboxError(f"outbox {self.path}: commit failed: {err}") from err
            finally:
                self._flushing = 0
            if self.commit_error is not None:
                log.warning("outbox %s commits again (%d events committed)", self.path, len(rows))
                self.commit_error = None
            self._committed_depth += len(rows)
            self.last_committed_seq = rows[-1][0]
            if not self._pending:
                self._has_pending.clear()
        for listener in self._listeners:
            listener()
        return len(rows)

    async def _flush_loop(self) -> None:
        while True:
            await self._has_pending.wait()
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
            # arrives as the event is set (gh-86296), and the owner would wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._commit_interval_s):
                    await self._threshold_reached.wait()
            try:
                await self.flush()
            except OutboxError as err:
                log.error("%s; retrying in %.1fs", err, FLUSH_RETRY_S)
                await asyncio.sleep(FLUSH_RETRY_S)

    def on_commit(self, listener: CommitListener) -> None:
        """Call ``listener`` (synchronously, on the loop) after every commit that added events."""
        self._listeners.append(listener)

    # -- reading and acknowledging ----------------------------------------------------

    async def next_batch(self, after_seq: int, limit: int) -> list[tuple[int, str]]:
        """Committed events with a sequence number above ``after_seq``, oldest first.

        Args:
            after_seq: the highest sequence number already taken (e.g. in flight).
            limit: most events to return, 1..MAX_READ_BATCH.

        Returns:
            ``(seq, event_json)`` pairs.
        """
        if not 1 <= limit <= MAX_READ_BATCH:
            raise ValueError(f"limit must be 1..{MAX_READ_BATCH}, got {limit}")
        async with self._lock:
            try:
                return await storage.read_events(self._db, after_seq, limit)
            except sqlite3.Error as err:
                raise OutboxError(f"outbox {self.path}: read failed: {err}") from err

    async def ack(self, epoch: str, seq_first: int, seq_last: int) -> int:
        """Delete the events ``seq_first..seq_last`` of ``epoch`` the server has committed.

        An epoch other than this outbox's deletes nothing (it belongs to an earlier disk).

        Returns:
            How many events were deleted (0 for a repeated Ack).

        Raises:
            OutboxError: the delete failed; the events stay and will be sent again.
        """
        if epoch != self.epoch or seq_last < seq_first:
            return 0
        return await _complete(self._ack(seq_first, seq_last))

    async def _ack(self, seq_first: int, seq_last: int) -> int:
        async with self._lock:
            try:
                deleted = await storage.delete_events(self._db, seq_first, seq_last)
            except sqlite3.Error as err:
                raise OutboxError(f"outbox {self.path}: delete failed: {err}") from err
            self._committed_depth -= deleted
        if self._full and self.depth() < self.max_events:
            self._full = False
            log.warning("outbox %s accepts events again (%d held)", self.path, self.depth())
        return deleted

    # -- health -----------------------------------------------------------------------

    def depth(self) -> int:
        """Events held: committed and still unacknowledged, plus pending."""
        return self._committed_depth + self._flushing + len(self._pending)

    def uncommitted(self) -> int:
        """Events appended and not yet committed (pending or in a running commit)."""
        return self._flushing + len(self._pending)

    @property
    def pending(self) -> int:
        """Events appended but not yet committed."""
        return len(self._pending)

    @property
    def full(self) -> bool:
        """Refusing new events: from the first refusal at ``max_events`` until an Ack makes
        room again, or while commits fail and memory holds ``max_uncommitted`` events."""
        if self.commit_error is not None and self.uncommitted() >= self.max_uncommitted:
            return True
        return self._full

    async def oldest_age_s(self) -> float | None:
        """Seconds since the oldest held event was appended; None when the outbox is empty."""
        async with self._lock:
            try:
                stored = await storage.oldest_created_at(self._db)
            except sqlite3.Error as err:
                raise OutboxError(f"outbox {self.path}: read failed: {err}") from err
        if stored is not None:
            oldest = stored
        elif self._pending:
            oldest = self._pending[0][2]
        else:
            return None
        # The wall clock may step back (NTP); an age is never negative.
        return max(0.0, time.time() - oldest)

    async def storage_modes(self) -> tuple[str, int]:
        """``(journal_mode, synchronous)`` in effect, for health checks and tests."""
        async with self._lock:
            modes = await storage.storage_modes(self._db)
        if modes is None:
            raise OutboxError(f"outbox {self.path}: PRAGMA returned no row")
        return modes


async def _complete(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end even when the caller is cancelled, then let the cancel through.

    A cancelled ``await`` on an aiosqlite call does not stop the call on its thread, so
    giving up half way would leave a transaction open and every later BEGIN would fail.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            log.error("outbox write failed during cancellation: %s", task.exception())
        raise
