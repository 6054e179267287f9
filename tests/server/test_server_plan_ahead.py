"""Groups planned ahead of their transaction (``Ingestor.plan``, ``planning.plan_ahead``), on
SQLite and PostgreSQL: a plan is kept only while nothing committed since its read can have
changed what it read; otherwise the group is planned again inside its transaction, so the
outcome is the one of applying the groups one after the other."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from server_helpers import (
    GTIN_A,
    Batches,
    Probe,
    RecordingPublisher,
    checked,
    counter_totals,
    sgtin,
)

from server.commands.operation_models import Caller, TransferRequest
from server.commands.operations import transfer
from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor
from server.ingest.intake import Prepared
from server.ingest.planning import distinct
from server.ingest.transactions import Ahead
from server.metrics import Metrics
from server.store.database import Store
from wire.models import Event, now_utc


def _plans(metrics: Metrics) -> dict[str, float]:
    return counter_totals(metrics.ingest_plans, "outcome")


async def _planned(ingestor: Ingestor, group: list[Prepared]) -> Ahead:
    ahead = await ingestor.plan(group)
    assert ahead is not None
    return ahead


@contextlib.contextmanager
def _statements(store: Store) -> Iterator[list[str]]:
    """The statements run on ``store``'s connections (reads and writes) in the block."""
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(" ".join(statement.split()))

    engines = {store.engine.sync_engine, store.write_engine.sync_engine}
    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", note)


async def _next_batch(ingestor: Ingestor, batches: Batches, epcs: list[int]) -> Prepared:
    """A batch of receipts of ``epcs`` that starts where the outbox's last one ended."""
    seq_first = batches.seq + 1
    events = [batches.event(epc=sgtin(n)) for n in epcs]
    prepared = await ingestor.prepare(batches.topic, batches.payload(events, seq_first=seq_first))
    assert isinstance(prepared, Prepared)
    return prepared


def _reads_seen_ids(statements: list[str]) -> bool:
    return any(s.startswith("SELECT") and "FROM seen_events" in s for s in statements)


async def test_a_batch_past_its_outbox_s_last_commit_is_planned_without_reading_its_ids(
    ingestor: Ingestor, batches: Batches, probe: Probe, metrics: Metrics, store: Store
) -> None:
    """The ids of a batch that starts past the last sequence number committed of its
    gateway's outbox cannot have been seen: planning does not look them up. A re-sent
    batch (the edge's retry after a lost Ack) starts below it: its ids are read."""
    first = await _next_batch(ingestor, batches, [1])
    with _statements(store) as before:
        await ingestor.apply([first], await _planned(ingestor, [first]))
    second = await _next_batch(ingestor, batches, [2, 3])
    with _statements(store) as after:
        ahead = await _planned(ingestor, [second])
    [result] = await ingestor.apply([second], ahead)
    resent = await ingestor.prepare(first.topic, first.header.model_dump_json().encode())
    assert isinstance(resent, Prepared)
    with _statements(store) as again:
        ahead = await _planned(ingestor, [resent])
    [repeat] = await ingestor.apply([resent], ahead)

    # Nothing is known of the outbox at first (a server just started): the ids are read.
    assert _reads_seen_ids(before)
    assert not _reads_seen_ids(after)
    assert _reads_seen_ids(again)
    assert (result.outcome, result.applied, repeat.outcome, repeat.duplicates) == (
        "applied",
        2,
        "duplicate",
        1,
    )
    assert _plans(metrics) == {"ahead": 3}
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 3}


