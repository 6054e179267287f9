"""Fixtures shared by the whole suite: a real Mosquitto on a free loopback port, and a
PostgreSQL server for the store tests (the machine's, or a private one started here).
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from bench.broker import Mosquitto, free_port


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Generator[None, None, None]:
    """On a timeout, print where every asyncio task is waiting, then fail as usual.

    pytest-timeout prints thread stacks, and for an async test those show only the loop
    idling in ``select``; the stuck ``await`` is in one of the tasks.
    """
    yield
    handler = signal.getsignal(signal.SIGALRM)
    if not callable(handler):
        return  # the thread method, or no timeout for this test

    def dump_tasks_first(signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        try:
            tasks = asyncio.all_tasks(asyncio.get_running_loop())
        except RuntimeError:
            tasks = set()
        for task in sorted(tasks, key=lambda t: t.get_name()):
            print(f"--- asyncio task {task.get_name()}:", file=sys.stderr)
            task.print_stack(limit=12, file=sys.stderr)
        handler(signum, frame)

    signal.signal(signal.SIGALRM, dump_tasks_first)


PG_HOST_ENV, PG_PORT_ENV = "STOCKGATE_TEST_PG_HOST", "STOCKGATE_TEST_PG_PORT"
PG_START_TIMEOUT_S = 60


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free loopback port, for machines whose own
    PostgreSQL service is not running. Trust auth, superuser ``postgres``, a ``test``
    database like the machine's service has."""

    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not binaries:
            raise RuntimeError(
                "PostgreSQL is neither reachable on 127.0.0.1:5432 nor installed; "
                "`make test` installs it (apt-get install postgresql)"
            )
        self.bin = Path(binaries[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="stockgate-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(self.dir, "postgres", "postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._as_postgres, *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=PG_START_TIMEOUT_S,
        )

    def start(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        )
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )
        self._run(
            str(self.bin / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "test",
        )

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


_private_postgres: PrivatePostgres | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Point the store tests at a PostgreSQL: the machine's if it answers, else our own
    (``STOCKGATE_TEST_PG=private`` asks for our own even when the machine's answers)."""
    global _private_postgres
    forced = os.environ.get("STOCKGATE_TEST_PG") == "private"
    if not forced and (PG_HOST_ENV in os.environ or _listening("127.0.0.1", 5432)):
        return
    _private_postgres = PrivatePostgres()
    _private_postgres.start()
    os.environ[PG_HOST_ENV] = "127.0.0.1"
    os.environ[PG_PORT_ENV] = str(_private_postgres.port)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _private_postgres is not None:
        _private_postgres.stop()
