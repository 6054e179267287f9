"""The HTTP API over a real store (SQLite and PostgreSQL), through httpx's ASGI transport."""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from server_helpers import (
    ADMIN_KEY,
    BASE_TIME,
    GTIN_A,
    GTIN_B,
    OPERATOR_KEY,
    VIEWER_KEY,
    Batches,
    Probe,
    make_settings,
    sgtin,
)

from server.api.factory import create_app
from server.config.settings import DatabaseSettings, ServerSettings
from server.ingest.consumer import Ingestor
from server.ingest.gateway_status import StatusRecorder
from server.metrics import Metrics
from server.store.database import Store

GTIN_13 = "4006381333931"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


VIEWER = bearer(VIEWER_KEY)
OPERATOR = bearer(OPERATOR_KEY)


@pytest.fixture
async def client(
    store: Store, settings: ServerSettings, metrics: Metrics
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, settings, metrics)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockgate.test") as http:
        yield http


@pytest.fixture
async def seeded(ingestor: Ingestor) -> None:
    wh1 = Batches()
    events = [wh1.event(epc=sgtin(n)) for n in range(1, 5)]
    events.append(wh1.event(epc=sgtin(5), read_point="wh1.dock.2"))
    events.append(wh1.event(epc=sgtin(6), read_point="wh10.dock.1"))
    events.append(wh1.event(gtin=GTIN_13.zfill(14), qty=2))
    await ingestor.handle(wh1.topic, wh1.payload(events))
    await ingestor.handle(wh1.topic, wh1.payload([wh1.event(epc=sgtin(1), direction="out")]))
    wh2 = Batches(site="wh2", gateway="gw2")
    await ingestor.handle(
        wh2.topic,
        wh2.payload(
            [
                wh2.event(
                    gtin=GTIN_B, qty=7, read_point="wh2.dock.1", at=BASE_TIME + timedelta(hours=1)
                )
            ]
        ),
    )


def rows(body: dict[str, Any]) -> set[tuple[str, str, int]]:
    return {(row["sku"], row["location"], row["on_hand"]) for row in body["items"]}


