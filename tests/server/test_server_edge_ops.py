"""Stock operations from the edge beyond dock passes: zone moves, put-away, picks, cycle
counts, and a tagged unit's life cycle (seen after shipped, impossible movement).

The rule tables are tested as pure functions; everything else goes through ``Ingestor``
into a real SQLite file and PostgreSQL."""

from __future__ import annotations

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

from server.config.settings import ReadPointSettings, ServerSettings
from server.ingest.consumer import Ingestor
from server.metrics import Metrics
from server.rules import STEP_RULES, Policy, StockState, UnitState, location_problem, plan, rule_for
from server.rules.counts import sgtin_candidates, urn_serial
from server.rules.model import CountBasis
from server.store.check import check_ledger
from server.store.database import Store
from server.store.schema import core as schema
from server.store.schema.counts import count_results
from wire.identifiers import gtin_of
from wire.models import Event

READ_POINTS: list[dict[str, Any]] = [
    {"id": "wh1.dock.1", "inbound_location": "wh1.receiving", "outbound": "ship"},
    {"id": "wh1.shelf.a", "inbound_location": "wh1.aisle.a", "outbound": "ignore"},
    {"id": "wh1.scanner", "inbound_location": "wh1.receiving", "outbound": "ignore"},
    {"id": "wh2.dock.1", "inbound_location": "wh2.receiving", "site": "wh2"},
]
GTIN_C = "04006381333931"


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return make_settings(database_url, read_points=READ_POINTS)


def at(minutes: float) -> datetime:
    return BASE_TIME + timedelta(minutes=minutes)


