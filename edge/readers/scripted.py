"""A scripted reader: the in-repo fake of the reader port (``edge.readers.port.Reader``).

It yields a script of reads and reader events in order, as a real reader would hand
them over, and can be told to fail: to refuse to start, or to raise from its stream at a
given point. Between steps it may pause, so a test can let passes depart. After the
script it idles like a real reader (whose stream never ends while it runs), or ends its
stream when asked to. Its status follows the ``StateChanged`` events it has yielded.

Used by the agent's tests in place of an LLRP reader or a serial scanner; the adapters
themselves are tested against the real protocols (``firmware_sim.fake_reader``, a pty).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Literal

from edge.readers.types import ReaderEvent, ReaderState, ScanRead, StateChanged, TagRead
from wire.models import ReaderStatus

__all__ = ["ScriptedReader", "Step"]

ReaderKind = Literal["llrp", "serial"]

Step = TagRead | ScanRead | ReaderEvent | float | Exception
"""One step of a script: a read or an event is yielded, a float pauses that many
seconds, an exception is raised from the stream."""


class ScriptedReader:
    """A reader that plays a script (see the module docstring).

    Args:
        name: the reader's name, as its status says it.
        script: the steps, in order.
        kind: the status's kind (``llrp`` or ``serial``).
        fail_on_enter: raised when the reader is started (entered).
        end: end the stream after the script instead of idling.
        reads_per_s: the read rate its status reports.
    """

    def __init__(
        self,
        name: str,
        script: Iterable[Step] = (),
        *,
        kind: ReaderKind = "llrp",
        fail_on_enter: Exception | None = None,
        end: bool = False,
        reads_per_s: float = 0.0,
    ) -> None:
        self.name = name
        self.script = list(script)
        self.kind: ReaderKind = kind
        self.fail_on_enter = fail_on_enter
        self.end = end
        self.reads_per_s = reads_per_s
        self.state: ReaderState = "connected"
        """The state of the last ``StateChanged`` yielded (``connected`` before any)."""
        self.entered = False
        self.closed = False
        self.yielded = 0
        """Reads and events handed to the consumer so far."""
        self.done = asyncio.Event()
        """Set once the whole script has been played."""

    async def __aenter__(self) -> ScriptedReader:
        if self.fail_on_enter is not None:
            raise self.fail_on_enter
        self.entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.closed = True

    def __aiter__(self) -> AsyncIterator[TagRead | ScanRead | ReaderEvent]:
        return self._play()

    async def _play(self) -> AsyncIterator[TagRead | ScanRead | ReaderEvent]:
        for step in self.script:
            if isinstance(step, float):
                await asyncio.sleep(step)
                continue
            if isinstance(step, Exception):
                raise step
            if isinstance(step, StateChanged):
                self.state = step.state
            self.yielded += 1
            yield step
        self.done.set()
        if not self.end:
            await asyncio.Event().wait()  # a real reader never ends its stream

    def status(self) -> ReaderStatus:
        """The reader's state (from the script) and its configured read rate."""
        return ReaderStatus(
            name=self.name, kind=self.kind, state=self.state, reads_per_s=self.reads_per_s
        )
