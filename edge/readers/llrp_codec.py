"""Sans-I/O LLRP framing on top of sllurp's message codec.

``LlrpFramer`` takes bytes as they come off a stream and yields whole, decoded
messages. It holds no socket and no clock, and a new one is made for every connection,
so a partial message left over from a dropped connection can never be glued to the next
one (sllurp's own reader keeps that state across reconnects).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sllurp.llrp import LLRPMessage
from sllurp.llrp_errors import LLRPError

from edge.errors import ReaderError

HEADER = struct.Struct("!HII")
HEADER_LEN = HEADER.size
MAX_FRAME = 1024 * 1024
"""Largest LLRP message accepted. A TagReportData of a 96-bit EPC with every optional field
a portal asks for is about 50 bytes, so 1 MiB holds some 20,000 tag reports: more than a
reader's report buffer sends in one RO_ACCESS_REPORT (readers report every N tags or every
period, a few kB to a few 100 kB). A longer length field is corruption or an attack, and
the connection is dropped before any of it is buffered."""
SUPPORTED_VERSIONS = frozenset({1})


class LlrpCodecError(ReaderError):
    """Base of the codec's errors."""


class LlrpFramingError(LlrpCodecError):
    """The byte stream cannot be framed any more (bad version or length); reconnect."""


class LlrpDecodeError(LlrpCodecError):
    """One whole frame could not be decoded; the stream stays in sync."""

    def __init__(self, message: str, msg_type: int, raw: bytes) -> None:
        super().__init__(message)
        self.msg_type = msg_type
        self.raw = raw


@dataclass(frozen=True, slots=True)
class Frame:
    """One whole LLRP message: header fields and the raw bytes (header included)."""

    msg_type: int
    version: int
    msg_id: int
    raw: bytes


@dataclass(frozen=True, slots=True)
class Decoded:
    """A frame decoded by sllurp: its name and body dict (kept inside the adapter)."""

    frame: Frame
    name: str
    body: dict[str, Any]


class LlrpFramer:
    """Splits an LLRP byte stream into frames; bounded, resumable at any byte."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max_frame = max_frame

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[Frame]:
        """Add bytes and yield every frame now complete.

        Raises:
            LlrpFramingError: the header is impossible (version, length); the stream is
                lost and the connection must be dropped.
        """
        self._buf += data
        while len(self._buf) >= HEADER_LEN:
            type_field, length, msg_id = HEADER.unpack_from(self._buf)
            version = (type_field >> 10) & 0x7
            msg_type = type_field & 0x3FF
            if version not in SUPPORTED_VERSIONS:
                raise LlrpFramingError(f"LLRP version {version} in header (type {msg_type})")
            if length < HEADER_LEN or length > self._max_frame:
                raise LlrpFramingError(
                    f"LLRP message length {length} outside {HEADER_LEN}..{self._max_frame}"
                    f" (type {msg_type})"
                )
            if len(self._buf) < length:
                return
            raw = bytes(self._buf[:length])
            del self._buf[:length]
            yield Frame(msg_type=msg_type, version=version, msg_id=msg_id, raw=raw)


def decode(frame: Frame) -> Decoded:
    """Decode one frame with sllurp.

    Raises:
        LlrpDecodeError: sllurp could not decode it; the caller logs and goes on.
    """
    try:
        msg = LLRPMessage(msgbytes=frame.raw)
    except (LLRPError, ValueError, KeyError, IndexError, struct.error, TypeError) as err:
        raise LlrpDecodeError(
            f"cannot decode LLRP message type {frame.msg_type}: {err}", frame.msg_type, frame.raw
        ) from err
    name = msg.getName()
    assert msg.msgdict is not None
    assert name is not None
    return Decoded(frame=frame, name=name, body=dict(msg.msgdict[name]))


def encode(message: dict[str, Any]) -> bytes:
    """Encode a request dict (``{"NAME": {...}}``) with sllurp."""
    out: bytes = LLRPMessage(msgdict=message).msgbytes
    return out
