"""Movement points as line protocol: the same text influxdb-client's ``Point`` writes.

``server.history.influx.movement_lines`` writes each series' measurement and tags once
through ``Point`` and the fields of each row itself; here every line is compared with a
``Point`` built for that side of that row alone, including values that line protocol must
escape (spaces, commas, equals signs, quotes and backslashes). The round trip through a
real time-series database is ``test_server_history_influx``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from influxdb_client import Point, WritePrecision

from server.history.follow import LedgerRow
from server.history.influx import MOVEMENT, SAME_MICROSECOND_SLOTS, movement_lines
from server.store.sites import site_of

MOMENT = datetime(2024, 11, 25, 8, 0, 40, 41000, tzinfo=UTC)


def _row(number: int, **changes: object) -> LedgerRow:
    values: dict[str, object] = {
        "id": number,
        "event_time": MOMENT,
        "item_id": 7,
        "sku": "SKU-1",
        "epc": "urn:epc:id:sgtin:0614141.100001.1",
        "event_id": f"gw-dock-1:ab12cd34:{number}",
        "from_location": None,
        "to_location": "wh1.receiving",
        "quantity": 1,
        "kind": "receipt",
        "read_point": "wh1.dock.1",
        "actor": "gw-dock-1",
    }
    values.update(changes)
    return LedgerRow(**values)  # type: ignore[arg-type]


def _point_lines(row: LedgerRow) -> list[str]:
    """The row's points as one ``Point`` each writes them."""
    lines = []
    for location, side in ((row.from_location, "out"), (row.to_location, "in")):
        if location is None:
            continue
        point = (
            Point(MOVEMENT)
            .tag("site", site_of(location))
            .tag("location", location)
            .tag("side", side)
            .tag("kind", row.kind)
            .tag("sku", row.sku)
            .field("quantity", row.quantity)
            .field("ledger_id", row.id)
            .time(
                int((row.event_time - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
                * 1_000_000_000
                + row.event_time.microsecond * 1000
                + row.id % SAME_MICROSECOND_SLOTS,
                WritePrecision.NS,
            )
        )
        if row.read_point:
            point.tag("read_point", row.read_point)
        if row.epc is not None:
            point.field("epc", row.epc)
        if row.event_id is not None:
            point.field("event_id", row.event_id)
        lines.append(point.to_line_protocol())
    return lines


ROWS = [
    _row(1),
    _row(2, from_location="wh1.receiving", to_location="wh1.a.01", kind="move"),
    _row(3, from_location="wh1.a.01", to_location=None, kind="shipment", quantity=4),
    _row(1001, epc=None, event_id=None, read_point=None, quantity=12),
    _row(5, read_point="", sku="with space, comma=equals"),
    _row(6, to_location="wh1.dock door,1=in\\", kind="receipt"),
    _row(7, event_id='quoted "id" and back\\slash', epc='urn:epc:"x"\\'),
    _row(8, sku="ends in backslash\\"),
    _row(9, event_time=MOMENT.astimezone(timezone(timedelta(hours=-5)))),  # the same instant
]


@pytest.mark.parametrize("row", ROWS, ids=[str(row.id) for row in ROWS])
def test_each_line_is_what_the_clients_point_writes(row: LedgerRow) -> None:
    assert movement_lines([row]) == _point_lines(row)


def test_a_step_of_rows_gives_every_side_of_every_row_in_order() -> None:
    lines = movement_lines(ROWS)

    assert lines == [line for row in ROWS for line in _point_lines(row)]
    assert len(lines) == sum(
        (r.from_location is not None) + (r.to_location is not None) for r in ROWS
    )
