"""The stockgate server as a separate process, the way an operator runs it.

``ServerProcess`` writes a ``server.toml``, runs ``stockgate server --config server.toml``
with the same Python, waits for ``/healthz`` to answer 200 (database reachable, MQTT
connected) and stops it with SIGTERM (systemd's stop; the CLI shuts down cleanly on it).
Not SIGINT: a process started in the background by a non-interactive shell inherits SIGINT
ignored, and the server would then never stop. With ``profile_to`` set, the server runs
under cProfile (``bench.run_profiled``) and leaves its statistics there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import httpx

from bench.broker import ChildProcess, free_port

REPO: Final = Path(__file__).resolve().parent.parent
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 30.0
"""The server drains the API and its queue on SIGTERM; more than the broker needs."""
API_KEY: Final = "bench-viewer-key-0123456789"


class ServerStartError(RuntimeError):
    """The server process exited or did not become healthy in time."""


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string for the characters used here.
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def server_toml(
    *,
    mqtt_url: str,
    database: Path | str,
    api_port: int,
    read_points: Sequence[Mapping[str, object]],
    client_id: str = "stockgate-server-bench",
    shared_subscription: bool = False,
    history: bool = True,
) -> str:
    """A ``server.toml`` for the benchmark (one viewer key, the given read points).

    ``database`` is a SQLite file, or a ``[database] url`` as it is.
    """
    url = database if isinstance(database, str) else f"sqlite+aiosqlite:///{database}"
    lines = [
        "[mqtt]",
        f"url = {_toml_value(mqtt_url)}",
        f"client_id = {_toml_value(client_id)}",
        "[database]",
        f"url = {_toml_value(url)}",
        "[ingest]",
        f"shared_subscription = {_toml_value(shared_subscription)}",
        "[history]",
        f"enabled = {_toml_value(history)}",
        "[api]",
        'host = "127.0.0.1"',
        f"port = {api_port}",
        "[[api.keys]]",
        f"key = {_toml_value(API_KEY)}",
        'role = "viewer"',
        'name = "bench"',
    ]
    for point in read_points:
        lines.append("[[read_points]]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in point.items())
    return "\n".join(lines) + "\n"


SERVER_CLI: Final = (sys.executable, "-c", "from stockgate.cli import main; main()")
"""``stockgate`` run by this Python, with the repository on the path."""


def spawn_server(entry: Sequence[str], config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``<entry> server --config <config>``, its output appended to ``log``."""
    command = [*entry, "server", "--config", str(config), "--log-level", "warning"]
    with log.open("ab") as sink:
        return subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )


def wait_healthy(proc: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    """Until the server at ``base_url`` answers ``/healthz`` with 200.

    Raises:
        ServerStartError: it exited, or was not healthy within ``START_TIMEOUT_S``.
    """
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(
                f"server exited with {proc.returncode}; see {log}:\n"
                + log.read_text(encoding="utf-8", errors="replace")[-2000:]
            )
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise ServerStartError(f"server not healthy within {START_TIMEOUT_S:g}s; see {log}")


class ServerProcess(ChildProcess):
    """``stockgate server`` in a child process.

    Args:
        workdir: where the config and the log go.
        mqtt_url: the broker.
        database: the SQLite file (created and migrated by the server if new), or a
            ``[database] url`` (PostgreSQL).
        read_points: ``[[read_points]]`` tables.
        profile_to: run under cProfile and write the statistics to this file.
        name: names its config and log files (several instances share a workdir).
        shared_subscription: ``[ingest] shared_subscription`` (several instances).
        history: ``[history] enabled`` (off: no follower catching up on a generated ledger
            while something else is measured).
    """

    stop_timeout_s = STOP_TIMEOUT_S

    def __init__(
        self,
        workdir: Path,
        *,
        mqtt_url: str,
        database: Path | str,
        read_points: Sequence[Mapping[str, object]],
        profile_to: Path | None = None,
        name: str = "server",
        shared_subscription: bool = False,
        history: bool = True,
    ) -> None:
        super().__init__()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / f"{name}.toml"
        self.log = workdir / f"{name}.log"
        self.database = database
        self.profile_to = profile_to
        self.config.write_text(
            server_toml(
                mqtt_url=mqtt_url,
                database=database,
                api_port=self.port,
                read_points=read_points,
                # Its own MQTT session: a previous server's queued messages must not reach it.
                client_id=f"stockgate-server-bench-{uuid.uuid4().hex[:8]}",
                shared_subscription=shared_subscription,
                history=history,
            ),
            encoding="utf-8",
        )

    def start(self) -> None:
        """Start the server and wait until ``/healthz`` says ok.

        Raises:
            ServerStartError: it exited or was not healthy within ``START_TIMEOUT_S``.
        """
        if self.profile_to is not None:
            entry = [sys.executable, "-m", "bench.run_profiled", "--out", str(self.profile_to)]
        else:
            entry = list(SERVER_CLI)
        self._proc = spawn_server(entry, self.config, self.log)
        try:
            wait_healthy(self._proc, self.base_url, self.log)
        except ServerStartError:
            self.stop()
            raise
