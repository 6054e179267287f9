"""What ``stockgate sim ...`` runs: a shelf reader, or a scenario against a dock reader.

Each entry point is a coroutine returning the process exit status (the command line
runs it with ``asyncio.run``); bad input is reported on stderr with status 2.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Final

from firmware_sim.errors import ScenarioError, SimConfigError
from firmware_sim.portal import ShelfPopulation, TagField
from firmware_sim.reader import ReaderSimulator
from firmware_sim.scenario import ScenarioEvent, load_scenario, run_scenario
from wire.identifiers import sgtin96_hex

SHELF_COMPANY_PREFIX: Final = "0614141"
SHELF_ITEM_REFERENCE: Final = "100099"
EXIT_USAGE: Final = 2


def shelf_epcs(population: int) -> list[str]:
    """SGTIN-96 EPCs of a shelf population (one item, serials 1..population)."""
    prefix = f"urn:epc:id:sgtin:{SHELF_COMPANY_PREFIX}.{SHELF_ITEM_REFERENCE}"
    return [sgtin96_hex(f"{prefix}.{serial}") for serial in range(1, population + 1)]


def _say(text: str) -> None:
    print(text, flush=True)


async def serve_shelf_reader(*, port: int, antennas: int, population: int, rate: float) -> int:
    """Serve one simulated reader seeing a static population until cancelled.

    Args:
        port: TCP port on 127.0.0.1 (0 picks a free one).
        antennas: antenna ports of the reader (1..8).
        population: tags on the shelf (0 leaves the field empty).
        rate: tag reads per second over all antennas.
    """
    try:
        field = TagField()
        if population:
            field.add(ShelfPopulation(shelf_epcs(population), reads_per_s=rate))
        sim = ReaderSimulator(antennas=antennas, name="shelf", port=port, field=field)
    except SimConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    async with sim:
        _say(
            f"LLRP reader {sim.name!r} on {sim.host}:{sim.port}: {antennas} antennas,"
            f" {population} tags, {rate:g} reads/s"
        )
        await asyncio.Event().wait()
    return 0


def _print_event(event: ScenarioEvent) -> None:
    detail = event.direction or event.side or ""
    _say(f"t={event.at_s:6.2f}s  {event.kind:<12} {event.pallet} {detail}".rstrip())


async def run_scenario_file(file: Path, *, port: int, wait_s: float | None = None) -> int:
    """Serve a dock-door reader, wait for a client's inventory, play a scenario.

    Prints the ground truth first (JSON) and each event as it happens.

    Args:
        file: the scenario TOML.
        port: TCP port on 127.0.0.1 for the simulated reader.
        wait_s: how long to wait for a client to start inventory (None: forever).
    """
    try:
        scenario = load_scenario(file)
        sim = ReaderSimulator(
            antennas=scenario.reader.antennas,
            name=scenario.reader.name,
            seed=scenario.seed,
            port=port,
        )
    except (ScenarioError, SimConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    truth = scenario.ground_truth()
    summary = {
        "scenario": scenario.name,
        "read_point": scenario.read_point,
        "duration_s": round(scenario.duration_s, 2),
        "stock": [
            {"gtin": gtin, "location": location, "on_hand": n}
            for (gtin, location), n in sorted(truth.stock.items())
        ],
        "received": sorted(truth.received),
        "shipped": sorted(truth.shipped),
        "staged": sorted(truth.staged),
    }
    _say(json.dumps(summary, indent=2))
    async with sim:
        _say(f"LLRP reader {sim.name!r} on {sim.host}:{sim.port}; waiting for inventory")
        try:
            await sim.wait_inventory(wait_s)
        except TimeoutError:
            print(f"error: no client started inventory within {wait_s} s", file=sys.stderr)
            return 1
        await run_scenario(scenario, sim, progress=_print_event)
    return 0
