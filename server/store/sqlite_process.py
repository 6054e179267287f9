"""A SQLite connection whose ``sqlite3`` connection lives in a child process.

The server's write transactions on a SQLite file go through one of these
(``Store.open``). With aiosqlite the statements run on a thread of the server's own
process, and Python's ``sqlite3`` takes the GIL back after every row of an
``executemany``: while the event loop checks and plans the next batches, each row of the
ledger insert waits for the loop to let go, so the server's Python and SQLite's work took
turns on one core (server/README.md, "Where one SQLite process stops"). In a child
process SQLite's work runs on the other core, as PostgreSQL's does in its own processes.

``ProcessConnection`` offers what SQLAlchemy's aiosqlite adapter uses of an
``aiosqlite.Connection`` (cursors that execute, fetch and close; commit, rollback, close;
the isolation level, which the server sets to None once); requests go to the child
(``server.store.sqlite_child``) over its stdin and stdout, in order, and the loop waits
for the answers without a thread. Rows come back whole with each statement. A statement
that gives nothing back (an ``executemany`` of plain INSERTs: a write transaction's
rows) is sent without waiting for its answer (``send``), so the server
builds the next statement's rows while the child writes these; its failure is raised by
the next request that waits, and the child commits nothing of such a transaction. A
``sqlite3`` error in the child is raised here as the same class with the same
``sqlite_errorcode``, so ``Store`` translates it as before (a full disk is ``StoreFull``).
A child that ended (killed, crashed), or a request cancelled midway, leaves the
connection closed: "no active connection", which SQLAlchemy takes for a disconnect and
replaces. The child ends when its input ends, so it does not outlive a killed server.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import re
import sqlite3
import sys
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

from server.store.sqlite_child import HEADER

CHILD_FUNCTIONS = frozenset({"regexp", "floor"})
"""SQL functions the child registers itself."""
_PLAIN_INSERT = re.compile(r"\s*INSERT\b", re.IGNORECASE)
Answer = tuple[Any, int, int | None, list[Any] | None]
"""What a statement gives a cursor: description, row count, last row id, rows."""
NOT_ANSWERED: Final[Answer] = (None, -1, None, None)
"""What a cursor holds after a statement sent without waiting for its answer (``send``)."""
CLOSE_WAIT_S = 5.0
"""How long ``close`` waits for the child to end before it kills it."""


class AnswerWaits:
    """The requests the write connections wait on that their child can answer at once:
    with nothing sent before them still unanswered, and not a commit (which waits for the
    disk). Ingest's long steps (checking a batch, a step of planning) wait for ``none``
    first: a transaction's next statement is built as soon as its answer is back, instead
    of after whatever the loop started meanwhile, while the child waits with nothing to
    write."""

    def __init__(self) -> None:
        self._waiting = 0
        self._callers: list[asyncio.Future[None]] = []
        """Waiting in ``none`` (futures of the running loop: a store may see several)."""

    async def none(self) -> None:
        """Return once no such request is waited on."""
        while self._waiting:
            caller = asyncio.get_running_loop().create_future()
            self._callers.append(caller)
            await caller

    def began(self) -> None:
        self._waiting += 1

    def ended(self) -> None:
        self._waiting -= 1
        if not self._waiting:
            callers, self._callers = self._callers, []
            for caller in callers:
                if not caller.done():
                    caller.set_result(None)


class _IsolationLevel:
    """Stands for the child's ``sqlite3.Connection`` where SQLAlchemy sets its isolation
    level (``AsyncAdapt_aiosqlite_connection.isolation_level``): the child's connection
    runs with None (the server emits BEGIN itself), and only None is taken."""

    isolation_level: str | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "isolation_level" or value is not None:
            raise sqlite3.NotSupportedError(
                "a SQLite connection in a child process runs with isolation_level None only"
            )


class _RunNow:
    """Stands for aiosqlite's queue of calls: a call put on it runs at once."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as err:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(err)


def _error(answer: tuple[Any, ...]) -> sqlite3.Error:
    """The ``sqlite3`` error an answer carries, of its class and with its codes."""
    _, kind, args, code, name = answer
    error_class = getattr(sqlite3, kind, sqlite3.DatabaseError)
    error: sqlite3.Error = error_class(*args)
    error.sqlite_errorcode = code
    error.sqlite_errorname = name
    return error