async def test_ids_another_instance_claimed_past_the_last_commit_are_still_duplicates(
    ingestor: Ingestor,
    batches: Batches,
    probe: Probe,
    metrics: Metrics,
    store: Store,
    settings: ServerSettings,
) -> None:
    """Instances on a shared subscription each know their own commits only: a batch the
    other instance applied, re-sent to this one, is planned as new, and the claim in the
    transaction finds its ids taken; it is planned again there and applies nothing."""
    other = Ingestor(store, settings, RecordingPublisher(), Metrics())
    await ingestor.apply([first := await _next_batch(ingestor, batches, [1])])
    taken = await _next_batch(other, batches, [2, 3])
    await other.apply([taken])
    resent = await ingestor.prepare(taken.topic, taken.header.model_dump_json().encode())
    assert isinstance(resent, Prepared)
    assert first.header.seq_last < resent.header.seq_first

    [result] = await ingestor.apply([resent], await _planned(ingestor, [resent]))

    assert (result.outcome, result.applied, result.duplicates) == ("duplicate", 0, 2)
    assert _plans(metrics) == {"in_transaction": 1, "replanned": 1}
    assert len(await probe.ledger()) == 3
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 3}


async def test_a_plan_made_ahead_is_written_when_nothing_committed_meanwhile(
    ingestor: Ingestor, batches: Batches, probe: Probe, metrics: Metrics
) -> None:
    group = [await checked(ingestor, batches, [batches.event(epc=sgtin(n)) for n in (1, 2)])]
    ahead = await _planned(ingestor, group)

    [result] = await ingestor.apply(group, ahead)

    assert (result.outcome, result.applied, result.acked) == ("applied", 2, True)
    assert _plans(metrics) == {"ahead": 1}
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 2}
    assert {epc: row["status"] for epc, row in (await probe.units()).items()} == {
        sgtin(1): "in_stock",
        sgtin(2): "in_stock",
    }


async def test_a_group_planned_while_the_one_before_commits_sees_its_units(
    ingestor: Ingestor, batches: Batches, probe: Probe, metrics: Metrics
) -> None:
    # The receipt is planned and still being written when the shipment of the same unit is
    # planned: that plan read no unit, and would ship one "not in stock".
    receipt = [await checked(ingestor, batches, [batches.event(epc=sgtin(n)) for n in (1, 2)])]
    shipment = [await checked(ingestor, batches, [batches.event(epc=sgtin(1), direction="out")])]
    first = await _planned(ingestor, receipt)
    writing = asyncio.create_task(ingestor.apply(receipt, first))
    second = await _planned(ingestor, shipment)
    await writing

    [result] = await ingestor.apply(shipment, second)

    assert (result.outcome, result.applied) == ("applied", 1)
    assert _plans(metrics) == {"ahead": 1, "replanned": 1}
    assert not [row for row in await probe.alerts() if row["kind"] == "unit_not_in_stock"]
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 1}
    units = await probe.units()
    assert (units[sgtin(1)]["status"], units[sgtin(1)]["location_id"]) == ("shipped", None)
    assert [(row["kind"], row["from_location"]) for row in await probe.ledger()] == [
        ("receipt", None),
        ("receipt", None),
        ("shipment", "wh1.receiving"),
    ]


async def test_other_units_committed_meanwhile_leave_the_plan_standing(
    ingestor: Ingestor, batches: Batches, probe: Probe, metrics: Metrics
) -> None:
    await ingestor.handle(batches.topic, batches.payload([batches.event(epc=sgtin(9))]))
    first = [await checked(ingestor, batches, [batches.event(epc=sgtin(n)) for n in (1, 2)])]
    second = [await checked(ingestor, batches, [batches.event(epc=sgtin(n)) for n in (3, 4)])]
    ahead_first = await _planned(ingestor, first)
    ahead_second = await _planned(ingestor, second)

    await ingestor.apply(first, ahead_first)
    await ingestor.apply(second, ahead_second)

    assert _plans(metrics) == {"in_transaction": 1, "ahead": 2}
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 5}


async def test_an_item_created_meanwhile_is_not_created_twice(
    ingestor: Ingestor, batches: Batches, probe: Probe, metrics: Metrics
) -> None:
    # Both plans create the item of a GTIN never seen (with its unknown_item alert).
    first = [await checked(ingestor, batches, [batches.event(epc=sgtin(1))])]
    second = [await checked(ingestor, batches, [batches.event(epc=sgtin(2))])]
    ahead_first = await _planned(ingestor, first)
    ahead_second = await _planned(ingestor, second)

    await ingestor.apply(first, ahead_first)
    await ingestor.apply(second, ahead_second)

    assert _plans(metrics) == {"ahead": 1, "replanned": 1}
    unknown = [row for row in await probe.alerts() if row["kind"] == "unknown_item"]
    assert [(row["subject"], row["count"]) for row in unknown] == [(GTIN_A, 1)]
    assert list(await probe.items()) == [GTIN_A]


