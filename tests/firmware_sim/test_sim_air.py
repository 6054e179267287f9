"""The RF knobs: transmit power, receive sensitivity, RF mode, session and search target.

The physics first (stepped through time, no sleeping): less power shortens the read zone
and weakens the answers. Then the edge's settings over real TCP to a simulated reader:
the ROSpec carries them, the reader honours them, and a value the reader does not offer
fails the handshake with an error naming the key and what the reader has.
"""

from __future__ import annotations

import asyncio
import random
import re
import statistics
from collections import Counter

import pytest

from firmware_sim.air import S1_PERSISTENCE_S
from firmware_sim.portal import ShelfPopulation, TagField
from firmware_sim.portal_door import Direction, DockDoor
from firmware_sim.portal_motion import PalletPass
from firmware_sim.portal_rf import Drive
from firmware_sim.profile import ReaderProfile
from firmware_sim.reader import ReaderSimulator
from tests.firmware_sim.support import Seen, edge_on, epcs, until

ROUND_S = 0.025
DOOR = DockDoor(outside_antennas=(1,), inside_antennas=(2,))
SHELF_RSSI = (-65, -45)


def farthest_read_m(loss_db: float) -> tuple[float, float]:
    """The farthest a tag of a slow pallet was read from the outside antenna, and the mean
    RSSI of the reads within 0.3 m of it, at ``loss_db`` below full power."""
    pallet = PalletPass(DOOR, epcs(20), start=0.0, direction=Direction.IN, speed_mps=0.5)
    field = TagField([pallet])
    rng = random.Random(7)
    drive = Drive({1: loss_db, 2: loss_db})
    ax = DOOR.antenna_x(1)
    far = 0.0
    near: list[int] = []
    t = 0.0
    while t < pallet.end:
        for o in field.observe(t, ROUND_S, drive, rng):
            if o.antenna == 1:
                distance = abs(pallet.centre_x(t) - ax)
                far = max(far, distance)
                if distance < 0.3:
                    near.append(o.rssi)
        t += ROUND_S
    return far, statistics.fmean(near)


def test_less_power_shortens_the_read_zone_and_weakens_the_answers() -> None:
    full_far, full_rssi = farthest_read_m(0.0)
    low_far, low_rssi = farthest_read_m(6.0)
    # 6 dB less: free-space range halves (cases sit up to 0.2 m off the pallet's centre).
    assert 0.4 < low_far / full_far < 0.7
    assert full_rssi - low_rssi == pytest.approx(6.0, abs=1.5)


async def shelf_reads(seconds: float, **rf: object) -> tuple[Seen, list[str]]:
    """What the edge's reader yields from a busy two-antenna shelf for ``seconds``."""
    tags = epcs(8)
    field = TagField([ShelfPopulation(tags, reads_per_s=1500.0, rssi_dbm=SHELF_RSSI)])
    async with (
        ReaderSimulator(antennas=2, seed=3, field=field) as sim,
        edge_on(sim, report_timeout_ms=50, **rf) as seen,
    ):
        await until(lambda: seen.count("connected") >= 1, "connected")
        await asyncio.sleep(seconds)
        assert seen.count("error") == 0, seen.states()
    return seen, tags


async def test_the_reader_takes_power_and_sensitivity_per_antenna() -> None:
    full, _ = await shelf_reads(1.5)
    tuned, _ = await shelf_reads(
        1.5,
        tx_power_dbm=30.0,
        rx_sensitivity_db=20,  # the best is -84 dBm: nothing under -64 dBm is reported
        rf_mode=1002,
        session=2,
        search_mode="dual_target",
        tag_population=16,
        antenna_rf=[{"antenna": 2, "tx_power_dbm": 20.0}],
    )
    by_antenna = Counter[int]()
    rssi: dict[int, list[float]] = {1: [], 2: []}
    for read in tuned.reads():
        by_antenna[read.antenna] += read.seen_count
        assert read.rssi is not None
        rssi[read.antenna].append(read.rssi)
    full_by_antenna = Counter[int]()
    for read in full.reads():
        full_by_antenna[read.antenna] += read.seen_count
    # Antenna 2 at 20 dBm: a tenth of the power, about a tenth of the reads, 10 dB weaker.
    assert by_antenna[2] < 0.25 * by_antenna[1]
    assert 0.6 < by_antenna[1] / full_by_antenna[1] < 1.5
    assert max(rssi[2]) <= SHELF_RSSI[1] - 10
    # The sensitivity floor: no report under -64 dBm on either antenna.
    assert min(rssi[1]) >= -64
    assert min(rssi[2]) >= -64


async def test_single_target_reads_each_tag_once_per_persistence_dual_target_always() -> None:
    dual, tags = await shelf_reads(1.2, search_mode="dual_target")
    single, _ = await shelf_reads(1.2, search_mode="single_target", session=1)
    dual_counts = Counter[str]()
    single_counts = Counter[str]()
    for read in dual.reads():
        dual_counts[read.epc_hex] += read.seen_count
    for read in single.reads():
        single_counts[read.epc_hex] += read.seen_count
    assert min(dual_counts[t] for t in tags) > 50
    # 1.2 s is under one session-1 persistence: each tag answers in one round only (a read
    # on each antenna at most in it).
    assert S1_PERSISTENCE_S > 1.2
    assert max(single_counts[t] for t in tags) <= 2
    assert set(single_counts) == set(tags)


@pytest.mark.parametrize(
    ("rf", "message"),
    [
        ({"tx_power_dbm": 35.0}, "tx_power_dbm 35 is outside its power table 10..30 dBm"),
        (
            {"rx_sensitivity_db": 5},
            r"rx_sensitivity_db 5 is not in its sensitivity table \(offered: 0, 10..50 dB\)",
        ),
        ({"rf_mode": 7}, r"rf_mode 7 is not in its RF mode table \(offered: 0..4, 1000, 1002.."),
    ],
)
async def test_a_value_the_reader_lacks_fails_the_handshake_naming_it(
    rf: dict[str, object], message: str
) -> None:
    async with ReaderSimulator(antennas=2, seed=1) as sim:
        async with edge_on(sim, **rf) as seen:
            await until(lambda: seen.count("error") >= 1, "an error state")
        assert sim.emitted == Counter(), "no inventory ran"
    detail = next(d for s, d in seen.states() if s == "error")
    assert re.search(message, detail), detail
    assert seen.count("connected") == 0


async def test_search_mode_needs_an_impinj_reader() -> None:
    zebra = ReaderProfile(manufacturer=22695, model=9600)
    async with (
        ReaderSimulator(antennas=2, seed=1, profile=zebra) as sim,
        edge_on(sim, search_mode="dual_target") as seen,
    ):
        await until(lambda: seen.count("error") >= 1, "an error state")
    detail = next(d for s, d in seen.states() if s == "error")
    assert "search_mode 'dual_target' needs Impinj extensions" in detail
    assert "manufacturer is 22695" in detail
    # Without it the same reader works on standard fields.
    field = TagField([ShelfPopulation(epcs(2), reads_per_s=500.0)])
    async with (
        ReaderSimulator(antennas=2, seed=1, profile=zebra, field=field) as sim,
        edge_on(sim, tx_power_dbm=25.0) as seen,
    ):
        await until(lambda: len(seen.reads()) > 0, "reads from a non-Impinj reader")
