"""No silent negative stock: the pure check, and ingest under both policies (per site).

wh1 allows negative stock (the default) and alerts; wh2 refuses it: the event is
dead-lettered with its reason and the Ack tells the gateway. Through ``Ingestor`` into a
real SQLite file and PostgreSQL.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from server_helpers import (
    BASE_TIME,
    GTIN_A,
    GTIN_B,
    Batches,
    Probe,
    RecordingPublisher,
    make_settings,
    sgtin,
)

from server.alerts.store import open_alerts
from server.alerts.sweeps import check_negative_stock
from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor
from server.ingest.intake import Prepared
from server.rules.alerts import NEGATIVE_STOCK
from server.rules.model import ItemKey, Movement
from server.rules.negative import check_movements
from server.rules.policy import Policy
from server.store.check import check_ledger
from server.store.database import Store
from wire.identifiers import gtin_of
from wire.models import Ack

READ_POINTS: list[dict[str, Any]] = [
    {"id": "wh1.dock.1", "inbound_location": "wh1.receiving", "outbound": "ship"},
    {"id": "wh1.scanner", "inbound_location": "wh1.receiving", "outbound": "ignore"},
    {"id": "wh2.scanner", "inbound_location": "wh2.receiving", "site": "wh2"},
]


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return make_settings(
        database_url,
        read_points=READ_POINTS,
        operations={"negative_stock_sites": {"wh2": "refuse"}},
    )


def at(minutes: float) -> datetime:
    return BASE_TIME + timedelta(minutes=minutes)


def pick(
    batches: Batches, gtin: str, qty: int, location: str, minutes: float, read_point: str
) -> dict[str, Any]:
    event = batches.event(
        gtin=gtin, qty=qty, direction="out", read_point=read_point, at=at(minutes)
    )
    return event | {"biz_step": "picking", "biz_location": location}


def receipt(
    batches: Batches, gtin: str, qty: int, location: str, minutes: float, read_point: str
) -> dict[str, Any]:
    event = batches.event(gtin=gtin, qty=qty, read_point=read_point, at=at(minutes))
    return event | {"biz_location": location}


def _move(event_id: str, qty: int, source: str | None, target: str | None) -> Movement:
    return Movement(
        event_id=event_id,
        event_time=BASE_TIME,
        item=ItemKey(GTIN_A, GTIN_A, GTIN_A),
        epc=None,
        from_location=source,
        to_location=target,
        quantity=qty,
        kind="transfer",
        read_point=None,
        reason="picking",
    )


def test_the_check_walks_events_in_order_and_refuses_only_where_the_site_refuses() -> None:
    moves = [
        _move("e1", 2, "wh1.a", "wh1.staging"),  # 1 on hand: goes to -1
        _move("e2", 3, None, "wh1.a"),  # back to 2
        _move("e3", 5, "wh2.a", "wh2.staging"),  # wh2 refuses: 4 on hand
        _move("e4", 4, "wh2.a", "wh2.staging"),  # exactly what is there
    ]
    on_hand = {(GTIN_A, "wh1.a"): 1, (GTIN_A, "wh2.a"): 4, (GTIN_A, "wh1.b"): -2}
    policy = Policy(negative_stock_sites={"wh2": "refuse"})
    check = check_movements(moves, on_hand, policy)
    assert list(check.refused) == ["e3"]
    assert check.refused["e3"].on_hand == 4
    assert "wh2.a holds 4" in check.refused["e3"].reason()
    # wh1.a dipped below zero and came back within the batch: no alert holds.
    assert check.alerts == []
    assert check.cleared == []
    # Everything allowed: e1 alone leaves wh1.a negative; a receipt into wh1.b clears it.
    check = check_movements([moves[0], _move("e5", 2, None, "wh1.b")], on_hand, Policy())
    assert [(a.kind, a.subject, a.evidence["on_hand"]) for a in check.alerts] == [
        ("negative_stock", f"wh1.a/{GTIN_A}", -1)
    ]
    assert check.cleared == [("negative_stock", f"wh1.b/{GTIN_A}")]
    # Reversals are never refused.
    assert check_movements(moves[2:3], on_hand, policy, refusable=False).refused == {}


def test_where_nothing_can_be_refused_the_check_ends_as_walking_each_event_would() -> None:
    # With no site refusing, the check sums each balance's deltas at once; walking event by
    # event (a site elsewhere refuses, so the walk runs, but refuses nothing here) must end
    # with the same alerts and clears, over balances that dip, recover and end anywhere.
    rng = random.Random(20261207)
    locations = ["wh1.a", "wh1.b", "wh1.c", None]
    alerts = cleared = 0
    for _ in range(200):
        moves = [
            _move(
                f"e{n // 2}",  # two movements share an event now and then
                rng.randint(1, 5),
                rng.choice(locations),
                rng.choice(locations),
            )
            for n in range(rng.randint(1, 12))
        ]
        on_hand = {(GTIN_A, location): rng.randint(-3, 3) for location in locations[:2]}
        summed = check_movements(moves, on_hand, Policy())
        walked = check_movements(moves, on_hand, Policy(negative_stock_sites={"zz": "refuse"}))
        assert walked.refused == summed.refused == {}
        assert summed.alerts == walked.alerts
        assert summed.cleared == walked.cleared
        alerts += len(summed.alerts)
        cleared += len(summed.cleared)
    # The cases compared held both.
    assert alerts > 50
    assert cleared > 50


async def test_a_pick_from_an_empty_bin_under_both_policies(
    ingestor: Ingestor,
    publisher: RecordingPublisher,
    probe: Probe,
    store: Store,
) -> None:
    wh1 = Batches()
    result = await ingestor.handle(
        wh1.topic,
        wh1.payload(
            [
                receipt(wh1, GTIN_A, 2, "wh1.a.1", 0, "wh1.scanner"),
                pick(wh1, GTIN_A, 3, "wh1.a.1", 1, "wh1.scanner"),
            ]
        ),
    )
    assert (result.outcome, result.applied, result.dead_letters) == ("applied", 2, 0)
    wh2 = Batches(site="wh2", gateway="gw2")
    picked = pick(wh2, GTIN_B, 1, "wh2.a.1", 2, "wh2.scanner")
    result = await ingestor.handle(
        wh2.topic,
        wh2.payload(
            [
                receipt(wh2, GTIN_B, 1, "wh2.a.1", 0, "wh2.scanner"),
                pick(wh2, GTIN_B, 1, "wh2.a.1", 1, "wh2.scanner"),
                picked,
            ]
        ),
    )
    assert (result.outcome, result.applied, result.dead_letters) == ("applied", 2, 1)

    balances = await probe.balances()
    # wh1 allows: the bin is at -1, the pick zone holds the 3, and an alert says so.
    assert (balances[(GTIN_A, "wh1.a.1")], balances[(GTIN_A, "wh1.staging")]) == (-1, 3)
    # wh2 refuses: the second pick moved nothing.
    assert (balances[(GTIN_B, "wh2.a.1")], balances[(GTIN_B, "wh2.staging")]) == (0, 1)
    [letter] = await probe.dead_letters()
    assert letter["event_id"] == picked["event_id"]
    assert "negative stock refused: wh2.a.1 holds 0" in letter["reason"]
    [ack] = [Ack.model_validate(a) for a in publisher.on(wh2.ack_topic)]
    assert [(r.event_id, r.read_point) for r in ack.refused] == [
        (picked["event_id"], "wh2.scanner")
    ]
    assert "holds 0" in ack.refused[0].reason
    # The refused event's id stays claimed: sent again, it is a duplicate.
    again = await ingestor.handle(wh2.topic, wh2.payload([picked]))
    assert (again.outcome, again.dead_letters) == ("duplicate", 0)

    def negative(alerts: list[dict[str, Any]]) -> dict[str, Any]:
        return {a["subject"]: a["closed_at"] for a in alerts if a["kind"] == "negative_stock"}

    assert negative(await probe.alerts()) == {f"wh1.a.1/{GTIN_A}": None}
    # Goods received into the bin bring it back to zero: the alert clears with the batch.
    await ingestor.handle(
        wh1.topic, wh1.payload([receipt(wh1, GTIN_A, 1, "wh1.a.1", 5, "wh1.scanner")])
    )
    assert negative(await probe.alerts())[f"wh1.a.1/{GTIN_A}"] is not None
    assert await check_ledger(store) == []


async def test_the_sweep_reconciles_negative_stock_with_the_balances(
    ingestor: Ingestor, probe: Probe, store: Store
) -> None:
    batches = Batches()
    # A unit shipped that was never received: the dock's inbound location goes to -1.
    shipped = batches.event(epc=sgtin(1), direction="out", at=at(0))
    await ingestor.handle(batches.topic, batches.payload([shipped]))
    below = f"wh1.receiving/{gtin_of(sgtin(1))}"
    # An alert whose balance is fine (left behind by two instances racing, say).
    fine = NEGATIVE_STOCK.raise_(f"wh1.a.9/{GTIN_A}", {"location": "wh1.a.9"}, site="wh1")
    async with store.begin("an alert left behind") as conn:
        await open_alerts(conn, [fine], "wh1", at(1))

    def negative(alerts: list[dict[str, Any]]) -> dict[str, Any]:
        return {a["subject"]: a["closed_at"] for a in alerts if a["kind"] == "negative_stock"}

    assert negative(await probe.alerts()) == {below: None, fine.subject: None}
    async with store.begin("sweeping") as conn:
        await check_negative_stock(conn, at(2), 0.0)
    after = negative(await probe.alerts())
    assert after[below] is None
    assert after[fine.subject] is not None


async def test_a_pick_written_with_the_receipt_before_it_sees_that_receipt(
    ingestor: Ingestor, probe: Probe
) -> None:
    # Two groups in one transaction (a writer takes every group planned meanwhile): the
    # balances are written last, so the second group's check must count the first's
    # deltas, which are not in the table yet.
    wh2 = Batches(site="wh2", gateway="gw2")
    first = await ingestor.prepare(
        wh2.topic, wh2.payload([receipt(wh2, GTIN_B, 2, "wh2.a.1", 0, "wh2.scanner")])
    )
    second = await ingestor.prepare(
        wh2.topic, wh2.payload([pick(wh2, GTIN_B, 2, "wh2.a.1", 1, "wh2.scanner")])
    )
    assert isinstance(first, Prepared)
    assert isinstance(second, Prepared)
    received, picked = await ingestor.apply_parts(
        [([first], await ingestor.plan([first])), ([second], await ingestor.plan([second]))]
    )

    assert (received.applied, picked.applied, picked.dead_letters) == (1, 1, 0)
    balances = await probe.balances()
    assert (balances[(GTIN_B, "wh2.a.1")], balances[(GTIN_B, "wh2.staging")]) == (0, 2)
    assert await probe.dead_letters() == []
