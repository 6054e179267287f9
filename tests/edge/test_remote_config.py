"""Remote tuning on the edge: what the server may change, how it merges over the local
file, which messages are refused and why, and that a retune keeps what is in flight."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from edge.check import check_edge
from edge.config import EdgeSettings, LlrpSettings
from edge.readers.llrp import LlrpReader
from edge.readers.types import TagRead
from edge.readpoints import ReadPoints
from edge.remote_config import RemoteConfig, RemoteConfigError, merge, validate_tuning
from edge.zones import ZoneEvent
from firmware_sim.reader import ReaderSimulator
from plumbing.settings import load
from wire.identifiers import sgtin96_hex
from wire.models import GatewayConfig, now_utc

EPC = sgtin96_hex("urn:epc:id:sgtin:0614141.812345.7")
T0_US = 1_700_000_000_000_000
ADD_ROSPEC = 20
"""LLRP message type of ADD_ROSPEC."""


def local(tmp_path: Path, **changes: object) -> EdgeSettings:
    values: dict[str, object] = {
        "gateway": {"id": "gw-1", "site": "wh1"},
        "buffer": {"path": str(tmp_path / "outbox.db")},
        "llrp": [{"name": "dock1", "host": "127.0.0.1", "port": 5084}],
        "portals": [
            {
                "read_point": "wh1.dock.1",
                "reader": "dock1",
                "outside_antennas": [1],
                "inside_antennas": [2],
                "gpi_port": 1,
                "lights": {"accepted": 1},
            }
        ],
        "zones": [{"read_point": "wh1.shelf.1", "reader": "dock1", "antennas": [3]}],
    }
    values.update(changes)
    return load(EdgeSettings, **values)


def message(version: int, settings: dict[str, object], gateway: str = "gw-1") -> bytes:
    config = GatewayConfig(
        gateway=gateway, site="wh1", config_version=version, issued_at=now_utc(), settings=settings
    )
    return config.model_dump_json().encode()


def test_tuning_changes_only_the_keys_it_gives_and_keeps_the_local_wiring(
    tmp_path: Path,
) -> None:
    base = local(tmp_path)
    tuned = merge(
        base,
        {
            "portals": [
                {"read_point": "wh1.dock.1", "outside_antennas": [2], "inside_antennas": [1]}
            ],
            "llrp": [{"name": "dock1", "filter": {"min_rssi": -70}}],
            "dedupe": [{"read_point": "wh1.gate.9", "reader": "dock1", "cooldown_s": 30}],
        },
    )
    (portal,) = tuned.portals
    assert (portal.outside_antennas, portal.inside_antennas) == ([2], [1])
    assert portal.min_reads == base.portals[0].min_reads
    assert portal.gpi_port == 1
    assert portal.lights == base.portals[0].lights
    assert tuned.llrp[0].filter.min_rssi == -70
    assert (tuned.llrp[0].host, tuned.llrp[0].port) == ("127.0.0.1", 5084)
    assert [d.read_point for d in tuned.dedupe] == ["wh1.gate.9"]
    assert tuned.gateway == base.gateway
    assert tuned.mqtt == base.mqtt


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"mqtt": [{"url": "mqtt://evil:1883"}]}, "mqtt: not a table the server may tune"),
        ({"llrp": [{"name": "dock1", "host": "10.0.0.9"}]}, "llrp.0: host only set in"),
        ({"portals": [{"read_point": "wh1.dock.1", "lights": {}}]}, "lights only set in"),
        ({"portals": [{"read_point": "wh1.dock.1", "min_reads": 0}]}, "portals.0.min_reads"),
        ({"llrp": [{"name": "dock1", "antennas": [99]}]}, "llrp.0.antennas.0"),
        ({"zones": [{"read_point": "x"}, {"read_point": "x"}]}, "read_point 'x' appears twice"),
        ({"zones": {"read_point": "x"}}, "zones: must be a list of tables"),
    ],
)
def test_a_tuning_the_edge_models_refuse_names_what_is_wrong(
    settings: dict[str, object], says: str
) -> None:
    with pytest.raises(RemoteConfigError, match=says):
        validate_tuning(settings)


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"portals": [{"read_point": "wh1.dock.1", "inside_antennas": [1]}]}, "both sides"),
        ({"llrp": [{"name": "dock9", "antennas": [1]}]}, "reader 'dock9' is not in"),
        ({"zones": [{"read_point": "wh1.new", "reader": "nowhere"}]}, "which no"),
        ({"zones": [{"read_point": "wh1.new"}]}, "reader"),
    ],
)
def test_a_tuning_that_breaks_the_whole_is_refused(
    tmp_path: Path, settings: dict[str, object], says: str
) -> None:
    with pytest.raises(RemoteConfigError, match=says):
        merge(local(tmp_path), settings)


def test_versions_only_go_forward_and_only_for_this_gateway(tmp_path: Path) -> None:
    remote = RemoteConfig(local(tmp_path), tmp_path / "remote.json")
    tuning = {"portals": [{"read_point": "wh1.dock.1", "min_reads": 3}]}

    assert remote.receive(message(1, tuning, gateway="gw-2")) is None
    assert remote.rejected is not None
    assert "gateway 'gw-2'" in remote.rejected.reason
    assert remote.version is None

    applied = remote.receive(message(2, tuning))
    assert applied is not None
    assert applied.settings.portals[0].min_reads == 3
    remote.applied(applied)
    assert (remote.version, remote.rejected) == (2, None)

    assert remote.receive(message(2, tuning)) is None  # the retained copy of what runs
    assert remote.rejected is None
    assert remote.receive(message(1, tuning)) is None
    assert remote.rejected is not None
    assert remote.rejected.config_version == 1
    assert "older than the version running, 2" in remote.rejected.reason

    assert remote.receive(b"{not json") is None
    assert remote.rejected.reason.startswith("not a gateway config")
    assert remote.receive(b"") is None  # a cleared retained message
    assert remote.version == 2


def test_the_last_good_config_is_kept_on_disk_and_used_at_start(tmp_path: Path) -> None:
    path = tmp_path / "remote.json"
    first = RemoteConfig(local(tmp_path), path)
    applied = first.receive(message(4, {"zones": [{"read_point": "wh1.shelf.1", "min_reads": 5}]}))
    assert applied is not None
    first.applied(applied)
    refused = first.receive(message(5, {"zones": [{"read_point": "wh1.shelf.1", "min_reads": 0}]}))
    assert refused is None

    again = RemoteConfig(local(tmp_path), path)
    settings = again.load_saved()
    assert again.version == 4
    assert settings.zones[0].min_reads == 5

    # The local file changed under the saved tuning (the zone is gone): the file runs alone.
    changed = RemoteConfig(local(tmp_path, zones=[]), path)
    assert changed.load_saved() == local(tmp_path, zones=[])
    assert changed.version is None
    assert changed.rejected is not None
    assert "saved config" in changed.rejected.reason


def read(antenna: int, at_s: float, epc: str = EPC) -> TagRead:
    at = T0_US + round(at_s * 1_000_000)
    return TagRead("dock1", epc, antenna, -50.0, at, at)


def test_a_retune_keeps_the_passes_and_stays_in_flight(tmp_path: Path) -> None:
    base = local(tmp_path)
    points = ReadPoints(base)
    for i in range(4):
        assert points.read("dock1", read(1, i * 0.1), i * 0.1)
    assert points.read("dock1", read(3, 0.0, epc=EPC[:-1] + "f"), 0.0)
    assert [len(tracker) for tracker in points.trackers] == [1, 1]

    # Mid-pass, the door's thresholds change and the zone needs more reads.
    points.retune(
        merge(
            base,
            {
                "portals": [{"read_point": "wh1.dock.1", "min_reads": 6}],
                "zones": [{"read_point": "wh1.shelf.1", "departure_timeout_s": 60}],
            },
        )
    )
    assert [len(tracker) for tracker in points.trackers] == [1, 1]
    for i in range(4):
        assert points.read("dock1", read(2, 1 + i * 0.1), 1 + i * 0.1)
    ended = points.tick(10.0)
    passes = [f for f in ended if not isinstance(f, ZoneEvent)]
    assert len(passes) == 1
    (whole,) = passes
    # One pass of all eight reads, judged with the new settings: in, outside then inside.
    assert whole.to_event("gw-1:e:1").direction == "in"
    assert whole.to_event("gw-1:e:1").reads is not None
    assert whole.to_event("gw-1:e:1").reads.count == 8  # type: ignore[union-attr]
    # The shelf tag arrived before the retune and stays (its timeout is 60 s now).
    arrivals = [f for f in ended if isinstance(f, ZoneEvent)]
    assert [a.kind for a in arrivals] == ["arrive"]
    assert len(points.trackers[1]) == 1


async def test_a_reader_retune_sends_the_new_rospec_on_a_fresh_connection() -> None:
    async with ReaderSimulator(antennas=2, name="dock1", seed=3) as sim:
        settings = LlrpSettings(name="dock1", host="127.0.0.1", port=sim.port, keepalive_s=5)
        async with LlrpReader(settings) as reader:
            await sim.wait_inventory(30)
            assert sim.stats().connections == 1
            with pytest.raises(ValueError, match="name or address"):
                reader.retune(settings.model_copy(update={"port": sim.port + 1}))

            reader.retune(settings.model_copy(update={"antennas": [1], "keepalive_s": 7}))
            deadline = asyncio.get_running_loop().time() + 30
            while sim.stats().connections < 2 or reader.status().state != "connected":
                assert asyncio.get_running_loop().time() < deadline, "no reconnect"
                await asyncio.sleep(0.05)
            assert sim.stats().connections == 2
            assert sim.requests[ADD_ROSPEC] == 2  # the ROSpec of the new settings was sent


async def test_edge_check_says_which_saved_config_it_checks(tmp_path: Path) -> None:
    settings = local(tmp_path, llrp=[], portals=[], zones=[], mqtt={"url": "mqtt://127.0.0.1:1"})
    remote = RemoteConfig(settings, settings.remote_config_path)
    applied = remote.receive(message(4, {"dedupe": [{"read_point": "x", "reader": "r"}]}))
    assert applied is None  # no reader "r" in the file: refused, nothing saved
    tuned = {"llrp": [], "dedupe": []}
    applied = remote.receive(message(5, tuned))
    assert applied is not None
    remote.applied(applied)

    out = io.StringIO()
    await check_edge(settings, out, timeout=5)
    assert "remote config: version 5 (saved), over the file" in out.getvalue()
