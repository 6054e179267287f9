"""The wire Event's identities: one EPC, one quantity, or a cycle count's quantities."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from wire.models import MAX_COUNT_LINES, Event, EventBatch, Quantity

GTIN = "09506000016924"
WHEN = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WHEN_JSON = "2026-11-25T12:00:00Z"
QTY = {"gtin": GTIN, "qty": 1}


def event(**fields: Any) -> Event:
    values: dict[str, Any] = {
        "event_id": "gw-1:00ff00ff:1",
        "event_time": WHEN,
        "biz_step": "receiving",
        "read_point": "wh1.aisle.3",
        "source": "serial",
    }
    values.update(fields)
    return Event(**values)


def count(**fields: Any) -> Event:
    values: dict[str, Any] = {
        "biz_step": "cycle_counting",
        "biz_location": "wh1.aisle.3.bin.2",
        "quantities": [{"gtin": GTIN, "qty": 4}, {"gtin": GTIN, "lot": "L7", "qty": 2}],
    }
    values.update(fields)
    return event(**values)


def test_a_count_lists_its_quantities_and_survives_json() -> None:
    counted = count()
    assert counted.quantities is not None
    assert [(q.lot, q.qty) for q in counted.quantities] == [(None, 4), ("L7", 2)]
    again = Event.model_validate_json(counted.model_dump_json())
    assert again == counted


def test_an_empty_count_says_the_location_was_empty() -> None:
    assert count(quantities=[]).quantities == []


def test_quantity_carries_an_expiry_date() -> None:
    scanned = event(quantity={"gtin": GTIN, "lot": "L1", "expiry": "2027-05-31", "qty": 3})
    assert scanned.quantity == Quantity(gtin=GTIN, lot="L1", expiry=date(2027, 5, 31), qty=3)
    assert '"expiry":"2027-05-31"' in scanned.model_dump_json()


def test_existing_identities_still_validate() -> None:
    assert event(quantity={"gtin": GTIN}).quantity is not None
    tagged = event(epc="urn:epc:id:sgtin:0614141.107346.1", source="llrp", direction="in")
    assert tagged.epc is not None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "exactly one of epc and quantity"),
        (
            {"epc": "urn:epc:id:sgtin:0614141.107346.1", "quantity": {"gtin": GTIN}},
            "exactly one of epc and quantity",
        ),
        (
            {
                "biz_step": "cycle_counting",
                "biz_location": "wh1.a",
                "quantity": {"gtin": GTIN},
                "quantities": [],
            },
            "exactly one of epc and quantity",
        ),
        ({"quantities": [{"gtin": GTIN}], "biz_location": "wh1.a"}, "belong to a count"),
        (
            {
                "biz_step": "cycle_counting",
                "biz_location": "wh1.a",
                "quantities": [],
                "direction": "in",
            },
            "belong to a count",
        ),
        (
            {
                "biz_step": "cycle_counting",
                "biz_location": "wh1.a",
                "quantities": [],
                "action": "ADD",
            },
            "belong to a count",
        ),
        ({"biz_step": "cycle_counting", "quantities": []}, "names the location"),
        (
            {
                "biz_step": "cycle_counting",
                "biz_location": "wh1.a",
                "quantities": [{"gtin": GTIN}] * (MAX_COUNT_LINES + 1),
            },
            "at most 1000",
        ),
        ({"quantity": {"gtin": GTIN, "expiry": "2027-02-30"}}, "expiry"),
    ],
)
def test_invalid_identities_are_refused_with_a_reason(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        event(**fields)


def test_a_batch_carries_counts_beside_other_events() -> None:
    batch = EventBatch(
        batch_id="b-1",
        site="wh1",
        gateway="gw-1",
        epoch="00ff00ff",
        seq_first=1,
        seq_last=2,
        sent_at=WHEN,
        events=[count(), event(event_id="gw-1:00ff00ff:2", quantity={"gtin": GTIN})],
    )
    again = EventBatch.model_validate_json(batch.model_dump_json())
    assert again.events[0].biz_step == "cycle_counting"


def _at(event_time: str) -> str:
    """An event's JSON with ``event_time`` as given."""
    text = event(quantity={"gtin": GTIN, "qty": 1}).model_dump_json()
    assert text.count(f'"{WHEN_JSON}"') == 1
    return text.replace(f'"{WHEN_JSON}"', f'"{event_time}"')


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-11-25T12:00:00.123Z", datetime(2026, 11, 25, 12, 0, 0, 123000, tzinfo=UTC)),
        ("2026-11-25T12:00:00.123456Z", datetime(2026, 11, 25, 12, 0, 0, 123000, tzinfo=UTC)),
        ("2026-11-25T14:00:00.123999+02:00", datetime(2026, 11, 25, 12, 0, 0, 123000, tzinfo=UTC)),
        ("2026-11-25T07:30:00-04:30", datetime(2026, 11, 25, 12, 0, tzinfo=UTC)),
        ("2026-11-25T12:00:00+00:00", datetime(2026, 11, 25, 12, 0, tzinfo=UTC)),
    ],
)
def test_event_times_come_out_in_utc_at_milliseconds(given: str, expected: datetime) -> None:
    parsed = Event.model_validate_json(_at(given))
    assert parsed.event_time == expected
    assert parsed.event_time.utcoffset() == expected.utcoffset()
    assert parsed.event_time.microsecond == expected.microsecond
    # Serialized as the same instant given in UTC is, whatever offset it came with.
    given_in_utc = event(event_time=expected, quantity={"gtin": GTIN, "qty": 1})
    assert parsed.model_dump_json() == given_in_utc.model_dump_json()


def test_a_zone_at_utc_in_winter_still_converts_in_summer() -> None:
    # _utc remembers a fixed-offset tzinfo found to be UTC; London's is UTC only in winter,
    # so a winter time in it must not make a summer time skip its conversion.
    london = ZoneInfo("Europe/London")
    winter = event(event_time=datetime(2026, 1, 5, 12, 0, tzinfo=london), quantity=QTY)
    summer = event(event_time=datetime(2026, 7, 5, 13, 0, tzinfo=london), quantity=QTY)
    parsed = Event.model_validate_json(_at("2026-07-05T13:00:00+01:00"))
    after = event(event_time=datetime(2026, 7, 5, 13, 0, tzinfo=london), quantity=QTY)
    assert winter.event_time == datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    for summer_time in (summer.event_time, parsed.event_time, after.event_time):
        assert summer_time == datetime(2026, 7, 5, 12, 0, tzinfo=UTC)
        assert summer_time.utcoffset() == timedelta(0)


@pytest.mark.parametrize("given", ["2026-11-25T12:00:00", "2026-11-25T12:00:00.5"])
def test_an_event_time_without_an_offset_is_refused(given: str) -> None:
    with pytest.raises(ValidationError, match="timestamp must carry a UTC offset"):
        Event.model_validate_json(_at(given))
