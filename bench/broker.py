"""A real Mosquitto broker process on a free loopback port.

The benchmarks start their own broker (the same way the test fixture in ``tests/conftest.py``
does: a generated config, anonymous clients on 127.0.0.1, no persistence) so that a run
needs nothing but the ``mosquitto`` binary. ``Mosquitto`` can be stopped and started again
on the same port.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Final, Self

START_TIMEOUT_S: Final = 10.0
STOP_TIMEOUT_S: Final = 5.0
MAX_QUEUED_MESSAGES: Final = 100_000


class BrokerError(RuntimeError):
    """Mosquitto is missing or did not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, timeout: float, host: str = "127.0.0.1") -> bool:
    """True once something accepts TCP connections on ``host:port`` (within ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def mosquitto_binary() -> str:
    """The path of ``mosquitto``.

    Raises:
        BrokerError: it is not installed.
    """
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
    return binary


def end_process(proc: subprocess.Popen[bytes], signal_number: int, timeout_s: float) -> None:
    """Send ``signal_number`` and wait; kill the process if it has not exited in time."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal_number)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


class ChildProcess:
    """A process this one starts and must stop: ``start`` in a subclass, SIGTERM to stop.

    ``stop`` sends SIGTERM (the clean shutdown of Mosquitto and of ``stockgate``; SIGINT
    may be ignored in a process a background shell started) and kills the process if it
    has not exited within ``stop_timeout_s``. A context manager: started on entry,
    stopped on exit.
    """

    stop_timeout_s: float = STOP_TIMEOUT_S

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL if it does not exit in time)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            end_process(proc, signal.SIGTERM, self.stop_timeout_s)

    def kill(self) -> int:
        """SIGKILL, as a crash or the OOM killer ends it (no clean-up runs); its exit status."""
        proc, self._proc = self._proc, None
        if proc is None:
            raise RuntimeError("the process is not running")
        proc.kill()
        return proc.wait(timeout=self.stop_timeout_s)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Mosquitto(ChildProcess):
    """A Mosquitto process that can be stopped and started again on one port.

    Args:
        workdir: where its config and log go (must exist).
        port: the port to listen on; 0 picks a free one.
    """

    def __init__(self, workdir: Path, port: int = 0) -> None:
        super().__init__()
        self.binary = mosquitto_binary()
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.url = f"mqtt://{self.host}:{self.port}"
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"max_queued_messages {MAX_QUEUED_MESSAGES}\n"
            f"log_dest file {self.log}\n",
            encoding="utf-8",
        )

    def start(self) -> None:
        """Start the broker and wait until it listens.

        Raises:
            BrokerError: it did not listen within ``START_TIMEOUT_S``.
        """
        if self._proc is not None:
            return
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_listening(self.port, START_TIMEOUT_S, self.host):
            self.stop()
            raise BrokerError(f"mosquitto did not listen on {self.port}; see {self.log}")
