"""Pallets (SSCC): an event of a pallet moves what it holds, once; an unknown one is held.

Through ``Ingestor`` and the API into a real SQLite file and PostgreSQL: contents recorded
with ``POST /api/v1/aggregations``, pallets through a dock door and scanned by a handheld
(receive into a bin, move, pick), a pallet nobody recorded (``unknown_pallet``, held, then
released by recording its contents), a refused pallet, an undirected pallet pass resolved.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from server_helpers import (
    GTIN_A,
    GTIN_B,
    OPERATOR_KEY,
    VIEWER_KEY,
    Batches,
    Probe,
    RecordingPublisher,
    bearer,
    make_settings,
    sgtin,
)

from server.api.factory import create_app
from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor
from server.store.check import check_ledger
from server.store.database import Store
from server.store.schema.pallets import pallet_holds
from wire.barcodes import parse_barcode
from wire.gs1 import digital_link, sscc_label

SSCC = "106141412345678908"
SSCC_EPC = "urn:epc:id:sscc:0614141.1234567890"
OTHER_SSCC = "006141410000000012"
OTHER_EPC = "urn:epc:id:sscc:0614141.0000000001"
GTIN_C = "09506000134352"
READ_POINTS: list[dict[str, Any]] = [
    {"id": "wh1.dock.1", "inbound_location": "wh1.receiving", "outbound": "ship"},
    {"id": "wh1.handheld.1", "inbound_location": "wh1.receiving", "outbound": "ship"},
    {"id": "wh2.handheld.1", "inbound_location": "wh2.receiving", "site": "wh2"},
]


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return make_settings(
        database_url,
        read_points=READ_POINTS,
        operations={"negative_stock_sites": {"wh2": "refuse"}},
    )


@pytest.fixture
async def client(store: Store, settings: ServerSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, settings)
    await app.state.read_points.seed()  # as the server does at start
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockgate.test") as http:
        yield http


async def record(client: httpx.AsyncClient, parent: str, **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/aggregations", json={"parent": parent, **body}, headers=bearer(OPERATOR_KEY)
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def send(ingestor: Ingestor, batches: Batches, *events: dict[str, Any]) -> bytes:
    payload = batches.payload(list(events))
    result = await ingestor.handle(batches.topic, payload)
    assert result.outcome == "applied", result.reason
    return payload


def scan(batches: Batches, step: str, direction: str | None, **fields: Any) -> dict[str, Any]:
    """A handheld's pallet scan (what ``edge.scanning`` sends for an SSCC label)."""
    event = batches.event(epc=SSCC_EPC, direction=direction, read_point="wh1.handheld.1")
    return event | {"biz_step": step, "source": "serial", **fields}


async def test_a_pallet_through_the_door_moves_its_contents_once(
    ingestor: Ingestor, batches: Batches, probe: Probe, store: Store, client: httpx.AsyncClient
) -> None:
    recorded = await record(
        client,
        SSCC,
        children=[sgtin(1), sgtin(2), sgtin(1)],
        quantities=[{"gtin": GTIN_C, "lot": "L1", "qty": 12}],
    )
    assert recorded["aggregation"]["sscc"] == SSCC
    assert recorded["aggregation"]["epc"] == SSCC_EPC
    assert recorded["aggregation"]["children"] == [sgtin(1), sgtin(2)]
    assert recorded["released"] == []

    inbound = batches.event(epc=SSCC_EPC, direction="in")
    payload = await send(ingestor, batches, inbound)
    again = await ingestor.handle(batches.topic, payload)
    assert (again.outcome, again.duplicates) == ("duplicate", 1)
    assert await probe.balances() == {
        (GTIN_A, "wh1.receiving"): 2,
        (GTIN_C, "wh1.receiving"): 12,
    }
    units = await probe.units()
    assert {epc: (u["status"], u["location_id"]) for epc, u in units.items()} == {
        sgtin(1): ("in_stock", "wh1.receiving"),
        sgtin(2): ("in_stock", "wh1.receiving"),
    }
    ledger = await probe.ledger()
    assert {row["event_id"] for row in ledger} == {inbound["event_id"]}
    assert sorted((row["epc"] or "", row["quantity"]) for row in ledger) == [
        ("", 12),
        (sgtin(1), 1),
        (sgtin(2), 1),
    ]

    await send(ingestor, batches, batches.event(epc=SSCC_EPC, direction="out"))
    assert all(on_hand == 0 for on_hand in (await probe.balances()).values())
    assert {u["status"] for u in (await probe.units()).values()} == {"shipped"}
    assert await check_ledger(store) == []
    kinds = {(a["kind"], a["subject"]) for a in await probe.alerts()}
    assert ("unidentified_epc", "epc:sscc") not in kinds
    assert "epc:sscc" not in await probe.items()


