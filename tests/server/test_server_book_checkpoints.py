"""The valuation books kept at checkpoints (``server.reports.book_checkpoints``), on SQLite
and PostgreSQL.

A generated ledger over ten checkpoint intervals (``CHECKPOINT_DAYS`` each: receipts with
and without recorded costs, shipments, losses, transfers between sites, moves inside a site,
and rows that arrive late: their ids come after rows with a later event time). Every report
read from checkpoints equals the same report replayed from the whole ledger (no
checkpoints); checkpoints kept by the follower step by step equal those of a rebuild; a step
that fails half way leaves them as they were; a cost recorded later makes the reports replay
that item until the follower computes it again. The location snapshots
(``server.reports.location_snapshots``) are tried on the same generator over ten snapshot
steps: stock by location from any start equals a brute force.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.config.history import HistorySettings
from server.errors import StoreError
from server.history.check import history_report, rebuild_history, reset_rollups
from server.history.follow import LedgerFollower
from server.history.rollups import RollupRows, RollupSink
from server.reports import book_checkpoints, location_snapshots
from server.reports import locations as location_sums
from server.reports import valuation_reports as reports
from server.reports.abc_xyz import abc_xyz as abc_xyz_report
from server.reports.book_state import (
    STEP,
    boundary_at_or_before,
    cost_counts,
    dump_book,
    load_book,
)
from server.reports.location_snapshots import SNAPSHOT_STEP
from server.reports.locations import location_quantities
from server.reports.valuation import Books, CostRow, StandardCosts
from server.store.database import Store
from server.store.schema.core import balances, items, ledger, locations
from server.store.schema.costs import item_costs, receipt_costs
from server.store.schema.history import book_checkpoint_marks
from server.store.schema.history import book_checkpoints as kept
from server.store.schema.history import location_snapshots as location_snapshots_table

T0 = datetime(2024, 3, 4, 5, tzinfo=UTC)
SITES = ("wh1", "wh2", "wh3")
ITEMS = 4
ROWS = 400
STEPS = HistorySettings(batch_rows=23, gap_settle_s=0.0)


def _generated(
    seed: int, step: timedelta = STEP
) -> tuple[list[dict[str, Any]], dict[int, Decimal]]:
    """Ledger rows (in id order) over ten intervals of ``step`` and costs recorded against
    some receipts (by row number)."""
    rng = random.Random(seed)
    held: dict[tuple[int, str], int] = {}
    rows: list[dict[str, Any]] = []
    recorded: dict[int, Decimal] = {}
    span = (10 * step).total_seconds()
    for number in range(ROWS):
        at = T0 + timedelta(seconds=span * number / ROWS)
        if rng.random() < 0.1:  # a late event: happened up to three intervals before
            at -= rng.uniform(0, 3) * step
        item = rng.randrange(1, ITEMS + 1)
        site = rng.choice(SITES)
        place = f"{site}.bin{rng.randrange(3)}"
        have = held.get((item, site), 0)
        choice = rng.random()
        row: dict[str, Any] = {"event_time": at, "item_id": item, "reason": None}
        if have <= 0 or choice < 0.35:
            quantity = rng.randrange(1, 20)
            row.update(from_location=None, to_location=place, kind="receipt")
            if rng.random() < 0.5:
                recorded[number] = Decimal(rng.randrange(100, 1000)) / 100
            held[(item, site)] = have + quantity
        else:
            quantity = rng.randrange(1, have + 1)
            held[(item, site)] = have - quantity
            if choice < 0.6:
                row.update(from_location=place, to_location=None, kind="shipment")
            elif choice < 0.7:
                reason = rng.choice(["damaged", "stolen"])
                row.update(from_location=place, to_location=None, kind="loss", reason=reason)
            elif choice < 0.9:
                other = rng.choice([name for name in SITES if name != site])
                row.update(from_location=place, to_location=f"{other}.bin0", kind="transfer")
                held[(item, other)] = held.get((item, other), 0) + quantity
            else:
                row.update(from_location=place, to_location=f"{site}.bin2", kind="transfer")
                held[(item, site)] += quantity
        row["quantity"] = quantity
        rows.append(row)
    return rows, recorded


async def _fill(
    store: Store, seed: int, *, costs_after: int | None = None, step: timedelta = STEP
) -> None:
    """Items, locations, the generated ledger and its costs (standard costs for the odd
    items from T0, and a later one for item 1 at wh2); with ``costs_after``, the recorded
    costs go in after that many rows' worth of following (see the tests)."""
    rows, recorded = _generated(seed, step)
    now = datetime.now(UTC)
    async with store.begin("filling a generated ledger") as conn:
        await conn.execute(
            sa.insert(items),
            [
                {
                    "id": n,
                    "sku": f"SKU{n}",
                    "name": f"item {n}",
                    "reviewed": True,
                    "created_at": now,
                }
                for n in range(1, ITEMS + 1)
            ],
        )
        await conn.execute(
            sa.insert(locations),
            [{"id": site, "parent": None, "kind": "site", "created_at": now} for site in SITES]
            + [
                {"id": f"{site}.bin{n}", "parent": site, "kind": "bin", "created_at": now}
                for site in SITES
                for n in range(3)
            ],
        )
        for row in rows:
            await conn.execute(
                sa.insert(ledger).values(**row, recorded_at=now, actor="test", epc=None)
            )
        # The balances ingest would have kept: the ledger's sums per item and location.
        await conn.execute(
            sa.insert(balances),
            [
                {"item_id": item_id, "location_id": location, "on_hand": quantity}
                for (item_id, location), quantity in _held(rows, None).items()
            ],
        )
        for item_id, site, cost, since in (
            (1, None, "3.5", T0),
            (3, None, "0.25", T0),
            (1, "wh2", "4", T0 + timedelta(days=20)),
        ):
            await conn.execute(
                sa.insert(item_costs).values(
                    item_id=item_id,
                    site=site,
                    unit_cost=Decimal(cost),
                    effective_from=since,
                    actor="test",
                    recorded_at=now,
                )
            )
        if costs_after is None:
            await _record(conn, recorded)


