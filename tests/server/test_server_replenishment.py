"""Replenishment: the method (pure) and the planner end to end on a real SQLite file and
PostgreSQL: demand and lead-time history from the ledger and the purchase orders -> reorder
point explained -> draft purchase order -> operator confirmation."""

from __future__ import annotations

import math
import statistics
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from server_helpers import (
    ADMIN_KEY,
    GTIN_A,
    GTIN_B,
    OPERATOR_KEY,
    VIEWER_KEY,
    Batches,
    bearer,
    make_settings,
)

from server.api.factory import create_app
from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor
from server.metrics import Metrics
from server.replenishment.method import (
    DemandStats,
    LeadTimeStats,
    OrderTerms,
    abc_classes,
    croston_sba,
    demand_stats,
    economic_order_quantity,
    lead_time_stats,
    order_quantity,
    reorder_figures,
    round_to_terms,
    safety_stock,
    unit_normal_loss,
    z_for_fill_rate,
    z_of,
)
from server.replenishment.planner import run_planner
from server.store.database import Store
from server.store.schema.orders import orders
from wire.models import now_utc

ADMIN, OPERATOR, VIEWER = bearer(ADMIN_KEY), bearer(OPERATOR_KEY), bearer(VIEWER_KEY)
WINDOW_DAYS = 30


# --- the method ---------------------------------------------------------------------------


def test_safety_stock_is_the_formula_of_both_variabilities() -> None:
    demand = DemandStats(10.0, 3.0, 30, 30, 300.0, 1.0, "mean")
    lead = LeadTimeStats(4.0, 1.5, 5, "history")
    z = z_of(0.95)
    assert z == pytest.approx(statistics.NormalDist().inv_cdf(0.95))
    expected = z * math.sqrt(4.0 * 3.0**2 + 10.0**2 * 1.5**2)
    assert safety_stock(z, demand, lead) == pytest.approx(expected)
    figures = reorder_figures(demand, lead, 0.95, OrderTerms(review_days=7), "cycle")
    assert figures.reorder_point == math.ceil(10.0 * 4.0 + expected)
    assert figures.order_up_to == math.ceil(figures.reorder_point + 10.0 * 7)
    # Constant demand and lead time need no safety stock.
    steady = reorder_figures(
        DemandStats(5.0, 0.0, 30, 30, 150.0, 1.0, "mean"),
        LeadTimeStats(3.0, 0.0, 3, "history"),
        0.99,
        OrderTerms(),
    )
    assert (steady.safety_stock, steady.reorder_point) == (0.0, 15)


def test_a_fill_rate_leaves_its_share_of_an_order_short() -> None:
    spread, quantity = 12.0, 70.0
    z = z_for_fill_rate(0.97, spread, quantity)
    assert unit_normal_loss(z) * spread == pytest.approx(0.03 * quantity, rel=1e-6)
    # Bigger orders need less safety for the same fill rate; a lax target needs none.
    assert z_for_fill_rate(0.97, spread, quantity * 4) < z
    assert z_for_fill_rate(0.5, spread, quantity) == 0.0
    assert z_for_fill_rate(0.97, 0.0, quantity) == 0.0
    demand = DemandStats(10.0, 3.0, 30, 30, 300.0, 1.0, "mean")
    lead = LeadTimeStats(4.0, 1.5, 5, "history")
    by_fill = reorder_figures(demand, lead, 0.95, OrderTerms(review_days=7), "fill_rate")
    by_cycle = reorder_figures(demand, lead, 0.95, OrderTerms(review_days=7), "cycle")
    assert by_fill.cycle_quantity == pytest.approx(70.0)
    assert by_fill.safety_stock < by_cycle.safety_stock


def test_intermittent_demand_uses_croston_with_the_sba_correction() -> None:
    series = [0.0, 0.0, 6.0] * 20  # a demand of 6 every third day
    stats = demand_stats(series, alpha=0.1)
    assert stats.forecast == "sba"
    assert stats.adi == pytest.approx(3.0)
    assert stats.mean == pytest.approx((1 - 0.1 / 2) * 6.0 / 3.0)
    assert croston_sba([0.0, 0.0], 0.1) == 0.0
    regular = demand_stats([4.0, 6.0] * 10)
    assert regular.forecast == "mean"
    assert regular.mean == pytest.approx(5.0)
    assert regular.sd == pytest.approx(statistics.stdev([4.0, 6.0] * 10))