async def test_a_handheld_receives_moves_and_picks_a_pallet(
    ingestor: Ingestor, batches: Batches, probe: Probe, client: httpx.AsyncClient
) -> None:
    await record(
        client, SSCC_EPC, quantities=[{"gtin": GTIN_C, "qty": 10}, {"gtin": GTIN_B, "qty": 4}]
    )
    await send(ingestor, batches, scan(batches, "receiving", "in", biz_location="wh1.a01.b01"))
    assert await probe.balances() == {(GTIN_C, "wh1.a01.b01"): 10, (GTIN_B, "wh1.a01.b01"): 4}
    move = scan(batches, "storing", None, source_location="wh1.a01.b01", biz_location="wh1.a02.b01")
    await send(ingestor, batches, move)
    pick = scan(batches, "picking", "out", biz_location="wh1.a02.b01")
    await send(ingestor, batches, pick)
    balances = await probe.balances()
    assert {key: value for key, value in balances.items() if value} == {
        (GTIN_C, "wh1.staging"): 10,
        (GTIN_B, "wh1.staging"): 4,
    }


async def test_an_unknown_pallet_is_held_until_its_contents_are_recorded(
    ingestor: Ingestor,
    batches: Batches,
    probe: Probe,
    client: httpx.AsyncClient,
    publisher: RecordingPublisher,
) -> None:
    inbound = batches.event(epc=SSCC_EPC, direction="in")
    await send(ingestor, batches, inbound)
    assert await probe.ledger() == []
    [alert] = [a for a in await probe.alerts() if a["kind"] == "unknown_pallet"]
    assert (alert["subject"], alert["closed_at"]) == (SSCC, None)
    assert alert["evidence"]["event_id"] == inbound["event_id"]
    assert alert["evidence"]["read_point"] == "wh1.dock.1"
    [held] = await probe.rows(pallet_holds)
    assert (held["sscc"], held["event_id"], held["gateway"]) == (
        SSCC,
        inbound["event_id"],
        "gw1",
    )
    response = await client.get(f"/api/v1/aggregations/{SSCC}", headers=bearer(VIEWER_KEY))
    assert response.status_code == 404

    # The contents come, named by the pallet's Digital Link: the held pass applies now.
    result = await record(client, digital_link(sscc_label(SSCC)), children=[sgtin(7)])
    assert result["released"] == [inbound["event_id"]]
    assert (result["still_held"], result["movements"]) == ([], 1)
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 1}
    [row] = await probe.ledger()
    assert (row["epc"], row["actor"], row["event_id"]) == (sgtin(7), "gw1", inbound["event_id"])
    assert await probe.count(pallet_holds) == 0
    [alert] = [a for a in await probe.alerts() if a["kind"] == "unknown_pallet"]
    assert alert["closed_at"] is not None
    # Recorded again: nothing held any more, nothing moves twice.
    again = await record(client, SSCC, children=[sgtin(7)])
    assert (again["released"], again["movements"]) == ([], 0)
    assert len(await probe.ledger()) == 1
    # A re-sent pass stays a duplicate.
    result_again = await ingestor.handle(batches.topic, batches.payload([inbound]))
    assert result_again.outcome == "duplicate"


async def test_a_pallet_short_at_a_refusing_site_is_refused_whole(
    ingestor: Ingestor,
    batches: Batches,
    probe: Probe,
    client: httpx.AsyncClient,
    publisher: RecordingPublisher,
) -> None:
    await record(client, OTHER_SSCC, quantities=[{"gtin": GTIN_C, "qty": 3}])
    site2 = Batches(site="wh2", gateway="gw2")
    pick = site2.event(epc=OTHER_EPC, direction="out", read_point="wh2.handheld.1")
    pick |= {"biz_step": "picking", "biz_location": "wh2.a01", "source": "serial"}
    result = await ingestor.handle(site2.topic, site2.payload([pick]))
    assert (result.outcome, result.dead_letters) == ("applied", 1)
    assert await probe.ledger() == []
    [letter] = await probe.dead_letters()
    assert letter["kind"] == "negative_stock"
    assert json.loads(letter["payload"])["epc"] == OTHER_EPC
    [ack] = publisher.on(site2.ack_topic)
    assert [refused["event_id"] for refused in ack["refused"]] == [pick["event_id"]]


