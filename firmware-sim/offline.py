"""A scenario's reads without a network or a clock: what its readers would report.

``play`` steps every door's reader through the scenario's timeline the way a running
``ReaderSimulator`` does (inventory rounds of ``round_s`` over the same ``TagField``
physics, reads gathered per (EPC, antenna) into one TagReportData per report window of
``report_s``, timestamps jittered by the door's ``timestamp_jitter_ms``), but as fast as
the CPU goes. Benchmarks and tests use it to put thousands of passes through the edge's
own LLRP decoding and pass tracking, and to compare the result with
``Scenario.tag_passes()``.

Every antenna of a door's reader is driven; faults and scans are not played (they need a
connection and a scanner).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from firmware_sim.errors import SimConfigError
from firmware_sim.llrp_types import TagReportEntry
from firmware_sim.portal import TagField
from firmware_sim.reader import ROUND_S
from firmware_sim.reports import ReadWindow
from firmware_sim.scenario import Scenario

REPORT_S: Final = 0.2
"""The edge's default ``report_timeout_ms``: one report per reader per 200 ms."""
TAIL_S: Final = 1.0
"""Rounds run this long past the scenario's end (nothing more can be read by then)."""
MAX_ROUNDS: Final = 10_000_000
CHANNEL: Final = 1


@dataclass(frozen=True, slots=True)
class Report:
    """One RO_ACCESS_REPORT's worth of reads from one reader."""

    reader: str
    at_s: float
    """Scenario time the report was sent."""
    entries: tuple[TagReportEntry, ...]


def play(
    scenario: Scenario,
    *,
    seed: int | str | None = None,
    base_utc_us: int = 1_732_521_600_000_000,
    round_s: float = ROUND_S,
    report_s: float = REPORT_S,
) -> Iterator[Report]:
    """The reports every reader of ``scenario`` sends, in time order.

    Args:
        scenario: the scenario.
        seed: the readers' random seed (the scenario's own ``seed`` when None).
        base_utc_us: reader time (µs since the epoch) of scenario time 0.
        round_s: inventory round length.
        report_s: report window.

    Raises:
        SimConfigError: ``round_s`` or ``report_s`` out of range, or too many rounds.
    """
    if not 0.005 <= round_s <= 1.0 or not round_s <= report_s <= 60.0:
        raise SimConfigError(f"round_s {round_s} or report_s {report_s} out of range")
    end = scenario.duration_s + TAIL_S
    rounds = int(end / round_s) + 1
    if rounds > MAX_ROUNDS:
        raise SimConfigError(f"{rounds} rounds; at most {MAX_ROUNDS}")
    base = scenario.seed if seed is None else seed
    doors = scenario.all_doors
    fields = {door.reader.name: TagField() for door in doors}
    for name, thing in scenario.things():
        if name in fields:  # doors only: shelf readers are not played offline
            fields[name].add(thing)
    rngs = {door.reader.name: random.Random(f"{base}:{door.reader.name}") for door in doors}
    jitter = {door.reader.name: door.reader.timestamp_jitter_ms / 1000 for door in doors}
    antennas = {door.reader.name: list(range(1, door.reader.antennas + 1)) for door in doors}
    windows = {name: ReadWindow() for name in fields}
    next_report = report_s
    for k in range(1, rounds + 1):
        t = k * round_s
        for name, field in fields.items():
            rng = rngs[name]
            observations = field.observe(t, round_s, antennas[name], rng)
            if not observations:
                continue
            utc = base_utc_us + round(t * 1_000_000)
            noise = jitter[name]
            window = windows[name]
            for epc, antenna, rssi in observations:
                stamp = utc + round(rng.gauss(0.0, noise) * 1_000_000) if noise else utc
                window.add(epc, antenna, rssi, stamp, CHANNEL)
        if t >= next_report or k == rounds:
            for name, window in windows.items():
                if len(window):
                    yield Report(name, t, tuple(window.drain()))
            next_report += report_s
