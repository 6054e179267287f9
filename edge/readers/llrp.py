"""LLRP reader client: sllurp's message codec under an asyncio connection of our own.

One task per reader owns the connection: connect, handshake, read, and on any failure
wait (capped exponential backoff with jitter) and start again, forever. The pieces:

- ``edge.readers.llrp_link``: one TCP connection (``LlrpLink``). Every connection gets a
  new ``LlrpFramer``, so nothing of a dropped connection reaches the next one. A
  keepalive watchdog drops a connection on which nothing has arrived for three keepalive
  intervals (a reader that vanished without closing TCP).
- ``edge.readers.llrp_handshake``: connecting, the handshake (capabilities, RF settings
  checked against them, ROSpec) and the goodbye on a stop.
- ``edge.readers.llrp_inbound``: what the reader sends, from frame to the consumer. A
  message sllurp cannot decode is logged and reported as a ``ReaderEvent`` and reading
  goes on; only a framing error (an impossible header: the stream is lost) drops the
  connection. Reads leave through a bounded queue; when it is full the read loop waits,
  so the reader's TCP send buffer fills up instead of reads being dropped.
- this module: ``LlrpReader``, the public face (an async context manager and an async
  iterator of reads, ``status()``, GPO writes, retuning) and the reconnect loop.

Health. The client keeps what the reader said about its antennas (GET_READER_CONFIG at
each connect, then AntennaEvents) and counts reader exception events; ``status()``
reports both. GPI inputs given at construction are switched on at each handshake (their
level changes come out as ``gpi`` ReaderEvents); ``write_gpo`` sets outputs while the
reader is connected. Ports beyond what the reader says it has are left out with a warning
instead of failing the handshake, so a wrong port number never stops the reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import NoReturn

from edge.config import LlrpSettings
from edge.errors import ReaderError
from edge.readers import llrp_rospec as requests
from edge.readers.llrp_handshake import LlrpHandshakeError, connect, goodbye, handshake
from edge.readers.llrp_inbound import LlrpInbound
from edge.readers.llrp_link import LlrpConnectionLost, LlrpLink, LlrpWatchdogError
from edge.readers.llrp_reports import LlrpError, ReaderCapabilities
from edge.readers.types import DeviceLog, ReaderOutput, StateChanged
from plumbing.backoff import Backoff
from wire.models import ReaderStatus

__all__ = [
    "LlrpConnectionLost",
    "LlrpError",
    "LlrpHandshakeError",
    "LlrpReader",
    "LlrpWatchdogError",
]

logger = logging.getLogger(__name__)


class LlrpReader:
    """An RFID reader over LLRP: an async context manager and an async iterator of reads.

    ``async with LlrpReader(settings) as reader:`` starts one task that connects,
    configures the reader and reads from it, reconnecting forever; ``async for item in
    reader`` yields ``TagRead`` and ``ReaderEvent`` values until the reader is stopped.

    Args:
        settings: the ``[[llrp]]`` table of this reader.
        queue_size: reads and events held for the consumer before the read loop waits.
        gpi_ports: GPI inputs to switch on (photo-eyes); their changes become events.
    """

    def __init__(
        self,
        settings: LlrpSettings,
        *,
        queue_size: int = 10_000,
        gpi_ports: Iterable[int] = (),
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self._settings = settings
        self.name = settings.name
        self.gpi_ports = tuple(sorted(set(gpi_ports)))
        self.gpo_writes = 0
        """GPO writes sent to the reader."""
        self._log = DeviceLog(logger, "reader", settings.name)
        self._inbound = LlrpInbound(settings.name, queue_size, self._log)
        self._task: asyncio.Task[None] | None = None
        self._link: LlrpLink | None = None

    # --- public interface ---------------------------------------------------------

    async def __aenter__(self) -> LlrpReader:
        if self._task is not None:
            raise RuntimeError(f"LLRP reader {self.name} was already started")
        self._task = asyncio.create_task(self._run(), name=f"llrp-{self.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._inbound.stopping = True
        task = self._task
        try:
            if task is not None:
                task.cancel()
                await asyncio.wait({task})
                if not task.cancelled() and task.exception() is not None:
                    self._log.error("connection task ended with %r", task.exception())
            link, self._link = self._link, None
            if link is not None:
                await goodbye(link, self._inbound)
        finally:
            if self._link is not None:
                self._link.abort()
            self._inbound.state = "disconnected"
            self._inbound.close(StateChanged(self.name, "disconnected", detail="stopped"))

    def __aiter__(self) -> LlrpReader:
        return self

    async def __anext__(self) -> ReaderOutput:
        return await self._inbound.queue.next()

    def status(self) -> ReaderStatus:
        """The reader's state and read rates, for the gateway status message."""
        inbound = self._inbound
        rates = inbound.rates.per_antenna(time.monotonic())
        return ReaderStatus(
            name=self.name,
            kind="llrp",
            state=inbound.state,
            last_error=inbound.last_error,
            reads_per_s=round(sum(rates.values()), 3),
            antenna_reads_per_s={str(a): round(r, 3) for a, r in sorted(rates.items())},
            antennas_disconnected=self.antennas_disconnected,
            exceptions=self.exceptions,
        )

    @property
    def capabilities(self) -> ReaderCapabilities | None:
        """What the reader said of itself at the last handshake."""
        return self._inbound.capabilities

    @property
    def exceptions(self) -> int:
        """Reader exception events (ReaderExceptionEvent, report buffer trouble) so far."""
        return self._inbound.exceptions

    @property
    def antennas_disconnected(self) -> list[int]:
        """Antennas the reader last reported as disconnected."""
        return self._inbound.antennas_disconnected

    async def write_gpo(self, writes: Sequence[tuple[int, bool]]) -> bool:
        """Set GPO outputs, ``(port, high)`` pairs; False when the reader cannot take it now.

        Sent on the live connection without waiting for the answer (the read loop checks
        the response's status and logs a refusal). Ports beyond the reader's GPO count are
        left out with a warning.
        """
        link = self._link
        if link is None or not link.ready or not link.usable or self._inbound.stopping:
            return False
        caps = self.capabilities
        usable = [(p, h) for p, h in writes if caps is None or p <= caps.gpos]
        if len(usable) != len(writes):
            skipped = sorted({p for p, _ in writes} - {p for p, _ in usable})
            gpos = caps.gpos if caps is not None else "?"
            self._log.warning("GPO ports %s are beyond the reader's %s GPOs", skipped, gpos)
        if not usable:
            return False
        try:
            await link.send(requests.gpo_write(usable))
        except (LlrpError, OSError) as err:
            self._log.info("GPO write not sent: %s", err)
            return False
        self.gpo_writes += 1
        return True

    def retune(self, settings: LlrpSettings) -> None:
        """Run with ``settings`` from now on (a remote retune of this reader).

        The connection in use is dropped so that the reconnect, a moment later, sends the
        ROSpec the new settings make (antennas, EPC mask, reports...). Tags still in the
        field are read again then; what was read before stays with the read points.

        Raises:
            ValueError: the settings are for another reader or another address (those
                are set in the local file only).
        """
        current = self._settings
        if (settings.name, settings.host, settings.port) != (
            current.name,
            current.host,
            current.port,
        ):
            raise ValueError(f"reader {self.name}: a retune cannot change its name or address")
        self._settings = settings
        link = self._link
        if link is not None and not self._inbound.stopping:
            self._log.info("settings changed: reconnecting to configure the reader again")
            link.abort()

    # --- connection loop ----------------------------------------------------------

    async def _run(self) -> None:
        settings = self._settings
        backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s)
        set_state = self._inbound.set_state
        while True:
            await set_state("connecting", f"{settings.host}:{settings.port}")
            try:
                await self._session(backoff)
            except LlrpConnectionLost as err:
                await set_state("disconnected", str(err))
            except (ReaderError, OSError) as err:
                await set_state("error", str(err))
            except Exception as err:  # noqa: BLE001
                # A reader must never go quiet: a bug met on one connection is logged
                # with its traceback and the next connection is tried.
                self._log.exception("unexpected error on the connection")
                await set_state("error", f"internal error: {err!r}")
            delay = backoff.next_delay()
            self._log.info("reconnecting in %.2f s", delay)
            await asyncio.sleep(delay)

    async def _session(self, backoff: Backoff) -> NoReturn:
        settings = self._settings
        link = await connect(settings)
        self._link = link
        inbound = self._inbound
        try:
            await handshake(link, settings, self.gpi_ports, inbound)
            backoff.reset()
            caps = inbound.capabilities
            where = f"{settings.host}:{settings.port}"
            await inbound.set_state(
                "connected",
                f"{where}, model {caps.model}, firmware {caps.firmware}" if caps else where,
            )
            while True:
                await inbound.handle(link, await link.next_frame())
        finally:
            # On a stop the link is left to __aexit__ for a polite goodbye.
            if not inbound.stopping:
                self._link = None
                link.abort()
