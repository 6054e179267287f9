"""Keeping the valuation books at checkpoints (``server.reports.book_state``) as the ledger
grows: in the rollups follower's transaction (``server.history.rollups.RollupSink``), by
``stockgate server rebuild-history`` from the whole ledger, and checked by
``check-history``.

A follower step with rows up to id ``upto``:

1. an item with a row that crosses a site boundary before the newest checkpoint (a late
   event) has its books computed again from the checkpoint before that row (or from its
   first row) through the newest checkpoint, from its ledger rows up to ``upto``;
2. once the rows reach a boundary after the newest checkpoint (and the clock has passed
   it), the books at the newest checkpoint go on through the rows up to that boundary,
   and every boundary passed becomes a checkpoint;
3. up to ``REPAIR_ITEMS`` items whose cost rows changed since their books were computed
   are computed again from the start (reports replay those items until then); the sink
   looks for them only while the cost tables have rows it has not seen settled
   (``costs_seen``), so a step without new costs does not count them.

A checkpoint holds a row only for the books that a ledger row (of those that move value)
changed since the boundary before; the books at a boundary are each book's newest row at
or before it (``stored_books``: one look by the key ``(item, site, boundary)`` per book of
``book_keys``). So a checkpoint costs what the day's rows changed, not every book, and a
book computed again (a late row, changed costs) has its rows after the start replaced.

The steps run in transactions of their own after the rollups follower's
(``server.history.rollups.RollupSink.after``), over the rows up to its position, and each
moves the books' own position (``book_cursor``) with what it wrote: a step that fails
leaves the checkpoints as they were, and the next one does the same rows again. A step
holds SQLite's write lock for what one day's rows changed, apart from the rollups'.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Final, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.reports.book_state import (
    STEP,
    boundaries_between,
    boundary_at_or_before,
    changed_costs,
    cost_counts,
    dump_book,
    load_book,
)
from server.reports.valuation import (
    Book,
    Books,
    CostRow,
    cost_row_select,
    recorded_costs,
    standard_costs,
)
from server.store.dialect import execute_many, upsert
from server.store.schema.core import ledger
from server.store.schema.costs import item_costs, receipt_costs
from server.store.schema.history import (
    book_checkpoint_marks,
    book_checkpoints,
    book_cost_marks,
    book_cursor,
    book_keys,
)
from server.store.sites import site_of

BookKey = tuple[int, str]
"""(item id, site)."""

ROW_PAGE: Final = 5000
"""Ledger rows read at a time while books are computed (pages, so the writes of a
checkpoint can go in between)."""
REPAIR_ITEMS: Final = 20
"""Items whose costs changed computed again per follower step (bounds a step's time)."""
FOREVER: Final = datetime(1900, 1, 1, tzinfo=UTC)
"""Books kept at checkpoints count their flows from the first row on."""
LATEST: Final = datetime(9999, 1, 1, tzinfo=UTC)


class BookRow(Protocol):
    """What a follower step needs of a ledger row (``server.history.follow.LedgerRow`` has
    these fields)."""

    @property
    def id(self) -> int: ...
    @property
    def event_time(self) -> datetime: ...
    @property
    def item_id(self) -> int: ...
    @property
    def from_location(self) -> str | None: ...
    @property
    def to_location(self) -> str | None: ...


def crosses(from_location: str | None, to_location: str | None) -> bool:
    """Whether a row moves stock across a site's boundary (only those move value)."""
    source = site_of(from_location) if from_location is not None else None
    target = site_of(to_location) if to_location is not None else None
    return source != target


async def marks(conn: AsyncConnection) -> list[datetime]:
    """The boundaries with complete checkpoints, oldest first."""
    rows = await conn.execute(
        sa.select(book_checkpoint_marks.c.boundary).order_by(book_checkpoint_marks.c.boundary)
    )
    return [row[0] for row in rows]


async def stored_books(
    conn: AsyncConnection, boundary: datetime, item_ids: Sequence[int] | None
) -> dict[BookKey, Book]:
    """The books as kept at ``boundary`` (of every item, or of ``item_ids``): each book's
    newest row at or before it."""
    cp, key = book_checkpoints.c, book_keys.c
    newest = (
        sa.select(cp.book)
        .where(cp.item_id == key.item_id, cp.site == key.site, cp.boundary <= boundary)
        .order_by(cp.boundary.desc())
        .limit(1)
        .scalar_subquery()
    )
    query = sa.select(key.item_id, key.site, newest)
    if item_ids is not None:
        query = query.where(key.item_id.in_(sorted(item_ids)))
    return {
        (int(item_id), str(site)): load_book(text)
        for item_id, site, text in await conn.execute(query)
        if text is not None
    }


async def position(conn: AsyncConnection, *, lock: bool = False) -> int:
    """The ledger id up to which the rows are in the checkpoints (0: none); with ``lock``,
    the row is made when missing and locked until the transaction ends."""
    cursor = book_cursor.c
    query = sa.select(cursor.position).where(cursor.id == 1)
    if lock:
        await conn.execute(
            upsert(conn, book_cursor).values(id=1, position=0).on_conflict_do_nothing()
        )
        query = query.with_for_update()
    value = await conn.scalar(query)
    return int(value or 0)


async def advance(conn: AsyncConnection, reached: int) -> None:
    """Set the checkpoints' position (the caller holds the row's lock)."""
    insert = upsert(conn, book_cursor).values(id=1, position=reached)
    await conn.execute(
        insert.on_conflict_do_update(index_elements=["id"], set_={"position": reached})
    )


async def cost_marks(conn: AsyncConnection) -> dict[int, tuple[int, int]]:
    mark = book_cost_marks.c
    rows = await conn.execute(sa.select(mark.item_id, mark.item_costs, mark.receipt_costs))
    return {int(row[0]): (int(row[1]), int(row[2])) for row in rows}


async def _pages(
    conn: AsyncConnection,
    since: datetime | None,
    until: datetime,
    upto: int | None,
    item_ids: Sequence[int] | None,
) -> AsyncIterator[list[CostRow]]:
    base = cost_row_select(conn, until, item_ids, since=since, upto=upto)
    after: tuple[datetime, int] | None = None
    while True:
        query = base
        if after is not None:
            # A row value, which both databases read as one range of the (time, id) index;
            # the same as an OR of both columns, which SQLite took 15 times longer over.
            query = query.where(
                sa.tuple_(ledger.c.event_time, ledger.c.id)
                > sa.tuple_(sa.literal(after[0], ledger.c.event_time.type), sa.literal(after[1]))
            )
        page = [CostRow(*values) for values in await conn.execute(query.limit(ROW_PAGE))]
        if page:
            yield page
        if len(page) < ROW_PAGE:
            return
        after = (page[-1].event_time, page[-1].id)


def _insert_books(conn: AsyncConnection) -> sa.Insert:
    return sa.insert(book_checkpoints)


def _insert_keys(conn: AsyncConnection) -> sa.Insert:
    return upsert(conn, book_keys).on_conflict_do_nothing()


def touched(row: CostRow) -> Iterable[BookKey]:
    """The books a ledger row that moves value changes."""
    if row.from_location is not None:
        yield row.item_id, site_of(row.from_location)
    if row.to_location is not None:
        yield row.item_id, site_of(row.to_location)


async def _write(
    conn: AsyncConnection,
    boundary: datetime,
    books: Books,
    changed: set[BookKey],
    known: set[BookKey],
    *,
    mark: bool,
) -> None:
    """The ``changed`` books at ``boundary`` (and the keys of those not in ``known``)."""
    rows = [
        {
            "item_id": key[0],
            "site": key[1],
            "boundary": boundary,
            "book": dump_book(books.books[key]),
        }
        for key in sorted(changed)
    ]
    await execute_many(conn, "book_checkpoints", _insert_books, rows)
    new = sorted(changed - known)
    await execute_many(
        conn, "book_keys", _insert_keys, [{"item_id": key[0], "site": key[1]} for key in new]
    )
    known.update(new)
    changed.clear()
    if mark:
        await conn.execute(
            upsert(conn, book_checkpoint_marks).values(boundary=boundary).on_conflict_do_nothing()
        )


async def _compute(
    conn: AsyncConnection,
    start: datetime | None,
    boundaries: Sequence[datetime],
    upto: int,
    item_ids: Sequence[int] | None,
) -> Books:
    """The books from the checkpoint at ``start`` (None: from nothing) through the ledger
    rows up to ``upto``, written at each of ``boundaries`` (after ``start``, ascending;
    of ``item_ids``, their rows after ``start`` replaced) where a row changed them."""
    end = boundaries[-1]
    books = Books(
        await standard_costs(conn, item_ids),
        await recorded_costs(conn, end, item_ids, since=start),
        FOREVER,
        demand=False,
    )
    if start is not None:
        books.books.update(await stored_books(conn, start, item_ids))
    if item_ids is not None:
        cp = book_checkpoints.c
        delete = sa.delete(book_checkpoints).where(cp.item_id.in_(sorted(item_ids)))
        if start is not None:
            delete = delete.where(cp.boundary > start)
        await conn.execute(delete)
    known = set(books.books)
    changed: set[BookKey] = set()
    pending = list(boundaries)
    mark = item_ids is None
    async for page in _pages(conn, start, end, upto, item_ids):
        for row in page:
            while pending and row.event_time >= pending[0]:
                await _write(conn, pending.pop(0), books, changed, known, mark=mark)
            books.apply(row)
            changed.update(touched(row))
    while pending:
        await _write(conn, pending.pop(0), books, changed, known, mark=mark)
    return books


async def _mark_costs(
    conn: AsyncConnection, counts: dict[int, tuple[int, int]], item_ids: Iterable[int]
) -> None:
    mark = book_cost_marks
    for item_id in sorted(set(item_ids)):
        standard, recorded = counts.get(item_id, (0, 0))
        insert = upsert(conn, mark).values(
            item_id=item_id, item_costs=standard, receipt_costs=recorded
        )
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=["item_id"],
                set_={"item_costs": standard, "receipt_costs": recorded},
            )
        )


