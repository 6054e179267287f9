"""The agent's read loops (``edge.intake``) on a scripted reader and a real outbox.

What a reader's stream turns into: reads routed and counted, reads no read point uses
counted as ignored, ended passes stored at the tick and at the finish, and the errors a
device's status shows (its stream's last error, a server's refusal over it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from edge.buffer.outbox import Outbox
from edge.config import EdgeSettings
from edge.counters import EdgeCounters
from edge.health import IssueBoard
from edge.intake import REFUSAL_SHOWN_S, TICK_S, Intake
from edge.monitor import HealthMonitor
from edge.readers.scripted import ScriptedReader
from edge.readers.types import ReaderFault, TagRead
from edge.readpoints import ReadPoints
from edge.scanning import ScanSession
from wire.identifiers import sgtin96_hex
from wire.models import RefusedEvent

EPC = sgtin96_hex("urn:epc:id:sgtin:0614141.107346.1")


def settings(tmp_path: Path) -> EdgeSettings:
    values: dict[str, Any] = {
        "gateway": {"id": "gw-intake", "site": "wh1"},
        "buffer": {"path": tmp_path / "outbox.db"},
        "llrp": [{"name": "dock1", "host": "127.0.0.1"}],
        "portals": [
            {
                "read_point": "wh1.dock.1",
                "reader": "dock1",
                "outside_antennas": [1],
                "inside_antennas": [2],
                "departure_timeout_s": 0.2,
                "min_reads": 2,
                "group_hold_s": 0,
            }
        ],
        "scanners": [{"name": "hand-1", "port": "/dev/null", "read_point": "wh1.aisle.3"}],
    }
    return EdgeSettings(**values)


def tag(antenna: int) -> TagRead:
    now_us = time.time_ns() // 1000
    return TagRead("dock1", EPC, antenna, -50.0, now_us, now_us)


def intake_for(config: EdgeSettings) -> tuple[Intake, EdgeCounters]:
    issues = IssueBoard()
    counters = EdgeCounters()
    sessions = {s.name: ScanSession(s) for s in config.scanners}
    intake = Intake(ReadPoints(config, issues), sessions, HealthMonitor(config, issues), counters)
    return intake, counters


async def test_reads_become_a_stored_pass_and_odd_reads_are_counted(tmp_path: Path) -> None:
    config = settings(tmp_path)
    intake, counters = intake_for(config)
    script = [tag(1), 0.02, tag(1), 0.02, tag(2), 0.02, tag(2), tag(9)]
    reader = ScriptedReader("dock1", script, end=True)
    async with Outbox.open(config.buffer.path, config.gateway.id) as outbox:
        intake.outbox = outbox
        ticking = asyncio.create_task(intake.tick())
        try:
            await intake.read("dock1", reader)  # the stream ends after the script
            for _ in range(100):
                if counters.passes:
                    break
                await asyncio.sleep(TICK_S)
        finally:
            ticking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticking
        assert (counters.reads, counters.ignored_reads) == (5, 1)
        assert counters.reads_by_reader["dock1"] == 5
        assert counters.passes == 1
        assert outbox.depth() == 1


async def test_what_is_open_at_the_finish_is_stored(tmp_path: Path) -> None:
    config = settings(tmp_path)
    intake, counters = intake_for(config)
    reader = ScriptedReader("dock1", [tag(1), tag(2)], end=True)
    async with Outbox.open(config.buffer.path, config.gateway.id) as outbox:
        intake.outbox = outbox
        await intake.read("dock1", reader)
        intake.finish()
        assert counters.passes == 1
        assert outbox.depth() == 1


async def test_the_error_a_status_shows(tmp_path: Path) -> None:
    intake, counters = intake_for(settings(tmp_path))
    fault = ReaderFault("hand-1", "cannot open /dev/null")
    await intake.read("hand-1", ScriptedReader("hand-1", [fault], kind="serial", end=True))
    assert counters.reader_events["exception"] == 1
    # The stream's last error shows when the device reports none of its own.
    assert intake.error_to_show("hand-1", None, now=0.0) == "exception: cannot open /dev/null"
    assert intake.error_to_show("hand-1", "its own error", now=0.0) is None
    # The server's refusal of a scan shows over everything, for REFUSAL_SHOWN_S.
    intake.refused(
        RefusedEvent(event_id="gw-intake:0:1", read_point="wh1.aisle.3", reason="no such item")
    )
    assert counters.reader_events["refused_by_server"] == 1
    now = asyncio.get_running_loop().time()
    shown = "refused by the server: no such item"
    assert intake.error_to_show("hand-1", "its own error", now) == shown
    later = now + REFUSAL_SHOWN_S + 1
    assert intake.error_to_show("hand-1", "its own error", later) is None
    assert intake.error_to_show("dock1", None, now) is None
