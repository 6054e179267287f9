"""A barcode scanner on a pseudo-terminal, behind a stable path the edge is configured with.

The path is a symlink, like ``/dev/serial/by-id/...`` on a real box: unplugging closes the
terminal's master side (the edge's open tty hangs up) and removes the link; plugging in
makes a new terminal and points the link at it. pyserial on the edge opens the real tty.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from edge.readers.serial_scanner import SerialScanner
from edge.readers.types import ReaderEvent, ScannerOutput


class PtyScanner:
    """The scanner side of a pty; ``path`` is what the edge opens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._master: int | None = None

    def plug(self) -> None:
        master, slave = os.openpty()
        tty = os.ttyname(slave)
        os.close(slave)  # the edge opens it by path, as it would a USB scanner
        self.path.unlink(missing_ok=True)
        self.path.symlink_to(tty)
        self._master = master

    def unplug(self) -> None:
        if self._master is not None:
            os.close(self._master)
            self._master = None
        self.path.unlink(missing_ok=True)

    def send(self, data: bytes) -> None:
        assert self._master is not None, "the scanner is unplugged"
        view = memoryview(data)
        while view:
            view = view[os.write(self._master, view) :]


@contextlib.contextmanager
def pty_scanner(path: Path) -> Iterator[PtyScanner]:
    """A plugged-in pty scanner at ``path``, unplugged at the end."""
    scanner = PtyScanner(path)
    scanner.plug()
    try:
        yield scanner
    finally:
        scanner.unplug()


async def next_output(scanner: SerialScanner, timeout: float = 5.0) -> ScannerOutput:
    async with asyncio.timeout(timeout):
        return await anext(aiter(scanner))


async def until_state(scanner: SerialScanner, state: str, timeout: float = 5.0) -> ReaderEvent:
    """Skip outputs until a state event with ``state``; return it."""
    async with asyncio.timeout(timeout):
        async for item in scanner:
            if isinstance(item, ReaderEvent) and item.kind == "state" and item.state == state:
                return item
    raise AssertionError(f"scanner stopped before reaching {state}")


async def outputs(scanner: SerialScanner, n: int, timeout: float = 5.0) -> list[ScannerOutput]:
    got: list[ScannerOutput] = []
    async with asyncio.timeout(timeout):
        async for item in scanner:
            got.append(item)
            if len(got) == n:
                break
    return got


__all__ = ["PtyScanner", "next_output", "outputs", "pty_scanner", "until_state"]