def step(
    batches: Batches,
    biz_step: str,
    *,
    epc: str | None = None,
    gtin: str | None = None,
    qty: int = 1,
    biz_location: str | None = None,
    read_point: str = "wh1.shelf.a",
    minutes: float | None = None,
    direction: str | None = None,
    quantities: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A wire event of ``biz_step`` as a shelf reader or scanner sends it."""
    event = batches.event(
        epc=epc,
        gtin=gtin,
        qty=qty,
        direction=direction,
        read_point=read_point,
        at=at(minutes) if minutes is not None else None,
    )
    event["biz_step"] = biz_step
    if biz_location is not None:
        event["biz_location"] = biz_location
    if quantities is not None:
        event["quantities"] = quantities
    return event


def serial_of(epc: str) -> str:
    return epc.rsplit(".", 1)[1]


async def send(ingestor: Ingestor, batches: Batches, *events: dict[str, Any]) -> None:
    result = await ingestor.handle(batches.topic, batches.payload(list(events)))
    assert result.outcome == "applied", result.reason


async def receive(ingestor: Ingestor, batches: Batches, *epcs: str, minutes: float = 0) -> None:
    await send(ingestor, batches, *(batches.event(epc=epc, at=at(minutes)) for epc in epcs))


def open_alerts(alerts: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(a["kind"], a["subject"]) for a in alerts if a["closed_at"] is None}


# --- the rule tables, pure ------------------------------------------------------------------


def _event(**fields: Any) -> Event:
    base: dict[str, Any] = {
        "event_id": "gw1:0a1b2c3d:1",
        "event_time": BASE_TIME.isoformat(),
        "read_point": "wh1.shelf.a",
        "source": "llrp",
    }
    return Event.model_validate(base | fields)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"biz_step": "arriving", "epc": sgtin(1)}, "move-unit"),
        ({"biz_step": "storing", "epc": sgtin(1)}, "move-unit"),
        ({"biz_step": "storing", "quantity": {"gtin": GTIN_A}}, "move-quantity"),
        ({"biz_step": "picking", "epc": sgtin(1), "direction": "out"}, "pick-unit"),
        (
            {"biz_step": "picking", "quantity": {"gtin": GTIN_A}, "direction": "out"},
            "pick-quantity",
        ),
        ({"biz_step": "cycle_counting", "quantities": [], "biz_location": "wh1.a"}, "count"),
        ({"biz_step": "departing", "epc": sgtin(1)}, None),
        ({"biz_step": "cycle_counting", "epc": sgtin(1)}, None),
        ({"biz_step": "receiving", "epc": sgtin(1), "direction": "in"}, "receive-unit"),
    ],
)
def test_business_steps_choose_their_rule_before_passes(
    fields: dict[str, Any], expected: str | None
) -> None:
    point = ReadPointSettings(id="wh1.shelf.a", inbound_location="wh1.aisle.a")
    rule = rule_for(_event(**fields), point)
    assert (rule.name if rule else None) == expected
    assert len({(s, r.identity) for r in STEP_RULES for s in r.steps}) == sum(
        len(r.steps) for r in STEP_RULES
    )


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"biz_step": "storing", "quantity": {"gtin": GTIN_A}}, "needs biz_location"),
        ({"biz_step": "picking", "quantity": {"gtin": GTIN_A}}, None),
        (
            {"biz_step": "storing", "quantity": {"gtin": GTIN_A}, "source_location": "a b"},
            "source_location 'a b' is not a location id",
        ),
        ({"biz_step": "storing", "epc": sgtin(1), "biz_location": "aisle 3"}, "not a location id"),
        (
            {"biz_step": "cycle_counting", "quantities": [], "biz_location": "transit.TO-1"},
            "reserved site 'transit'",
        ),
        ({"biz_step": "arriving", "epc": sgtin(1)}, None),
        (
            {"biz_step": "receiving", "epc": sgtin(1), "biz_location": "not a location"},
            "biz_location 'not a location' is not a location id",
        ),
        ({"biz_step": "receiving", "epc": sgtin(1)}, None),
    ],
)
def test_locations_must_be_location_ids_and_there_where_a_rule_needs_them(
    fields: dict[str, Any], problem: str | None
) -> None:
    found = location_problem(_event(**fields))
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_sgtin_candidates_name_the_units_epc_for_any_company_prefix() -> None:
    assert sgtin(7) in sgtin_candidates(GTIN_A, "7")
    assert {gtin_of(urn) for urn in sgtin_candidates(GTIN_A, "7")} == {GTIN_A}
    assert urn_serial('a/b%c"?') == "a%2Fb%25c%22%3F"


def _unit(
    epc: str, location: str | None, status: str, minutes: float, site: str = "wh1"
) -> UnitState:
    return UnitState(
        epc=epc,
        item=GTIN_A,
        location=location,
        status=status,  # type: ignore[arg-type]
        last_event_time=at(minutes),
        last_event_id=f"gw0:00000000:{minutes}",
        site=site,
    )


def test_a_count_judges_units_and_quantities_as_of_its_time() -> None:
    units = {
        sgtin(1): _unit(sgtin(1), "wh1.a", "in_stock", 0),  # seen
        sgtin(2): _unit(sgtin(2), "wh1.a", "in_stock", 0),  # not seen: missing
        sgtin(3): _unit(sgtin(3), "wh1.b", "in_stock", 0),  # seen here: moved
        sgtin(4): _unit(sgtin(4), None, "missing", 0),  # seen: found
        sgtin(5): _unit(sgtin(5), "wh1.a", "in_stock", 30),  # newer than the count: left alone
    }
    count = _event(
        biz_step="cycle_counting",
        biz_location="wh1.a",
        event_time=at(10).isoformat(),
        quantities=[{"gtin": GTIN_A, "serial": serial_of(sgtin(n))} for n in (1, 3, 4)]
        + [{"gtin": GTIN_B, "qty": 4}],
    )
    state = StockState(
        units=units,
        known_items=frozenset({GTIN_A, GTIN_B, GTIN_C}),
        counts={
            count.event_id: CountBasis("wh1.a", {GTIN_B: 6, GTIN_C: 2}, {}),
        },
    )
    point = {"wh1.shelf.a": ReadPointSettings(id="wh1.shelf.a", inbound_location="wh1.aisle.a")}
    result = plan([count], state, point)

    rows = {
        (m.epc, m.item.ref, m.from_location, m.to_location, m.quantity) for m in result.movements
    }
    assert rows == {
        (sgtin(2), GTIN_A, "wh1.a", None, 1),
        (sgtin(3), GTIN_A, "wh1.b", "wh1.a", 1),
        (sgtin(4), GTIN_A, None, "wh1.a", 1),
        (None, GTIN_B, "wh1.a", None, 2),
        (None, GTIN_C, "wh1.a", None, 2),
    }
    assert {m.kind for m in result.movements} == {"count_adjustment"}
    assert {m.reason for m in result.movements} == {"cycle_counting"}
    assert {epc: (u.status, u.location) for epc, u in result.units.items()} == {
        sgtin(2): ("missing", None),
        sgtin(3): ("in_stock", "wh1.a"),
        sgtin(4): ("in_stock", "wh1.a"),
    }
    [alert] = result.alerts
    assert (alert.kind, alert.subject) == ("count_discrepancy", "wh1.a")
    assert alert.evidence["missing"] == [sgtin(2)]
    assert alert.evidence["adjusted"] == {GTIN_B: -2, GTIN_C: -2}
    # As counted, for count accuracy: A expected units 1 and 2 (5 is newer than the count),
    # counted 1, 3 and 4; B and C as the quantities without EPC.
    [counted] = result.counts
    assert (counted.event_id, counted.location) == (count.event_id, "wh1.a")
    assert {line.item: (line.expected, line.counted) for line in counted.lines} == {
        GTIN_A: (2, 3),
        GTIN_B: (6, 4),
        GTIN_C: (2, 0),
    }


def test_an_item_counted_by_quantity_only_is_counted_as_a_class() -> None:
    units = {sgtin(n): _unit(sgtin(n), "wh1.a", "in_stock", 0) for n in (1, 2, 3)}
    count = _event(
        biz_step="cycle_counting",
        biz_location="wh1.a",
        event_time=at(10).isoformat(),
        quantities=[{"gtin": GTIN_A, "qty": 2}],
    )
    state = StockState(units=units, known_items=frozenset({GTIN_A}))
    point = {"wh1.shelf.a": ReadPointSettings(id="wh1.shelf.a", inbound_location="wh1.aisle.a")}
    result = plan([count], state, point)
    # Which unit is gone cannot be told: none becomes missing, the total is corrected.
    assert [(m.epc, m.from_location, m.quantity) for m in result.movements] == [(None, "wh1.a", 1)]
    assert result.units == {}


def test_a_clean_count_clears_and_a_later_discrepancy_wins_in_one_batch() -> None:
    point = {"wh1.shelf.a": ReadPointSettings(id="wh1.shelf.a", inbound_location="wh1.aisle.a")}
    clean = _event(
        event_id="gw1:0a1b2c3d:1",
        biz_step="cycle_counting",
        biz_location="wh1.a",
        event_time=at(1).isoformat(),
        quantities=[],
    )
    off = _event(
        event_id="gw1:0a1b2c3d:2",
        biz_step="cycle_counting",
        biz_location="wh1.a",
        event_time=at(2).isoformat(),
        quantities=[{"gtin": GTIN_B, "qty": 1}],
    )
    state = StockState(units={}, known_items=frozenset({GTIN_B}))
    assert plan([clean], state, point).cleared == [("count_discrepancy", "wh1.a")]
    both = plan([off, clean], state, point)
    assert both.cleared == []
    assert [(a.kind, a.subject) for a in both.alerts] == [("count_discrepancy", "wh1.a")]


def test_life_cycle_alerts_follow_event_time_and_travel_time() -> None:
    points = {
        "wh1.shelf.a": ReadPointSettings(id="wh1.shelf.a", inbound_location="wh1.aisle.a"),
        "wh2.dock.1": ReadPointSettings(id="wh2.dock.1", inbound_location="wh2.receiving"),
    }
    shipped = StockState(
        units={sgtin(1): _unit(sgtin(1), None, "shipped", 10)}, known_items=frozenset({GTIN_A})
    )
    sighting = {"biz_step": "other", "epc": sgtin(1)}
    after = plan([_event(**sighting, event_time=at(11).isoformat())], shipped, points)
    before = plan([_event(**sighting, event_time=at(9).isoformat())], shipped, points)
    assert [a.kind for a in after.alerts] == ["unit_seen_after_shipped"]
    assert before.alerts == []
    assert after.movements == []
    assert after.units == {}

    in_wh1 = StockState(
        units={sgtin(1): _unit(sgtin(1), "wh1.aisle.a", "in_stock", 10)},
        known_items=frozenset({GTIN_A}),
    )
    hop = _event(
        biz_step="receiving",
        epc=sgtin(1),
        direction="in",
        read_point="wh2.dock.1",
        event_time=at(15).isoformat(),
    )
    alerts = plan([hop], in_wh1, points).alerts
    # (also unit_already_in_stock: it was never shipped from wh1)
    assert [a.kind for a in alerts] == ["impossible_movement", "unit_already_in_stock"]
    alert = alerts[0]
    assert (alert.kind, alert.evidence["from_site"], alert.evidence["to_site"]) == (
        "impossible_movement",
        "wh1",
        "wh2",
    )
    assert alert.evidence["seconds"] == 300
    routes = Policy(routes={frozenset({"wh1", "wh2"}): 120})
    assert [a.kind for a in plan([hop], in_wh1, points, routes).alerts] == ["unit_already_in_stock"]
    assert len(plan([hop], in_wh1, points, Policy(min_travel_s=0)).alerts) == 1


# --- through ingest, on SQLite and PostgreSQL ---------------------------------------------


async def test_zone_arrivals_move_units_and_departures_move_nothing(
    ingestor: Ingestor, batches: Batches, probe: Probe, store: Store
) -> None:
    await receive(ingestor, batches, sgtin(1), sgtin(2), minutes=0)
    await send(
        ingestor,
        batches,
        step(batches, "arriving", epc=sgtin(1), minutes=5),  # the shelf reader's own zone
        step(batches, "arriving", epc=sgtin(2), biz_location="wh1.aisle.b.2", minutes=5),
        step(batches, "departing", epc=sgtin(1), minutes=7),
        step(batches, "arriving", epc=sgtin(3), minutes=8),  # never received
    )
    # Older than the unit's state: history says nothing new, nothing moves.
    await send(ingestor, batches, step(batches, "arriving", epc=sgtin(2), minutes=3))

    assert await probe.balances() == {
        (GTIN_A, "wh1.receiving"): 0,
        (GTIN_A, "wh1.aisle.a"): 2,
        (GTIN_A, "wh1.aisle.b.2"): 1,
    }
    units = await probe.units()
    assert {
        epc: (row["status"], row["location_id"], row["site"]) for epc, row in units.items()
    } == {
        sgtin(1): ("in_stock", "wh1.aisle.a", "wh1"),
        sgtin(2): ("in_stock", "wh1.aisle.b.2", "wh1"),
        sgtin(3): ("in_stock", "wh1.aisle.a", "wh1"),
    }
    moves = [row for row in await probe.ledger() if row["kind"] != "receipt"]
    assert [(r["epc"], r["kind"], r["from_location"], r["reason"]) for r in moves] == [
        (sgtin(1), "transfer", "wh1.receiving", "arriving"),
        (sgtin(2), "transfer", "wh1.receiving", "arriving"),
        (sgtin(3), "count_adjustment", None, "arriving"),
    ]
    assert await check_ledger(store) == []


async def test_scanner_put_away_and_picks(
    ingestor: Ingestor, batches: Batches, probe: Probe, store: Store
) -> None:
    scanner = "wh1.scanner"
    await send(
        ingestor,
        batches,
        batches.event(gtin=GTIN_B, qty=10, read_point="wh1.scanner", at=at(0)),
        step(
            batches,
            "storing",
            gtin=GTIN_B,
            qty=6,
            biz_location="wh1.aisle.b.1",
            minutes=1,
            read_point=scanner,
        ),
        step(
            batches,
            "picking",
            gtin=GTIN_B,
            qty=2,
            biz_location="wh1.aisle.b.1",
            direction="out",
            minutes=2,
            read_point=scanner,
        ),
    )
    await receive(ingestor, batches, sgtin(1), minutes=3)
    await send(
        ingestor,
        batches,
        step(batches, "picking", epc=sgtin(1), direction="out", minutes=4, read_point=scanner),
    )

    assert await probe.balances() == {
        (GTIN_B, "wh1.receiving"): 4,
        (GTIN_B, "wh1.aisle.b.1"): 4,
        (GTIN_B, "wh1.staging"): 2,
        (GTIN_A, "wh1.receiving"): 0,
        (GTIN_A, "wh1.staging"): 1,
    }
    assert (await probe.units())[sgtin(1)]["location_id"] == "wh1.staging"
    reasons = [(row["kind"], row["reason"]) for row in await probe.ledger()]
    assert reasons == [
        ("receipt", None),
        ("transfer", "storing"),
        ("transfer", "picking"),
        ("receipt", None),
        ("transfer", "picking"),
    ]
    assert await check_ledger(store) == []


async def test_one_meaning_per_scan_receive_move_pick(
    ingestor: Ingestor, batches: Batches, probe: Probe, store: Store
) -> None:
    """Receive into the scanned location (else inbound), move source to destination, pick
    from the scanned location (else inbound): the issue's handheld walk, in the books."""
    scanner = "wh1.scanner"
    received = step(batches, "receiving", gtin=GTIN_B, qty=12, minutes=0, read_point=scanner)
    received |= {"direction": "in", "biz_location": "wh1.a01.b01"}
    unscanned = step(batches, "receiving", gtin=GTIN_B, qty=3, minutes=1, read_point=scanner)
    unscanned["direction"] = "in"
    moved = step(
        batches,
        "storing",
        gtin=GTIN_B,
        qty=5,
        biz_location="wh1.a02.b01",
        minutes=2,
        read_point=scanner,
    )
    moved["source_location"] = "wh1.a01.b01"
    picked = step(
        batches,
        "picking",
        gtin=GTIN_B,
        qty=2,
        biz_location="wh1.a02.b01",
        direction="out",
        minutes=3,
        read_point=scanner,
    )
    picked_here = step(
        batches, "picking", gtin=GTIN_B, qty=1, direction="out", minutes=4, read_point=scanner
    )
    await send(ingestor, batches, received, unscanned, moved, picked, picked_here)

    assert await probe.balances() == {
        (GTIN_B, "wh1.a01.b01"): 7,
        (GTIN_B, "wh1.receiving"): 2,
        (GTIN_B, "wh1.a02.b01"): 3,
        (GTIN_B, "wh1.staging"): 3,
    }
    assert await check_ledger(store) == []


async def test_events_with_a_bad_biz_location_are_dead_lettered(
    ingestor: Ingestor, batches: Batches, probe: Probe
) -> None:
    result = await ingestor.handle(
        batches.topic,
        batches.payload(
            [
                step(batches, "storing", gtin=GTIN_B, read_point="wh1.scanner"),
                step(batches, "arriving", epc=sgtin(1), biz_location="wh1..x"),
                step(batches, "arriving", epc=sgtin(2)),
            ]
        ),
    )
    assert (result.applied, result.dead_letters) == (1, 2)
    reasons = [row["reason"] for row in await probe.dead_letters()]
    assert reasons == [
        "invalid event: a storing event of a quantity needs biz_location",
        "invalid event: biz_location 'wh1..x' is not a location id (a dotted path such as "
        "wh1.aisle.3)",
    ]


async def test_a_count_closes_with_its_discrepancies(
    ingestor: Ingestor, batches: Batches, probe: Probe, store: Store
) -> None:
    # wh1.receiving holds units 1-3 and 10 loose of GTIN_B; unit 4 is on a shelf; unit 5
    # was shipped.
    await receive(ingestor, batches, *(sgtin(n) for n in range(1, 6)), minutes=0)
    await send(
        ingestor,
        batches,
        batches.event(gtin=GTIN_B, qty=10, read_point="wh1.scanner", at=at(1)),
        step(batches, "arriving", epc=sgtin(4), minutes=2),
        batches.event(epc=sgtin(5), direction="out", at=at(3)),
    )
    # A receipt after the count arrives before it: the count is judged as of its own time.
    await send(
        ingestor, batches, batches.event(gtin=GTIN_B, qty=5, read_point="wh1.scanner", at=at(20))
    )
    lines: list[dict[str, Any]] = [
        {"gtin": GTIN_A, "serial": serial_of(sgtin(n))} for n in (1, 2, 4, 5)
    ]
    lines += [{"gtin": GTIN_B, "qty": 3, "lot": "L1"}, {"gtin": GTIN_B, "qty": 5, "lot": "L2"}]
    count = step(
        batches,
        "cycle_counting",
        biz_location="wh1.receiving",
        read_point="wh1.scanner",
        minutes=10,
        quantities=lines,
    )
    await send(ingestor, batches, count)

    units = await probe.units()
    assert {epc: (row["status"], row["location_id"]) for epc, row in units.items()} == {
        sgtin(1): ("in_stock", "wh1.receiving"),
        sgtin(2): ("in_stock", "wh1.receiving"),
        sgtin(3): ("missing", None),
        sgtin(4): ("in_stock", "wh1.receiving"),
        sgtin(5): ("in_stock", "wh1.receiving"),
    }
    assert await probe.balances() == {
        (GTIN_A, "wh1.receiving"): 4,
        (GTIN_A, "wh1.aisle.a"): 0,
        (GTIN_B, "wh1.receiving"): 13,  # counted 8 of 10 as of the count, then 5 more
    }
    rows = [r for r in await probe.ledger() if r["event_id"] == count["event_id"]]
    assert {(r["epc"], r["from_location"], r["to_location"], r["quantity"]) for r in rows} == {
        (sgtin(3), "wh1.receiving", None, 1),
        (sgtin(4), "wh1.aisle.a", "wh1.receiving", 1),
        (sgtin(5), None, "wh1.receiving", 1),
        (None, "wh1.receiving", None, 2),
    }
    assert {(r["kind"], r["reason"]) for r in rows} == {("count_adjustment", "cycle_counting")}
    alerts = await probe.alerts()
    assert open_alerts(alerts) >= {
        ("count_discrepancy", "wh1.receiving"),
        ("unit_seen_after_shipped", sgtin(5)),
    }
    [discrepancy] = [a for a in alerts if a["kind"] == "count_discrepancy"]
    assert discrepancy["evidence"]["missing"] == [sgtin(3)]
    assert discrepancy["evidence"]["adjusted"] == {GTIN_B: -2}
    assert await check_ledger(store) == []
    # As counted: units 1-3 expected (4 had moved, 5 shipped), 1, 2, 4, 5 seen; 10 loose.
    results = await probe.rows(count_results, count_results.c.item)
    assert {(r["event_id"], r["item"], r["expected"], r["counted"]) for r in results} == {
        (count["event_id"], GTIN_A, 3, 4),
        (count["event_id"], GTIN_B, 10, 8),
    }

    # The next count finds the books right: the discrepancy clears.
    lines = [{"gtin": GTIN_A, "serial": serial_of(sgtin(n))} for n in (1, 2, 4, 5)]
    lines.append({"gtin": GTIN_B, "qty": 13})
    await send(
        ingestor,
        batches,
        step(
            batches,
            "cycle_counting",
            biz_location="wh1.receiving",
            read_point="wh1.scanner",
            minutes=30,
            quantities=lines,
        ),
    )
    assert ("count_discrepancy", "wh1.receiving") not in open_alerts(await probe.alerts())
    results = await probe.rows(count_results, count_results.c.id)
    clean = [r for r in results if r["event_id"] != count["event_id"]]
    assert {(r["item"], r["expected"], r["counted"]) for r in clean} == {
        (GTIN_A, 4, 4),
        (GTIN_B, 13, 13),
    }
    assert await probe.count(schema.ledger) == len(await probe.ledger())


async def test_a_location_counted_empty_loses_everything_there(
    ingestor: Ingestor, batches: Batches, probe: Probe, store: Store
) -> None:
    await receive(ingestor, batches, sgtin(1), minutes=0)
    await send(
        ingestor, batches, batches.event(gtin=GTIN_B, qty=4, read_point="wh1.scanner", at=at(1))
    )
    await send(
        ingestor,
        batches,
        step(
            batches,
            "cycle_counting",
            biz_location="wh1.receiving",
            read_point="wh1.scanner",
            minutes=5,
            quantities=[],
        ),
    )
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 0, (GTIN_B, "wh1.receiving"): 0}
    assert (await probe.units())[sgtin(1)]["status"] == "missing"
    # Seen again on a shelf: back in stock there.
    await send(ingestor, batches, step(batches, "arriving", epc=sgtin(1), minutes=6))
    assert (await probe.units())[sgtin(1)]["location_id"] == "wh1.aisle.a"
    assert await check_ledger(store) == []


