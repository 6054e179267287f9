"""What `stockgate demo` does through the public HTTP API, the way an operator would.

It names the scenario's items and locations in the server's master data, reads stock,
units and shelf shrinkage back, and sets what it read beside the scenario's ground truth.
"""

from __future__ import annotations

from typing import Any

import httpx

from firmware_sim.scenario import Scenario
from firmware_sim.truth import GroundTruth

Stock = dict[tuple[str, str], int]


async def fetch_stock(api: httpx.AsyncClient) -> Stock:
    """Stock by (GTIN, location) as the API serves it (every page)."""
    stock: Stock = {}
    offset = 0
    while True:
        response = await api.get("/api/v1/stock", params={"limit": 1000, "offset": offset})
        response.raise_for_status()
        page: dict[str, Any] = response.json()
        for row in page["items"]:
            stock[(row["gtin"], row["location"])] = int(row["on_hand"])
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return stock


async def load_locations(api: httpx.AsyncClient, scenario: Scenario) -> int:
    """Names the scenario's ``[[locations]]`` in the server's location master, parents
    first (a location the server already has, e.g. a read point's inbound location, is
    renamed). Returns how many were named."""
    named = 0
    for location in sorted(scenario.locations, key=lambda spec: spec.id.count(".")):
        response = await api.post(
            "/api/v1/locations", json={"id": location.id, "name": location.name}
        )
        if response.status_code == httpx.codes.CONFLICT:
            response = await api.patch(
                f"/api/v1/locations/{location.id}", json={"name": location.name}
            )
        response.raise_for_status()
        named += 1
    return named


async def load_items(api: httpx.AsyncClient, scenario: Scenario) -> int:
    """Creates the scenario's known items in the server's item master (SKU = the item's
    id), so the API and the console show their names; unknown ones stay out on purpose
    (they show what an unknown GTIN does). Returns how many were created."""
    created = 0
    for item in scenario.items:
        if not item.known:
            continue
        response = await api.post(
            "/api/v1/items", json={"sku": item.id, "gtin": item.gtin, "name": item.name}
        )
        response.raise_for_status()
        created += 1
    return created


async def staged_units_moved(api: httpx.AsyncClient, truth: GroundTruth) -> list[str]:
    """EPCs of staged units the server knows as units (a staged unit must never move)."""
    moved = []
    for urn in sorted(truth.staged):
        response = await api.get(f"/api/v1/units/{urn}")
        if response.status_code != httpx.codes.NOT_FOUND:
            moved.append(urn)
    return moved


def stock_table(actual: Stock, truth: GroundTruth, names: dict[str, str]) -> tuple[str, bool]:
    """A table of stock by item and location beside the ground truth, and whether they agree."""
    expected = truth.stock
    keys = sorted(set(actual) | set(expected))
    header = f"{'GTIN':<16}{'item':<36}{'location':<18}{'on hand':>8}{'expected':>10}"
    lines = [header, "-" * len(header)]
    agree = True
    for gtin, location in keys:
        got, want = actual.get((gtin, location), 0), expected.get((gtin, location), 0)
        mark = "" if got == want else "   <-- differs"
        agree = agree and got == want
        name = names.get(gtin, "")[:34]
        lines.append(f"{gtin:<16}{name:<36}{location:<18}{got:>8}{want:>10}{mark}")
    return "\n".join(lines), agree


async def fetch_shrinkage(api: httpx.AsyncClient) -> dict[tuple[str, str, str], int]:
    """Units shelves recorded missing, by (read point, location, GTIN), as the API says."""
    response = await api.get("/api/v1/reports/shrinkage", params={"limit": 1000})
    response.raise_for_status()
    return {
        (row["read_point"], row["location"], row["gtin"]): int(row["missing"])
        for row in response.json()["items"]
    }


def shrinkage_lines(
    actual: dict[tuple[str, str, str], int], truth: GroundTruth
) -> tuple[list[str], bool]:
    """One line per shelf, location and item that lost stock, and whether they agree."""
    lines = []
    for key in sorted(set(actual) | set(truth.shrinkage)):
        got, want = actual.get(key, 0), truth.shrinkage.get(key, 0)
        mark = "" if got == want else "   <-- differs"
        lines.append(f"  {key[0]} {key[1]} {key[2]}: missing {got} (expected {want}){mark}")
    return lines, actual == truth.shrinkage