class ProcessCursor:
    """A cursor: each statement runs in the child and its rows come back with it."""

    arraysize = 1

    def __init__(self, connection: ProcessConnection) -> None:
        self._connection = connection
        self._rows: deque[Any] = deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    async def __aenter__(self) -> ProcessCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def _took(self, answer: Answer) -> ProcessCursor:
        self.description, self.rowcount, self.lastrowid, rows = answer
        self._rows = deque(rows or ())
        return self

    async def execute(self, sql: str, parameters: Any = ()) -> ProcessCursor:
        return self._took(await self._connection.request("execute", (sql, parameters)))

    async def executemany(self, sql: str, rows: Any) -> ProcessCursor:
        if _PLAIN_INSERT.match(sql) and "RETURNING" not in sql.upper():
            return self._took(await self._connection.send("executemany", (sql, list(rows))))
        return self._took(await self._connection.request("executemany", (sql, list(rows))))

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = min(len(self._rows), size or self.arraysize)
        return [self._rows.popleft() for _ in range(count)]

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()


class ProcessConnection:
    """What SQLAlchemy's aiosqlite adapter needs of a connection, served by a child process.

    Build it with ``open``.
    """

    def __init__(
        self, process: asyncio.subprocess.Process, waits: AnswerWaits | None = None
    ) -> None:
        self._process = process
        self._waits = waits
        self._conn = _IsolationLevel()
        self._tx = _RunNow()
        self._connection = True
        """True while open (the adapter checks it before commit and rollback)."""
        self._turn = asyncio.Lock()
        self._unanswered = 0
        """Requests sent whose answers have not been read."""
        self._reaper: asyncio.Task[int] | None = None
        self._in_transaction = False
        """Whether a transaction was open in the child after the last request answered
        (SQLite's, or one a failed statement spoilt, which a rollback must end)."""

    @classmethod
    async def open(
        cls,
        database: str,
        timeout: float,
        *,
        uri: bool = False,
        checkpoint_bytes: int = 0,
        waits: AnswerWaits | None = None,
    ) -> ProcessConnection:
        """Start the child on ``database``; ``checkpoint_bytes`` (a WAL size) above 0: the
        child checkpoints after answering a commit that left the WAL at least this large
        (the connection is then given ``wal_autocheckpoint=0``; ``database`` must be a
        path, beside which the WAL-index lies). ``waits`` counts the requests it waits on
        that the child can answer at once."""
        if uri and checkpoint_bytes > 0:
            raise ValueError("checkpoint_bytes needs the database's path, not a URI")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.store.sqlite_child",
            database,
            repr(timeout),
            "uri" if uri else "path",
            str(checkpoint_bytes),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        connection = cls(process, waits)
        # A first request: the child has opened the database (or says why it could not).
        await connection.request("execute", ("SELECT 1", ()))
        return connection

    @property
    def isolation_level(self) -> str | None:
        return None

    @property
    def pid(self) -> int:
        """The child process's id."""
        return self._process.pid

    def cursor(self) -> ProcessCursor:
        return ProcessCursor(self)

    async def create_function(self, name: str, *_args: Any, **_kw: Any) -> None:
        """SQLAlchemy registers ``regexp`` and ``floor`` on connect; the child has its own
        already (``sqlite_child.serve``). Python functions cannot cross into the child."""
        if name not in CHILD_FUNCTIONS:
            raise sqlite3.NotSupportedError(f"no function {name!r} in the SQLite process")

    async def send(self, operation: str, arguments: Sequence[Any]) -> Answer:
        """Send a request whose answer nobody reads, and go on without waiting for it.

        For the statements that give nothing back (an ``executemany`` of INSERTs without
        RETURNING: a write transaction's rows): the server builds the next statement's
        rows while the child writes these. The child runs requests in the order sent; a
        failure is raised by the next request that waits (at the latest the commit),
        inside the same transaction, which then rolls back as it would have (the child
        runs nothing more of it meanwhile, ``sqlite_child``).
        """
        async with self._turn:
            self._write(operation, arguments, waited=False)
            self._unanswered += 1
        return NOT_ANSWERED

    async def request(
        self, operation: str, arguments: Sequence[Any], *, earlier_errors: bool = True
    ) -> Any:
        """Send one request to the child and wait for its answer; raises its error, or
        that of an earlier request sent without waiting (``send``) unless
        ``earlier_errors`` is False (a rollback: the transaction ends either way)."""
        (answer,) = await self.request_all([(operation, arguments)], earlier_errors=earlier_errors)
        return answer

    async def request_all(
        self, requests: Sequence[tuple[str, Sequence[Any]]], *, earlier_errors: bool = True
    ) -> list[Any]:
        """Send ``requests`` at once and wait for all their answers: one wait for the loop
        instead of one per request (the child answers them in order). Raises the first
        error among them, or among earlier requests sent without waiting unless
        ``earlier_errors`` is False."""
        if not requests:
            return []
        waits = self._waits if self._unanswered == 0 and requests[0][0] != "commit" else None
        if waits is None:
            return await self._request_all(requests, earlier_errors)
        waits.began()
        try:
            return await self._request_all(requests, earlier_errors)
        finally:
            waits.ended()

    async def _request_all(
        self, requests: Sequence[tuple[str, Sequence[Any]]], earlier_errors: bool
    ) -> list[Any]:
        async with self._turn:
            for operation, arguments in requests:
                self._write(operation, arguments, waited=True)
            earlier, self._unanswered = self._unanswered, self._unanswered + len(requests)
            answers: list[Any] = []
            failed: BaseException | None = None
            while self._unanswered:
                answer = await self._answer()
                self._unanswered -= 1
                mine = not earlier
                if earlier:
                    earlier -= 1
                elif answer[0] == "ok":
                    answers.append(answer[1])
                if answer[0] != "ok" and failed is None and (earlier_errors or mine):
                    failed = _error(answer)
        if failed is not None:
            raise failed
        return answers

    def _write(self, operation: str, arguments: Sequence[Any], *, waited: bool) -> None:
        if not self._connection:
            raise sqlite3.OperationalError("no active connection")
        stdin = self._process.stdin
        assert stdin is not None
        body = pickle.dumps((operation, tuple(arguments), waited), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            stdin.write(HEADER.pack(len(body)) + body)
        except ConnectionError as err:
            self._end()
            raise sqlite3.OperationalError(
                f"no active connection: the SQLite process ended ({err})"
            ) from None

    async def _answer(self) -> Any:
        """The next answer on the pipe (the requests' answers come in the order sent)."""
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None
        assert stdout is not None
        try:
            await stdin.drain()
            (size,) = HEADER.unpack(await stdout.readexactly(HEADER.size))
            in_transaction, answer = pickle.loads(await stdout.readexactly(size))  # noqa: S301
            self._in_transaction = in_transaction
            return answer
        except (ConnectionError, asyncio.IncompleteReadError) as err:
            self._end()
            raise sqlite3.OperationalError(
                f"no active connection: the SQLite process ended ({err})"
            ) from None
        except BaseException:
            # Cancelled between a request and its answer: the next answer on the pipe
            # would be this one's. The connection cannot be used again.
            self._end()
            raise

    async def commit(self) -> None:
        await self.request("commit", ())

    async def rollback(self) -> None:
        """Roll back; nothing to do, and no round trip, when the child holds no transaction
        and every request has been answered (SQLAlchemy's pool rolls back each connection
        it gets back, after the commit too)."""
        if self._in_transaction or self._unanswered:
            await self.request("rollback", (), earlier_errors=False)

    async def close(self) -> None:
        """End the child: its input closes and it exits (killed if it does not within
        ``CLOSE_WAIT_S``); returns once it has."""
        self._connection = False
        stdin = self._process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await self._process.wait()
        except TimeoutError:
            self._end()
            await self._process.wait()

    def stop(self) -> None:
        """End the child at once (SQLAlchemy's terminate)."""
        self._end()

    def _end(self) -> None:
        self._connection = False
        if self._process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        # Reaped even when nothing closes this connection afterwards (a terminate).
        with contextlib.suppress(RuntimeError):
            self._reaper = asyncio.get_running_loop().create_task(self._process.wait())
