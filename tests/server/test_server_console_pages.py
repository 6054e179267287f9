"""The console's Movements, Alerts, Gateways, item, unit and Reports pages over HTTP (no
browser), on SQLite and PostgreSQL.

Each page asks its ``/api/v1`` route in-process as the signed-in person
(``server.console.internal``); these tests check what the page shows against the ledger,
that filters, paging and the CSV export agree, and that roles and sites hold on the
pages' writes as they do in the API.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from server_helpers import (
    ADMIN_KEY,
    BASE_TIME,
    GTIN_A,
    OPERATOR_KEY,
    VIEWER_KEY,
    Batches,
    Probe,
    bearer,
    make_scoped_settings,
    sgtin,
)
from test_server_console import browser, csrf_of, ingest_passes, sign_in
from test_server_fleet import online
from test_server_unresolved import undirected

from server.api.context import Principal
from server.api.factory import create_app
from server.config.settings import ServerSettings
from server.console.internal import call_api
from server.history.check import rebuild_history
from server.ingest.consumer import Ingestor
from server.ingest.gateway_status import StatusRecorder
from server.metrics import Metrics
from server.store.database import Store

ITEM_SKU = "OIL-1L"


@pytest.fixture
async def app(store: Store, settings: ServerSettings, metrics: Metrics) -> FastAPI:
    made = create_app(store, settings, metrics)
    await made.state.read_points.seed()
    return made


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as http:
        yield http


async def movements_of(ingestor: Ingestor) -> None:
    """Seven rows: five receipts through two doors (three at dock 1), a scan of five, a
    shipment out of dock 2."""
    batches = Batches()
    events = [
        batches.event(epc=sgtin(1), read_point="wh1.dock.1"),
        batches.event(epc=sgtin(2), read_point="wh1.dock.1"),
        batches.event(epc=sgtin(3), read_point="wh1.dock.1"),
        batches.event(epc=sgtin(4), read_point="wh1.dock.2"),
        batches.event(gtin=GTIN_A, qty=5, read_point="wh1.dock.2"),
        batches.event(epc=sgtin(4), read_point="wh1.dock.2", direction="out"),
    ]
    assert (await ingestor.handle(batches.topic, batches.payload(events))).applied == 6


def table_rows(page: str, table: str) -> list[list[str]]:
    """The cells (tags stripped) of each body row of ``<table class="{table}">``."""
    found = re.search(rf'<table class="{table}"[^>]*>.*?<tbody[^>]*>(.*?)</tbody>', page, re.S)
    assert found is not None, page[:2000]
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", found.group(1), re.S)
    ]


async def test_movements_filter_page_and_export_what_the_ledger_holds(
    client: httpx.AsyncClient, ingestor: Ingestor, probe: Probe
) -> None:
    await movements_of(ingestor)
    await sign_in(client, VIEWER_KEY)
    ledger = await probe.ledger()

    everything = await client.get("/movements")
    dock1 = await client.get("/movements", params={"read_point": "wh1.dock.1"})
    shipments = await client.get("/movements", params={"kind": "shipment"})
    by_actor = await client.get("/movements", params={"actor": "gw1", "item": GTIN_A})
    combined = await client.get(
        "/movements", params={"read_point": "wh1.dock.2", "kind": "receipt"}
    )
    nobody = await client.get("/movements", params={"actor": "someone-else"})
    bad_kind = await client.get("/movements", params={"kind": "teleport"})
    bad_time = await client.get("/movements", params={"since": "yesterday"})
    exported = await client.get("/movements.csv", params={"read_point": "wh1.dock.1"})
    refused_export = await client.get("/movements.csv", params={"kind": "teleport"})

    assert everything.status_code == 200
    assert len(table_rows(everything.text, "movements")) == len(ledger) == 6
    dock1_rows = table_rows(dock1.text, "movements")
    assert len(dock1_rows) == 3
    assert all(row[6] == "wh1.dock.1" for row in dock1_rows)
    assert [row[1] for row in table_rows(shipments.text, "movements")] == ["shipment"]
    assert len(table_rows(by_actor.text, "movements")) == 6
    assert sorted(row[3] for row in table_rows(combined.text, "movements")) == ["1", "5"]
    assert table_rows(nobody.text, "movements") == []
    assert "No movements match" in nobody.text
    assert bad_kind.status_code == 400
    assert "kind" in bad_kind.text
    assert bad_time.status_code == 400
    assert "since" in bad_time.text
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    wanted = sorted(row["epc"] for row in ledger if row["read_point"] == "wh1.dock.1")
    assert sorted(row["epc"] for row in rows) == wanted
    assert {row["read_point"] for row in rows} == {"wh1.dock.1"}
    assert refused_export.status_code == 422
    assert "kind" in refused_export.text


async def test_movements_pages_older_rows_by_cursor_and_the_export_crosses_pages(
    client: httpx.AsyncClient, ingestor: Ingestor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.console import browse

    monkeypatch.setattr(browse, "PAGE_ROWS", 4)
    monkeypatch.setattr(browse, "EXPORT_PAGE", 4)
    await movements_of(ingestor)
    await sign_in(client, VIEWER_KEY)
    first = await client.get("/movements")
    older = re.search(r'class="older" href="([^"]+)"', first.text)
    assert older is not None
    second = await client.get(older.group(1).replace("&amp;", "&"))
    exported = await client.get("/movements.csv")

    first_rows = table_rows(first.text, "movements")
    second_rows = table_rows(second.text, "movements")
    assert (len(first_rows), len(second_rows)) == (4, 2)
    assert 'class="older"' not in second.text
    # Newest first across both pages, no row twice.
    times = [row[0] for row in first_rows + second_rows]
    assert times == sorted(times, reverse=True)
    assert len(list(csv.DictReader(io.StringIO(exported.text)))) == 6


async def test_alerts_are_listed_acknowledged_by_an_operator_and_link_to_their_source(
    app: FastAPI, client: httpx.AsyncClient, ingestor: Ingestor
) -> None:
    await ingest_passes(ingestor)  # raises unresolved_passes for wh1.dock.1
    csrf = await sign_in(client, OPERATOR_KEY)
    listed = await client.get("/alerts")
    (alert_id,) = re.findall(
        r'<tr data-alert="(\d+)"[^>]*><td>[^<]*</td><td>unresolved_passes<',
        listed.text,
    )
    async with browser(app) as viewer:
        viewer_csrf = await sign_in(viewer, VIEWER_KEY)
        viewer_page = await viewer.get("/alerts")
        forged = await viewer.post(f"/alerts/{alert_id}/ack", data={"csrf": viewer_csrf})
    no_token = await client.post(f"/alerts/{alert_id}/ack", data={"state": "open"})
    acked = await client.post(f"/alerts/{alert_id}/ack", data={"csrf": csrf, "state": "open"})
    after = await client.get(acked.headers["location"])
    unacknowledged = await client.get("/alerts", params={"state": "unacknowledged"})
    missing = await client.post("/alerts/999999/ack", data={"csrf": csrf})
    missing_page = await client.get(missing.headers["location"])

    assert "unresolved_passes" in listed.text
    assert 'href="/"' in listed.text  # to the doors
    assert "Acknowledge" in listed.text
    assert "Acknowledge" not in viewer_page.text
    assert forged.status_code == 403
    assert no_token.status_code == 403
    assert acked.status_code == 303
    assert f"Alert {alert_id} acknowledged" in after.text
    assert "acknowledged by olga" in after.text
    assert f'data-alert="{alert_id}"' not in unacknowledged.text
    assert "Not acknowledged: no alert with id 999999" in missing_page.text


async def test_a_site_restricted_key_sees_its_sites_alerts_and_gateways_only(
    store: Store, database_url: str, metrics: Metrics, ingestor: Ingestor
) -> None:
    settings = make_scoped_settings(database_url)
    app = create_app(store, settings, metrics)
    recorder = StatusRecorder(store, settings.ingest, metrics)
    await recorder.handle("stockgate/v1/wh1/gw1/status", online())
    await recorder.handle("stockgate/v1/wh2/gw2/status", online(gateway="gw2", site="wh2"))
    await ingest_passes(ingestor)  # an alert at wh1
    async with browser(app) as wh2:
        await sign_in(wh2, "wh2-viewer-key-0123456789")
        gateways = await wh2.get("/gateways")
        alerts = await wh2.get("/alerts", params={"state": "all"})
    async with browser(app) as everyone:
        await sign_in(everyone, VIEWER_KEY)
        all_gateways = await everyone.get("/gateways")
        all_alerts = await everyone.get("/alerts", params={"state": "all"})

    assert re.findall(r'<section class="gateway" id="gw-([^"]+)"', gateways.text) == ["gw2"]
    assert re.findall(r'<section class="gateway" id="gw-([^"]+)"', all_gateways.text) == [
        "gw1",
        "gw2",
    ]
    assert "unresolved_passes" not in alerts.text
    assert "unresolved_passes" in all_alerts.text


async def test_the_gateways_page_shows_fleet_health(
    client: httpx.AsyncClient, store: Store, settings: ServerSettings, metrics: Metrics
) -> None:
    recorder = StatusRecorder(store, settings.ingest, metrics)
    await recorder.handle("stockgate/v1/wh1/gw1/status", online(config_version=3))
    await sign_in(client, VIEWER_KEY)
    page = await client.get("/gateways")
    section = re.search(r'<section class="gateway" id="gw-gw1".*?</section>', page.text, re.S)
    assert section is not None
    text = re.sub(r"<[^>]+>", " ", section.group(0))
    assert 'data-state="online"' in section.group(0)
    for fact in ("1.2.3", "40 event(s), oldest 12 s", "4.7 GiB", "61.9 °C", "1.0 h"):
        assert fact in text, fact
    assert re.search(r"Config version\s+3", text)
    assert table_rows(section.group(0), "readers") == [
        ["dock1", "llrp", "connected", "1, 2", "2", "30.5", "1: 30.5"]
    ]


async def test_item_and_unit_pages_show_stock_charts_and_a_units_life(
    client: httpx.AsyncClient, ingestor: Ingestor, store: Store
) -> None:
    today = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    batches = Batches()
    events = [
        batches.event(epc=sgtin(1), read_point="wh1.dock.1", at=today - timedelta(days=2)),
        batches.event(epc=sgtin(2), read_point="wh1.dock.1", at=today - timedelta(days=2)),
        batches.event(epc=sgtin(1), read_point="wh1.dock.2", direction="out", at=today),
    ]
    assert (await ingestor.handle(batches.topic, batches.payload(events))).applied == 3
    await rebuild_history(store)
    await sign_in(client, VIEWER_KEY)
    sku = re.search(r'<tr data-sku="([^"]+)"', (await client.get("/stock")).text)
    assert sku is not None
    item = await client.get(f"/items/{sku.group(1)}")
    unit = await client.get(f"/units/{sgtin(1)}")
    unknown_unit = await client.get(f"/units/{sgtin(99)}")
    not_an_epc = await client.get("/units/hello")
    no_item = await client.get("/items/NO-SUCH-SKU")

    assert item.status_code == 200, item.text
    assert table_rows(item.text, "stock") == [["wh1.receiving", "1", "0", "0", "1"]]
    charts = re.findall(r"<svg class=\"chart\".*?</svg>", item.text, re.S)
    assert len(charts) == 2
    # The stock line ends at 1 (two received, one shipped today); the bars hold 2 in, 1 out.
    assert "<polyline" in charts[0]
    assert len(re.findall(r"<rect ", charts[1])) == 2 * 30
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([0-9.]+)"', charts[1])]
    came, went = heights[0::2], heights[1::2]
    assert [i for i, h in enumerate(came) if h > 0] == [27]  # two days ago
    assert [i for i, h in enumerate(went) if h > 0] == [29]  # today
    assert came[27] == pytest.approx(2 * went[29])
    assert len(table_rows(item.text, "movements")) == 3
    assert unit.status_code == 200
    assert '<dd class="status">shipped</dd>' in unit.text
    assert [row[1] for row in table_rows(unit.text, "movements")] == ["shipment", "receipt"]
    assert unknown_unit.status_code == 404
    assert "no unit" in unknown_unit.text
    assert not_an_epc.status_code == 400
    assert no_item.status_code == 404


async def test_stock_as_of_a_past_day_reads_the_history(
    client: httpx.AsyncClient, ingestor: Ingestor, store: Store
) -> None:
    batches = Batches()
    events = [
        batches.event(epc=sgtin(1), read_point="wh1.dock.1", at=BASE_TIME),
        batches.event(epc=sgtin(2), read_point="wh1.dock.1", at=BASE_TIME),
        batches.event(
            epc=sgtin(1), read_point="wh1.dock.2", direction="out", at=BASE_TIME + timedelta(days=1)
        ),
    ]
    assert (await ingestor.handle(batches.topic, batches.payload(events))).applied == 3
    await rebuild_history(store)
    await sign_in(client, VIEWER_KEY)
    day0 = await client.get("/stock", params={"q": GTIN_A, "as_of": BASE_TIME.date().isoformat()})
    day1 = await client.get(
        "/stock", params={"q": GTIN_A, "as_of": (BASE_TIME + timedelta(days=1)).date().isoformat()}
    )
    before = await client.get(
        "/stock", params={"q": GTIN_A, "as_of": (BASE_TIME - timedelta(days=1)).date().isoformat()}
    )
    exported = await client.get("/stock.csv", params={"q": GTIN_A})

    assert [row[1:] for row in table_rows(day0.text, "as-of")] == [["wh1", "2"]]
    assert [row[1:] for row in table_rows(day1.text, "as-of")] == [["wh1", "1"]]
    assert [row[1:] for row in table_rows(before.text, "as-of")] == []
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(row["location"], row["on_hand"]) for row in rows] == [("wh1.receiving", "1")]


async def test_reports_are_listed_from_the_api_and_drafts_confirmed_by_an_operator(
    app: FastAPI, client: httpx.AsyncClient, ingestor: Ingestor
) -> None:
    await movements_of(ingestor)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://stockgate.test"
    ) as api:
        made = await api.post(
            "/api/v1/purchase-orders",
            json={
                "number": "PO-7",
                "location": "wh1.receiving",
                "partner": "ACME",
                "lines": [{"gtin": GTIN_A, "quantity": 24}],
            },
            headers=bearer(OPERATOR_KEY),
        )
        assert made.status_code == 201, made.text
        dead = await api.get(
            "/api/v1/reports/dead-stock", params={"days": 1}, headers=bearer(ADMIN_KEY)
        )
    report_paths = sorted(
        path.removeprefix("/api/v1/reports/")
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/api/v1/reports/") and not path.endswith(".csv") and "get" in operations
    )
    async with browser(app) as viewer:
        await sign_in(viewer, VIEWER_KEY)
        viewer_reports = await viewer.get("/reports")
    csrf = await sign_in(client, OPERATOR_KEY)
    reports = await client.get("/reports")
    listed = re.findall(r'<li><a href="/reports/([^"]+)">', reports.text)
    dead_page = await client.get("/reports/dead-stock", params={"days": "1"})
    dead_csv = await client.get("/reports/dead-stock.csv", params={"days": "1"})
    bad = await client.get("/reports/dead-stock", params={"days": "0"})
    unknown = await client.get("/reports/no-such-report")
    # Every report the API has opens in the console, as a page and as CSV (a route that
    # needs a parameter says which on the page).
    opened = {}
    for name in listed:
        shown, as_csv = (
            await client.get(f"/reports/{name}"),
            await client.get(f"/reports/{name}.csv"),
        )
        refused = shown.status_code in (400, 422) and 'class="error"' in shown.text
        opened[name] = (shown.status_code == 200 or refused, as_csv.status_code in (200, 400, 422))
    (order_id,) = re.findall(r'<section class="draft" data-order="(\d+)"', reports.text)
    confirmed = await client.post(f"/reports/drafts/{order_id}/confirm", data={"csrf": csrf})
    after = await client.get(confirmed.headers["location"])
    twice = await client.post(f"/reports/drafts/{order_id}/confirm", data={"csrf": csrf})
    twice_page = await client.get(twice.headers["location"])

    assert listed == report_paths
    assert {"dead-stock", "shrinkage"} <= set(listed)
    assert opened == dict.fromkeys(listed, (True, True))
    assert "Confirm PO-7" in reports.text
    assert "Confirm PO-7" not in viewer_reports.text
    assert "PO-7" in viewer_reports.text
    dead_items = dead.json()["items"]
    assert dead_items
    assert len(table_rows(dead_page.text, "report")) == len(dead_items)
    # Ranked by the first number (on hand), named by SKU.
    ranking = re.search(r'<svg class="chart ranking".*?</svg>', dead_page.text, re.S)
    assert ranking is not None
    assert len(re.findall(r"<rect ", ranking.group(0))) == min(20, len(dead_items))
    assert dead_items[0]["sku"] in ranking.group(0)
    csv_rows = list(csv.DictReader(io.StringIO(dead_csv.text)))
    assert [row["sku"] for row in csv_rows] == [item["sku"] for item in dead_items]
    assert bad.status_code == 422
    assert "days" in bad.text
    assert unknown.status_code == 404
    assert "Purchase order PO-7 confirmed" in after.text
    assert "data-order=" not in after.text
    assert "Not confirmed" in twice_page.text


async def test_in_process_calls_keep_the_principals_role_and_a_request_cannot_claim_one(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    viewer = Principal("alice", "viewer")
    as_viewer = await call_api(app, viewer, "POST", "/api/v1/alerts/1/ack")
    as_operator = await call_api(app, Principal("olga", "operator"), "POST", "/api/v1/alerts/1/ack")
    listed = await call_api(app, viewer, "GET", "/api/v1/alerts")
    # From outside, without a key: the scope key cannot be sent, only headers.
    outside = await client.get("/api/v1/alerts", headers={"stockgate.principal": "admin"})

    assert as_viewer.status == 403
    assert "viewer" in as_viewer.detail()
    assert as_operator.status == 404  # admitted; there is no alert 1
    assert listed.ok
    assert listed.json() == {"items": []}
    assert outside.status_code == 401


async def test_every_page_answers_with_the_strict_policy_and_no_outside_reference(
    client: httpx.AsyncClient, ingestor: Ingestor
) -> None:
    await movements_of(ingestor)
    await sign_in(client, OPERATOR_KEY)
    pages = [
        await client.get(path)
        for path in ("/movements", "/alerts", "/gateways", "/reports", "/reports/dead-stock")
    ]
    pages.append(await client.get(f"/units/{sgtin(1)}"))
    for page in pages:
        assert page.status_code == 200, page.text[:500]
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        references = re.findall(r'(?:src|href|action)="([^"]*)"', page.text)
        assert all(ref.startswith("/") and not ref.startswith("//") for ref in references)
        assert " style=" not in page.text  # the CSP allows no inline style
    assert csrf_of(pages[0])


def directed(batches: Batches, epc: str, confidence: float, at: datetime) -> dict[str, Any]:
    """A portal pass the edge gave a direction, with its confidence and read evidence."""
    event = batches.event(epc=epc, read_point="wh1.dock.1", at=at)
    event["confidence"] = confidence
    event["reads"] = {
        "count": 9,
        "antennas": [1, 2],
        "peak_rssi": -50.0,
        "first_seen": (at - timedelta(seconds=2)).isoformat(),
        "last_seen": at.isoformat(),
    }
    return event


async def test_doors_show_each_pass_confidence_and_todays_pass_quality(
    app: FastAPI, client: httpx.AsyncClient, ingestor: Ingestor, probe: Probe
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    today = max(now - timedelta(minutes=1), now.replace(hour=0, minute=0, second=1))
    batches = Batches()
    events = [
        directed(batches, sgtin(1), 0.9, today),
        directed(batches, sgtin(2), 0.7, today),
        directed(batches, sgtin(3), 0.3, today),
        # Yesterday's pass is history, not today's quality.
        directed(batches, sgtin(4), 0.1, today - timedelta(days=1)),
        undirected(batches, sgtin(5), at=today),
        # A scan at the door: no confidence of its own, not a tag pass.
        batches.event(gtin=GTIN_A, qty=3, read_point="wh1.dock.1", at=today),
    ]
    assert (await ingestor.handle(batches.topic, batches.payload(events))).applied == 6
    csrf = await sign_in(client, OPERATOR_KEY)
    doors = await client.get("/")
    queue = await client.get("/doors/queue", params={"read_point": "wh1.dock.1"})
    other = await client.get("/doors/queue", params={"read_point": "wh1.dock.2"})
    bad = await client.get("/doors/queue", params={"read_point": "a b"})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://stockgate.test"
    ) as api:
        listed = await api.get(
            "/api/v1/movements", params={"read_point": "wh1.dock.1"}, headers=bearer(VIEWER_KEY)
        )
    pass_id = re.search(r'<tr data-pass="(\d+)"', queue.text)
    assert pass_id is not None
    await client.post(
        f"/doors/passes/{pass_id.group(1)}/resolve", data={"csrf": csrf, "direction": "in"}
    )
    after = await client.get("/doors/queue", params={"read_point": "wh1.dock.1"})
    ledger = {row["epc"]: row for row in await probe.ledger()}

    dock1 = re.search(r'data-read-point="wh1.dock.1">.*?</section>', doors.text, re.S)
    assert dock1 is not None
    shown = {row[7]: row[6] for row in table_rows(dock1.group(0), "recent")}
    assert shown[sgtin(1)] == "0.90"
    assert shown[sgtin(3)] == "0.30"
    assert shown[""] == ""  # the scan
    assert '<td class="confidence low">0.30</td>' in dock1.group(0)
    # Four tag passes today (three directed, one not): 75 %, mean of 0.9, 0.7, 0.3.
    quality = "4 tag pass(es), 75 % with a direction, mean confidence 0.63"
    assert quality in re.sub(r"\s+", " ", dock1.group(0))
    assert "1 below 0.5" in dock1.group(0)
    assert quality in re.sub(r"\s+", " ", queue.text)
    assert queue.text.count("<tr data-pass=") == 1
    assert "no passes yet" in other.text
    assert bad.status_code == 422
    assert ledger[sgtin(1)]["confidence"] == pytest.approx(0.9)
    assert ledger[sgtin(5)]["confidence"] is None  # resolved by a person
    assert {item["epc"]: item["confidence"] for item in listed.json()["items"]}[sgtin(2)] == 0.7
    assert "<tr data-pass=" not in after.text
    # Resolved, the pass still counts as one the door could not direct.
    assert "4 tag pass(es), 75 %" in re.sub(r"\s+", " ", after.text)
