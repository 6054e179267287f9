"""The child process of ``server.store.sqlite_process``: one SQLite connection, driven by
requests on stdin, answered on stdout.

Each message either way is a 4-byte big-endian length and a pickle. A request is
``(operation, arguments, waited)``; the answer is ``(open, result)``: whether a transaction
is still open afterwards (in SQLite, or spoilt here and waiting for its rollback), and
``("ok", value)`` or ``("error", kind, args, code, name)`` for a ``sqlite3`` exception of
class ``kind`` with its ``sqlite_errorcode`` and ``sqlite_errorname``. ``waited`` False:
the server goes on before it reads the answer (``ProcessConnection.send``); if such a
statement fails, the transaction is spoilt: nothing more runs in it, every later request
is answered with that error, and its commit rolls it back, so a transaction whose rows
were not all written is never committed. End of input (the server closed the connection,
or died) ends the process; SQLite rolls back whatever it had not committed.

Only the standard library is imported here: the process starts with each write
connection of a server and should start fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import pickle
import re
import sqlite3
import struct
import sys
from typing import Any, BinaryIO

HEADER = struct.Struct(">I")
PIPE_BYTES = 1 << 20
"""The pipes' size asked for (Linux's default most a process may ask, ``pipe-max-size``)."""


def read_message(stream: BinaryIO) -> Any | None:
    """The next message, or None at the end of the stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)  # noqa: S301 - from the server that started this process


def write_message(stream: BinaryIO, message: Any) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(body)) + body)
    stream.flush()


def regexp(pattern: str, text: str | None) -> bool | None:
    """SQL ``REGEXP`` (SQLAlchemy's ``regexp_match`` on SQLite)."""
    if text is None:
        return None
    return re.search(pattern, text) is not None


def _execute(conn: sqlite3.Connection, sql: str, parameters: Any) -> tuple[Any, ...]:
    cursor = conn.execute(sql, parameters)
    try:
        rows = cursor.fetchall() if cursor.description is not None else None
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


def _executemany(conn: sqlite3.Connection, sql: str, rows: Any) -> tuple[Any, ...]:
    cursor = conn.executemany(sql, rows)
    try:
        return None, cursor.rowcount, cursor.lastrowid, None
    finally:
        cursor.close()


def _run(conn: sqlite3.Connection, operation: str, arguments: Any) -> tuple[Any, ...]:
    """Run one request; its answer."""
    try:
        if operation == "execute":
            value: Any = _execute(conn, *arguments)
        elif operation == "executemany":
            value = _executemany(conn, *arguments)
        elif operation == "commit":
            conn.commit()
            value = None
        elif operation == "rollback":
            conn.rollback()
            value = None
        else:
            raise sqlite3.InterfaceError(f"unknown operation {operation!r}")
    except sqlite3.Error as err:
        return (
            "error",
            type(err).__name__,
            err.args,
            getattr(err, "sqlite_errorcode", None),
            getattr(err, "sqlite_errorname", None),
        )
    except (TypeError, ValueError, OverflowError) as err:
        why = f"{type(err).__name__}: {err}"
        return ("error", "ProgrammingError", (why,), None, None)
    return ("ok", value)


def _widen_pipes() -> None:
    """Make the pipes to and from the server hold ``PIPE_BYTES`` (Linux; 64 KiB else).

    A transaction's rows (half a megabyte for 4,000 ledger rows) then go into the pipe at
    once: with 64 KiB the rest waited in the server's event loop, which refilled the pipe
    only between its other work while this process sat idle.
    """
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is None:
        return
    for stream in (sys.stdin, sys.stdout):
        with contextlib.suppress(OSError):
            fcntl.fcntl(stream.fileno(), set_size, PIPE_BYTES)


WAL_INDEX_FRAMES = 16
"""Where the WAL-index (the ``-shm`` file) keeps ``mxFrame``, the frames in the WAL, as a
32-bit integer in the machine's byte order (https://www.sqlite.org/walformat.html, "The
WAL-Index Header")."""


