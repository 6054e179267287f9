"""Checking the rollups against the ledger, and rebuilding them from it.

``check_history`` sums the ledger in SQL, independently of the Python that builds the
rollups (``server.history.rollups``), up to the rollups follower's position, and compares
every bucket, in one snapshot (a transaction; REPEATABLE READ on PostgreSQL), so it agrees
while ingest and the follower keep writing. ``rebuild_history`` empties the rollups and
builds them again from the ledger in SQL, in one transaction that also moves the position
to the newest row; a running server's follower goes on from there.

``history_place_movements`` (the movement sums without the item) is checked against
``history_movements`` summed over the items, and rebuilt from it; likewise
``history_site_movements`` against and from ``history_place_movements``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.history.follow import position_on, utc_now
from server.history.rollups import ROLLUPS, clear_rollups
from server.reports import book_checkpoints, location_snapshots
from server.store.database import Store, translate
from server.store.dialect import upsert
from server.store.schema.core import items, ledger
from server.store.schema.history import (
    history_cursors,
    history_movements,
    history_place_movements,
    history_site_movements,
    history_stock_daily,
)

log = logging.getLogger(__name__)


def _bucket(conn: AsyncConnection, column: Any, period: str) -> sa.ColumnElement[Any]:
    """The UTC hour or day start of a ledger timestamp, comparable with ``_stored``."""
    if conn.dialect.name == "postgresql":
        return sa.func.date_trunc(period, sa.func.timezone("UTC", column))
    text = sa.type_coerce(column, sa.String)
    if period == "hour":
        return sa.func.substr(text, 1, 13).concat(":00:00.000000")
    return sa.func.substr(text, 1, 10).concat(" 00:00:00.000000")


def _stored(conn: AsyncConnection, column: Any) -> sa.ColumnElement[Any]:
    """A rollup's bucket column in the form ``_bucket`` gives."""
    if conn.dialect.name == "postgresql":
        return sa.func.timezone("UTC", column)
    return sa.type_coerce(column, sa.String)


def _site(conn: AsyncConnection, column: Any) -> sa.ColumnElement[Any]:
    if conn.dialect.name == "postgresql":
        return sa.func.split_part(column, ".", 1)
    dot = sa.func.instr(column, ".")
    return sa.case((dot > 0, sa.func.substr(column, 1, dot - 1)), else_=column)


def _movement_differences(conn: AsyncConnection, position: int) -> sa.Select[Any]:
    upto = ledger.c.id <= position
    parts: list[sa.Select[Any]] = []
    for period in ("hour", "day"):
        for column, side in ((ledger.c.from_location, "out"), (ledger.c.to_location, "in")):
            parts.append(
                sa.select(
                    sa.literal(period).label("period"),
                    _bucket(conn, ledger.c.event_time, period).label("bucket"),
                    column.label("location"),
                    sa.literal(side).label("side"),
                    sa.func.coalesce(ledger.c.read_point, "").label("read_point"),
                    ledger.c.item_id,
                    ledger.c.kind,
                    sa.literal(1).label("ledger_count"),
                    ledger.c.quantity.label("ledger_quantity"),
                    sa.literal(0).label("rollup_count"),
                    sa.literal(0).label("rollup_quantity"),
                ).where(upto, column.is_not(None))
            )
    rollup = history_movements.c
    parts.append(
        sa.select(
            rollup.period,
            _stored(conn, rollup.bucket),
            rollup.location,
            rollup.side,
            rollup.read_point,
            rollup.item_id,
            rollup.kind,
            sa.literal(0),
            sa.literal(0),
            rollup.count,
            rollup.quantity,
        )
    )
    deltas = sa.union_all(*parts).subquery("deltas")
    keys = [deltas.c[name] for name in ("period", "bucket", "location", "side", "read_point")]
    keys += [deltas.c.item_id, deltas.c.kind]
    sums = [
        sa.func.sum(deltas.c[name])
        for name in ("ledger_count", "ledger_quantity", "rollup_count", "rollup_quantity")
    ]
    return (
        sa.select(*keys, *sums)
        .group_by(*keys)
        .having(sa.or_(sums[0] != sums[2], sums[1] != sums[3]))
        .order_by(*keys)
    )


PLACE_KEYS = ("period", "bucket", "location", "side", "read_point", "kind")


SITE_KEYS = ("period", "bucket", "site", "side", "kind")


