"""The books (``server.reports.valuation.Books``) against a brute force on generated ledgers:
FIFO as a list of one cost per unit, the moving average recomputed from scratch; no database."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from server.reports.valuation import Books, CostRow, StandardCosts

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SITES = ("wh1", "wh2", "wh3")


def _ledger(seed: int, rows: int) -> tuple[list[CostRow], dict[int, Decimal]]:
    """Receipts (some with a recorded cost), shipments, losses and transfers between sites,
    never taking out more than a site holds."""
    rng = random.Random(seed)
    held: dict[tuple[int, str], int] = defaultdict(int)
    ledger: list[CostRow] = []
    recorded: dict[int, Decimal] = {}
    for number in range(1, rows + 1):
        item = rng.randrange(3)
        site = rng.choice(SITES)
        at = T0 + timedelta(hours=number)
        place = f"{site}.bin.{rng.randrange(4)}"
        have = held[(item, site)]
        choice = rng.random()
        if have == 0 or choice < 0.4:
            quantity = rng.randrange(1, 20)
            ledger.append(CostRow(number, at, item, None, place, quantity, "receipt", None))
            if rng.random() < 0.7:
                recorded[number] = Decimal(rng.randrange(100, 1000)) / 100
            held[(item, site)] += quantity
            continue
        quantity = rng.randrange(1, have + 1)
        held[(item, site)] -= quantity
        if choice < 0.7:
            ledger.append(CostRow(number, at, item, place, None, quantity, "shipment", None))
        elif choice < 0.8:
            ledger.append(CostRow(number, at, item, place, None, quantity, "loss", "damaged"))
        elif choice < 0.9:
            other = rng.choice([name for name in SITES if name != site])
            target = f"{other}.bin.0"
            ledger.append(CostRow(number, at, item, place, target, quantity, "transfer", None))
            held[(item, other)] += quantity
        else:  # a move inside the site: no value moves
            inside = f"{site}.bin.9"
            ledger.append(CostRow(number, at, item, place, inside, quantity, "transfer", None))
            held[(item, site)] += quantity
    return ledger, recorded


STANDARD = {0: Decimal("5"), 1: Decimal("7.25"), 2: Decimal("0.5")}


def _brute_force(
    ledger: list[CostRow], recorded: dict[int, Decimal], since: datetime
) -> tuple[
    dict[tuple[int, str], list[Decimal]], dict[tuple[int, str], Decimal], dict[str, Decimal]
]:
    """FIFO units per book, moving-average values per book, FIFO cost shipped per site
    since ``since``."""
    units: dict[tuple[int, str], list[Decimal]] = defaultdict(list)
    average: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    count: dict[tuple[int, str], int] = defaultdict(int)
    shipped: dict[str, Decimal] = defaultdict(Decimal)
    for row in ledger:
        source = row.from_location.split(".")[0] if row.from_location else None
        target = row.to_location.split(".")[0] if row.to_location else None
        if source == target:
            continue
        if source is None:
            assert target is not None
            cost = recorded.get(row.id, STANDARD[row.item_id])
            units[(row.item_id, target)] += [cost] * row.quantity
            average[(row.item_id, target)] += cost * row.quantity
            count[(row.item_id, target)] += row.quantity
            continue
        book = (row.item_id, source)
        taken = units[book][: row.quantity]
        del units[book][: row.quantity]
        value = average[book] / count[book] * row.quantity
        average[book] -= value
        count[book] -= row.quantity
        if count[book] == 0:
            average[book] = Decimal(0)
        if target is not None:
            units[(row.item_id, target)] += taken
            average[(row.item_id, target)] += value
            count[(row.item_id, target)] += row.quantity
        elif row.kind == "shipment" and row.event_time >= since:
            shipped[source] += sum(taken, Decimal(0))
    return units, average, shipped


@pytest.mark.parametrize("seed", range(8))
def test_books_agree_with_a_brute_force(seed: int) -> None:
    ledger, recorded = _ledger(seed, 400)
    since = T0 + timedelta(hours=200)
    standard = StandardCosts((item, None, cost, T0) for item, cost in STANDARD.items())
    books = Books(standard, recorded, since)
    for row in ledger:
        books.apply(row)
    books.close()
    units, average, shipped = _brute_force(ledger, recorded, since)
    keys = {key for key, stock in units.items() if stock} | {
        key for key, book in books.books.items() if book.quantity
    }
    for key in keys:
        book = books.books[key]
        assert book.quantity == len(units[key])
        assert book.fifo_value == sum(units[key], Decimal(0))
        assert abs(book.average_value - average[key]) < Decimal("1e-12")
    by_site: dict[str, Decimal] = defaultdict(Decimal)
    for (_, site), book in books.books.items():
        by_site[site] += book.flow.shipped("fifo")
    assert {site: value for site, value in by_site.items() if value} == {
        site: value for site, value in shipped.items() if value
    }
