"""EPCIS 2.0 out and in, on a real SQLite file and PostgreSQL: the ledger as an
EPCISQueryDocument (validated against GS1's official JSON Schema, no network), its query
parameters and pages, and capture of a supplier's shipping notice reconciled with the
portal's receipts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from jsonschema import Draft7Validator
from server_helpers import (
    ADMIN_KEY,
    BASE_TIME,
    GTIN_A,
    OPERATOR_KEY,
    VIEWER_KEY,
    Batches,
    bearer,
    make_settings,
    sgtin,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.alerts.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, verify_signature
from server.api.factory import create_app
from server.config.epcis import EpcisSettings, EpcisSubscriptionSettings
from server.config.settings import ServerSettings
from server.epcis.documents import LedgerEvent, event_hash, object_event, prehash_string
from server.epcis.subscriptions import EpcisSubscriptions
from server.ingest.consumer import Ingestor
from server.metrics import Metrics
from server.store.database import Store

DATA = Path(__file__).resolve().parents[1] / "data" / "epcis"
SCHEMA = json.loads((DATA / "EPCIS-JSON-Schema.json").read_text())
VALIDATOR = Draft7Validator(SCHEMA, format_checker=Draft7Validator.FORMAT_CHECKER)
EXAMPLE = (DATA / "Example_9.6.1-ObjectEvent.jsonld").read_bytes()
QUERY_EXAMPLE = (DATA / "EPCISQueryDocument.jsonld").read_bytes()
EXAMPLE_GTIN = "10614141073464"  # urn:epc:id:sgtin:0614141.107346.*
EXAMPLE_EPC = "urn:epc:id:sgtin:0614141.107346.{}"
DOCK_SGLN = "urn:epc:id:sgln:0614141.07346.1234"
RECEIVING_SGLN = "urn:epc:id:sgln:0614141.07346.0"
SUBSCRIPTION_SECRET = "a-subscription-secret-0123"
ADMIN, OPERATOR, VIEWER = bearer(ADMIN_KEY), bearer(OPERATOR_KEY), bearer(VIEWER_KEY)


def valid(document: dict[str, Any]) -> None:
    errors = sorted(VALIDATOR.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return make_settings(database_url, epcis={"max_capture_events": 50})


@pytest.fixture
async def client(
    store: Store, settings: ServerSettings, metrics: Metrics
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, settings, metrics)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockgate.test") as http:
        for body in (
            {"sku": "WIDGET", "gtin": GTIN_A, "name": "Widget"},
            {"sku": "EXAMPLE", "gtin": EXAMPLE_GTIN, "name": "GS1 example item"},
        ):
            response = await http.post("/api/v1/items", json=body, headers=ADMIN)
            assert response.status_code == 201, response.text
        for body in (
            {"id": "wh1"},
            {"id": "wh1.receiving", "sgln": RECEIVING_SGLN},
            {"id": "wh1.dock"},
            {"id": "wh1.dock.1", "sgln": DOCK_SGLN},
            {"id": "wh1.a"},
        ):
            response = await http.post("/api/v1/locations", json=body, headers=ADMIN)
            assert response.status_code == 201, response.text
        yield http


async def send(ingestor: Ingestor, batches: Batches, *events: dict[str, Any]) -> None:
    result = await ingestor.handle(batches.topic, batches.payload(list(events)))
    assert result.outcome == "applied", result.reason
    assert result.dead_letters == 0


async def events(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/epcis/events", params=params, headers=VIEWER)
    assert response.status_code == 200, response.text
    document = response.json()
    valid(document)
    found: list[dict[str, Any]] = document["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    return found


async def warehouse_day(client: httpx.AsyncClient, ingestor: Ingestor) -> None:
    """Portal receipts and a shipment, a barcode receipt, a move, a damaged and a stolen
    unit, a count correction, and a reversal."""
    batches = Batches()
    await send(
        ingestor,
        batches,
        batches.event(epc=sgtin(1)),
        batches.event(epc=sgtin(2)),
        batches.event(epc=sgtin(3)),
        batches.event(epc=sgtin(4)),
        batches.event(gtin=GTIN_A, qty=5, read_point="wh1.dock.1"),
        batches.event(epc=sgtin(1), direction="out"),
    )
    operations: list[tuple[str, dict[str, Any]]] = [
        ("transfers", {"epc": sgtin(2), "to_location": "wh1.a"}),
        ("adjustments", {"epc": sgtin(3), "reason": "damaged"}),
        ("adjustments", {"epc": sgtin(4), "reason": "stolen"}),
        (
            "adjustments",
            {"gtin": GTIN_A, "reason": "correction", "location": "wh1.receiving"}
            | {"quantity": -1, "note": "counted one short"},
        ),
    ]
    for path, body in operations:
        response = await client.post(f"/api/v1/{path}", json=body, headers=OPERATOR)
        assert response.status_code in (200, 201), response.text


async def test_the_ledger_reads_as_a_valid_epcis_query_document(
    client: httpx.AsyncClient, ingestor: Ingestor
) -> None:
    await warehouse_day(client, ingestor)
    found = await events(client)
    steps = [(e["bizStep"], e["disposition"]) for e in found]
    assert steps.count(("receiving", "in_progress")) == 5
    assert ("shipping", "in_transit") in steps
    assert ("inspecting", "damaged") in steps
    assert ("cycle_counting", "stolen") in steps
    assert ("storing", "sellable_accessible") in steps
    receipts = [e for e in found if e["bizStep"] == "receiving"]
    # Read point and business location from the location master's SGLNs.
    assert {e["readPoint"]["id"] for e in receipts} == {DOCK_SGLN}
    assert {e["bizLocation"]["id"] for e in receipts} == {RECEIVING_SGLN}
    moved = next(e for e in found if e["bizStep"] == "storing")
    assert moved["bizLocation"]["id"] == "urn:stockgate:loc:wh1.a"
    quantity = next(e for e in receipts if "quantityList" in e)
    assert quantity["quantityList"] == [
        {"epcClass": f"https://id.gs1.org/01/{GTIN_A}", "quantity": 5}
    ]
    ids = [e["eventID"] for e in found]
    assert len(set(ids)) == len(ids)
    assert all(
        event_hash({k: v for k, v in e.items() if k != "eventID"}) == e["eventID"] for e in found
    )
    times = [e["eventTime"] for e in found]
    assert times == sorted(times)


async def test_a_reversal_is_the_original_declared_in_error(
    client: httpx.AsyncClient, ingestor: Ingestor
) -> None:
    batches = Batches()
    await send(ingestor, batches, batches.event(gtin=GTIN_A, qty=2))
    movements = (await client.get("/api/v1/movements", headers=VIEWER)).json()["items"]
    response = await client.post(
        "/api/v1/reversals",
        json={"movement_id": movements[0]["id"], "note": "wrong item"},
        headers=OPERATOR,
    )
    assert response.status_code in (200, 201), response.text
    original, reversal = await events(client)
    assert "errorDeclaration" not in original
    assert reversal["errorDeclaration"]["reason"] == "incorrect_data"
    assert reversal["eventTime"] == original["eventTime"]
    assert reversal["quantityList"] == original["quantityList"]


async def test_query_parameters_filter_and_pages_cover_everything_once(
    client: httpx.AsyncClient, ingestor: Ingestor
) -> None:
    await warehouse_day(client, ingestor)
    everything = await events(client)
    receiving = await events(client, EQ_bizStep="receiving")
    assert receiving
    assert all(e["bizStep"] == "receiving" for e in receiving)
    assert len(receiving) == sum(e["bizStep"] == "receiving" for e in everything)
    uri_step = await events(client, EQ_bizStep="https://ref.gs1.org/cbv/BizStep-shipping")
    assert [e["bizStep"] for e in uri_step] == ["shipping"]
    one = await events(client, MATCH_epc=sgtin(1))
    assert [e["epcList"] for e in one] == [[sgtin(1)], [sgtin(1)]]
    several = await events(client, MATCH_epc=f"{sgtin(1)}|{sgtin(2)}")
    assert {epc for e in several for epc in e["epcList"]} == {sgtin(1), sgtin(2)}
    pattern = await events(client, MATCH_epc="urn:epc:idpat:sgtin:0614141.812345.*")
    assert len(pattern) == sum("epcList" in e for e in everything)
    at_receiving = await events(client, EQ_bizLocation=RECEIVING_SGLN)
    assert at_receiving
    assert all(e["bizLocation"]["id"] == RECEIVING_SGLN for e in at_receiving)
    at_a = await events(client, EQ_bizLocation="urn:stockgate:loc:wh1.a")
    assert [e["epcList"] for e in at_a] == [[sgtin(2)]]
    middle = everything[len(everything) // 2]["eventTime"]
    early = await events(client, LT_eventTime=middle)
    late = await events(client, GE_eventTime=middle)
    assert len(early) + len(late) == len(everything)
    paged: list[str] = []
    token: str | None = None
    for _ in range(len(everything) + 2):
        params: dict[str, Any] = {"perPage": 2} | ({"nextPageToken": token} if token else {})
        response = await client.get("/api/v1/epcis/events", params=params, headers=VIEWER)
        assert response.status_code == 200, response.text
        valid(response.json())
        paged.extend(
            e["eventID"]
            for e in response.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        )
        token = response.headers.get("GS1-Next-Page-Token")
        if token is None:
            break
        assert 'rel="next"' in response.headers["Link"]
    assert token is None
    assert paged == [e["eventID"] for e in everything]


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"EQ_bizStep": "teleporting"}, "EQ_bizStep"),
        ({"MATCH_epc": "not-an-epc"}, "MATCH_epc"),
        ({"EQ_bizLocation": "no uri"}, "EQ_bizLocation"),
        ({"nextPageToken": "garbage"}, "nextPageToken"),
        (
            {"GE_eventTime": "2024-01-02T00:00:00Z", "LT_eventTime": "2024-01-01T00:00:00Z"},
            "GE_eventTime",
        ),
    ],
)
async def test_bad_query_parameters_are_refused_by_name(
    client: httpx.AsyncClient, params: dict[str, str], names: str
) -> None:
    response = await client.get("/api/v1/epcis/events", params=params, headers=VIEWER)
    assert response.status_code == 400
    assert names in response.json()["detail"]


async def open_example_order(client: httpx.AsyncClient, number: str = "12345678") -> int:
    body = {
        "number": number,
        "location": "wh1.receiving",
        "partner": "ACME",
        "status": "open",
        "lines": [{"gtin": EXAMPLE_GTIN, "quantity": 3}],
    }
    response = await client.post("/api/v1/purchase-orders", json=body, headers=OPERATOR)
    assert response.status_code == 201, response.text
    order_id: int = response.json()["id"]
    return order_id


async def capture(client: httpx.AsyncClient, body: bytes, expected: int = 201) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/epcis/capture",
        content=body,
        headers=OPERATOR | {"Content-Type": "application/ld+json"},
    )
    assert response.status_code == expected, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_the_standards_examples_are_accepted_and_become_a_shipping_notice(
    client: httpx.AsyncClient, ingestor: Ingestor
) -> None:
    valid(json.loads(EXAMPLE))
    order_id = await open_example_order(client)
    first = await capture(client, EXAMPLE)
    assert (first["events"], first["notices"], first["units"]) == (2, 1, 2)
    assert first["orders"] == ["12345678"]
    assert [s["index"] for s in first["skipped"]] == [1]  # the receiving event
    again = await capture(client, EXAMPLE, expected=200)
    assert again["replayed"] is True
    assert again["capture_id"] == first["capture_id"]
    # The query example carries the same events: accepted, nothing added twice.
    query = await capture(client, QUERY_EXAMPLE)
    assert query["units"] == 0
    assert query["skipped_count"] == 2
    report = (await client.get(f"/api/v1/purchase-orders/{order_id}/asn", headers=VIEWER)).json()
    assert (report["listed"], report["received"], report["missing"]) == (2, 0, 2)

    # The portal receives one listed unit and one the notice did not list.
    batches = Batches()
    await send(
        ingestor,
        batches,
        batches.event(epc=EXAMPLE_EPC.format(2018)),
        batches.event(epc=EXAMPLE_EPC.format(2099)),
    )
    report = (await client.get(f"/api/v1/purchase-orders/{order_id}/asn", headers=VIEWER)).json()
    assert (report["received"], report["missing"]) == (1, 1)
    assert report["missing_epcs"] == [EXAMPLE_EPC.format(2017)]
    alerts = (await client.get("/api/v1/alerts", headers=VIEWER)).json()["items"]
    unexpected = [a for a in alerts if a["kind"] == "asn_unexpected_units"]
    assert len(unexpected) == 1
    assert unexpected[0]["evidence"]["epcs"] == [EXAMPLE_EPC.format(2099)]

    closed = await client.post(
        f"/api/v1/purchase-orders/{order_id}/status", json={"status": "closed"}, headers=OPERATOR
    )
    assert closed.status_code == 200, closed.text
    alerts = (await client.get("/api/v1/alerts", headers=VIEWER)).json()["items"]
    missing = [a for a in alerts if a["kind"] == "asn_missing_units"]
    assert len(missing) == 1
    assert missing[0]["subject"] == "12345678"
    assert missing[0]["evidence"]["epcs"] == [EXAMPLE_EPC.format(2017)]


async def test_a_late_notice_counts_units_already_received(
    client: httpx.AsyncClient, ingestor: Ingestor
) -> None:
    order_id = await open_example_order(client, "PO-LATE")
    batches = Batches()
    # Received after the shipping event's time (2005) and before the notice is captured.
    await send(ingestor, batches, batches.event(epc=EXAMPLE_EPC.format(2017)))
    document = json.loads(EXAMPLE)
    document["epcisBody"]["eventList"][0]["bizTransactionList"] = [
        {"type": "po", "bizTransaction": "urn:epcglobal:cbv:bt:0614141073467:PO-LATE"}
    ]
    summary = await capture(client, json.dumps(document).encode())
    assert (summary["units"], summary["already_received"]) == (2, 1)
    report = (await client.get(f"/api/v1/purchase-orders/{order_id}/asn", headers=VIEWER)).json()
    assert (report["received"], report["missing"]) == (1, 1)


async def test_a_notice_shipping_a_packed_pallet_lists_the_units_on_it(
    client: httpx.AsyncClient, ingestor: Ingestor
) -> None:
    # The supplier packs two cases onto a pallet (AggregationEvent), then ships the pallet
    # (its SSCC in the shipping event's epcList); the pallet comes through the door.
    order_id = await open_example_order(client, "PO-PALLET")
    pallet = "urn:epc:id:sscc:0614141.1234567890"
    document = json.loads(EXAMPLE)
    shipping = document["epcisBody"]["eventList"][0]
    shipping["epcList"] = [pallet, "urn:epc:id:sscc:0614141.0000000001"]
    shipping["bizTransactionList"] = [{"type": "po", "bizTransaction": "PO-PALLET"}]
    packing = {
        "type": "AggregationEvent",
        "eventID": "ni:///packing-1",
        "eventTime": "2005-04-03T20:00:00.000-06:00",
        "eventTimeZoneOffset": "-06:00",
        "parentID": pallet,
        "childEPCs": [EXAMPLE_EPC.format(1), EXAMPLE_EPC.format(2)],
        "action": "ADD",
        "bizStep": "packing",
    }
    document["epcisBody"]["eventList"] = [packing, shipping]
    summary = await capture(client, json.dumps(document).encode())
    assert (summary["aggregations"], summary["pallets"]) == (1, ["106141412345678908"])
    assert (summary["notices"], summary["units"]) == (1, 2)
    assert [(s["epc"], s["reason"]) for s in summary["skipped"]] == [
        ("urn:epc:id:sscc:0614141.0000000001", "a pallet with no tagged units recorded")
    ]
    batches = Batches()
    await send(ingestor, batches, batches.event(epc=pallet))
    report = (await client.get(f"/api/v1/purchase-orders/{order_id}/asn", headers=VIEWER)).json()
    assert (report["listed"], report["received"], report["missing"]) == (2, 2, 0)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 422, "not JSON"),
        (b'{"type": "EPCISQueryDocument2"}', 422, "type"),
        (
            b'{"type": "EPCISDocument", "schemaVersion": "1.2", "epcisBody": {"eventList": []}}',
            422,
            "schemaVersion",
        ),
        (
            json.dumps(
                {
                    "type": "EPCISDocument",
                    "schemaVersion": "2.0",
                    "epcisBody": {"eventList": [{"type": "ObjectEvent", "eventTime": "soon"}]},
                }
            ).encode(),
            422,
            "eventList[0].eventTime",
        ),
        (
            json.dumps(
                {
                    "type": "EPCISDocument",
                    "schemaVersion": "2.0",
                    "epcisBody": {"eventList": [{"type": "ObjectEvent"}] * 51},
                }
            ).encode(),
            422,
            "at most 50",
        ),
    ],
)
async def test_capture_refuses_what_is_not_an_epcis_document_and_says_why(
    client: httpx.AsyncClient, body: bytes, status: int, words: str
) -> None:
    response = await client.post(
        "/api/v1/epcis/capture",
        content=body,
        headers=OPERATOR | {"Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


async def test_capture_is_bounded_and_needs_an_operator(client: httpx.AsyncClient) -> None:
    huge = b" " * (4 * 1024 * 1024 + 1)
    response = await client.post(
        "/api/v1/epcis/capture",
        content=huge,
        headers=OPERATOR | {"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    response = await client.post(
        "/api/v1/epcis/capture", content=EXAMPLE, headers=OPERATOR | {"Content-Type": "text/csv"}
    )
    assert response.status_code == 415
    response = await client.post(
        "/api/v1/epcis/capture",
        content=EXAMPLE,
        headers=VIEWER | {"Content-Type": "application/json"},
    )
    assert response.status_code == 403


def test_event_hash_follows_the_cbv_prehash_order() -> None:
    event = object_event(
        LedgerEvent(
            id=7,
            event_time=BASE_TIME + timedelta(milliseconds=5),
            kind="receipt",
            reason=None,
            epc=sgtin(1),
            gtin=GTIN_A,
            sku="WIDGET",
            quantity=1,
            from_location=None,
            to_location="wh1.receiving",
            read_point="wh1.dock.1",
        ),
        {"wh1.dock.1": DOCK_SGLN},
    )
    text = prehash_string(event)
    assert text.startswith("eventType=ObjectEventeventTime=2024-11-25T08:00:00.005Z")
    assert f"epcListepc=https://id.gs1.org/01/{GTIN_A}/21/1" in text
    assert "readPointid=https://id.gs1.org/414/0614141073467/254/1234" in text
    assert text.index("action=") < text.index("bizStep=") < text.index("readPoint")
    assert text.endswith("{urn:stockgate:epcis:}ledgerRow=7")
    valid({"@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"]} | event)


@dataclass
class Partner:
    """An EPCIS subscriber on 127.0.0.1: answers the scripted statuses, then 200."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def endpoint(self, request: Request) -> Response:
        self.received.append((dict(request.headers), await request.body()))
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)