def _place_differences() -> sa.Select[Any]:
    return _coarse_differences(history_movements, history_place_movements, PLACE_KEYS)


def _site_differences() -> sa.Select[Any]:
    return _coarse_differences(history_place_movements, history_site_movements, SITE_KEYS)


def _coarse_differences(
    finer: sa.Table, coarser: sa.Table, names: tuple[str, ...]
) -> sa.Select[Any]:
    fine, coarse = finer.c, coarser.c
    parts = [
        sa.select(
            *(fine[name] for name in names),
            fine.count.label("item_count"),
            fine.quantity.label("item_quantity"),
            sa.literal(0).label("place_count"),
            sa.literal(0).label("place_quantity"),
        ),
        sa.select(
            *(coarse[name] for name in names),
            sa.literal(0),
            sa.literal(0),
            coarse.count,
            coarse.quantity,
        ),
    ]
    deltas = sa.union_all(*parts).subquery("deltas")
    keys = [deltas.c[name] for name in names]
    sums = [
        sa.func.sum(deltas.c[name])
        for name in ("item_count", "item_quantity", "place_count", "place_quantity")
    ]
    return (
        sa.select(*keys, *sums)
        .group_by(*keys)
        .having(sa.or_(sums[0] != sums[2], sums[1] != sums[3]))
        .order_by(*keys)
    )


def _stock_differences(conn: AsyncConnection, position: int) -> sa.Select[Any]:
    source = _site(conn, ledger.c.from_location)
    target = _site(conn, ledger.c.to_location)
    crossing = sa.and_(ledger.c.id <= position, source.is_distinct_from(target))
    day = _bucket(conn, ledger.c.event_time, "day")
    parts: list[sa.Select[Any]] = [
        sa.select(
            target.label("site"),
            ledger.c.item_id,
            day.label("day"),
            ledger.c.quantity.label("ledger_in"),
            sa.literal(0).label("ledger_out"),
            sa.literal(0).label("rollup_in"),
            sa.literal(0).label("rollup_out"),
        ).where(crossing, ledger.c.to_location.is_not(None)),
        sa.select(
            source,
            ledger.c.item_id,
            day,
            sa.literal(0),
            ledger.c.quantity,
            sa.literal(0),
            sa.literal(0),
        ).where(crossing, ledger.c.from_location.is_not(None)),
    ]
    stock = history_stock_daily.c
    parts.append(
        sa.select(
            stock.site,
            stock.item_id,
            _stored(conn, stock.day),
            sa.literal(0),
            sa.literal(0),
            stock.quantity_in,
            stock.quantity_out,
        )
    )
    deltas = sa.union_all(*parts).subquery("deltas")
    keys = [deltas.c.site, deltas.c.item_id, deltas.c.day]
    sums = [
        sa.func.sum(deltas.c[name])
        for name in ("ledger_in", "ledger_out", "rollup_in", "rollup_out")
    ]
    return (
        sa.select(*keys, *sums)
        .group_by(*keys)
        .having(sa.or_(sums[0] != sums[2], sums[1] != sums[3]))
        .order_by(*keys)
    )


@dataclass(frozen=True, slots=True)
class HistoryReport:
    """What ``check-history`` found: one line per bucket that disagrees."""

    position: int
    """The rollups follower's position: ledger rows up to it were compared."""
    newest: int
    """The newest ledger id at the time of the check."""
    movements: list[str]
    stock: list[str]
    places: list[str]

    @property
    def lines(self) -> list[str]:
        return [*self.movements, *self.stock, *self.places]


@asynccontextmanager
async def _snapshot(store: Store) -> AsyncIterator[AsyncConnection]:
    try:
        async with store.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                yield conn
    except SQLAlchemyError as err:
        raise translate(err, "checking the history against the ledger") from err


def _when(value: Any) -> str:
    return str(value)[:16]


