"""The rollups' sums over a step's rows (``server.history.rollups``), against the plain
definition: each row's hour and day bucket from ``bucket_start``, one at a time."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from server.history.follow import LedgerRow
from server.history.rollups import bucket_start, movement_sums, stock_sums

START = datetime(2026, 3, 28, 22, 59, 59, 999000, tzinfo=UTC)


def _rows(seed: int, count: int) -> list[LedgerRow]:
    """Rows mostly in time order, some late and some early, many at hour and day edges."""
    chooser = random.Random(seed)
    moment = START
    rows = []
    for number in range(1, count + 1):
        moment += timedelta(milliseconds=chooser.choice([0, 1, 999, 60_000, 1_800_000]))
        at = moment - timedelta(hours=chooser.choice([0, 0, 0, 1, 30]))
        at += timedelta(hours=chooser.choice([0, 0, 0, 0, 2]))
        source, target = chooser.choice(
            [(None, "wh1.dock"), ("wh1.dock", None), ("wh1.a", "wh2.b"), ("wh1.a", "wh1.b")]
        )
        rows.append(
            LedgerRow(
                id=number,
                event_time=at,
                item_id=chooser.randint(1, 3),
                sku="S",
                epc=None,
                event_id=f"e{number}",
                from_location=source,
                to_location=target,
                quantity=chooser.randint(1, 5),
                kind="receipt",
                read_point=chooser.choice([None, "wh1.dock.1"]),
                actor="gw",
            )
        )
    return rows


def _plain_movements(rows: list[LedgerRow]) -> Counter[tuple[object, ...]]:
    sums: Counter[tuple[object, ...]] = Counter()
    for row in rows:
        for period in ("hour", "day"):
            bucket = bucket_start(row.event_time, period)
            for location, side in ((row.from_location, "out"), (row.to_location, "in")):
                if location is not None:
                    key = (period, bucket, location, side, row.read_point or "", row.item_id)
                    sums[(*key, "count")] += 1
                    sums[(*key, "quantity")] += row.quantity
    return sums


def test_sums_over_rows_in_about_time_order_equal_the_plain_definition() -> None:
    for seed in range(20):
        rows = _rows(seed, 400)
        summed: Counter[tuple[object, ...]] = Counter()
        for (period, bucket, location, side, point, item, _), (n, q) in movement_sums(rows).items():
            summed[(period, bucket, location, side, point, item, "count")] += n
            summed[(period, bucket, location, side, point, item, "quantity")] += q
        assert summed == _plain_movements(rows)
        stock: Counter[tuple[object, ...]] = Counter()
        for row in rows:
            source = row.from_location and row.from_location.split(".")[0]
            target = row.to_location and row.to_location.split(".")[0]
            if source != target:
                day = bucket_start(row.event_time, "day")
                if target:
                    stock[(target, row.item_id, day, "in")] += row.quantity
                if source:
                    stock[(source, row.item_id, day, "out")] += row.quantity
        assert (
            +Counter(
                {
                    (site, item, day, side): value
                    for (site, item, day), (quantity_in, quantity_out) in stock_sums(rows).items()
                    for side, value in (("in", quantity_in), ("out", quantity_out))
                }
            )
            == +stock
        )
