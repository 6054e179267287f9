"""The stock rules as pure functions: events and state in, effects out (no database)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from server_helpers import BASE_TIME, GTIN_A, sgtin

from server.config.settings import ReadPointSettings
from server.rules import STOCK_RULES, Plan, StockState, UnitState, plan, rule_for
from server.rules.items import epc_scheme, identify
from server.rules.stock import plan_in_steps
from wire.models import Event

READ_POINTS = {
    "wh1.dock.1": ReadPointSettings(id="wh1.dock.1", inbound_location="wh1.receiving"),
    "wh1.gate": ReadPointSettings(id="wh1.gate", inbound_location="wh1.yard", outbound="ignore"),
}
EMPTY = StockState(units={}, known_items=frozenset({GTIN_A}))


def event(
    n: int,
    *,
    epc: str | None = None,
    gtin: str | None = None,
    direction: str | None = "in",
    read_point: str = "wh1.dock.1",
    minutes: int = 0,
) -> Event:
    data: dict[str, object] = {
        "event_id": f"gw1:0a1b2c3d:{n}",
        "event_time": (BASE_TIME + timedelta(minutes=minutes)).isoformat(),
        "biz_step": "receiving",
        "read_point": read_point,
        "direction": direction,
        "source": "llrp",
    }
    if epc is not None:
        data["epc"] = epc
    if gtin is not None:
        data["quantity"] = {"gtin": gtin, "qty": 3}
    return Event.model_validate(data)


def in_stock(epc: str, location: str, minutes: int, n: int = 0) -> UnitState:
    return UnitState(
        epc=epc,
        item=GTIN_A,
        location=location,
        status="in_stock",
        last_event_time=BASE_TIME + timedelta(minutes=minutes),
        last_event_id=f"gw1:0a1b2c3d:{n}",
    )


def test_rule_table_has_one_rule_per_key() -> None:
    keys = [(rule.identity, rule.direction, rule.outbound) for rule in STOCK_RULES]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"epc": sgtin(1)}, "receive-unit"),
        ({"epc": sgtin(1), "direction": "out"}, "ship-unit"),
        ({"gtin": GTIN_A}, "receive-quantity"),
        ({"gtin": GTIN_A, "direction": "out"}, "ship-quantity"),
        ({"epc": sgtin(1), "direction": None}, None),
        ({"epc": sgtin(1), "direction": "out", "read_point": "wh1.gate"}, None),
        ({"epc": sgtin(1), "direction": "in", "read_point": "wh1.gate"}, "receive-unit"),
    ],
)
def test_rule_for_picks_by_identity_direction_and_outbound(
    kwargs: dict[str, object], expected: str | None
) -> None:
    ev = event(1, **kwargs)  # type: ignore[arg-type]
    rule = rule_for(ev, READ_POINTS[ev.read_point])
    assert (rule.name if rule else None) == expected


def test_inbound_pass_receives_into_the_inbound_location() -> None:
    result = plan([event(1, epc=sgtin(1))], EMPTY, READ_POINTS)
    [movement] = result.movements
    assert (movement.kind, movement.from_location, movement.to_location, movement.quantity) == (
        "receipt",
        None,
        "wh1.receiving",
        1,
    )
    assert result.units[sgtin(1)].status == "in_stock"
    assert result.alerts == []
    assert result.new_items == {}


def test_outbound_pass_ships_from_the_units_location() -> None:
    state = StockState(
        units={sgtin(1): in_stock(sgtin(1), "wh1.receiving.b", 0)}, known_items=frozenset({GTIN_A})
    )
    result = plan([event(2, epc=sgtin(1), direction="out", minutes=5)], state, READ_POINTS)
    [movement] = result.movements
    assert (movement.kind, movement.from_location, movement.to_location) == (
        "shipment",
        "wh1.receiving.b",
        None,
    )
    unit = result.units[sgtin(1)]
    assert (unit.status, unit.location) == ("shipped", None)
    assert result.alerts == []


def test_shipping_an_unknown_unit_ships_from_inbound_and_alerts() -> None:
    result = plan([event(1, epc=sgtin(1), direction="out")], EMPTY, READ_POINTS)
    [movement] = result.movements
    assert movement.from_location == "wh1.receiving"
    [alert] = result.alerts
    assert (alert.kind, alert.subject, alert.evidence["status"]) == (
        "unit_not_in_stock",
        sgtin(1),
        "never received",
    )


def test_late_event_writes_history_but_not_the_unit_state() -> None:
    state = StockState(
        units={sgtin(1): in_stock(sgtin(1), "wh1.receiving", 10, n=5)},
        known_items=frozenset({GTIN_A}),
    )
    result = plan([event(1, epc=sgtin(1), direction="out", minutes=3)], state, READ_POINTS)
    assert len(result.movements) == 1
    assert result.units == {}


def test_events_in_one_batch_apply_in_event_time_order() -> None:
    events = [
        event(2, epc=sgtin(1), direction="out", minutes=2),
        event(1, epc=sgtin(1), minutes=1),
    ]
    result = plan(events, EMPTY, READ_POINTS)
    assert [m.kind for m in result.movements] == ["receipt", "shipment"]
    assert result.units[sgtin(1)].status == "shipped"
    assert result.alerts == []


def test_unknown_gtin_is_created_once_with_one_alert() -> None:
    unknown = StockState(units={}, known_items=frozenset())
    result = plan([event(1, epc=sgtin(1)), event(2, epc=sgtin(2))], unknown, READ_POINTS)
    assert list(result.new_items) == [GTIN_A]
    assert result.new_items[GTIN_A].sku == GTIN_A
    assert [(a.kind, a.subject) for a in result.alerts] == [("unknown_item", GTIN_A)]
    assert len(result.movements) == 2


def test_barcode_quantities_have_no_units() -> None:
    result = plan(
        [event(1, gtin=GTIN_A), event(2, gtin=GTIN_A, direction="out", minutes=1)],
        EMPTY,
        READ_POINTS,
    )
    assert [(m.kind, m.quantity) for m in result.movements] == [("receipt", 3), ("shipment", 3)]
    assert result.units == {}


def test_no_direction_means_no_effect() -> None:
    result = plan(
        [event(1, epc=sgtin(1), direction=None)], StockState({}, frozenset()), READ_POINTS
    )
    assert (result.movements, result.units, result.new_items, result.alerts) == ([], {}, {}, [])


@pytest.mark.parametrize(
    ("urn", "scheme", "sku"),
    [
        ("urn:epc:id:sscc:0614141.1234567890", "sscc", "epc:sscc"),
        ("urn:epc:raw:96.x3034F4D2D8C0D4A000000001", "raw", "epc:raw"),
        ("urn:epc:id:grai:0614141.12345.400", "grai", "epc:grai"),
    ],
)
def test_epcs_without_gtin_get_a_scheme_item(urn: str, scheme: str, sku: str) -> None:
    assert epc_scheme(urn) == scheme
    key = identify(event(1, epc=urn))
    assert (key.gtin, key.sku, key.ref) == (None, sku, sku)


def test_sgtin_names_its_gtin() -> None:
    key = identify(event(1, epc=sgtin(1)))
    assert (key.gtin, key.ref) == (GTIN_A, GTIN_A)


def test_planning_in_steps_pauses_every_step_and_plans_the_same() -> None:
    # Ingest runs the steps on the event loop, letting the writer in between (planning.py).
    events = [event(n, epc=sgtin(n), minutes=n % 7) for n in range(10)]
    stepped = Plan()

    pauses = list(plan_in_steps(stepped, events, EMPTY, READ_POINTS, step=4))

    assert pauses == [4, 8]
    assert stepped == plan(events, EMPTY, READ_POINTS)
    assert [m.epc for m in stepped.movements] == [
        e.epc for e in sorted(events, key=lambda e: (e.event_time, e.event_id))
    ]
