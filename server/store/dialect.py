"""The one place that knows how SQLite and PostgreSQL differ: upserts, collation, list
parameters."""

from __future__ import annotations

import json
import operator
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store.schema.core import units
from server.store.sqlite_process import ProcessConnection

Upsert = sqlite.Insert | postgresql.Insert
IN_CHUNK = 500
"""Keys per ``IN (...)`` list, well under every driver's parameter limit."""
T = TypeVar("T")


def upsert(conn: AsyncConnection, table: sa.Table) -> Upsert:
    """An INSERT that supports ``ON CONFLICT`` on the connection's database."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def from_excluded(insert: Upsert, *columns: str) -> dict[str, Any]:
    """An upsert's ``SET``: each of ``columns`` takes the value the row was inserted with."""
    return {column: insert.excluded[column] for column in columns}


def bytewise(conn: AsyncConnection, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """``column`` compared by code point, as Python compares strings.

    SQLite's default collation is bytewise already; PostgreSQL's depends on the database
    locale, so ties between event ids would break differently from the rules' order.
    """
    if conn.dialect.name == "postgresql":
        return column.collate("C")
    return column


def in_chunks(values: Sequence[T]) -> list[Sequence[T]]:
    """``values`` cut into lists of at most ``IN_CHUNK``, one ``IN (...)`` each (for lookups
    by key; ``one_of`` binds a whole list as one parameter instead)."""
    return [values[start : start + IN_CHUNK] for start in range(0, len(values), IN_CHUNK)]


def one_of(
    conn: AsyncConnection, column: sa.ColumnElement[str], name: str, values: Sequence[str]
) -> tuple[sa.ColumnElement[bool], dict[str, Any]]:
    """``column IN values`` with the whole list bound as one parameter, and that parameter.

    A list of hundreds of values (a batch's EPCs or event ids) would otherwise become as
    many parameters, each rendered and bound one by one in Python when the statement runs.
    PostgreSQL takes an array read by ``unnest``; SQLite a JSON array read by ``json_each``,
    whose values drive lookups in ``column``'s index (the query plan says ``LIST SUBQUERY``).
    Not ``= ANY(array)`` on PostgreSQL: asyncpg's prepared statements get a generic plan
    after five runs, where the array is a parameter, not a constant, so PostgreSQL cannot
    hash it and compares every row it scans with every element (2,000 EPCs against 16,000
    units: 71 ms a batch, growing with the table); ``IN (SELECT unnest(...))`` is a join
    the planner sizes (1-2 ms).
    """
    if conn.dialect.name == "postgresql":
        array = sa.bindparam(name, type_=postgresql.ARRAY(sa.String()))
        listed = sa.func.unnest(array).table_valued("value").render_derived()
        return column.in_(sa.select(listed.c.value)), {name: list(values)}
    listed = sa.func.json_each(sa.bindparam(name, type_=sa.String())).table_valued("value")
    return column.in_(sa.select(listed.c.value)), {name: json.dumps(list(values))}


@dataclass(frozen=True, slots=True)
class _Prepared:
    sql: str
    order: tuple[int, ...] | None
    """The position in the caller's keys of each of the statement's parameters (None: the
    same order)."""
    processed: tuple[tuple[int, Callable[[Any], Any]], ...]
    """SQLAlchemy's own bind processor of each column that has one, by statement position."""
    arrays: bool
    """One array parameter per column (PostgreSQL) instead of one execution per row."""
    table: str
    columns: tuple[str, ...]
    """The statement's parameters (its columns) in its order."""
    staged: str | None = None
    """An upsert whose rows go by ``COPY`` (PostgreSQL): what takes them from the table they
    were copied into (``STAGED``)."""


_prepared: dict[tuple[str, str, tuple[str, ...], bool], _Prepared] = {}

STAGED = (units,)
"""Tables upserted by ``COPY`` on PostgreSQL (``execute_many``'s ``copy``): each has a
temporary table of the same columns, ``stage_<name>``, on every connection. A temporary
table belongs to a session, so the server's connections must be sessions of their own, not
a pooler's in transaction mode (asyncpg's cached prepared statements need that too)."""
STAGE_ORDER = "stage_row"
"""The staging tables' extra column: the rows' order, in which they are upserted (and
their rows locked)."""


def staging_tables(dialect: sa.Dialect) -> str:
    """The DDL of the staging tables (``STAGED``), for a new PostgreSQL connection. They
    keep no rows past a transaction; each upsert empties its table as it reads it."""
    statements = []
    for table in STAGED:
        stage = sa.Table(
            f"stage_{table.name}",
            sa.MetaData(),
            sa.Column(STAGE_ORDER, sa.Integer()),
            *(sa.Column(column.name, column.type) for column in table.c),
            prefixes=["TEMPORARY"],
            postgresql_on_commit="DELETE ROWS",
        )
        ddl = sa.schema.CreateTable(stage, if_not_exists=True)
        statements.append(str(ddl.compile(dialect=dialect)).strip())
    return ";\n".join(statements)


def staging_on_connect(dialect: sa.Dialect) -> Callable[[Any, object], None]:
    """A pool ``connect`` listener: a new PostgreSQL connection gets the staging tables
    (``STAGED``), outside any transaction, so they last as long as it."""
    ddl = staging_tables(dialect)

    def on_connect(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.run_async(lambda driver: driver.execute(ddl))

    return on_connect


def _from_stage(insert: sa.Insert, keys: Sequence[str], dialect: sa.Dialect) -> str:
    """``insert`` (its ``ON CONFLICT`` kept) taking the rows of its staging table, in the
    order they were copied, and emptying it: ``WITH staged AS (DELETE FROM stage_<table>
    RETURNING *) INSERT ... SELECT ... FROM staged ORDER BY stage_row ...``."""
    table = insert.table
    assert isinstance(table, sa.Table)
    if table not in STAGED:
        raise ValueError(f"{table.name} has no staging table (STAGED)")
    staged = sa.table("staged", sa.column(STAGE_ORDER), *(sa.column(key) for key in keys))
    rows = sa.select(*(staged.c[key] for key in keys)).order_by(staged.c[STAGE_ORDER])
    compiled = insert.from_select(list(keys), rows).compile(dialect=dialect)
    if compiled.positiontup:
        raise ValueError("an upsert by COPY takes no parameters besides its rows")
    stage = f"stage_{table.name}"  # a name of ours (STAGED), not input
    return f"WITH staged AS (DELETE FROM {stage} RETURNING *) {compiled.string}"  # noqa: S608


def _from_arrays(insert: sa.Insert, keys: Sequence[str]) -> sa.Insert:
    """``insert`` (its ``ON CONFLICT`` kept) taking its rows from ``unnest`` of one array per
    column: ``INSERT ... SELECT * FROM unnest($1::varchar[], $2::timestamptz[], ...)``."""
    table = insert.table
    assert isinstance(table, sa.Table)
    arrays = [sa.bindparam(key, type_=postgresql.ARRAY(table.c[key].type)) for key in keys]
    rows = sa.func.unnest(*arrays).table_valued(*keys).render_derived()
    # unnest yields the rows in array order, so sorted rows lock in that order.
    return insert.from_select(list(keys), sa.select(*(rows.c[key] for key in keys)))


def _prepare(
    conn: AsyncConnection,
    statement: Callable[[AsyncConnection], sa.Insert],
    keys: tuple[str, ...],
    copy: bool,
) -> _Prepared:
    dialect = conn.dialect
    insert = statement(conn)
    table = insert.table
    assert isinstance(table, sa.Table)
    arrays = dialect.name == "postgresql"
    staged = None
    # An ON CONFLICT clause (an upsert) is what SQLAlchemy renders after the values.
    if arrays and copy and insert._post_values_clause is not None:
        staged = _from_stage(insert, keys, dialect)
    if arrays:
        compiled = _from_arrays(insert, keys).compile(dialect=dialect)
    else:
        compiled = insert.compile(dialect=dialect, column_keys=list(keys))
    names = tuple(compiled.positiontup or ())
    if not names:
        raise ValueError("execute_many needs a positional paramstyle")
    if sorted(names) != sorted(keys):
        raise ValueError(f"the statement binds {names}, the rows hold {keys}")
    if arrays:
        # The arrays' own processors work element by element; the column's are the same.
        types = [table.c[name].type for name in names]
    else:
        types = [compiled.binds[bind].type for bind in names]
    processors = (kind.dialect_impl(dialect).bind_processor(dialect) for kind in types)
    order = tuple(keys.index(name) for name in names)
    return _Prepared(
        compiled.string,
        None if order == tuple(range(len(keys))) else order,
        tuple((i, p) for i, p in enumerate(processors) if p is not None),
        arrays,
        table.name,
        names,
        staged,
    )


async def execute_many(
    conn: AsyncConnection,
    name: str,
    statement: Callable[[AsyncConnection], sa.Insert],
    rows: Sequence[Mapping[str, Any]],
    *,
    copy: bool = False,
) -> None:
    """Run one INSERT (or upsert) with no RETURNING for every row, as one driver call.

    The hot ingest writes (a ledger row and a unit state per event) cost more in
    SQLAlchemy's per-row parameter handling than in the database. Here ``statement`` is
    built and compiled once per ``name``, database and column set; each row's values go
    through the same bind processors SQLAlchemy would apply (so what is stored is
    identical), column by column. SQLite runs the prepared statement for every row (one
    ``executemany``, all in its C loop). PostgreSQL gets the statement once, set-based:
    ``INSERT ... SELECT * FROM unnest(<one array per column>)``, one round trip and one
    execution however many rows (an ``executemany`` is one execution per row in the server,
    about 40 µs each for a ledger row; the arrays bring a batch's ledger rows to a fraction
    of that).

    Args:
        conn: a connection in a transaction.
        name: identifies what ``statement`` builds (the cache key, with the database).
        statement: builds the statement for a connection's database.
        rows: the values by column key; every row has the keys of the first.
        copy: on PostgreSQL the rows go by binary ``COPY``: a plain INSERT's straight into
            its table, an upsert's into its staging table (``STAGED``), from which one
            statement upserts them. PostgreSQL's own work per row is the same (a ledger
            row: 21 µs by the arrays, 22 µs by ``COPY``), but asyncpg encodes arrays element
            by element with checks against abstract base classes in Python, which
            ``COPY``'s records skip: the event loop is ingest's busiest part on PostgreSQL.
            Alternating runs gave 15.3-16.8k events/s against 13.6-14.8k for the ledger
            rows; the units' upsert by arrays took 11% of the loop's time, about twice the
            ledger's ``COPY`` of twice the columns. Worth it for thousands of rows: the
            staged upsert costs a round trip more.
    """
    if rows:
        keys = tuple(rows[0])
        await execute_rows(conn, name, statement, keys, list(map(_getter(keys), rows)), copy=copy)


def _getter(keys: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    if len(keys) == 1:
        return lambda row: (row[keys[0]],)
    return operator.itemgetter(*keys)


async def execute_rows(
    conn: AsyncConnection,
    name: str,
    statement: Callable[[AsyncConnection], sa.Insert],
    keys: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    *,
    copy: bool = False,
) -> None:
    """``execute_many`` for rows given as tuples of the values of ``keys``, in that order.

    The hottest writes (a ledger row, a unit state and a claimed id per event) build their
    rows so: a dict per row, and picking its values back out, cost more than the
    statement's own Python work.
    """
    if not rows:
        return
    cache_key = (name, conn.dialect.name, keys, copy)
    prepared = _prepared.get(cache_key)
    if prepared is None:
        try:
            prepared = _prepare(conn, statement, keys, copy)
        except ValueError as err:
            raise ValueError(f"{err} ({name})") from err
        _prepared[cache_key] = prepared
    if prepared.order is None and not prepared.processed and not prepared.arrays:
        await conn.exec_driver_sql(prepared.sql, list(rows))
        return
    # Column by column: the loops run in C, and only the columns with a processor call one.
    columns = list(zip(*rows, strict=True))
    if prepared.order is not None:
        columns = [columns[position] for position in prepared.order]
    for position, processor in prepared.processed:
        columns[position] = tuple(map(processor, columns[position]))
    if prepared.arrays and copy:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        if prepared.staged is None:
            target, names = prepared.table, list(prepared.columns)
        else:
            # Into the staging table, each row with its place (``STAGE_ORDER``).
            target, names = f"stage_{prepared.table}", [STAGE_ORDER, *prepared.columns]
            columns.insert(0, tuple(range(len(rows))))
        await driver.copy_records_to_table(
            target, records=list(zip(*columns, strict=True)), columns=names
        )
        if prepared.staged is not None:
            await conn.exec_driver_sql(prepared.staged)
    elif prepared.arrays:
        await conn.exec_driver_sql(prepared.sql, tuple(list(column) for column in columns))
    else:
        await conn.exec_driver_sql(prepared.sql, list(zip(*columns, strict=True)))


async def read_together(
    conn: AsyncConnection, queries: Sequence[tuple[sa.Select[Any], Mapping[str, Any]]]
) -> list[list[tuple[Any, ...]]]:
    """The rows of each of ``queries`` (a statement and its parameters), in order.

    Where the connection's SQLite runs in a child process (the write transactions,
    ``server.store.sqlite_process``) they go in one request and one wait: each wait also
    waits for the event loop's current work. Otherwise one after the other. The rows are
    the driver's own (no result types applied): for reads of ids, numbers and text.
    """
    driver = (await conn.get_raw_connection()).driver_connection
    requests: list[tuple[str, Sequence[Any]]] = []
    if isinstance(driver, ProcessConnection):
        for query, params in queries:
            compiled = query.compile(
                dialect=conn.dialect, compile_kwargs={"render_postcompile": True}
            )
            values = compiled.construct_params(dict(params))
            bound = tuple(values[name] for name in compiled.positiontup or ())
            if not all(isinstance(value, _PLAIN) for value in bound):
                break  # a value SQLAlchemy would convert first: the plain way
            requests.append(("execute", (compiled.string, bound)))
        else:
            try:
                answers = await driver.request_all(requests)
            except sqlite3.Error as err:
                # As SQLAlchemy raises a driver's error (``Store`` translates those).
                raise sa.exc.DBAPIError.instance(
                    "; ".join(sql for _, (sql, _) in requests), None, err, sqlite3.Error
                ) from err
            return [list(rows or ()) for _, _, _, rows in answers]
    return [
        [tuple(row) for row in await conn.execute(query, dict(params))] for query, params in queries
    ]


_PLAIN = (int, float, str, bytes, type(None))
"""Values a driver binds as they are (no SQLAlchemy type converts them)."""
