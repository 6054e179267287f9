"""Photo-eye windows, the light stack and the reader-side EPC mask, over real LLRP.

The edge agent runs with its real ``LlrpReader`` and a real outbox, against the scripted
fake reader on 127.0.0.1 (exact control of GPI events, every GPO write recorded) and
against the simulated reader with a photo-eye across its door. The broker is absent,
which is what the offline light is for.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

from edge.agent import EdgeAgent
from edge.buffer.outbox import Outbox
from edge.config import EdgeSettings, LlrpSettings
from edge.readers.llrp import LlrpReader
from firmware_sim.fake_reader import FakeLlrpReader, FakeTag, gpo_writes, request_params
from firmware_sim.llrp_encode import gpi_event
from firmware_sim.llrp_types import MsgType
from firmware_sim.reader import ReaderSimulator
from firmware_sim.scenario import parse_scenario
from firmware_sim.scenario_run import run_scenario
from tests.edge.support import eventually, running
from wire.identifiers import sgtin96_hex

GATEWAY = "gw-gpio"
EPC_STANDING = sgtin96_hex("urn:epc:id:sgtin:0614141.107346.10")
EPC_PALLET = sgtin96_hex("urn:epc:id:sgtin:0614141.107346.11")
ACCEPTED, UNEXPECTED, OFFLINE = 1, 2, 3


def closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"mqtt://127.0.0.1:{port}"


def settings(tmp_path: Path, reader_port: int) -> EdgeSettings:
    return EdgeSettings(
        gateway={"id": GATEWAY, "site": "wh1"},
        mqtt={"url": closed_port_url()},
        buffer={"path": tmp_path / "outbox.db", "commit_interval_ms": 20},
        llrp=[
            {
                "name": "dock1",
                "host": "127.0.0.1",
                "port": reader_port,
                "keepalive_s": 0.5,
                "backoff_initial_s": 0.05,
                "backoff_max_s": 0.2,
            }
        ],
        portals=[
            {
                "read_point": "wh1.dock.1",
                "reader": "dock1",
                "outside_antennas": [1],
                "inside_antennas": [2],
                "departure_timeout_s": 0.3,
                "gpi_port": 1,
                "gpi_window": True,
                "gpi_tail_s": 0.3,
                "lights": {
                    "accepted": ACCEPTED,
                    "unexpected": UNEXPECTED,
                    "offline": OFFLINE,
                    "pulse_s": 0.2,
                },
            }
        ],
        status={"interval_s": 0.5},
    )


def crossing(epc: str) -> list[FakeTag]:
    now = time.time_ns() // 1000
    return [
        FakeTag(epc, antenna=1 if i < 4 else 2, first_seen_us=now + i * 50_000) for i in range(8)
    ]


def light_writes(fake: FakeLlrpReader) -> list[tuple[int, bool]]:
    """Every GPO write the reader got, in order (the handshake's config carries none)."""
    writes: list[tuple[int, bool]] = []
    for frame in fake.requests(MsgType.SET_READER_CONFIG):
        writes += gpo_writes(frame)
    return writes


async def stored(path: Path) -> list[dict[str, Any]]:
    async with Outbox.open(path, GATEWAY) as outbox:
        return [json.loads(body) for _, body in await outbox.next_batch(0, 1000)]


async def test_photo_eye_windows_and_lights(tmp_path: Path) -> None:
    async with FakeLlrpReader(max_antennas=4) as fake:
        config = settings(tmp_path, fake.port)
        agent = EdgeAgent(config)
        async with running(agent):
            await fake.wait_requests(MsgType.ENABLE_ROSPEC)
            # The handshake switched the photo-eye input and its events on.
            handshake = request_params(fake.requests(MsgType.SET_READER_CONFIG)[0])
            assert handshake["GPIPortCurrentState"] == {
                "GPIPortNum": 1,
                "GPIConfig": True,
                "GPIState": 0,
            }
            states = handshake["ReaderEventNotificationSpec"]["EventNotificationState"]
            assert {"EventType": "GPIEvent", "NotificationState": True} in states
            # No broker: the offline light goes on (after all lights were set off).
            await eventually(lambda: (OFFLINE, True) in light_writes(fake))

            # Goods standing by the door, read on both sides with no pallet in the door.
            await fake.send_report(crossing(EPC_STANDING))
            await eventually(lambda: agent.points.outside_window["wh1.dock.1"] == 8)

            # A pallet breaks the beam and crosses inwards.
            await fake.send_event(gpi_event(1, True))
            await eventually(lambda: agent.points.windows["wh1.dock.1"].is_open)
            await fake.send_report(crossing(EPC_PALLET))
            await fake.send_event(gpi_event(1, False))
            await eventually(lambda: agent.counters.passes == 1)
            await eventually(lambda: light_writes(fake).count((ACCEPTED, False)) >= 2)

            # The beam breaks and clears again with nothing read: an unread pallet.
            await fake.send_event(gpi_event(1, True))
            await fake.send_event(gpi_event(1, False))
            await eventually(lambda: agent.points.unread_windows["wh1.dock.1"] == 1)
            await eventually(lambda: light_writes(fake).count((UNEXPECTED, False)) >= 2)
            status = await agent.status()
            assert status.unread_windows == 1
            assert [(i.kind, i.subject) for i in status.issues] == [("unread_window", "wh1.dock.1")]
        writes = light_writes(fake)
        # Every light set once the reader is ready (offline on), one accepted pulse, one
        # unexpected pulse, and everything off when the agent stops.
        assert writes[:3] == [(ACCEPTED, False), (UNEXPECTED, False), (OFFLINE, True)]
        assert writes.count((ACCEPTED, True)) == 1
        assert writes.count((UNEXPECTED, True)) == 1
        assert writes[-1] == (OFFLINE, False), "lights go off when the agent stops"
        assert agent.points.events == {("wh1.dock.1", "in"): 1}

    events = await stored(config.buffer.path)
    assert [(e["epc"], e["direction"], e["reads"]["count"]) for e in events] == [
        ("urn:epc:id:sgtin:0614141.107346.11", "in", 8)
    ]


def mask_tlv(mask_hex: str, pointer: int) -> bytes:
    mask = bytes.fromhex(mask_hex)
    return struct.pack("!HHBHH", 332, 9 + len(mask), 0x40, pointer, len(mask_hex) * 4) + mask


async def test_the_epc_mask_goes_into_the_rospec_of_every_antenna() -> None:
    async with FakeLlrpReader(max_antennas=4) as fake:
        config = LlrpSettings(
            name="dock1",
            host="127.0.0.1",
            port=fake.port,
            antennas=[1, 2, 3],
            epc_mask="3034257B",
            epc_mask_pointer=32,
        )
        async with LlrpReader(config):
            (frame,) = await fake.wait_requests(MsgType.ADD_ROSPEC)
    tlv = mask_tlv("3034257b", 32)
    assert frame.raw.count(tlv) == 3, "one C1G2TagInventoryMask per antenna"
    # The filter around it: C1G2Filter (331) with T=0 directly holding the mask.
    assert frame.raw.count(struct.pack("!HH", 331, 5 + len(tlv)) + b"\x00" + tlv) == 3


PHOTO_EYE_DOOR = """
name = "photo-eye"
site = "wh1"
read_point = "wh1.dock.1"
inbound_location = "wh1.receiving"
seed = 7
[reader]
name = "dock1"
antennas = 2
outside_antennas = [1]
inside_antennas = [2]
photo_eye_gpi = 1
[[items]]
id = "soap"
name = "Soap"
company_prefix = "0614141"
item_reference = "600001"
[[pallets]]
id = "P1"
cases = [{ item = "soap", count = 4 }]
[[pallets]]
id = "S"
cases = [{ item = "soap", count = 3 }]
[[passes]]
at_s = 0.5
pallet = "P1"
direction = "in"
[[staged]]
pallet = "S"
side = "outside"
from_s = 0.0
read_probability = 0.5
"""


async def test_a_simulated_photo_eye_gates_the_reads_of_a_portal(tmp_path: Path) -> None:
    """Goods staged outside are read all along; only reads while the pallet is in the
    door (photo-eye blocked) count, and the pallet's cases come in."""
    scenario = parse_scenario(PHOTO_EYE_DOOR)
    async with ReaderSimulator(antennas=2, name="dock1", seed=scenario.seed) as sim:
        config = settings(tmp_path, sim.port)
        portal = config.portals[0].model_copy(update={"lights": None, "gpi_tail_s": 0.5})
        agent = EdgeAgent(config.model_copy(update={"portals": [portal]}))
        async with running(agent):
            await sim.wait_inventory(10)
            await run_scenario(scenario, sim)
            await eventually(lambda: not any(map(len, agent.trackers)))
        assert agent.counters.reader_events["gpi"] >= 2, "the photo-eye went high and low"
        assert agent.points.outside_window["wh1.dock.1"] > 0, "staged goods read, ignored"
        assert agent.points.unread_windows == {}
    events = await stored(config.buffer.path)
    received = {e["epc"] for e in events if e["direction"] == "in"}
    assert received == {unit.urn for unit in scenario.pallet_units("P1")}
    assert all(e["direction"] is None for e in events if e["epc"] not in received)