async def test_an_undirected_pallet_pass_is_resolved_into_its_contents(
    ingestor: Ingestor, batches: Batches, probe: Probe, client: httpx.AsyncClient
) -> None:
    await record(client, SSCC, children=[sgtin(1), sgtin(2)])
    undirected = batches.event(epc=SSCC_EPC, direction=None)
    undirected["reads"] = {
        "count": 4,
        "antennas": [1],
        "first_seen": undirected["event_time"],
        "last_seen": undirected["event_time"],
        "outside_count": 4,
        "inside_count": 0,
        "reason": "one_side",
    }
    await send(ingestor, batches, undirected)
    assert await probe.ledger() == []
    listed = await client.get("/api/v1/unresolved-passes", headers=bearer(VIEWER_KEY))
    [item] = listed.json()["items"]
    assert item["epc"] == SSCC_EPC
    response = await client.post(
        f"/api/v1/unresolved-passes/{item['id']}/resolve",
        json={"direction": "in"},
        headers=bearer(OPERATOR_KEY),
    )
    assert response.status_code == 200, response.text
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 2}


async def test_aggregations_are_listed_filtered_and_removed(client: httpx.AsyncClient) -> None:
    await record(client, SSCC, children=[sgtin(1)], quantities=[{"gtin": GTIN_C, "qty": 2}])
    await record(client, f"(00){OTHER_SSCC}", children=[sgtin(5, "112345")])
    viewer = bearer(VIEWER_KEY)

    async def ssccs(**params: Any) -> list[str]:
        response = await client.get("/api/v1/aggregations", params=params, headers=viewer)
        assert response.status_code == 200, response.text
        return [item["sscc"] for item in response.json()["items"]]

    assert await ssccs() == [OTHER_SSCC, SSCC]
    assert await ssccs(child=sgtin(1)) == [SSCC]
    assert await ssccs(gtin=GTIN_B) == [OTHER_SSCC]
    assert await ssccs(gtin=GTIN_C) == [SSCC]
    assert await ssccs(sscc=OTHER_EPC) == [OTHER_SSCC]
    first = await client.get("/api/v1/aggregations", params={"limit": 1}, headers=viewer)
    cursor = first.json()["next_cursor"]
    assert cursor == OTHER_SSCC
    assert await ssccs(cursor=cursor) == [SSCC]
    # Replacing: the contents are what the last recording says.
    await record(client, SSCC, children=[sgtin(3)])
    one = (await client.get(f"/api/v1/aggregations/{SSCC}", headers=viewer)).json()
    assert (one["children"], one["quantities"], one["actor"]) == ([sgtin(3)], [], "olga")

    operator = bearer(OPERATOR_KEY)
    assert (
        await client.delete(f"/api/v1/aggregations/{SSCC}", headers=operator)
    ).status_code == 204
    assert (
        await client.delete(f"/api/v1/aggregations/{SSCC}", headers=operator)
    ).status_code == 404
    assert await ssccs() == [OTHER_SSCC]


@pytest.mark.parametrize(
    ("body", "wanted"),
    [
        ({"parent": "106141412345678900", "children": [sgtin(1)]}, "check digit"),
        ({"parent": "0109506000134352", "children": [sgtin(1)]}, "not an SSCC"),
        ({"parent": SSCC, "children": [OTHER_EPC]}, "inside a pallet"),
        ({"parent": SSCC, "children": ["epc:nope"]}, "children"),
        ({"parent": SSCC}, "holds something"),
        ({"parent": SSCC, "quantities": [{"gtin": "09506000134353", "qty": 1}]}, "check digit"),
        (
            {
                "parent": SSCC,
                "quantities": [{"gtin": GTIN_C, "qty": 1}, {"gtin": GTIN_C, "qty": 2}],
            },
            "listed twice",
        ),
        ({"parent": SSCC, "quantities": [{"gtin": GTIN_C, "qty": 0}]}, "qty"),
    ],
)
async def test_bad_aggregations_are_refused_with_the_reason(
    client: httpx.AsyncClient, body: dict[str, Any], wanted: str
) -> None:
    response = await client.post("/api/v1/aggregations", json=body, headers=bearer(OPERATOR_KEY))
    assert response.status_code == 422, response.text
    assert wanted in response.text


async def test_viewers_may_not_record_aggregations(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/aggregations",
        json={"parent": SSCC, "children": [sgtin(1)]},
        headers=bearer(VIEWER_KEY),
    )
    assert response.status_code == 403


def test_pallet_labels_and_links_name_the_same_pallet() -> None:
    for text in (
        f"]C1{sscc_label(SSCC)}",
        f"]Q1{digital_link(sscc_label(SSCC))}",
        f"]Q1https://brand.example/00/{SSCC}",
    ):
        pallet = parse_barcode(text)
        assert (getattr(pallet, "sscc", None), getattr(pallet, "epc", None)) == (SSCC, SSCC_EPC)


