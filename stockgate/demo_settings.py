"""The settings `stockgate demo` runs its server and edge with, built from its scenario.

The server gets a read point per door, shelf and handheld of the scenario; the edge gets
the first door's portal, a ``[[zones]]`` per shelf and the scenario's scanners, each on
the port or pseudo-terminal its simulator listens on. The end-to-end tests build their
stacks with the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.config import EdgeSettings
from firmware_sim.scenario import Scenario
from plumbing.settings import load
from server.config.settings import ServerSettings

GATEWAY_ID = "gw-demo-1"
SHELF_SWEEP_S = 0.5
"""The server's alert sweep interval when the scenario has shelves (missing units)."""


def server_settings(
    scenario: Scenario, broker_url: str, workdir: Path, api_port: int, keys: dict[str, str]
) -> ServerSettings:
    return load(
        ServerSettings,
        mqtt={"url": broker_url},
        database={"url": f"sqlite+aiosqlite:///{workdir / 'stockgate.db'}"},
        api={
            "host": "127.0.0.1",
            "port": api_port,
            "keys": [
                {"key": key, "role": role, "name": f"demo-{role}"} for role, key in keys.items()
            ],
        },
        read_points=[
            {
                "id": door.read_point,
                "inbound_location": door.inbound_location,
                "outbound": "ship",
            }
            for door in scenario.all_doors
        ]
        + shelf_read_points(scenario)
        + scanner_read_points(scenario),
        operations={
            "negative_stock_sites": {site: "refuse" for site in scenario.refuse_negative_stock}
        },
        # Shelves: the sweep that records missing units runs often enough to be seen.
        alerts={"sweep_interval_s": SHELF_SWEEP_S} if scenario.shelves else {},
    )


def shelf_read_points(scenario: Scenario) -> list[dict[str, Any]]:
    """A read point per scenario shelf: its shelf is its inbound location, and a case gone
    from it and read nowhere for its ``missing_after_s`` becomes missing."""
    return [
        {
            "id": shelf.read_point,
            "inbound_location": shelf.location,
            "outbound": "ignore",
            "missing_after_s": shelf.missing_after_s,
        }
        for shelf in scenario.shelves
    ]


def scanner_read_points(scenario: Scenario) -> list[dict[str, Any]]:
    """A read point per scenario scanner's ``read_point`` that no door has: it receives
    into the location of the same name (where the ground truth says a scanner is until a
    location label is scanned)."""
    doors = {door.read_point for door in scenario.all_doors}
    points = sorted({spec.read_point for spec in scenario.scanner_specs} - doors)
    return [{"id": point, "inbound_location": point, "outbound": "ignore"} for point in points]


def scanner_settings(scenario: Scenario, links: dict[str, Path]) -> list[dict[str, Any]]:
    """The edge's ``[[scanners]]`` for the scenario's scanners, each on its pty link."""
    return [
        {
            "name": spec.name,
            "port": str(links[spec.name]),
            "read_point": spec.read_point,
            "prefix": spec.prefix,
            "suffix": spec.suffix,
            "symbology_ids": spec.aim_ids,
            "terminator": "\t" if spec.terminator == "tab" else None,
            "backoff_initial_s": 0.1,
            "backoff_max_s": 1.0,
        }
        for spec in scenario.scanner_specs
    ]


def edge_settings(
    scenario: Scenario,
    broker_url: str,
    workdir: Path,
    reader_port: int,
    scanner_links: dict[str, Path] | None = None,
    shelf_ports: Mapping[str, int] | None = None,
) -> EdgeSettings:
    """The demo edge: the first door's portal, the scenario's scanners on their links and
    its shelves (a ``[[zones]]`` each) on their readers' ports (by reader name)."""
    door = scenario.reader
    shelves = [shelf for shelf in scenario.shelves if shelf.reader.name in (shelf_ports or {})]
    readers = [{"name": door.name, "host": "127.0.0.1", "port": reader_port, "keepalive_s": 5}]
    readers += [
        {
            "name": shelf.reader.name,
            "host": "127.0.0.1",
            "port": (shelf_ports or {})[shelf.reader.name],
            "keepalive_s": 5,
        }
        for shelf in shelves
    ]
    return load(
        EdgeSettings,
        gateway={"id": GATEWAY_ID, "site": scenario.site},
        mqtt={"url": broker_url},
        buffer={"path": str(workdir / "edge-outbox.db")},
        llrp=readers,
        portals=[
            {
                "read_point": scenario.read_point,
                "reader": door.name,
                "outside_antennas": list(door.outside_antennas),
                "inside_antennas": list(door.inside_antennas),
            }
        ],
        zones=[
            {
                "read_point": shelf.read_point,
                "reader": shelf.reader.name,
                "location": shelf.location,
                "departure_timeout_s": shelf.departure_timeout_s,
            }
            for shelf in shelves
        ],
        scanners=scanner_settings(scenario, scanner_links or {}) if scanner_links else [],
        status={"interval_s": 2},
    )