async def _recompute_item(
    conn: AsyncConnection, item_id: int, since: datetime | None, kept: Sequence[datetime], upto: int
) -> None:
    """Item ``item_id``'s books again from the checkpoint at or before ``since`` (None: from
    its first row) through every kept boundary after it."""
    earlier = [boundary for boundary in kept if since is not None and boundary <= since]
    start = earlier[-1] if earlier else None
    targets = [boundary for boundary in kept if start is None or boundary > start]
    if not targets:
        return
    counts = await cost_counts(conn, [item_id]) if start is None else {}
    await _compute(conn, start, targets, upto, [item_id])
    if start is None:
        await _mark_costs(conn, counts, [item_id])


async def _first_time(conn: AsyncConnection, upto: int) -> datetime | None:
    """The event time of the first row up to ``upto`` that moves value."""
    first = (await conn.execute(cost_row_select(conn, LATEST, None, upto=upto).limit(1))).first()
    return None if first is None else first.event_time


async def extend(conn: AsyncConnection, upto: int, now: datetime, reached: datetime) -> None:
    """New checkpoints of every book at the boundaries up to ``reached`` (the newest event
    time handed over) and ``now`` that have none yet."""
    kept = await marks(conn)
    latest = kept[-1] if kept else None
    horizon = boundary_at_or_before(min(reached, now))
    if latest is None:
        first = await _first_time(conn, upto)
        if first is None:
            return
        new = boundaries_between(boundary_at_or_before(first), horizon)
    else:
        new = boundaries_between(latest, horizon)
    if not new:
        return
    counts = await cost_counts(conn)
    known = await cost_marks(conn)
    books = await _compute(conn, latest, new, upto, None)
    await _mark_costs(conn, counts, {item for item, _ in books.books} - set(known))