class Checkpoints:
    """Checkpoints after a commit has been answered, once the WAL holds ``size`` bytes.

    SQLite's own automatic checkpoint runs inside the commit that finds the WAL that large:
    the server waited for it (tens to hundreds of milliseconds) before it could send its
    Acks, and the gateways, their windows full, sent nothing meanwhile. Here the answer
    goes out first and the checkpoint runs while the server takes in the next batches; the
    next request waits for it, so it still runs with no write transaction open and, as
    SQLite's own does, lets the next writer start the WAL again from its beginning. The
    frames in the WAL are read from the WAL-index, a file SQLite maps into memory
    anyway; if it cannot be read, the checkpoint runs.

    The WAL-index is opened once and closed only after the connection (``close``): POSIX
    locks belong to a process and a file, so closing any descriptor of it here dropped
    SQLite's own lock, the one that tells other connections the index is in use. The
    next connection to open the database then reset the index under this process's
    mapping (which died of SIGBUS when it touched it meanwhile) and its locks.
    """

    def __init__(self, database: str, size: int) -> None:
        self._path = f"{database}-shm"
        self._size = size
        self._index: int | None = None
        """The WAL-index's descriptor, once opened."""
        self._frames = 0
        """The WAL's frames (pages) at ``size``, known once the index is open."""

    def after_commit(self, conn: sqlite3.Connection) -> None:
        if self._size <= 0 or conn.in_transaction:
            return
        try:
            if self._index is None:
                self._index = os.open(self._path, os.O_RDONLY)
                self._frames = max(1, self._size // _page_size(conn))
            header = os.pread(self._index, 4, WAL_INDEX_FRAMES)
            due = int.from_bytes(header, sys.byteorder) >= self._frames
        except OSError:
            due = True
        if due:
            # PASSIVE, as SQLite's automatic checkpoint: it waits for no reader; what a
            # reader still needs is copied by a later one. A failure leaves the WAL as it
            # was, for the next commit's checkpoint.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self) -> None:
        """Close the WAL-index; after the connection, whose locks on it this drops."""
        if self._index is not None:
            os.close(self._index)
            self._index = None


def _page_size(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA page_size").fetchone()
    return int(row[0]) if row else 4096


def serve(database: str, timeout: float, uri: bool, checkpoint_bytes: int = 0) -> None:
    _widen_pipes()
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    conn = sqlite3.connect(
        database, timeout=timeout, isolation_level=None, check_same_thread=False, uri=uri
    )
    # What SQLAlchemy registers on every SQLite connection it makes, the same way.
    conn.create_function("regexp", 2, regexp, deterministic=True)
    conn.create_function("floor", 1, math.floor, deterministic=True)
    checkpoints = Checkpoints(database, checkpoint_bytes)
    spoilt: tuple[Any, ...] | None = None
    """The answer of a statement nobody waited for that failed, in the open transaction."""
    try:
        while (request := read_message(requests)) is not None:
            operation, arguments, waited = request
            if spoilt is not None and operation != "rollback":
                # Nothing more runs in a spoilt transaction (after a failed BEGIN, a
                # statement would commit on its own); a commit rolls it back.
                if operation == "commit" and conn.in_transaction:
                    conn.rollback()
                answer = spoilt
            else:
                answer = _run(conn, operation, arguments)
                if answer[0] != "ok" and not waited:
                    spoilt = answer
            if operation in ("commit", "rollback"):
                spoilt = None
            # Open: SQLite holds a transaction, or a failed statement spoilt it (SQLite may
            # have rolled back already) and only a rollback or commit here ends it.
            write_message(answers, (conn.in_transaction or spoilt is not None, answer))
            if operation == "commit":
                checkpoints.after_commit(conn)
    finally:
        conn.close()
        checkpoints.close()


if __name__ == "__main__":
    serve(sys.argv[1], float(sys.argv[2]), sys.argv[3] == "uri", int(sys.argv[4]))
