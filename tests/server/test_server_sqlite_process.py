"""``server.store.sqlite_process``: SQLite write connections served by a child process."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from server_helpers import process_alive

from server.config.settings import DatabaseSettings
from server.errors import StoreError, StoreFull
from server.store.database import Store
from server.store.dialect import read_together
from server.store.sqlite_process import AnswerWaits, ProcessConnection

CHILD_GONE_S = 10.0


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not process_alive(pid)


async def _write(store: Store, *statements: str) -> None:
    async with store.begin("writing") as conn:
        for statement in statements:
            await conn.execute(sa.text(statement))


async def _insert_many(store: Store, *many: list[tuple[int]]) -> None:
    """One transaction: an ``executemany`` into ``t`` of each list of rows."""
    async with store.begin("writing") as conn:
        for rows in many:
            await conn.exec_driver_sql("INSERT INTO t VALUES (?)", rows)


async def test_a_store_writes_through_a_child_process_and_reads_it_back(tmp_path: Path) -> None:
    store = Store.open(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    try:
        await store.migrate()
        async with store.begin("writing") as conn:
            await conn.execute(sa.text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
            await conn.execute(sa.text("INSERT INTO t VALUES (:n)"), [{"n": n} for n in (1, 2)])
            raw = (await conn.get_raw_connection()).driver_connection
            assert isinstance(raw, ProcessConnection)
            child = raw.pid
            assert child != os.getpid()
            assert process_alive(child)
            # Inside the transaction: what it wrote, with SQLAlchemy's own SQL functions.
            assert (await conn.execute(sa.text("SELECT floor(2.5)"))).scalar_one() == 2
        async with store.read("reading") as conn:
            assert list((await conn.execute(sa.text("SELECT n FROM t"))).scalars()) == [1, 2]
    finally:
        await store.close()
    assert _gone_within(child, CHILD_GONE_S), "the child ends with its connection"


async def test_errors_in_the_child_keep_their_class_and_code(tmp_path: Path) -> None:
    store = Store.open(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    try:
        await _write(store, "CREATE TABLE t (n INTEGER PRIMARY KEY)", "INSERT INTO t VALUES (1)")
        with pytest.raises(StoreError, match="UNIQUE constraint failed") as caught:
            await _write(store, "INSERT INTO t VALUES (1)")
        orig = getattr(caught.value.__cause__, "orig", None)
        assert isinstance(orig, sqlite3.IntegrityError)
        assert orig.sqlite_errorcode == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
        with pytest.raises(StoreError, match="no such table"):
            await _write(store, "SELECT * FROM missing_table")
        # A file at its page limit is full, as a full disk is.
        with pytest.raises(StoreFull):
            await _write(
                store,
                "PRAGMA max_page_count = 8",
                "CREATE TABLE big (b BLOB)",
                "INSERT INTO big VALUES (zeroblob(1000000))",
            )
    finally:
        await store.close()


async def test_a_cancelled_request_leaves_the_connection_closed(tmp_path: Path) -> None:
    connection = await ProcessConnection.open(str(tmp_path / "x.db"), 5.0)
    long = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT count(*) FROM c"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await connection.cursor().execute(long)
    # Its answer would have been the next request's: the connection takes no more.
    with pytest.raises(sqlite3.OperationalError, match="no active connection"):
        await connection.cursor().execute("SELECT 1")
    await connection.close()


async def test_only_the_child_s_own_functions_can_be_registered(tmp_path: Path) -> None:
    connection = await ProcessConnection.open(str(tmp_path / "x.db"), 5.0)
    try:
        await connection.create_function("regexp", 2, None)
        with pytest.raises(sqlite3.NotSupportedError):
            await connection.create_function("mine", 1, abs)
        cursor = await connection.cursor().execute("SELECT 'abc' REGEXP 'b'")
        assert await cursor.fetchall() == [(1,)]
    finally:
        await connection.close()


def test_the_child_ends_when_its_server_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from server.store.sqlite_process import ProcessConnection

        async def main():
            connection = await ProcessConnection.open({str(tmp_path / "x.db")!r}, 5.0)
            print(connection.pid, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        child = int(server.stdout.readline())
        assert process_alive(child)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        assert _gone_within(child, CHILD_GONE_S), "the SQLite process outlived its server"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


async def test_a_failed_insert_sent_without_waiting_commits_nothing_of_its_transaction(
    tmp_path: Path,
) -> None:
    # Plain INSERTs by executemany go to the child without waiting for the answer; one
    # that fails must still fail the transaction, and nothing of it may be committed.
    store = Store.open(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    try:
        await _write(store, "CREATE TABLE t (n INTEGER PRIMARY KEY)", "INSERT INTO t VALUES (1)")
        with pytest.raises(StoreError, match="UNIQUE constraint failed"):
            await _insert_many(store, [(5,), (1,)], [(7,), (8,)])
        async with store.read("reading") as conn:
            assert list((await conn.execute(sa.text("SELECT n FROM t"))).scalars()) == [1]
        # The connection goes on: the next transaction commits.
        await _insert_many(store, [(2,), (3,)])
        async with store.read("reading") as conn:
            assert list((await conn.execute(sa.text("SELECT n FROM t"))).scalars()) == [1, 2, 3]
    finally:
        await store.close()


async def test_after_a_failed_insert_sent_unwaited_nothing_runs_until_the_rollback(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.db"
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    reader.execute("INSERT INTO t VALUES (1)")
    connection = await ProcessConnection.open(str(path), 5.0)
    try:
        await connection.cursor().execute("BEGIN IMMEDIATE")
        # Sent without waiting: the first fails on row 1, the second would succeed.
        await connection.cursor().executemany("INSERT INTO t VALUES (?)", [(5,), (1,)])
        await connection.cursor().executemany("INSERT INTO t VALUES (?)", [(7,)])
        # The next request that waits gets that failure, not its own answer.
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            await connection.cursor().execute("SELECT n FROM t")
        # A commit asked for anyway rolls back.
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            await connection.commit()
        await connection.rollback()
        assert reader.execute("SELECT n FROM t").fetchall() == [(1,)]
        # Once rolled back the connection works again.
        await connection.cursor().execute("BEGIN IMMEDIATE")
        await connection.cursor().executemany("INSERT INTO t VALUES (?)", [(2,)])
        await connection.commit()
        assert reader.execute("SELECT n FROM t").fetchall() == [(1,), (2,)]
    finally:
        await connection.close()
        reader.close()


async def test_reads_made_together_give_what_each_gives_alone(tmp_path: Path) -> None:
    # The write connection sends them in one request (one wait); the read connection runs
    # them one by one; both must give each query's own rows, in order.
    store = Store.open(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    t = sa.table("t", sa.column("n"), sa.column("name"))
    queries = [
        (sa.select(t.c.n).where(t.c.n.in_([2, 3, 9])).order_by(t.c.n), {}),
        (sa.select(t.c.name, t.c.n).where(sa.tuple_(t.c.n, t.c.name).in_([(1, "a")])), {}),
        (sa.select(t.c.n).where(t.c.name == sa.bindparam("name")), {"name": "c"}),
        (sa.select(t.c.n).where(t.c.n.in_([])), {}),
    ]
    expected = [[(2,), (3,)], [("a", 1)], [(3,)], []]
    try:
        await _write(
            store,
            "CREATE TABLE t (n INTEGER PRIMARY KEY, name TEXT)",
            "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        )
        async with store.begin("reading in the writer") as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert isinstance(driver, ProcessConnection)
            # An INSERT sent without waiting goes first, and its row is read with the rest.
            await conn.exec_driver_sql("INSERT INTO t VALUES (?, ?)", [(9, "z"), (10, "y")])
            assert await read_together(conn, queries) == [[(2,), (3,), (9,)], *expected[1:]]
        async with store.read("reading alone") as conn:
            assert await read_together(conn, queries) == [[(2,), (3,), (9,)], *expected[1:]]
        # A failure is SQLAlchemy's error of the driver's, as a statement's would be, and
        # the store says what it was.
        nowhere = sa.select(sa.literal_column("n")).select_from(sa.table("nowhere"))
        async with store.begin("failing") as conn:
            with pytest.raises(sa.exc.OperationalError, match="no such table: nowhere"):
                await read_together(conn, [*queries, (nowhere, {})])
        with pytest.raises(StoreError, match="no such table: nowhere"):
            await _read_nowhere(store, nowhere)
    finally:
        await store.close()


async def _read_nowhere(store: Store, nowhere: sa.Select[Any]) -> None:
    async with store.begin("failing") as conn:
        await read_together(conn, [(nowhere, {})])


async def test_a_rollback_with_no_transaction_open_asks_the_child_nothing(tmp_path: Path) -> None:
    # SQLAlchemy's pool rolls back every connection it gets back, after a commit too: that
    # rollback must not cost a round trip. Shown by ending the child first: a rollback that
    # asked it would find no connection.
    connection = await ProcessConnection.open(str(tmp_path / "x.db"), 5.0)
    await connection.cursor().execute("CREATE TABLE t (n INTEGER)")
    await connection.cursor().execute("BEGIN IMMEDIATE")
    await connection.cursor().executemany("INSERT INTO t VALUES (?)", [(1,)])
    await connection.commit()
    os.kill(connection.pid, signal.SIGKILL)
    assert _gone_within(connection.pid, CHILD_GONE_S)
    await connection.rollback()
    await connection.close()


async def test_a_rollback_of_an_open_transaction_goes_to_the_child(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    connection = await ProcessConnection.open(str(path), 5.0)
    try:
        await connection.cursor().execute("CREATE TABLE t (n INTEGER)")
        await connection.cursor().execute("BEGIN IMMEDIATE")
        await connection.cursor().execute("INSERT INTO t VALUES (1)")
        await connection.rollback()
        # Rows sent without waiting: their answers are still due, so the rollback waits.
        await connection.cursor().execute("BEGIN IMMEDIATE")
        await connection.cursor().executemany("INSERT INTO t VALUES (?)", [(2,)])
        await connection.rollback()
        cursor = await connection.cursor().execute("SELECT count(*) FROM t")
        assert await cursor.fetchall() == [(0,)]
        await connection.cursor().execute("BEGIN IMMEDIATE")
    finally:
        await connection.close()
    # The child ended with the transaction still open: asking it now finds no connection.
    with pytest.raises(sqlite3.OperationalError, match="no active connection"):
        await connection.rollback()


async def test_the_child_checkpoints_after_a_commit_that_filled_the_wal(tmp_path: Path) -> None:
    # The write connection's commits leave the checkpoint to the child, which runs it after
    # answering, once the WAL holds [database] sqlite_checkpoint_mb; the pages then reach the
    # database file. A smaller WAL stays as it is (the database file keeps its size).
    path = tmp_path / "x.db"
    store = Store.open(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}", sqlite_checkpoint_mb=1))
    try:
        await store.migrate()
        await _write(store, "CREATE TABLE t (n INTEGER PRIMARY KEY, b BLOB)")
        emptyish = path.stat().st_size
        await _write(store, "INSERT INTO t VALUES (1, zeroblob(100000))")
        await _write(store, "SELECT 1")  # answered after any checkpoint of the one before
        assert path.stat().st_size == emptyish
        await _write(
            store,
            "WITH RECURSIVE c(n) AS (SELECT 2 UNION ALL SELECT n + 1 FROM c WHERE n < 40) "
            "INSERT INTO t SELECT n, randomblob(50000) FROM c",
        )
        await _write(store, "SELECT 1")
        assert path.stat().st_size > 2_000_000
    finally:
        await store.close()


def _locks_held(pid: int, path: Path) -> list[str]:
    """The POSIX locks ``pid`` holds on ``path`` (Linux's /proc/locks)."""
    inode = path.stat().st_ino
    return [
        line
        for line in Path("/proc/locks").read_text().splitlines()
        if "POSIX" in line and f" {pid} " in line and f":{inode} " in line
    ]


async def test_the_childs_look_at_the_wal_index_leaves_sqlites_locks_in_place(
    tmp_path: Path,
) -> None:
    # POSIX locks belong to a process and a file: closing any descriptor of the WAL-index
    # in the child dropped SQLite's own lock on it, which tells other connections the
    # index is in use. The next connection to open the database then reset the index under
    # the child's mapping (the child died of SIGBUS when it touched it meanwhile).
    path = tmp_path / "x.db"
    store = Store.open(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}", sqlite_checkpoint_mb=1))
    try:
        await store.migrate()  # WAL mode
        async with store.begin("writing") as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert isinstance(raw, ProcessConnection)
            await conn.execute(sa.text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
            index = Path(f"{path}-shm")
            held = _locks_held(raw.pid, index)
            assert held, "SQLite holds a lock on the WAL-index while its connection is open"
        for n in range(3):
            await _write(store, f"INSERT INTO t VALUES ({n})")  # then the child reads the index
            assert _locks_held(raw.pid, index), f"after commit {n + 2}"
    finally:
        await store.close()


LONG_READ = (
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 300000) "
    "SELECT count(*) FROM c"
)


async def _finish_order(
    connection: ProcessConnection, waits: AnswerWaits, request: str
) -> list[str]:
    """Which comes back first: ``request`` on ``connection``, or ``waits.none()`` called
    once the request is on its way."""
    order: list[str] = []

    async def ask() -> None:
        if request == "commit":
            await connection.commit()
        else:
            await connection.cursor().execute(request)
        order.append("answer")

    asking = asyncio.create_task(ask())
    await asyncio.sleep(0)  # the request is sent
    await waits.none()
    order.append("none")
    await asking
    return order


async def test_work_that_yields_to_writes_waits_for_an_answer_due_at_once(tmp_path: Path) -> None:
    # A request the child can answer at once (nothing queued before it, not a commit): the
    # loop's own long steps wait for it, so the transaction's next statement goes first.
    waits = AnswerWaits()
    connection = await ProcessConnection.open(str(tmp_path / "x.db"), 5.0, waits=waits)
    try:
        assert await _finish_order(connection, waits, LONG_READ) == ["answer", "none"]
        # A commit waits for the disk: nothing waits for it.
        await connection.cursor().execute("CREATE TABLE t (n INTEGER)")
        await connection.cursor().execute("BEGIN IMMEDIATE")
        await connection.cursor().executemany("INSERT INTO t VALUES (?)", [(1,)])
        await connection.cursor().execute("SELECT 1")
        assert await _finish_order(connection, waits, "commit") == ["none", "answer"]
        # Nor for a request queued behind rows sent without waiting (the child is busy).
        await connection.cursor().execute("BEGIN IMMEDIATE")
        await connection.cursor().executemany("INSERT INTO t VALUES (?)", [(2,)])
        assert await _finish_order(connection, waits, LONG_READ) == ["none", "answer"]
        await connection.commit()
    finally:
        await connection.close()


async def test_a_transaction_sqlite_rolled_back_itself_still_takes_the_rollback(
    tmp_path: Path,
) -> None:
    # A full file makes SQLite roll the whole transaction back at the failed statement; the
    # child still holds it spoilt until the server's rollback, which must therefore go to
    # the child (skipping it left every later request answered with the old failure).
    connection = await ProcessConnection.open(str(tmp_path / "x.db"), 5.0)
    try:
        await connection.cursor().execute("CREATE TABLE t (n INTEGER, b BLOB)")
        pages = await (await connection.cursor().execute("PRAGMA page_count")).fetchall()
        await connection.cursor().execute(f"PRAGMA max_page_count={pages[0][0] + 2}")
        await connection.cursor().execute("BEGIN IMMEDIATE")
        await connection.cursor().executemany(
            "INSERT INTO t VALUES (?, randomblob(4000))", [(n,) for n in range(50)]
        )
        with pytest.raises(sqlite3.OperationalError, match="full"):
            await connection.cursor().execute("SELECT count(*) FROM t")
        await connection.rollback()
        await connection.cursor().execute("PRAGMA max_page_count=1000000")
        await connection.cursor().execute("BEGIN IMMEDIATE")
        await connection.cursor().executemany("INSERT INTO t VALUES (?, NULL)", [(1,)])
        await connection.commit()
        cursor = await connection.cursor().execute("SELECT count(*) FROM t")
        assert await cursor.fetchall() == [(1,)]
    finally:
        await connection.close()