async def test_a_unit_seen_after_shipping_or_too_fast_elsewhere_raises_alerts(
    store: Store, batches: Batches, probe: Probe, database_url: str
) -> None:
    settings = make_settings(
        database_url,
        read_points=READ_POINTS,
        operations={"min_travel_s": 900, "travel": [{"sites": ["wh1", "wh3"], "min_s": 60}]},
    )
    ingestor = Ingestor(store, settings, RecordingPublisher(), Metrics())
    wh2 = Batches(site="wh2", gateway="gw2")
    await receive(ingestor, batches, sgtin(1), sgtin(2), minutes=0)
    await send(ingestor, batches, batches.event(epc=sgtin(1), direction="out", at=at(1)))
    # A portal read with no direction two minutes after the shipment.
    await send(ingestor, batches, batches.event(epc=sgtin(1), direction=None, at=at(3)))
    await send(
        ingestor,
        wh2,
        wh2.event(epc=sgtin(2), read_point="wh2.dock.1", at=at(10)),  # 10 min < 15 min
    )
    alerts = await probe.alerts()
    assert open_alerts(alerts) >= {
        ("unit_seen_after_shipped", sgtin(1)),
        ("impossible_movement", sgtin(2)),
    }
    [hop] = [a for a in alerts if a["kind"] == "impossible_movement"]
    assert (hop["evidence"]["from_site"], hop["evidence"]["to_site"]) == ("wh1", "wh2")
    assert hop["evidence"]["min_travel_s"] == 900
    units = await probe.units()
    assert (units[sgtin(2)]["site"], units[sgtin(2)]["location_id"]) == ("wh2", "wh2.receiving")
    assert (units[sgtin(1)]["status"], units[sgtin(1)]["site"]) == ("shipped", "wh1")