async def test_a_repeat_planned_while_the_original_commits_is_a_duplicate(
    ingestor: Ingestor, batches: Batches, probe: Probe, metrics: Metrics
) -> None:
    payload = batches.payload([batches.event(epc=sgtin(n)) for n in (1, 2, 3)])
    original = await ingestor.prepare(batches.topic, payload)
    repeat = await ingestor.prepare(batches.topic, payload)
    assert isinstance(original, Prepared)
    assert isinstance(repeat, Prepared)
    ahead_original = await _planned(ingestor, [original])
    ahead_repeat = await _planned(ingestor, [repeat])

    await ingestor.apply([original], ahead_original)
    [again] = await ingestor.apply([repeat], ahead_repeat)

    assert (again.outcome, again.applied, again.duplicates, again.acked) == (
        "duplicate",
        0,
        3,
        True,
    )
    assert _plans(metrics) == {"ahead": 1, "replanned": 1}
    assert len(await probe.ledger()) == 3
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 3}


async def test_an_api_operation_committed_meanwhile_makes_ingest_plan_again(
    ingestor: Ingestor, batches: Batches, probe: Probe, metrics: Metrics, store: Store
) -> None:
    await ingestor.handle(batches.topic, batches.payload([batches.event(epc=sgtin(1))]))
    shipment = [await checked(ingestor, batches, [batches.event(epc=sgtin(1), direction="out")])]
    ahead = await _planned(ingestor, shipment)
    # Planned with the unit at wh1.receiving; an operator moves it before the write.
    async with store.begin("an operator's transfer") as conn:
        await transfer(
            conn,
            TransferRequest(epc=sgtin(1), to_location="wh1"),
            Caller("olga"),
            known_locations=store.known_locations,
            now=now_utc(),
        )

    [result] = await ingestor.apply(shipment, ahead)

    assert (result.outcome, result.applied) == ("applied", 1)
    assert _plans(metrics) == {"in_transaction": 1, "replanned": 1}
    shipped = [row for row in await probe.ledger() if row["kind"] == "shipment"]
    assert [row["from_location"] for row in shipped] == ["wh1"]
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 0, (GTIN_A, "wh1"): 0}


async def test_groups_planned_ahead_share_a_transaction_as_if_written_one_after_the_other(
    ingestor: Ingestor, batches: Batches, probe: Probe, metrics: Metrics
) -> None:
    """Two groups in one transaction (``Ingestor.apply_parts``): their reads made together
    at its start, their rows sent one after the other, what they do besides after both
    (``server.ingest.prefetch``). The second receives a unit already in stock."""
    await ingestor.handle(batches.topic, batches.payload([batches.event(epc=sgtin(9))]))
    first = [await checked(ingestor, batches, [batches.event(epc=sgtin(n)) for n in (1, 2)])]
    second = [await checked(ingestor, batches, [batches.event(epc=sgtin(n)) for n in (3, 9)])]
    parts = [(first, await _planned(ingestor, first)), (second, await _planned(ingestor, second))]

    results = await ingestor.apply_parts(parts)

    assert [(r.outcome, r.applied, r.acked) for r in results] == [
        ("applied", 2, True),
        ("applied", 2, True),
    ]
    assert _plans(metrics) == {"in_transaction": 1, "ahead": 2}
    assert [row["epc"] for row in await probe.ledger()] == [sgtin(n) for n in (9, 1, 2, 3, 9)]
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 5}
    in_stock = [row for row in await probe.alerts() if row["kind"] == "unit_already_in_stock"]
    assert [row["subject"] for row in in_stock] == [sgtin(9)]
    assert [[alert.kind for alert in r.alerts] for r in results] == [
        [],
        ["unit_already_in_stock"],
    ]


