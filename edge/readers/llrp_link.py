"""One TCP connection to an LLRP reader: whole frames in, encoded requests out.

A new ``LlrpLink`` is made for every connection, with its own ``LlrpFramer``, so a
partial message of a dropped connection is never glued to the next connection's first
message. Reading waits at most ``idle_limit`` seconds (the keepalive watchdog: a reader
that vanished without closing TCP), sending at most the send timeout (a reader that does
not read what we send is as dead as one that sends nothing). Socket trouble becomes
``LlrpConnectionLost``, silence ``LlrpWatchdogError``; a framing error (an impossible
header: the stream is lost) is raised after the whole frames that came before it.

``decode_frame`` decodes a frame with sllurp's codec on the loop when it is small and in
a worker thread when it is large (``INLINE_DECODE_BYTES``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from typing import Final

from edge.readers import llrp_rospec as requests
from edge.readers.llrp_codec import Decoded, Frame, LlrpFramer, LlrpFramingError, decode
from edge.readers.llrp_reports import LlrpError
from plumbing.streams import close_writer

__all__ = [
    "INLINE_DECODE_BYTES",
    "READ_CHUNK",
    "LlrpConnectionLost",
    "LlrpLink",
    "LlrpWatchdogError",
    "decode_frame",
]

READ_CHUNK: Final = 256 * 1024
"""Bytes asked of the socket per read; a busy reader's reports arrive many per read."""
INLINE_DECODE_BYTES: Final = 16 * 1024
"""Frames up to this size are decoded on the event loop (a keepalive or a report of a few
hundred tags costs well under a millisecond). Larger ones are decoded in a worker thread:
sllurp's decoder is pure Python and takes about 1.5 s per MiB, which on the loop would
stall outbox commits, MQTT keepalives and the other readers."""


class LlrpConnectionLost(LlrpError):
    """The reader closed or reset the TCP connection."""


class LlrpWatchdogError(LlrpError):
    """Nothing arrived from the reader for longer than the watchdog allows."""


class LlrpLink:
    """One TCP connection to the reader, with its own framing state.

    Args:
        reader: the connection's stream reader.
        writer: the connection's stream writer.
        send_timeout: longest wait for the reader to take what we send, in seconds.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, send_timeout: float
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._send_timeout = send_timeout
        self._framer = LlrpFramer()
        self._pending: deque[Frame] = deque()
        self._broken: LlrpFramingError | None = None
        self._ids = itertools.count(1)
        self.idle_limit: float | None = None
        """Seconds without a byte before the link counts as dead; None until keepalives run."""
        self.ready = False
        """The handshake completed: the reader runs our ROSpec."""
        self.closing = False
        """The reader announced it is closing the connection (ConnectionCloseEvent)."""
        self.decode_errors = 0
        """Messages of this connection that could not be decoded."""

    async def next_frame(self) -> Frame:
        """The next whole frame from the reader.

        Raises:
            LlrpConnectionLost: EOF or reset.
            LlrpWatchdogError: nothing for ``idle_limit`` seconds.
            LlrpFramingError: the stream cannot be framed; frames before the bad
                header are returned first.
        """
        while not self._pending:
            if self._broken is not None:
                raise self._broken
            try:
                async with asyncio.timeout(self.idle_limit):
                    data = await self._reader.read(READ_CHUNK)
            except TimeoutError as err:
                raise LlrpWatchdogError(
                    f"nothing from the reader for {self.idle_limit:g} s (keepalive watchdog)"
                ) from err
            except ConnectionError as err:
                raise LlrpConnectionLost(f"connection lost: {err}") from err
            if not data:
                raise LlrpConnectionLost(
                    "reader closed the connection"
                    + (" (it announced ConnectionCloseEvent)" if self.closing else "")
                )
            try:
                for frame in self._framer.feed(data):
                    self._pending.append(frame)
            except LlrpFramingError as err:
                self._broken = err
        return self._pending.popleft()

    async def send(self, request: requests.Request, msg_id: int | None = None) -> None:
        """Encode and send one request.

        Raises:
            LlrpConnectionLost: the socket is gone.
            LlrpWatchdogError: the reader did not take it within the send timeout.
        """
        data = request.encode(next(self._ids) if msg_id is None else msg_id)
        try:
            self._writer.write(data)
            async with asyncio.timeout(self._send_timeout):
                await self._writer.drain()
        except ConnectionError as err:
            raise LlrpConnectionLost(f"connection lost sending {request.name}: {err}") from err
        except TimeoutError as err:
            # The reader does not read what we send: as dead as one that sends nothing.
            raise LlrpWatchdogError(
                f"sending {request.name} stalled for {self._send_timeout:g} s"
            ) from err

    @property
    def usable(self) -> bool:
        """Frames can still be read and requests sent (no framing error, not closing)."""
        return self._broken is None and not self._writer.is_closing()

    def abort(self) -> None:
        """Drop the connection at once (no goodbye)."""
        self._writer.transport.abort()

    async def close(self, timeout: float) -> None:
        """Close the connection, waiting at most ``timeout`` seconds for it to close."""
        await close_writer(self._writer, timeout)
        self._writer.transport.abort()


async def decode_frame(frame: Frame) -> Decoded:
    """``decode`` on the loop for small frames, in the loop's default executor for large.

    Frames of one connection are decoded one at a time, in order (the caller awaits each).

    Raises:
        LlrpDecodeError: sllurp could not decode it.
    """
    if len(frame.raw) <= INLINE_DECODE_BYTES:
        return decode(frame)
    return await asyncio.to_thread(decode, frame)