async def history_report(store: Store) -> HistoryReport:
    """Compare the rollups with the ledger rows the follower has handed over.

    Raises:
        StoreError: the database failed.
    """
    async with _snapshot(store) as conn:
        position = await position_on(conn, ROLLUPS)
        newest = int(
            await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(ledger.c.id), 0))) or 0
        )
        moves = (await conn.execute(_movement_differences(conn, position))).all()
        stock = (await conn.execute(_stock_differences(conn, position))).all()
        places = (await conn.execute(_place_differences())).all()
        sites = (await conn.execute(_site_differences())).all()
        books_position = await book_checkpoints.position(conn)
        books = await book_checkpoints.differences(conn, books_position)
        books += await location_snapshots.differences(conn, books_position)
        ids = {row.item_id for row in (*moves, *stock)}
        skus = {
            row.id: row.sku
            for row in await conn.execute(
                sa.select(items.c.id, items.c.sku).where(items.c.id.in_(sorted(ids)))
            )
        }
    movement_lines = [
        f"{period} {_when(bucket)} {location} {side}"
        f"{f' at {read_point}' if read_point else ''} item {skus.get(item_id, item_id)} {kind}: "
        f"rollup {int(rc)} rows / {int(rq)}, ledger says {int(lc)} rows / {int(lq)}"
        for period, bucket, location, side, read_point, item_id, kind, lc, lq, rc, rq in moves
    ]
    stock_lines = [
        f"day {_when(day)[:10]} site {site} item {skus.get(item_id, item_id)}: "
        f"rollup in {int(ri)} out {int(ro)}, ledger says in {int(li)} out {int(lo)}"
        for site, item_id, day, li, lo, ri, ro in stock
    ]
    place_lines = [
        f"{period} {_when(bucket)} {location} {side}"
        f"{f' at {read_point}' if read_point else ''} {kind}: without the item "
        f"{int(pc)} rows / {int(pq)}, by item {int(ic)} rows / {int(iq)}"
        for period, bucket, location, side, read_point, kind, ic, iq, pc, pq in places
    ]
    place_lines += [
        f"{period} {_when(bucket)} site {site} {side} {kind}: per site "
        f"{int(sc)} rows / {int(sq)}, by location {int(lc)} rows / {int(lq)}"
        for period, bucket, site, side, kind, lc, lq, sc, sq in sites
    ]
    return HistoryReport(position, newest, movement_lines, stock_lines, [*place_lines, *books])


async def reset_rollups(store: Store) -> None:
    """Empty the rollups and set their follower back to the start, in one transaction."""
    async with store.begin("resetting the history rollups") as conn:
        await _rewind(conn)
        await clear_rollups(conn)


async def _rewind(conn: AsyncConnection) -> None:
    """Set the rollups' cursor back to the start, made when missing. The update locks the
    cursor row, so a follower step in flight finishes before the caller goes on."""
    await conn.execute(
        upsert(conn, history_cursors)
        .values(name=ROLLUPS, position=0, owner=None, lease_until=None, updated_at=utc_now())
        .on_conflict_do_nothing()
    )
    await conn.execute(
        sa.update(history_cursors)
        .where(history_cursors.c.name == ROLLUPS)
        .values(position=0, updated_at=utc_now())
    )


def _bucket_value(conn: AsyncConnection, column: Any, period: str) -> sa.ColumnElement[Any]:
    """``_bucket`` as a value to store in a bucket column (PostgreSQL: back to timestamptz;
    SQLite: the text ``UtcDateTime`` writes)."""
    if conn.dialect.name == "postgresql":
        return sa.func.timezone("UTC", _bucket(conn, column, period))
    return _bucket(conn, column, period)


def _movement_rollups(conn: AsyncConnection, upto: int) -> sa.Insert:
    parts: list[sa.Select[Any]] = []
    for period in ("hour", "day"):
        bucket = _bucket_value(conn, ledger.c.event_time, period)
        read_point = sa.func.coalesce(ledger.c.read_point, "")
        for column, side in ((ledger.c.from_location, "out"), (ledger.c.to_location, "in")):
            site = _site(conn, column)
            keys = (bucket, column, read_point, ledger.c.item_id, ledger.c.kind, site)
            parts.append(
                sa.select(
                    sa.literal(period),
                    bucket,
                    column,
                    sa.literal(side),
                    read_point,
                    ledger.c.item_id,
                    ledger.c.kind,
                    site,
                    sa.func.count(),
                    sa.func.sum(ledger.c.quantity),
                )
                .where(ledger.c.id <= upto, column.is_not(None))
                .group_by(*keys)
            )
    names = ["period", "bucket", "location", "side", "read_point", "item_id", "kind", "site"]
    rows = sa.union_all(*parts).subquery("rollups")
    return sa.insert(history_movements).from_select(
        [*names, "count", "quantity"],
        sa.select(rows).order_by(*_key_of(history_movements, rows, names)),
    )