async def test_a_repeat_in_the_next_group_of_a_transaction_is_a_duplicate(
    ingestor: Ingestor, batches: Batches, probe: Probe, metrics: Metrics
) -> None:
    repeated = batches.event(epc=sgtin(1))
    first = [await checked(ingestor, batches, [repeated, batches.event(epc=sgtin(2))])]
    second = [await checked(ingestor, batches, [repeated, batches.event(epc=sgtin(3))])]
    parts = [(first, await _planned(ingestor, first)), (second, await _planned(ingestor, second))]

    results = await ingestor.apply_parts(parts)

    assert [(r.outcome, r.applied, r.duplicates) for r in results] == [
        ("applied", 2, 0),
        ("applied", 1, 1),
    ]
    assert _plans(metrics) == {"ahead": 1, "replanned": 1}
    assert [row["epc"] for row in await probe.ledger()] == [sgtin(n) for n in (1, 2, 3)]
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 3}


async def test_a_group_planned_again_comes_after_what_the_group_before_it_left_to_do(
    ingestor: Ingestor, batches: Batches, probe: Probe, metrics: Metrics
) -> None:
    # The second group's plan read no unit 1 (the first receives it in the same
    # transaction): planned again there, after the first group's alerts are raised.
    first = [await checked(ingestor, batches, [batches.event(epc=sgtin(1))])]
    second = [await checked(ingestor, batches, [batches.event(epc=sgtin(1), direction="out")])]
    parts = [(first, await _planned(ingestor, first)), (second, await _planned(ingestor, second))]

    results = await ingestor.apply_parts(parts)

    assert [(r.outcome, r.applied) for r in results] == [("applied", 1), ("applied", 1)]
    assert _plans(metrics) == {"ahead": 1, "replanned": 1}
    kinds = [row["kind"] for row in await probe.alerts()]
    assert "unit_not_in_stock" not in kinds
    assert kinds.count("unknown_item") == 1
    assert (await probe.balances()).get((GTIN_A, "wh1.receiving"), 0) == 0
    assert [row["kind"] for row in await probe.ledger()] == ["receipt", "shipment"]


async def test_the_rows_of_every_group_go_out_before_a_group_reads_again(
    store: Store, ingestor: Ingestor, batches: Batches
) -> None:
    """Between the first group's unit states and the last group's, the database is only
    written to: nothing the loop would have to wait for."""
    await ingestor.handle(batches.topic, batches.payload([batches.event(epc=sgtin(9))]))
    groups = [
        [await checked(ingestor, batches, [batches.event(epc=sgtin(base + n)) for n in (1, 2)])]
        for base in (10, 20, 30)
    ]
    parts = [(group, await _planned(ingestor, group)) for group in groups]
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(" ".join(statement.split())[:40])

    engine = store.write_engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        await ingestor.apply_parts(parts)
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)

    # PostgreSQL upserts the unit states from their staging table (``dialect.STAGED``), its
    # claim of the event ids is an INSERT inside a WITH (``ingest.claims``), and its
    # writers lock the items and locations their rows name (``ingest.references``).
    units = [
        n
        for n, statement in enumerate(statements)
        if statement.startswith(("INSERT INTO units", "WITH staged AS (DELETE FROM stage_units"))
    ]
    assert len(units) == len(groups)
    between = statements[units[0] : units[-1]]
    assert between
    writing = ("INSERT", "WITH staged AS", "WITH wanted AS", "WITH held_items AS")
    assert not [statement for statement in between if not statement.startswith(writing)]


def test_distinct_keeps_the_first_event_of_each_id_in_order() -> None:
    batches = Batches()
    first, second = (Event.model_validate(batches.event(epc=sgtin(n))) for n in (1, 2))
    repeat = first.model_copy(update={"epc": sgtin(3)})
    assert list(distinct([first, second]).values()) == [first, second]
    unique = distinct([first, second, repeat, second])
    assert list(unique) == [first.event_id, second.event_id]
    assert unique[first.event_id].epc == sgtin(1)