async def _record(conn: AsyncConnection, recorded: dict[int, Decimal]) -> None:
    ids = [int(row[0]) for row in await conn.execute(sa.select(ledger.c.id).order_by(ledger.c.id))]
    for number, cost in recorded.items():
        await conn.execute(
            sa.insert(receipt_costs).values(
                ledger_id=ids[number], unit_cost=cost, actor="test", recorded_at=datetime.now(UTC)
            )
        )


def _held(rows: Sequence[dict[str, Any]], before: datetime | None) -> dict[tuple[int, str], int]:
    """What each location holds after ``rows`` (those before ``before``), by brute force."""
    held: dict[tuple[int, str], int] = {}
    for row in rows:
        if before is not None and row["event_time"] >= before:
            continue
        for column, sign in (("to_location", 1), ("from_location", -1)):
            if row.get(column) is not None:
                key = (row["item_id"], row[column])
                held[key] = held.get(key, 0) + sign * row["quantity"]
    return held


def _moments(step: timedelta = STEP) -> list[datetime]:
    """Moments before the first checkpoint, on boundaries, between them, after the last."""
    first = boundary_at_or_before(T0, step)
    out = [T0 - 30 * step, T0 + timedelta(hours=1)]
    for interval in range(1, 12):
        out.append(first + step * interval)
        out.append(first + step * interval + 2 * STEP + timedelta(hours=7, minutes=13))
    return out