def _key_of(
    table: sa.Table, rows: sa.Subquery, names: Sequence[str]
) -> list[sa.ColumnElement[Any]]:
    """The columns of ``rows`` (named by position in ``names``) that make ``table``'s key, in
    its order: rows inserted in that order go to the end of the table's B-tree."""
    return [rows.c[names.index(column.name)] for column in table.primary_key]


def _stock_rollups(conn: AsyncConnection, upto: int) -> sa.Insert:
    source = _site(conn, ledger.c.from_location)
    target = _site(conn, ledger.c.to_location)
    crossing = sa.and_(ledger.c.id <= upto, source.is_distinct_from(target))
    day = _bucket_value(conn, ledger.c.event_time, "day")
    flows = sa.union_all(
        sa.select(
            target.label("site"),
            ledger.c.item_id.label("item_id"),
            day.label("day"),
            ledger.c.quantity.label("quantity_in"),
            sa.literal(0).label("quantity_out"),
        ).where(crossing, ledger.c.to_location.is_not(None)),
        sa.select(source, ledger.c.item_id, day, sa.literal(0), ledger.c.quantity).where(
            crossing, ledger.c.from_location.is_not(None)
        ),
    ).subquery("flows")
    keys = (flows.c.site, flows.c.item_id, flows.c.day)
    return sa.insert(history_stock_daily).from_select(
        ["site", "item_id", "day", "quantity_in", "quantity_out"],
        sa.select(
            *keys, sa.func.sum(flows.c.quantity_in), sa.func.sum(flows.c.quantity_out)
        ).group_by(*keys),
    )


def _place_rollups() -> sa.Insert:
    fine = history_movements.c
    keys = [fine[name] for name in PLACE_KEYS]
    names = [*PLACE_KEYS, "site", "count", "quantity"]
    sums = (
        sa.select(
            *keys, sa.func.min(fine.site), sa.func.sum(fine.count), sa.func.sum(fine.quantity)
        )
        .group_by(*keys)
        .subquery("places")
    )
    return sa.insert(history_place_movements).from_select(
        names, sa.select(sums).order_by(*_key_of(history_place_movements, sums, names))
    )


def _site_rollups() -> sa.Insert:
    place = history_place_movements.c
    keys = [place[name] for name in SITE_KEYS]
    return sa.insert(history_site_movements).from_select(
        [*SITE_KEYS, "count", "quantity"],
        sa.select(*keys, sa.func.sum(place.count), sa.func.sum(place.quantity)).group_by(*keys),
    )


async def rebuild_history(store: Store) -> int:
    """Rebuild the rollups from the ledger in one transaction; returns the position reached.

    Set-based (``INSERT ... SELECT ... GROUP BY``), not through the follower: a rebuild of
    millions of rows is one pass of the database over the ledger. The transaction holds the
    write lock on SQLite and ``SHARE`` on the ledger on PostgreSQL (writers that took ids
    finish first, new ones wait), so every id up to the newest is settled; it locks the
    rollups cursor row, so a follower step of a running server finishes before it and its
    next step continues from the newest row.

    Raises:
        StoreError: the database failed.
    """
    async with store.begin("rebuilding the history rollups") as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.text("LOCK TABLE ledger IN SHARE MODE"))
        await _rewind(conn)
        newest = int(
            await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(ledger.c.id), 0))) or 0
        )
        await clear_rollups(conn)
        # Rows go in in primary-key order with the other indexes dropped, and the indexes
        # are built again afterwards: several times faster than keeping four B-trees up
        # to date row by row (about four rollup rows per ledger row).
        indexes = sorted(history_movements.indexes, key=lambda index: str(index.name))
        for index in indexes:
            await conn.run_sync(index.drop)
        await conn.execute(_movement_rollups(conn, newest))
        for index in indexes:
            await conn.run_sync(index.create)
        await conn.execute(_place_rollups())
        await conn.execute(_site_rollups())
        await conn.execute(_stock_rollups(conn, newest))
        await book_checkpoints.rebuild(conn, newest, utc_now())
        await location_snapshots.rebuild(conn, newest, utc_now())
        await conn.execute(
            sa.update(history_cursors)
            .where(history_cursors.c.name == ROLLUPS)
            .values(position=newest, updated_at=utc_now())
        )
    return newest