@contextlib.asynccontextmanager
async def partner_listening(partner: Partner) -> AsyncIterator[Partner]:
    app = Starlette(routes=[Route("/epcis", partner.endpoint, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    partner.url = f"http://127.0.0.1:{sock.getsockname()[1]}/epcis"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1000):  # up to 10 s
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield partner
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_a_subscription_delivers_signed_query_documents_once_and_retries(
    store: Store, ingestor: Ingestor
) -> None:
    batches = Batches()
    await send(ingestor, batches, batches.event(epc=sgtin(1)), batches.event(epc=sgtin(2)))
    async with partner_listening(Partner(statuses=[500])) as partner:
        entry = EpcisSubscriptionSettings.model_validate(
            {"name": "acme", "url": partner.url, "secret": SUBSCRIPTION_SECRET}
            | {"start": "beginning", "interval_s": 1, "max_events": 10}
        )
        feed = EpcisSubscriptions(store, EpcisSettings(subscriptions=[entry]), settle_s=0)
        async with feed.client() as http:
            assert await feed.deliver_once(http, entry) == 0  # the partner answered 500
            assert await feed.deliver_once(http, entry) == 2
            await send(ingestor, batches, batches.event(epc=sgtin(1), direction="out"))
            assert await feed.deliver_once(http, entry) == 1
            assert await feed.deliver_once(http, entry) == 0
    (failed, first, second) = partner.received
    # A retry carries the same rows, the same events (only the creation date moves).
    retried = json.loads(failed[1])["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert retried == json.loads(first[1])["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert failed[0][DELIVERY_HEADER.lower()] == first[0][DELIVERY_HEADER.lower()]
    assert first[0][DELIVERY_HEADER.lower()] != second[0][DELIVERY_HEADER.lower()]
    steps = []
    for headers, body in (first, second):
        assert verify_signature(SUBSCRIPTION_SECRET, headers[SIGNATURE_HEADER.lower()], body)
        document = json.loads(body)
        valid(document)
        results = document["epcisBody"]["queryResults"]
        assert results["subscriptionID"] == "acme"
        steps.extend(e["bizStep"] for e in results["resultsBody"]["eventList"])
    assert steps == ["receiving", "receiving", "shipping"]


async def test_a_new_subscription_starts_after_the_rows_already_there(
    store: Store, ingestor: Ingestor
) -> None:
    batches = Batches()
    await send(ingestor, batches, batches.event(epc=sgtin(1)))
    async with partner_listening(Partner()) as partner:
        entry = EpcisSubscriptionSettings.model_validate(
            {"name": "late", "url": partner.url, "secret": SUBSCRIPTION_SECRET}
        )
        feed = EpcisSubscriptions(store, EpcisSettings(subscriptions=[entry]), settle_s=0)
        async with feed.client() as http:
            assert await feed.deliver_once(http, entry) == 0
            await send(ingestor, batches, batches.event(epc=sgtin(2)))
            assert await feed.deliver_once(http, entry) == 1
    (only,) = partner.received
    events_sent = json.loads(only[1])["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert [e["epcList"] for e in events_sent] == [[sgtin(2)]]


async def test_events_without_an_id_are_claimed_by_their_content(
    client: httpx.AsyncClient,
) -> None:
    await open_example_order(client)
    document = json.loads(EXAMPLE)
    listed = document["epcisBody"]["eventList"]
    for event in listed:
        del event["eventID"]
    listed[1]["quantityList"] = [{"quantity": 3}]  # malformed: no epcClass; still accepted
    first = await capture(client, json.dumps(document).encode())
    assert first["units"] == 2
    assert [s["event_id"].startswith("ni:///sha-256;") for s in first["skipped"]] == [True]
    document["creationDate"] = "2006-01-01T00:00:00Z"  # another document, the same events
    second = await capture(client, json.dumps(document).encode())
    assert second["units"] == 0
    assert second["skipped"][0]["reason"] == "event captured before (same eventID)"
