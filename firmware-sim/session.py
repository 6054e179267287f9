"""One client connection to a simulated reader: the socket, its framing, timers and faults.

A ``Session`` speaks first (ConnectionAttemptEvent), reads the client's bytes, cuts them
into LLRP frames (``edge.readers.llrp_codec.LlrpFramer``, bounded) and hands each to the
connection's state machine (``reader_protocol.ReaderProtocol``), which answers through
this session as its ``Link``. The session owns every task of the connection (inventory,
replay, timers, faults) in one task group, and the timers: KEEPALIVE at the period the
client set, and the Periodic start triggers' repeats.

Every byte to the client goes through ``send``, which is also where session faults act:
a drop cuts a message in half, a hung reader sends nothing, a slow one trickles its
output through a queue. Tag reads count as emitted (``ReaderSimulator.emitted``) only
when their report has been handed to the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Final

from edge.readers.llrp_codec import LlrpFramer, LlrpFramingError
from firmware_sim.armed_faults import ConnectionFaults
from firmware_sim.counters import Reads
from firmware_sim.faults import Fault, FaultKind
from firmware_sim.llrp_encode import (
    encode_connection_attempt,
    encode_error_message,
    encode_keepalive,
    message,
)
from firmware_sim.llrp_requests import MAX_REQUEST_FRAME
from firmware_sim.llrp_types import MsgType, Status, StatusCode
from firmware_sim.reader_protocol import ReaderProtocol
from firmware_sim.session_context import Output, ReaderHost
from plumbing.streams import close_writer

logger = logging.getLogger("firmware_sim.reader")

READ_CHUNK: Final = 64 * 1024
CLOSE_TIMEOUT_S: Final = 5.0
MIN_KEEPALIVE_S: Final = 0.05
"""Shorter KEEPALIVE periods are raised to this (a flood helps nobody)."""
MAX_QUEUED_BYTES: Final = 8 * 1024 * 1024
"""A slow reader's report buffer; reports beyond it are dropped (and not counted)."""
TRICKLE_TICK_S: Final = 0.02
DROP_GRACE_S: Final = 0.05
"""Time for the half message to leave before the socket is dropped."""