async def test_requests_without_a_valid_key_are_refused(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/stock")
    wrong = await client.get("/api/v1/stock", headers=bearer("not-a-key-at-all"))
    basic = await client.get("/api/v1/stock", headers={"Authorization": "Basic dXNlcjpwdw=="})

    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in missing.json()["detail"]
    assert wrong.json()["detail"] == "unknown API key"


async def test_viewer_reads_but_may_not_write(client: httpx.AsyncClient, seeded: None) -> None:
    assert (await client.get("/api/v1/alerts", headers=VIEWER)).status_code == 200
    response = await client.post("/api/v1/alerts/1/ack", headers=VIEWER)
    assert response.status_code == 403
    assert response.json()["detail"] == "a viewer key may not do this; it needs operator or higher"
    assert (await client.get("/api/v1/dead-letters", headers=VIEWER)).status_code == 403


async def test_stock_lists_on_hand_with_filters(client: httpx.AsyncClient, seeded: None) -> None:
    everything = (await client.get("/api/v1/stock", headers=VIEWER)).json()
    assert rows(everything) == {
        (GTIN_A, "wh1.receiving", 3),
        (GTIN_A, "wh1.receiving.overflow", 1),
        (GTIN_A, "wh10.receiving", 1),
        (GTIN_13.zfill(14), "wh1.receiving", 2),
        (GTIN_B, "wh2.receiving", 7),
    }
    assert everything["total"] == 5
    first = everything["items"][0]
    assert set(first) >= {"sku", "gtin", "name", "location", "on_hand"}

    async def stock(**params: Any) -> dict[str, Any]:
        response = await client.get("/api/v1/stock", headers=VIEWER, params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    # A location includes its subtree, and only its subtree (not wh10).
    assert rows(await stock(location="wh1")) == {
        (GTIN_A, "wh1.receiving", 3),
        (GTIN_A, "wh1.receiving.overflow", 1),
        (GTIN_13.zfill(14), "wh1.receiving", 2),
    }
    assert rows(await stock(location="wh1.receiving.overflow")) == {
        (GTIN_A, "wh1.receiving.overflow", 1)
    }
    assert rows(await stock(gtin=GTIN_B)) == {(GTIN_B, "wh2.receiving", 7)}
    assert rows(await stock(gtin=GTIN_13)) == {(GTIN_13.zfill(14), "wh1.receiving", 2)}
    assert rows(await stock(sku=GTIN_A, location="wh1.receiving")) == {
        (GTIN_A, "wh1.receiving", 3),
        (GTIN_A, "wh1.receiving.overflow", 1),
    }
    page = await stock(limit=2, offset=1)
    assert (len(page["items"]), page["total"]) == (2, 5)
    assert await stock(location="nowhere") == {"items": [], "total": 0, "limit": 100, "offset": 0}


async def test_movements_pagination_walks_every_row_once(
    client: httpx.AsyncClient, ingestor: Ingestor, probe: Probe
) -> None:
    batches = Batches()
    # 25 rows, three per event time, so pages split inside runs of equal times.
    events = [
        batches.event(gtin=GTIN_B, qty=1 + n, at=BASE_TIME + timedelta(seconds=n // 3))
        for n in range(25)
    ]
    await ingestor.handle(batches.topic, batches.payload(events))

    seen: list[int] = []
    cursor: str | None = None
    for _ in range(20):  # bounded: 7 pages expected
        params: dict[str, Any] = {"limit": 4}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get("/api/v1/movements", headers=VIEWER, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen.extend(row["id"] for row in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    ledger = await probe.ledger()
    expected = [
        row["id"] for row in sorted(ledger, key=lambda r: (r["event_time"], r["id"]), reverse=True)
    ]
    assert seen == expected
    assert len(seen) == 25


async def test_movements_filters(client: httpx.AsyncClient, seeded: None) -> None:
    async def movements(**params: Any) -> list[dict[str, Any]]:
        response = await client.get("/api/v1/movements", headers=VIEWER, params=params)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    unit = await movements(epc=sgtin(1))
    assert [(m["kind"], m["from_location"], m["to_location"]) for m in unit] == [
        ("shipment", "wh1.receiving", None),
        ("receipt", None, "wh1.receiving"),
    ]
    assert unit[0]["gtin"] == GTIN_A
    assert unit[0]["actor"] == "gw1"
    assert {m["to_location"] for m in await movements(location="wh1.receiving")} == {
        None,
        "wh1.receiving",
        "wh1.receiving.overflow",
    }
    assert [m["quantity"] for m in await movements(gtin=GTIN_B)] == [7]
    assert len(await movements(sku=GTIN_A)) == 7
    first_second = (BASE_TIME + timedelta(seconds=1)).isoformat()
    second_second = (BASE_TIME + timedelta(seconds=2)).isoformat()
    window = await movements(since=first_second, until=second_second)
    assert [m["epc"] for m in window] == [sgtin(1)]


@pytest.mark.parametrize(
    ("params", "status", "reason"),
    [
        ({"limit": 0}, 422, None),
        ({"limit": 1001}, 422, None),
        ({"limit": "many"}, 422, None),
        ({"cursor": "bm90LWEtY3Vyc29y"}, 400, "bad cursor"),
        ({"cursor": "%%%"}, 400, "bad cursor"),
        ({"since": "2024-02-01T00:00:00Z", "until": "2024-01-01T00:00:00Z"}, 400, "since"),
        ({"since": "2020-01-01T00:00:00Z", "until": "2024-01-01T00:00:00Z"}, 400, "366 days"),
        ({"since": "yesterday"}, 422, None),
        ({"location": "wh1..x"}, 422, None),
        ({"gtin": "12345"}, 422, None),
        ({"epc": "not-an-epc"}, 422, None),
    ],
)
async def test_bad_movement_parameters_get_a_4xx_with_a_reason(
    client: httpx.AsyncClient, params: dict[str, Any], status: int, reason: str | None
) -> None:
    response = await client.get("/api/v1/movements", headers=VIEWER, params=params)
    assert response.status_code == status
    detail = response.json()["detail"]
    assert detail
    if reason is not None:
        assert reason in detail


async def test_bad_stock_parameters_get_422(client: httpx.AsyncClient) -> None:
    for params in ({"limit": 5000}, {"offset": -1}, {"location": "a b"}, {"sku": ""}):
        response = await client.get("/api/v1/stock", headers=VIEWER, params=params)
        assert response.status_code == 422, params


async def test_unit_shows_status_location_and_history(
    client: httpx.AsyncClient, seeded: None
) -> None:
    shipped = await client.get(f"/api/v1/units/{sgtin(1)}", headers=VIEWER)
    here = await client.get(f"/api/v1/units/{sgtin(5)}", headers=VIEWER)
    unknown = await client.get(f"/api/v1/units/{sgtin(99)}", headers=VIEWER)
    invalid = await client.get("/api/v1/units/nonsense", headers=VIEWER)

    assert shipped.status_code == 200
    body = shipped.json()
    assert (body["status"], body["location"]) == ("shipped", None)
    assert body["item"]["gtin"] == GTIN_A
    assert body["item"]["reviewed"] is False
    assert [m["kind"] for m in body["history"]] == ["shipment", "receipt"]
    assert (here.json()["status"], here.json()["location"]) == (
        "in_stock",
        "wh1.receiving.overflow",
    )
    assert unknown.status_code == 404
    assert sgtin(99) in unknown.json()["detail"]
    assert invalid.status_code == 422


async def test_alerts_list_and_acknowledge(client: httpx.AsyncClient, seeded: None) -> None:
    listed = (await client.get("/api/v1/alerts", headers=VIEWER)).json()["items"]
    unknown_items = {a["subject"]: a for a in listed if a["kind"] == "unknown_item"}
    assert set(unknown_items) == {GTIN_A, GTIN_B, GTIN_13.zfill(14)}
    target = unknown_items[GTIN_B]
    assert target["state"] == "open"

    acked = await client.post(f"/api/v1/alerts/{target['id']}/ack", headers=OPERATOR)
    again = await client.post(f"/api/v1/alerts/{target['id']}/ack", headers=bearer(ADMIN_KEY))
    assert acked.status_code == 200
    assert (acked.json()["state"], acked.json()["acknowledged_by"]) == ("acknowledged", "olga")
    assert again.json()["acknowledged_at"] == acked.json()["acknowledged_at"]
    assert again.json()["acknowledged_by"] == "olga"

    async def ids(state: str) -> set[int]:
        response = await client.get("/api/v1/alerts", headers=VIEWER, params={"state": state})
        assert response.status_code == 200
        return {a["id"] for a in response.json()["items"]}

    assert target["id"] in await ids("open")
    assert target["id"] in await ids("acknowledged")
    assert target["id"] not in await ids("unacknowledged")
    assert await ids("closed") == set()
    assert await ids("all") == await ids("open")
    missing = await client.post("/api/v1/alerts/999999/ack", headers=OPERATOR)
    assert missing.status_code == 404
    assert (await client.post("/api/v1/alerts/0/ack", headers=OPERATOR)).status_code == 422
    bad_state = await client.get("/api/v1/alerts", headers=VIEWER, params={"state": "x"})
    assert bad_state.status_code == 422


async def test_gateways_and_dead_letters(
    client: httpx.AsyncClient,
    store: Store,
    settings: ServerSettings,
    metrics: Metrics,
    ingestor: Ingestor,
) -> None:
    recorder = StatusRecorder(store, settings.ingest, metrics)
    status = {
        "gateway": "gw1",
        "site": "wh1",
        "state": "online",
        "at": BASE_TIME.isoformat(),
        "buffer_depth": 12,
    }
    await recorder.handle("stockgate/v1/wh1/gw1/status", json.dumps(status).encode())
    await ingestor.handle("stockgate/v1/wh1/gw1/events", b"garbage")

    gateways = (await client.get("/api/v1/gateways", headers=VIEWER)).json()["items"]
    assert [(g["id"], g["site"], g["state"]) for g in gateways] == [("gw1", "wh1", "online")]
    assert gateways[0]["status"]["buffer_depth"] == 12
    letters = (await client.get("/api/v1/dead-letters", headers=OPERATOR)).json()
    assert [letter["payload"] for letter in letters["items"]] == ["garbage"]
    assert letters["next_before_id"] is None


async def test_healthz_and_metrics_need_no_key(client: httpx.AsyncClient, seeded: None) -> None:
    health = await client.get("/healthz")
    metrics = await client.get("/metrics")

    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "database": True,
        "mqtt": None,
        "database_full_since": None,
        "database_error": None,
    }
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "stockgate_events_applied_total 9.0" in metrics.text
    assert 'stockgate_batches_total{outcome="applied"} 3.0' in metrics.text


async def test_healthz_reports_mqtt_down(
    store: Store, settings: ServerSettings, metrics: Metrics
) -> None:
    app = create_app(store, settings, metrics, mqtt_connected=lambda: False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        response = await http.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "degraded",
        "database": True,
        "mqtt": False,
        "database_full_since": None,
        "database_error": None,
    }


async def test_database_down_gives_503_with_a_reason(metrics: Metrics) -> None:
    settings = make_settings("sqlite+aiosqlite:///unused.db")
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    broken = Store.open(
        DatabaseSettings(url="postgresql+asyncpg://postgres@127.0.0.1:1/none", connect_timeout_s=2)
    )
    app = create_app(broken, settings, metrics)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as http:
            health = await http.get("/healthz")
            stock = await http.get("/api/v1/stock", headers=VIEWER)
    finally:
        await broken.close()
    assert health.status_code == 503
    assert health.json()["database"] is False
    assert stock.status_code == 503
    assert stock.json()["detail"].startswith("database unavailable")


async def test_openapi_docs_are_served(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    schema = (await client.get("/openapi.json")).json()
    assert docs.status_code == 200
    assert {
        "/api/v1/stock",
        "/api/v1/movements",
        "/api/v1/units/{epc}",
        "/api/v1/alerts",
        "/api/v1/alerts/{alert_id}/ack",
        "/api/v1/gateways",
        "/healthz",
        "/metrics",
    } <= set(schema["paths"])


NASTY = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "-1",
    "9" * 30,
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    "ü" * 300,
    "' OR 1=1 --",
    "wh1.%",
    "*",
    "💥",
    base64.urlsafe_b64encode(b"9999-12-31T23:59:59-05:00|5").decode(),
    base64.urlsafe_b64encode(b"2024-01-01T00:00:00+00:00|99999999999999999999").decode(),
]
ENDPOINT_PARAMS = {
    "/api/v1/stock": ["gtin", "sku", "location", "include_zero", "limit", "offset"],
    "/api/v1/movements": ["epc", "gtin", "sku", "location", "since", "until", "cursor", "limit"],
    "/api/v1/alerts": ["state", "kind", "limit"],
    "/api/v1/dead-letters": ["before_id", "limit"],
}


async def test_hostile_input_never_gets_a_5xx(client: httpx.AsyncClient, seeded: None) -> None:
    admin = bearer(ADMIN_KEY)
    for path, names in ENDPOINT_PARAMS.items():
        for name in names:
            for value in NASTY:
                response = await client.get(path, headers=admin, params={name: value})
                assert response.status_code < 500, (path, name, value, response.text)
                if response.status_code >= 400:
                    assert response.json()["detail"], (path, name, value)
    for value in NASTY:
        quoted = urllib.parse.quote(value, safe="")
        unit = await client.get(f"/api/v1/units/{quoted}", headers=admin)
        ack = await client.post(f"/api/v1/alerts/{quoted}/ack", headers=admin)
        assert unit.status_code < 500, (value, unit.text)
        assert ack.status_code < 500, (value, ack.text)