async def follow(conn: AsyncConnection, rows: Sequence[BookRow], now: datetime) -> None:
    """Bring the checkpoints up to ``rows`` (a follower step's, in id order)."""
    if not rows:
        return
    upto = rows[-1].id
    kept = await marks(conn)
    moving = [row for row in rows if crosses(row.from_location, row.to_location)]
    if kept and moving:
        # Checkpoints start at the first boundary after the first row that moves value; a
        # late row before them adds the boundaries before (its item's books are computed
        # below, and no other item has books there).
        first = boundary_at_or_before(min(row.event_time for row in moving)) + STEP
        if first < kept[0]:
            earlier = boundaries_between(first - STEP, kept[0] - STEP)
            await conn.execute(
                sa.insert(book_checkpoint_marks), [{"boundary": value} for value in earlier]
            )
            kept = [*earlier, *kept]
    if kept:
        late: dict[int, datetime] = {}
        for row in moving:
            if row.event_time < kept[-1]:
                seen = late.get(row.item_id)
                late[row.item_id] = row.event_time if seen is None else min(seen, row.event_time)
        for item_id, since in sorted(late.items()):
            await _recompute_item(conn, item_id, since, kept, upto)
    await extend(conn, upto, now, max(row.event_time for row in rows))


async def costs_seen(conn: AsyncConnection) -> tuple[int, int]:
    """The newest ids of both cost tables (append-only: a new cost changes them)."""
    standard = await conn.scalar(sa.select(sa.func.max(item_costs.c.id)))
    recorded = await conn.scalar(sa.select(sa.func.max(receipt_costs.c.id)))
    return int(standard or 0), int(recorded or 0)