def aggregation_event(event_id: str, action: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "AggregationEvent",
        "eventID": event_id,
        "eventTime": "2024-11-25T07:00:00.000Z",
        "eventTimeZoneOffset": "+00:00",
        "parentID": SSCC_EPC,
        "action": action,
        "bizStep": "packing",
        **fields,
    }


async def capture(client: httpx.AsyncClient, *events: dict[str, Any]) -> dict[str, Any]:
    document = {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2024-11-25T07:00:00.000Z",
        "epcisBody": {"eventList": list(events)},
    }
    response = await client.post(
        "/api/v1/epcis/capture",
        content=json.dumps(document).encode(),
        headers=bearer(OPERATOR_KEY) | {"Content-Type": "application/ld+json"},
    )
    assert response.status_code == 201, response.text
    summary: dict[str, Any] = response.json()
    return summary


async def test_a_partners_aggregation_events_fill_and_empty_a_pallet(
    ingestor: Ingestor, batches: Batches, probe: Probe, client: httpx.AsyncClient
) -> None:
    # The pallet comes through the door before the partner's packing event: held.
    inbound = batches.event(epc=SSCC_EPC, direction="in")
    await send(ingestor, batches, inbound)
    assert await probe.ledger() == []

    summary = await capture(
        client,
        aggregation_event(
            "ni:///packed-1",
            "ADD",
            childEPCs=[sgtin(1), sgtin(2)],
            childQuantityList=[
                {"epcClass": "urn:epc:class:lgtin:0614141.812345.L%2F7", "quantity": 6},
                {"epcClass": f"https://id.gs1.org/01/{GTIN_C}", "quantity": 2},
                {"epcClass": "urn:epc:idpat:sgtin:0614141.112345.*", "quantity": 0},
            ],
        ),
        aggregation_event("ni:///no-parent", "ADD", parentID=None, childEPCs=[sgtin(3)]),
    )
    # One bad quantity line: that whole event is reported, nothing of it recorded.
    assert (summary["aggregations"], summary["pallets"]) == (0, [])
    assert [s["reason"][:22] for s in summary["skipped"]] == [
        "childQuantityList[2]: ",
        "an AggregationEvent wi",
    ]
    summary = await capture(
        client,
        aggregation_event(
            "ni:///packed-2",
            "ADD",
            childEPCs=[sgtin(1), sgtin(2)],
            childQuantityList=[
                {"epcClass": "urn:epc:class:lgtin:0614141.812345.L%2F7", "quantity": 6},
                {"epcClass": f"https://id.gs1.org/01/{GTIN_C}", "quantity": 2},
            ],
        ),
    )
    assert (summary["aggregations"], summary["pallets"]) == (1, [SSCC])
    # The held pass applied with the contents.
    assert await probe.balances() == {
        (GTIN_A, "wh1.receiving"): 8,
        (GTIN_C, "wh1.receiving"): 2,
    }
    view = (await client.get(f"/api/v1/aggregations/{SSCC}", headers=bearer(VIEWER_KEY))).json()
    assert (view["source"], view["event_id"]) == ("epcis", "ni:///packed-2")
    assert {(q["gtin"], q["lot"], q["qty"]) for q in view["quantities"]} == {
        (GTIN_A, "L/7", 6),
        (GTIN_C, None, 2),
    }
    # Unpacked: one unit off, then everything.
    await capture(client, aggregation_event("ni:///unpacked-1", "DELETE", childEPCs=[sgtin(1)]))
    view = (await client.get(f"/api/v1/aggregations/{SSCC}", headers=bearer(VIEWER_KEY))).json()
    assert view["children"] == [sgtin(2)]
    await capture(client, aggregation_event("ni:///unpacked-2", "DELETE"))
    response = await client.get(f"/api/v1/aggregations/{SSCC}", headers=bearer(VIEWER_KEY))
    assert response.status_code == 404


async def test_emptying_a_pallet_releases_none_of_its_held_events(
    ingestor: Ingestor, batches: Batches, probe: Probe, client: httpx.AsyncClient
) -> None:
    inbound = batches.event(epc=SSCC_EPC, direction="in")
    await send(ingestor, batches, inbound)
    summary = await capture(client, aggregation_event("ni:///emptied", "DELETE"))
    assert summary["pallets"] == [SSCC]
    assert await probe.count(pallet_holds) == 1
    assert await probe.ledger() == []
    [alert] = [a for a in await probe.alerts() if a["kind"] == "unknown_pallet"]
    assert alert["closed_at"] is None
    await capture(client, aggregation_event("ni:///filled", "ADD", childEPCs=[sgtin(3)]))
    assert await probe.count(pallet_holds) == 0
    assert await probe.balances() == {(GTIN_A, "wh1.receiving"): 1}