def test_lead_time_falls_back_to_the_item_then_the_default() -> None:
    measured = lead_time_stats(
        [5.0, 7.0], min_samples=2, item_days=9, item_sd_days=1, default_days=3, default_sd_days=0
    )
    assert (measured.mean, measured.sd, measured.source) == (
        6.0,
        statistics.stdev([5, 7]),
        "history",
    )
    item = lead_time_stats(
        [5.0], min_samples=2, item_days=9, item_sd_days=1, default_days=3, default_sd_days=0
    )
    assert (item.mean, item.sd, item.source) == (9, 1, "item")
    default = lead_time_stats(
        [], min_samples=2, item_days=None, item_sd_days=None, default_days=3, default_sd_days=0.5
    )
    assert (default.mean, default.sd, default.source) == (3, 0.5, "default")


def test_order_quantities_respect_minimum_pack_size_and_eoq() -> None:
    terms = OrderTerms(min_order=20, pack_size=12)
    assert round_to_terms(5, terms) == 24  # the minimum 20, in packs of 12
    assert round_to_terms(25, terms) == 36
    assert order_quantity(50, 40, 100, None, terms) == 0  # above the reorder point
    assert order_quantity(30, 40, 100, None, terms) == 72  # up to 100 is 70: 6 packs
    eoq = economic_order_quantity(10.0, 50.0, 2.0)
    assert eoq == pytest.approx(math.sqrt(2 * 3650 * 50 / 2))
    assert economic_order_quantity(10.0, None, 2.0) is None
    lots = order_quantity(-500, 40, 100, eoq, OrderTerms(method="eoq"))
    assert eoq is not None
    assert lots == math.ceil((math.floor(540 / eoq) + 1) * eoq)


def test_abc_classes_split_by_cumulative_volume() -> None:
    classes = abc_classes({"a": 700.0, "b": 150.0, "c": 100.0, "d": 50.0}, 0.8, 0.95)
    assert classes == {"a": "A", "b": "A", "c": "B", "d": "C"}


# --- the planner --------------------------------------------------------------------------


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return make_settings(
        database_url,
        replenishment={"demand_window_days": WINDOW_DAYS, "review_days": 10},
    )


@pytest.fixture
async def client(
    store: Store, settings: ServerSettings, metrics: Metrics
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, settings, metrics)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stockgate.test") as http:
        for body in (
            {"sku": "WIDGET", "gtin": GTIN_A, "name": "Widget"},
            {"sku": "GADGET", "gtin": GTIN_B, "name": "Gadget"},
        ):
            response = await http.post("/api/v1/items", json=body, headers=ADMIN)
            assert response.status_code == 201, response.text
        for body in ({"id": "wh1"}, {"id": "wh1.receiving"}):
            response = await http.post("/api/v1/locations", json=body, headers=ADMIN)
            assert response.status_code == 201, response.text
        yield http


async def send(ingestor: Ingestor, batches: Batches, *events: dict[str, Any]) -> None:
    result = await ingestor.handle(batches.topic, batches.payload(list(events)))
    assert result.outcome == "applied", result.reason


async def past_purchase(
    client: httpx.AsyncClient,
    store: Store,
    ingestor: Ingestor,
    batches: Batches,
    number: str,
    placed: datetime,
    arrived: datetime,
    quantity: int,
) -> None:
    """A purchase order placed at ``placed`` and received at ``arrived`` (then closed)."""
    body = {
        "number": number,
        "location": "wh1.receiving",
        "partner": "ACME",
        "status": "open",
        "lines": [{"sku": "WIDGET", "quantity": quantity}],
    }
    response = await client.post("/api/v1/purchase-orders", json=body, headers=OPERATOR)
    assert response.status_code == 201, response.text
    order_id = response.json()["id"]
    async with store.begin("back-dating the order (test)") as conn:
        await conn.execute(orders.update().where(orders.c.id == order_id).values(placed_at=placed))
    await send(ingestor, batches, batches.event(gtin=GTIN_A, qty=quantity, at=arrived))
    response = await client.post(
        f"/api/v1/purchase-orders/{order_id}/status", json={"status": "closed"}, headers=OPERATOR
    )
    assert response.status_code == 200, response.text