async def repair_costs(conn: AsyncConnection, upto: int, limit: int | None) -> int:
    """Compute again from the start the books of up to ``limit`` items whose cost rows
    changed since their books were computed; returns how many."""
    kept = await marks(conn)
    if not kept:
        return 0
    known = await cost_marks(conn)
    counts = await cost_counts(conn)
    stale = sorted(changed_costs(known, counts, sorted(known)) | (set(counts) - set(known)))
    # Items with costs but no books anywhere need nothing; give them a mark when they get
    # books. Only items with books at a checkpoint are computed again.
    if not stale:
        return 0
    with_books = {
        int(row[0])
        for row in await conn.execute(
            sa.select(book_checkpoints.c.item_id)
            .distinct()
            .where(book_checkpoints.c.item_id.in_(stale))
        )
    }
    chosen = [item for item in stale if item in with_books][:limit]
    for item_id in chosen:
        await _recompute_item(conn, item_id, None, kept, upto)
    return len(chosen)


async def rebuild(conn: AsyncConnection, upto: int, now: datetime) -> None:
    """Every checkpoint again from the ledger rows up to ``upto``."""
    await clear(conn)
    newest = await conn.scalar(
        sa.select(sa.func.max(ledger.c.event_time)).where(ledger.c.id <= upto)
    )
    if isinstance(newest, datetime):
        await extend(conn, upto, now, newest)
    await advance(conn, upto)


async def clear(conn: AsyncConnection) -> None:
    await conn.execute(sa.delete(book_checkpoints))
    await conn.execute(sa.delete(book_keys))
    await conn.execute(sa.delete(book_cursor))
    await conn.execute(sa.delete(book_checkpoint_marks))
    await conn.execute(sa.delete(book_cost_marks))


async def differences(conn: AsyncConnection, upto: int) -> list[str]:
    """Where the kept checkpoints differ from books computed again from the ledger rows up
    to ``upto``: at each boundary, the rows kept there against the books the rows since the
    boundary before changed (items whose costs changed since are left out: reports replay
    them)."""
    kept = await marks(conn)
    if not kept:
        return []
    known = await cost_marks(conn)
    stale = changed_costs(known, await cost_counts(conn), sorted(known))
    expected = Books(
        await standard_costs(conn, None),
        await recorded_costs(conn, kept[-1], None),
        FOREVER,
        demand=False,
    )
    cp = book_checkpoints.c
    stored: dict[datetime, dict[BookKey, str]] = {}
    for item_id, site, boundary, text in await conn.execute(
        sa.select(cp.item_id, cp.site, cp.boundary, cp.book)
    ):
        stored.setdefault(boundary, {})[(int(item_id), str(site))] = text
    problems: list[str] = []
    changed: set[BookKey] = set()
    pending = list(kept)

    def compare(boundary: datetime) -> None:
        rows = stored.pop(boundary, {})
        computed = {key: dump_book(expected.books[key]) for key in changed}
        changed.clear()
        for key in sorted(set(rows) | set(computed)):
            if key[0] in stale or rows.get(key) == computed.get(key):
                continue
            problems.append(
                f"book_checkpoints {boundary.isoformat()} item {key[0]} site {key[1]}: "
                f"kept {rows.get(key)}, ledger gives {computed.get(key)}"
            )

    async for page in _pages(conn, None, kept[-1], upto, None):
        for row in page:
            while pending and row.event_time >= pending[0]:
                compare(pending.pop(0))
            expected.apply(row)
            changed.update(touched(row))
    while pending:
        compare(pending.pop(0))
    for boundary, rows in sorted(stored.items()):
        for key in sorted(rows):
            if key[0] not in stale:
                problems.append(
                    f"book_checkpoints {boundary.isoformat()} item {key[0]} site {key[1]}: "
                    "kept at a boundary with no checkpoint"
                )
    return problems
