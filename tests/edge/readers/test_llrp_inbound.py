"""The receiving side of an LLRP connection: a message of a shape sllurp should not give is
reported as undecodable and skipped, and the connection goes on (nothing else is lost)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from edge.readers.llrp_codec import Decoded, Frame
from edge.readers.llrp_inbound import KEEPALIVE, NOTIFICATION, REPORT, LlrpInbound
from edge.readers.llrp_link import LlrpLink
from edge.readers.types import DecodeFailed, DeviceLog, ReaderOutput, TagRead

EPC = "3074257bf7194e4000001a85"


@pytest.fixture
async def link() -> AsyncIterator[tuple[LlrpLink, socket.socket]]:
    """Our end of a real socket pair as the link, the reader's end raw."""
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    yield LlrpLink(reader, writer, send_timeout=5.0), theirs
    writer.close()
    theirs.close()


def decoded(name: str, body: dict[str, Any], msg_id: int = 7) -> Decoded:
    return Decoded(Frame(msg_type=0, version=1, msg_id=msg_id, raw=b"\x00" * 10), name, body)


def drain(inbound: LlrpInbound) -> list[ReaderOutput]:
    out: list[ReaderOutput] = []
    while not inbound.queue.empty():
        item = inbound.queue.get_nowait()
        assert isinstance(item, TagRead | DecodeFailed), item
        out.append(item)
    return out


@pytest.mark.parametrize(
    ("name", "body", "cause"),
    [
        (
            NOTIFICATION,
            {"ReaderEventNotificationData": {"AntennaEvent": {"AntennaID": "x"}}},
            "ValueError",
        ),
        (REPORT, {"TagReportData": [{"EPC": b"\xff\xfe"}]}, "UnicodeDecodeError"),
        (REPORT, {"TagReportData": 5}, "TypeError"),
    ],
)
async def test_an_odd_message_is_reported_and_the_next_one_still_counts(
    link: tuple[LlrpLink, socket.socket], name: str, body: dict[str, Any], cause: str
) -> None:
    ours, theirs = link
    inbound = LlrpInbound("dock1", 100, DeviceLog(logging.getLogger("test"), "reader", "dock1"))
    await inbound.dispatch(ours, decoded(name, body))
    [failed] = drain(inbound)
    assert isinstance(failed, DecodeFailed)
    assert failed.reader == "dock1"
    assert name in failed.detail
    assert cause in failed.detail
    assert ours.decode_errors == 1
    # The connection goes on: a good report after it is read, a keepalive is answered.
    good = {"TagReportData": [{"EPC": EPC, "AntennaID": 1, "PeakRSSI": -50}]}
    await inbound.dispatch(ours, decoded(REPORT, good))
    [read] = drain(inbound)
    assert isinstance(read, TagRead)
    assert read.epc_hex == EPC
    await inbound.dispatch(ours, decoded(KEEPALIVE, {}, msg_id=9))
    theirs.setblocking(True)
    theirs.settimeout(5)
    assert len(theirs.recv(64)) == 10  # KEEPALIVE_ACK: a bare header