async def plans(client: httpx.AsyncClient, **params: Any) -> dict[str, dict[str, Any]]:
    response = await client.get("/api/v1/replenishment/plans", params=params, headers=VIEWER)
    assert response.status_code == 200, response.text
    return {row["sku"]: row for row in response.json()["items"]}


async def alerts_of(client: httpx.AsyncClient, kind: str) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/alerts", headers=VIEWER)
    return [alert for alert in response.json()["items"] if alert["kind"] == kind]


async def test_demand_history_to_reorder_point_to_draft_to_confirmation(
    client: httpx.AsyncClient, store: Store, ingestor: Ingestor
) -> None:
    now = now_utc()
    day = timedelta(days=1)
    batches = Batches()
    # Two past orders measure the lead time: 5 and 8 days.
    await past_purchase(
        client, store, ingestor, batches, "PO-1", now - 60 * day, now - 55 * day, 120
    )
    await past_purchase(
        client, store, ingestor, batches, "PO-2", now - 45 * day, now - 37 * day, 80
    )
    # A month of shipments to customers: 3..9 a day.
    # Each at noon of one of the 30 whole days before today (the window the planner reads;
    # counted from now, the last one fell into today whenever the test ran after noon).
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    shipped = [3 + (n * 5) % 7 for n in range(WINDOW_DAYS)]
    for n, quantity in enumerate(shipped):
        when = today - (WINDOW_DAYS - n) * day + timedelta(hours=12)
        await send(
            ingestor, batches, batches.event(gtin=GTIN_A, qty=quantity, direction="out", at=when)
        )
    # A transfer is not demand.
    response = await client.post(
        "/api/v1/transfers",
        json={
            "gtin": GTIN_A,
            "from_location": "wh1.receiving",
            "to_location": "wh1",
            "quantity": 1,
        },
        headers=OPERATOR,
    )
    assert response.status_code in (200, 201), response.text
    response = await client.put(
        "/api/v1/replenishment/settings/WIDGET",
        json={"supplier": "ACME", "min_order": 20, "pack_size": 12},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text

    run = await client.post("/api/v1/replenishment/run", headers=OPERATOR)
    assert run.status_code == 200, run.text
    widget = (await plans(client))["WIDGET"]
    figures = widget["figures"]["computed"]
    # Every figure is explained, and the explanation reproduces it.
    assert figures["window_days"] == WINDOW_DAYS
    assert figures["d_bar"] == pytest.approx(sum(shipped) / WINDOW_DAYS, abs=1e-3)
    assert figures["sigma_d"] == pytest.approx(statistics.stdev(shipped), abs=1e-3)
    assert figures["L"] == pytest.approx(6.5, abs=1e-3)
    assert figures["sigma_L"] == pytest.approx(statistics.stdev([5, 8]), abs=1e-3)
    assert figures["lead_time"]["source"] == "history"
    assert figures["service_measure"] == "fill_rate"
    spread = math.sqrt(
        figures["L"] * figures["sigma_d"] ** 2 + figures["d_bar"] ** 2 * figures["sigma_L"] ** 2
    )
    assert figures["sigma_lead_time_demand"] == pytest.approx(spread, rel=1e-3)
    # z leaves (1 - service level) of an order's quantity short per cycle.
    assert figures["cycle_quantity"] == pytest.approx(figures["d_bar"] * 10, rel=1e-3)
    shortage = unit_normal_loss(figures["z"]) * spread
    allowed = (1 - figures["service_level"]) * figures["cycle_quantity"]
    assert shortage == pytest.approx(allowed, rel=1e-2)
    stock = figures["z"] * math.sqrt(
        figures["L"] * figures["sigma_d"] ** 2 + figures["d_bar"] ** 2 * figures["sigma_L"] ** 2
    )
    assert widget["safety_stock"] == pytest.approx(stock, rel=1e-3)
    assert widget["reorder_point"] == math.ceil(figures["d_bar"] * figures["L"] + stock - 1e-6)
    assert widget["source"] == "computed"
    position = widget["figures"]["position"]
    assert position["projected"] == 200 - sum(shipped)
    assert position["projected"] <= widget["reorder_point"]

    # The draft: one order for the supplier, the quantity in packs, an alert naming it.
    (draft,) = run.json()["drafts"]
    assert (draft["supplier"], draft["created"]) == ("ACME", True)
    ((sku, quantity),) = draft["lines"]
    assert sku == "WIDGET"
    assert quantity % 12 == 0
    assert quantity >= figures["order_up_to"] - position["projected"]
    (suggested,) = await alerts_of(client, "reorder_suggested")
    assert suggested["evidence"]["order_id"] == draft["order_id"]
    order = (
        await client.get(f"/api/v1/purchase-orders/{draft['order_id']}", headers=VIEWER)
    ).json()
    assert order["status"] == "draft"

    # Planning again updates the same draft.
    again = (await client.post("/api/v1/replenishment/run", headers=OPERATOR)).json()
    assert [(d["order_id"], d["created"]) for d in again["drafts"]] == [(draft["order_id"], False)]

    # The operator confirms: the order is open (on order), the alert clears, nothing is due.
    confirmed = await client.post(
        f"/api/v1/replenishment/drafts/{draft['order_id']}/confirm", headers=OPERATOR
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "open"
    assert await alerts_of(client, "reorder_suggested") == []
    twice = await client.post(
        f"/api/v1/replenishment/drafts/{draft['order_id']}/confirm", headers=OPERATOR
    )
    assert twice.status_code == 409
    last = (await client.post("/api/v1/replenishment/run", headers=OPERATOR)).json()
    assert last["drafts"] == []
    widget = (await plans(client))["WIDGET"]
    assert widget["figures"]["position"]["on_order"] == quantity
    assert widget["figures"]["to_order"] == 0

    # A manual reorder point in the item master wins, the computed one still shown.
    response = await client.patch(
        "/api/v1/items/WIDGET", json={"reorder_point": 7, "reorder_quantity": 50}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    await client.post("/api/v1/replenishment/run", headers=OPERATOR)
    widget = (await plans(client, sku="WIDGET"))["WIDGET"]
    assert (widget["source"], widget["reorder_point"], widget["order_quantity"]) == (
        "manual",
        7,
        50,
    )
    assert widget["figures"]["computed"]["reorder_point"] != 7


async def test_intermittent_items_and_defaults_are_explained(
    client: httpx.AsyncClient, ingestor: Ingestor
) -> None:
    now = now_utc()
    batches = Batches()
    await send(ingestor, batches, batches.event(gtin=GTIN_B, qty=40, at=now - timedelta(days=40)))
    for days_ago in (25, 15, 5):
        await send(
            ingestor,
            batches,
            batches.event(gtin=GTIN_B, qty=6, direction="out", at=now - timedelta(days=days_ago)),
        )
    assert (await client.post("/api/v1/replenishment/run", headers=OPERATOR)).status_code == 200
    gadget = (await plans(client))["GADGET"]["figures"]
    assert gadget["computed"]["demand"]["forecast"] == "sba"
    assert gadget["computed"]["lead_time"]["source"] == "default"
    assert gadget["computed"]["L"] == pytest.approx(7.0)
    assert gadget["supplier"] is None


async def test_the_schedule_runs_once_per_interval_across_instances(
    client: httpx.AsyncClient, store: Store, settings: ServerSettings
) -> None:
    now = now_utc()
    first = await run_planner(store, settings.replenishment, scheduled=True, now=now)
    second = await run_planner(store, settings.replenishment, scheduled=True, now=now)
    later = now + timedelta(seconds=settings.replenishment.interval_s + 1)
    third = await run_planner(store, settings.replenishment, scheduled=True, now=later)
    assert first is not None
    assert second is None
    assert third is not None
    async with store.read("probe") as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(orders)) == 0


async def test_only_operators_for_all_sites_plan_and_admins_set_terms(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/api/v1/replenishment/run", headers=VIEWER)).status_code == 403
    response = await client.put(
        "/api/v1/replenishment/settings/WIDGET", json={"service_level": 0.3}, headers=ADMIN
    )
    assert response.status_code == 422
    assert "service_level" in response.text
    response = await client.put("/api/v1/replenishment/settings/NOPE", json={}, headers=ADMIN)
    assert response.status_code == 404
    response = await client.get("/api/v1/replenishment/settings/WIDGET", headers=VIEWER)
    assert response.json() == {key: None for key in response.json()}