class Session:
    """One client connection: the socket, its tasks and timers, and output faults.

    Args:
        host: the simulator serving the connection.
        reader: the connection's input stream.
        writer: the connection's output stream.
        number: the connection's number on this simulator (seeds its randomness).
        faults: the connection faults it took.
    """

    def __init__(
        self,
        host: ReaderHost,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        number: int,
        faults: ConnectionFaults,
    ) -> None:
        self._host = host
        self._reader = reader
        self._writer = writer
        seed = host.seed
        self.rng = (
            random.Random(f"{seed}:{host.name}:{number}") if seed is not None else random.Random()
        )
        self._framer = LlrpFramer(MAX_REQUEST_FRAME)
        self._msg_id = 0
        # One clock reading ties monotonic time (the field's) to UTC (the reports').
        self._mono0 = time.monotonic()
        self._utc0_us = time.time_ns() // 1000
        self._tg: asyncio.TaskGroup | None = None
        self._spawned: set[asyncio.Task[None]] = set()
        self._keepalive: asyncio.Task[None] | None = None
        self.inventory_started = False
        self._take_held: Callable[[], list[Fault]] = list
        # Fault state.
        self._dead = False
        self._hung = False
        self._hung_reports = False
        self._queue: deque[tuple[bytes, Reads | None]] = deque()
        self._queued_bytes = 0
        self._rate_bps: int | None = None
        self._trickle: asyncio.Task[None] | None = None
        self._reading = asyncio.Event()
        self._reading.set()
        self._cut: asyncio.Future[None] | None = None
        self.protocol = ReaderProtocol(host, self, faults, self.rng)
        """The connection's LLRP state machine."""

    # --- the Link the protocol answers through -------------------------------------------

    @property
    def closing(self) -> bool:
        return self._dead or self._writer.is_closing()

    @property
    def live(self) -> bool:
        return self._tg is not None and not self.closing

    def send(self, data: bytes, what: Output, reads: Reads | None = None) -> bool:
        """Hand one whole message to the client (or to a fault); True if it will go out."""
        if self.closing:
            return False
        if self._hung and not (what == "report" and self._hung_reports):
            return False
        if self._cut is not None and not self._cut.done():
            # drop_mid_message: half of this message goes out, then the socket is dropped.
            self._writer.write(data[: max(1, len(data) // 2)])
            self._dead = True
            self._cut.set_result(None)
            return False
        if self._trickle is not None:
            if self._queued_bytes + len(data) > MAX_QUEUED_BYTES:
                counted = "reports_dropped" if what == "report" else "messages_dropped"
                self._host.counters.count(counted)
                return False
            self._queue.append((data, reads))
            self._queued_bytes += len(data)
            return True
        self._writer.write(data)
        if reads is not None:
            self._host.counters.record(reads)
        return True

    async def drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, OSError):
            # The peer is gone; closing makes the receive loop see end-of-file.
            self._writer.close()

    def next_id(self) -> int:
        self._msg_id = (self._msg_id + 1) & 0xFFFFFFFF
        return self._msg_id

    def utc_us(self, t: float) -> int:
        """UTC microseconds of monotonic time ``t``."""
        return self._utc0_us + round((t - self._mono0) * 1_000_000)

    def spawn(self, coro: Coroutine[object, object, None], name: str) -> asyncio.Task[None]:
        """A task of this session: in its task group, cancelled when the session ends."""
        assert self._tg is not None
        task = self._tg.create_task(coro, name=f"{self._host.name}-{name}")
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)
        return task

    def repeat(
        self, first: float, period_s: float, fire: Callable[[], Awaitable[None]], name: str
    ) -> asyncio.Task[None]:
        return self.spawn(self._repeat(first, period_s, fire), name)

    def set_keepalive(self, interval_ms: int) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if interval_ms > 0 and self._tg is not None and not self._dead:
            interval = max(MIN_KEEPALIVE_S, interval_ms / 1000)
            self._keepalive = self.spawn(self._keepalive_loop(interval), "keepalive")

    def inventory_began(self) -> None:
        if not self.inventory_started:
            self.inventory_started = True
            for fault in self._take_held():
                self.apply(fault)

    def hang_up(self) -> None:
        """Drop the connection (unsent data too); the session ends as if the client left."""
        self._dead = True
        self._writer.transport.abort()

    # --- the connection ------------------------------------------------------------------------

    async def run(self, held: Callable[[], list[Fault]]) -> None:
        """Serve the connection until the client closes it or asks to.

        Args:
            held: takes the session faults held for a session; called once inventory
                first runs.
        """
        self._take_held = held
        peer = self._writer.get_extra_info("peername")
        name = self._host.name
        logger.info("reader %s: client %s connected", name, peer)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self.send(
                    encode_connection_attempt(self.next_id(), self.utc_us(time.monotonic())),
                    "event",
                )
                await self.drain()
                try:
                    await self._receive_loop()
                finally:
                    self._dead = True
                    await self.protocol.connection_lost()
                    # Keepalive, timers, fault tasks: nothing of this session outlives it.
                    for task in list(self._spawned):
                        task.cancel()
        except* OSError as group:
            logger.info("reader %s: connection lost: %s", name, group.exceptions[0])
        except* Exception as group:
            # A simulator bug must not pass silently; the client sees the connection drop.
            logger.error("reader %s: session failed", name, exc_info=group.exceptions[0])
        finally:
            await close_writer(self._writer, CLOSE_TIMEOUT_S)
            logger.info("reader %s: client %s gone", name, peer)

    async def _receive_loop(self) -> None:
        while True:
            await self._reading.wait()
            data = await self._reader.read(READ_CHUNK)
            if not data:
                return
            try:
                for frame in self._framer.feed(data):
                    self._host.counters.count_request(frame.msg_type)
                    if self._hung:
                        continue  # a hung reader reads and answers nothing
                    if not await self.protocol.handle(frame):
                        return
            except LlrpFramingError as err:
                # The stream cannot be resynchronised: say why, then hang up.
                logger.warning("reader %s: %s", self._host.name, err)
                bad_version = "version" in str(err)
                code = StatusCode.UNSUPPORTED_VERSION if bad_version else StatusCode.FIELD_ERROR
                self.send(encode_error_message(0, Status(code, str(err))), "response")
                await self.drain()
                return

    # --- timers ------------------------------------------------------------------------------

    async def _keepalive_loop(self, interval_s: float) -> None:
        while not self.closing:
            await asyncio.sleep(interval_s)
            if self.send(encode_keepalive(self.next_id()), "keepalive"):
                self._host.counters.count("keepalives")
            await self.drain()

    async def _repeat(
        self, when: float, period_s: float, fire: Callable[[], Awaitable[None]]
    ) -> None:
        while True:
            await asyncio.sleep(max(0.0, when - time.monotonic()))
            await fire()
            if period_s <= 0:
                return
            when += period_s
            now = time.monotonic()
            if when < now:  # periods missed while the loop was busy are skipped
                when += math.ceil((now - when) / period_s) * period_s

    # --- faults --------------------------------------------------------------------------------

    def apply(self, fault: Fault) -> None:
        """Act out a session fault on this connection now."""
        logger.warning("reader %s: fault %s", self._host.name, fault.describe())
        self._host.counters.count(f"fault_{fault.kind}")
        if fault.kind is FaultKind.DROP_MID_MESSAGE:
            self.spawn(self._drop_mid_message(), "drop")
        elif fault.kind is FaultKind.STOP_KEEPALIVES:
            self._hung = True
            self._hung_reports = fault.bool_("reports")
        elif fault.kind is FaultKind.GARBAGE:
            self.send(self._garbage(fault.int_("size"), fault.bool_("framed")), "raw")
        elif fault.kind is FaultKind.SLOW:
            self.spawn(self._slow(fault.float_("duration_s"), fault.int_("rate_bps")), "slow")

    def _garbage(self, size: int, framed: bool) -> bytes:
        noise = bytearray(self.rng.randbytes(size))
        if framed:
            # A report whose only parameter claims more bytes than the message holds:
            # framing stays intact, decoding it cannot succeed.
            body = bytes([0x00, 0xF0, 0xFF, 0xF0]) + bytes(noise)
            return message(MsgType.RO_ACCESS_REPORT, self.next_id(), body)
        # The first byte carries LLRP version 7 in the header's version bits: whatever the
        # rest says, a client's framer cannot take it for a message.
        noise[0] = 0xFF
        return bytes(noise)

    async def _drop_mid_message(self) -> None:
        """Cut the next message in half and drop the socket."""
        self._cut = asyncio.get_running_loop().create_future()
        if self._trickle is not None or self._hung:
            self._cut.set_result(None)  # nothing flows whole any more: drop at once
        await self._cut
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            async with asyncio.timeout(DROP_GRACE_S * 10):
                await self._writer.drain()
        await asyncio.sleep(DROP_GRACE_S)
        self._writer.transport.abort()

    async def _slow(self, duration_s: float, rate_bps: int) -> None:
        """Back-pressure: stop reading the client and trickle output at ``rate_bps``."""
        self._rate_bps = rate_bps
        self._reading.clear()
        if self._trickle is None:
            self._trickle = self.spawn(self._trickle_loop(), "trickle")
        try:
            await asyncio.sleep(duration_s)
        finally:
            self._rate_bps = None
            self._reading.set()

    async def _trickle_loop(self) -> None:
        try:
            while not self.closing:
                if not self._queue:
                    if self._rate_bps is None:
                        return
                    await asyncio.sleep(TRICKLE_TICK_S)
                    continue
                data, reads = self._queue.popleft()
                self._queued_bytes -= len(data)
                offset = 0
                while offset < len(data) and not self.closing:
                    rate = self._rate_bps
                    step = len(data) if rate is None else max(1, int(rate * TRICKLE_TICK_S))
                    self._writer.write(data[offset : offset + step])
                    offset += step
                    await self.drain()
                    if rate is not None:
                        await asyncio.sleep(TRICKLE_TICK_S)
                if offset >= len(data) and reads is not None and not self.closing:
                    self._host.counters.record(reads)
        finally:
            self._trickle = None