def _exact_enough(value: Any) -> Any:
    """``value`` with amounts to a billionth: the books kept at a checkpoint count their
    flows from the first row, and a period's flow is a difference of two sums, which can
    differ from the sum over the period in the last of Decimal's 28 digits (reports give
    cents)."""
    if isinstance(value, Decimal):
        return value.quantize(Decimal("0.000000001"))
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (list, tuple)):
        return type(value)(_exact_enough(entry) for entry in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple(
            _exact_enough(getattr(value, field.name)) for field in dataclasses.fields(value)
        )
    return value


async def _all_reports(store: Store) -> list[Any]:
    """Every report on the books, over a range of moments and periods, both methods; the
    period reports with and without a second connection to read on (as the API runs
    them, and alone)."""
    scope = reports.Scope()
    wh2 = reports.Scope(site="wh2", sku="SKU1")
    out: list[Any] = []
    moments = _moments()
    async with store.read_pair("reports") as (conn, side):
        for moment in moments:
            for method in ("moving_average", "fifo"):
                for group in ("item", "location", "category"):
                    out.append(await reports.stock_value(conn, moment, method, group, scope))
                out.append(await reports.stock_value(conn, moment, method, "item", wh2))
            out.append(await reports.aging(conn, moment, (7, 21), scope))
        for since, until in zip(moments, moments[3:], strict=False):
            for method in ("moving_average", "fifo"):
                turnover = await reports.turnover(conn, since, until, method, scope)
                assert await reports.turnover(conn, since, until, method, scope, side) == turnover
                out.append(turnover)
                out.append(await reports.turnover(conn, since, until, method, wh2, side))
                abc_xyz = await abc_xyz_report(conn, since, until, method, scope, per="day")
                paired = await abc_xyz_report(
                    conn, since, until, method, scope, per="day", side=side
                )
                assert paired == abc_xyz
                out.append(abc_xyz)
                out.append(
                    await reports.losses(
                        conn, since, until, method, ("reason", "site", "sku"), scope, side
                    )
                )
    return _exact_enough(out)  # type: ignore[no-any-return]


async def _kept(store: Store) -> tuple[list[Any], list[Any]]:
    async with store.read("reading checkpoints") as conn:
        books = (
            await conn.execute(
                sa.select(kept.c.boundary, kept.c.item_id, kept.c.site, kept.c.book).order_by(
                    kept.c.boundary, kept.c.item_id, kept.c.site
                )
            )
        ).all()
        marks = (await conn.execute(sa.select(book_checkpoint_marks.c.boundary))).all()
    return [tuple(row) for row in books], sorted(row[0] for row in marks)


async def _follow_all(follower: LedgerFollower) -> None:
    for _ in range(1000):
        if not await follower.step():
            return
    raise AssertionError("the follower did not catch up")


@pytest.mark.parametrize("seed", [1, 2])
async def test_reports_from_checkpoints_equal_a_replay_of_the_whole_ledger(
    store: Store, seed: int
) -> None:
    await _fill(store, seed)
    replayed = await _all_reports(store)
    await rebuild_history(store)
    books, marks = await _kept(store)
    assert len(marks) >= 9
    assert books
    assert await _all_reports(store) == replayed
    assert (await history_report(store)).lines == []


async def _held_everywhere(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    """Every way of summing the quantities by location, at every moment, gives what the
    rows before the moment hold (by brute force), whole and narrowed to one item."""
    async with store.read("summing locations") as conn:
        kept = await location_snapshots.marks(conn)
        for moment in _moments(SNAPSHOT_STEP):
            expected = {key: n for key, n in _held(rows, moment).items() if n}
            plans: list[str | None] = [None, "forwards", "balances"]
            if kept and moment < kept[-1]:
                plans.append("backwards")
            for plan in plans:
                summed = await location_quantities(conn, moment, None, plan=plan)
                assert summed == expected, (moment, plan)
                narrowed = await location_quantities(conn, moment, [1], plan=plan)
                assert narrowed == {key: n for key, n in expected.items() if key[0] == 1}


async def _snapshots(store: Store) -> list[list[Any]]:
    """The snapshots' rows and their marks."""
    async with store.read("reading snapshots") as conn:
        snap = location_snapshots_table.c
        rows = await conn.execute(
            sa.select(snap.boundary, snap.item_id, snap.location, snap.quantity).order_by(
                snap.boundary, snap.item_id, snap.location
            )
        )
        return [[tuple(row) for row in rows], await location_snapshots.marks(conn)]


async def test_stock_by_location_from_snapshots_equals_a_brute_force(store: Store) -> None:
    """Stock by location as of a moment, from the snapshot before it, the one after it or
    the balances, equals the ledger rows before it summed: without snapshots, with them
    rebuilt, with rows the follower has not reached yet (late ones among them) and once it
    has; the follower's snapshots, made step by step, equal a rebuild's."""
    await _fill(store, 4, step=SNAPSHOT_STEP)
    rows, _ = _generated(4, SNAPSHOT_STEP)
    await _held_everywhere(store, rows)  # no snapshots: from the first row or the balances
    await rebuild_history(store)
    rebuilt = await _snapshots(store)
    assert len(rebuilt[1]) >= 9
    await _held_everywhere(store, rows)
    first = rebuilt[1][0]
    late = [
        (first - timedelta(days=40), None, "wh1.bin0", 5, "receipt"),  # before every snapshot
        (first + SNAPSHOT_STEP * 3 + timedelta(hours=2), "wh2.bin1", "wh3.bin0", 2, "transfer"),
        (first + SNAPSHOT_STEP * 12, None, "wh2.bin2", 7, "receipt"),  # after the last
    ]
    async with store.begin("recording rows the follower has not reached") as conn:
        for at, source, target, quantity, kind in late:
            row = {
                "event_time": at,
                "item_id": 1,
                "from_location": source,
                "to_location": target,
                "quantity": quantity,
                "kind": kind,
                "reason": None,
            }
            await conn.execute(
                sa.insert(ledger).values(
                    **row, recorded_at=datetime.now(UTC), actor="test", epc=None
                )
            )
            rows.append(row)
        await conn.execute(sa.delete(balances))
        await conn.execute(
            sa.insert(balances),
            [
                {"item_id": item_id, "location_id": location, "on_hand": quantity}
                for (item_id, location), quantity in _held(rows, None).items()
            ],
        )
    await _held_everywhere(store, rows)
    follower = LedgerFollower(store, RollupSink(), STEPS)
    await _follow_all(follower)
    assert (await history_report(store)).lines == []
    followed = await _snapshots(store)
    assert followed != rebuilt
    await _held_everywhere(store, rows)
    await rebuild_history(store)
    assert await _snapshots(store) == followed
    await reset_rollups(store)
    assert await _snapshots(store) == [[], []]
    await _follow_all(follower)
    assert await _snapshots(store) == followed


async def test_stock_by_location_is_right_when_its_snapshot_goes_while_it_sums(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshots listed when the sum is planned are gone (reset-history) when it runs:
    the answer is still the ledger's."""
    await _fill(store, 6, step=SNAPSHOT_STEP)
    rows, _ = _generated(6, SNAPSHOT_STEP)
    await rebuild_history(store)
    async with store.read("listing snapshots") as conn:
        listed = await location_snapshots.marks(conn)
    await reset_rollups(store)
    reads: list[list[datetime]] = []

    async def listed_then_now(conn: AsyncConnection) -> list[datetime]:
        reads.append(listed if not reads else await location_snapshots.marks(conn))
        return reads[-1]

    monkeypatch.setattr(location_sums, "marks", listed_then_now)
    moment = listed[len(listed) // 2] + timedelta(days=3)
    async with store.read("summing locations") as conn:
        summed = await location_quantities(conn, moment, None, plan="forwards")
    assert reads == [listed, []]
    assert summed == {key: n for key, n in _held(rows, moment).items() if n}


async def test_check_history_names_a_snapshot_that_disagrees_with_the_ledger(
    store: Store,
) -> None:
    await _fill(store, 5, step=SNAPSHOT_STEP)
    await rebuild_history(store)
    snap = location_snapshots_table.c
    async with store.begin("spoiling one snapshot row") as conn:
        boundary = (await location_snapshots.marks(conn))[4]
        spoiled = (
            await conn.execute(
                sa.select(snap.item_id, snap.location).where(snap.boundary == boundary).limit(1)
            )
        ).one()
        await conn.execute(
            sa.update(location_snapshots_table)
            .where(
                snap.boundary == boundary,
                snap.item_id == spoiled.item_id,
                snap.location == spoiled.location,
            )
            .values(quantity=snap.quantity + 1)
        )
    lines = (await history_report(store)).lines
    assert len(lines) == 1
    assert f"item {spoiled.item_id} location {spoiled.location}" in lines[0]
    assert boundary.isoformat() in lines[0]


async def test_following_step_by_step_equals_a_rebuild(store: Store) -> None:
    await _fill(store, 3)
    await rebuild_history(store)
    rebuilt = await _kept(store)
    await reset_rollups(store)
    assert await _kept(store) == ([], [])
    await _follow_all(LedgerFollower(store, RollupSink(), STEPS))
    assert await _kept(store) == rebuilt
    assert (await history_report(store)).lines == []


class _FailingSink(RollupSink):
    """Writes its rollups and checkpoints and then fails, as a crash half way would."""

    async def apply(self, conn: AsyncConnection, prepared: RollupRows) -> None:
        await super().apply(conn, prepared)
        raise StoreError("disk full (test)")


async def test_a_step_that_fails_half_way_loses_and_doubles_nothing(store: Store) -> None:
    await _fill(store, 4)
    replayed = await _all_reports(store)
    follower = LedgerFollower(store, RollupSink(), STEPS, owner="a")
    for _ in range(12):
        await follower.step()
    before = await _kept(store)
    assert before[1]
    failing = LedgerFollower(store, _FailingSink(), STEPS, owner="a")
    for _ in range(3):
        with pytest.raises(StoreError):
            await failing.step()
        assert await _kept(store) == before
    assert await _all_reports(store) == replayed  # part way: the rest comes from the ledger
    await _follow_all(follower)
    assert await _all_reports(store) == replayed
    await rebuild_history(store)
    rebuilt = await _kept(store)
    await reset_rollups(store)
    await _follow_all(follower)
    assert await _kept(store) == rebuilt


async def test_costs_recorded_later_are_replayed_until_the_follower_catches_up(
    store: Store,
) -> None:
    await _fill(store, 5, costs_after=0)
    await rebuild_history(store)
    _, recorded = _generated(5)
    async with store.begin("recording costs") as conn:
        await _record(conn, recorded)
    replayed_after = await _all_reports_without_checkpoints(store)
    assert await _all_reports(store) == replayed_after
    problems = (await history_report(store)).lines
    assert problems == []  # items whose costs changed are not held against the checkpoints
    async with store.begin("repairing") as conn:
        position = int(await conn.scalar(sa.select(sa.func.max(ledger.c.id))) or 0)
        assert await book_checkpoints.repair_costs(conn, position, None) > 0
        assert await book_checkpoints.repair_costs(conn, position, None) == 0
    assert await _all_reports(store) == replayed_after
    repaired = await _kept(store)
    await rebuild_history(store)
    assert await _kept(store) == repaired


async def _all_reports_without_checkpoints(store: Store) -> list[Any]:
    async with store.begin("hiding checkpoints") as conn:
        saved = (await conn.execute(sa.select(book_checkpoint_marks.c.boundary))).all()
        await conn.execute(sa.delete(book_checkpoint_marks))
    try:
        return await _all_reports(store)
    finally:
        async with store.begin("restoring checkpoints") as conn:
            if saved:
                await conn.execute(
                    sa.insert(book_checkpoint_marks), [{"boundary": row[0]} for row in saved]
                )


def test_a_book_comes_back_as_it_was_kept_in_either_format() -> None:
    books = Books(StandardCosts(()), {1: Decimal("2.5"), 2: Decimal("1.75")}, T0)
    for number, (source, target, quantity) in enumerate(
        [(None, "wh1.bin0", 4), (None, "wh1.bin1", 6), ("wh1.bin0", None, 5)], start=1
    ):
        kind = "receipt" if source is None else "loss"
        books.apply(
            CostRow(number, T0 + timedelta(hours=number), 7, source, target, quantity, kind, "x")
        )
    book = books.books[(7, "wh1")]
    text = dump_book(book)
    again = load_book(text)
    assert dump_book(again) == text
    assert (again.quantity, again.average_value, again.fifo_value) == (
        book.quantity,
        book.average_value,
        book.fifo_value,
    )
    assert list(again.layers) == list(book.layers)
    assert again.flow == book.flow
    first: list[Any] = json.loads(text)  # as revision 0016 first kept them
    first[2] = json.loads(first[2])
    del first[3]
    assert dump_book(load_book(json.dumps(first))) == text


async def test_the_follower_computes_again_the_books_of_items_whose_costs_changed(
    store: Store,
) -> None:
    await _fill(store, 6, costs_after=0)
    follower = LedgerFollower(store, RollupSink(), STEPS)
    await _follow_all(follower)
    _, recorded = _generated(6)
    async with store.begin("recording costs and one more row") as conn:
        await _record(conn, recorded)
        await conn.execute(
            sa.insert(ledger).values(
                event_time=T0 + timedelta(days=80),
                item_id=2,
                from_location=None,
                to_location="wh1.bin0",
                quantity=1,
                kind="receipt",
                reason=None,
                recorded_at=datetime.now(UTC),
                actor="test",
                epc=None,
            )
        )
    await _follow_all(follower)
    followed = await _kept(store)
    async with store.read("looking for stale items") as conn:
        known = await book_checkpoints.cost_marks(conn)
        assert known == await cost_counts(conn, sorted(known))
    await rebuild_history(store)
    assert await _kept(store) == followed
