"""The quantity shipped per item and period (``book_reads.shipped_per_period``, ABC/XYZ's
demand) equals a brute-force sum over the generated ledger on both databases, with
shipments placed on the first instant of a period and the last one before it."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from server.reports.book_reads import shipped_per_period
from server.store.database import Store
from server.store.schema.core import ledger
from tests.server.test_server_book_checkpoints import T0, _fill, _generated

SEED = 8
SINCE = T0 - timedelta(days=1, hours=3, minutes=7)  # not a midnight
WINDOWS = [
    (SINCE, SINCE + timedelta(days=11), timedelta(days=1)),
    (SINCE, SINCE + timedelta(days=15), timedelta(days=7)),
    (T0.replace(hour=0), T0.replace(hour=0) + timedelta(days=9), timedelta(days=2)),
]


def _edge_rows() -> list[dict[str, Any]]:
    """Shipments of item 2 at wh1 on each midnight of the windows and a microsecond before."""
    midnight = SINCE.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = []
    for day in range(20):
        start = midnight + timedelta(days=day)
        for at in (start, start - timedelta(microseconds=1)):
            rows.append(
                {
                    "event_time": at,
                    "item_id": 2,
                    "from_location": "wh1.bin1",
                    "to_location": None,
                    "quantity": day + 1,
                    "kind": "shipment",
                    "reason": None,
                }
            )
    return rows


def _brute_force(
    rows: list[dict[str, Any]], since: datetime, until: datetime, step: timedelta, site: str | None
) -> dict[int, dict[int, int]]:
    periods = max(1, math.ceil((until - since) / step))
    out: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        at = row["event_time"]
        if row["kind"] != "shipment" or row["to_location"] is not None:
            continue
        if not since <= at < until:
            continue
        if site is not None and not row["from_location"].startswith(f"{site}."):
            continue
        day = at.replace(hour=0, minute=0, second=0, microsecond=0)
        period = min(periods - 1, int((day - since) / step))
        out[row["item_id"]][period] += row["quantity"]
    return out


@pytest.mark.parametrize("site", [None, "wh1"])
async def test_shipped_per_period_equals_a_brute_force(store: Store, site: str | None) -> None:
    await _fill(store, SEED)
    rows, _ = _generated(SEED)
    edges = _edge_rows()
    async with store.begin("adding shipments on the edges of periods") as conn:
        recorded = {"recorded_at": datetime.now(UTC), "actor": "test", "epc": None}
        await conn.execute(sa.insert(ledger), [{**row, **recorded} for row in edges])
    rows += edges
    sites = [frozenset([site])] if site is not None else []
    async with store.read("summing demand") as conn:
        for since, until, step in WINDOWS:
            expected = _brute_force(rows, since, until, step, site)
            assert len(expected[2]) > 2, "the edge rows fall in several periods"
            got = await shipped_per_period(conn, since, until, step, None, sites)
            assert got == expected, (since, until, step)
            narrowed = await shipped_per_period(conn, since, until, step, [2, 3], sites)
            assert narrowed == {item: expected[item] for item in (2, 3) if item in expected}
