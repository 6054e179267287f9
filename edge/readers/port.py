"""The reader port: what the edge agent needs of a reader or a scanner, and nothing more.

A reader is an async context manager (entering starts it, leaving stops it) and an async
iterator of typed values: ``TagRead`` and ``ScanRead`` for what it read, ``ReaderEvent``
for what happened to it; ``status()`` says how it is doing, for the gateway's status.
``LlrpReader`` (``edge.readers.llrp``) and ``SerialScanner``
(``edge.readers.serial_scanner``) are the real ones; ``ScriptedReader``
(``edge.readers.scripted``) is the in-repo fake the agent's tests plug in instead
(architecture.md §7: fakes only for the I/O port of the unit under test).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Protocol, runtime_checkable

from edge.config import LlrpSettings
from edge.readers.types import ReaderEvent, ScanRead, TagRead
from wire.models import ReaderStatus

__all__ = ["Reader", "Retunable"]


class Reader(Protocol):
    """The reader port: an async context manager and an async iterator of typed reads."""

    async def __aenter__(self) -> Reader: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def __aiter__(self) -> AsyncIterator[TagRead | ScanRead | ReaderEvent]: ...

    def status(self) -> ReaderStatus: ...


@runtime_checkable
class Retunable(Protocol):
    """A reader that can take new settings while it runs (``LlrpReader``)."""

    def retune(self, settings: LlrpSettings) -> None: ...
