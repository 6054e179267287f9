"""The console in a real browser: Debian's Chromium driven by Playwright, a running server
(ingest from a real Mosquitto, the API and the console on a loopback port), SQLite and
PostgreSQL.

One test per database walks what an operator and a viewer do: sign in, watch a pass arrive
live on the Doors page, resolve unresolved passes with a click and see the Stock page
change, and the viewer's page without write buttons whose forged posts are refused. Every
request the browser makes goes through a route that lets only 127.0.0.1 through; the test
fails if anything else was asked for. The page is used at tablet width (800 px).

Screenshots of each page go to the test's temp dir, and also to ``$STOCKGATE_SCREENSHOTS``
when set (``STOCKGATE_SCREENSHOTS=docs/screenshots`` refreshes the README's).
"""

from __future__ import annotations

import asyncio
import csv
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, Route, async_playwright, expect
from server_helpers import GTIN_A, OPERATOR_KEY, VIEWER_KEY, Batches, make_settings, sgtin
from test_server_broker import MESSAGE_TIMEOUT_S, next_message, running
from test_server_fleet import online
from test_server_unresolved import undirected

from plumbing.mqtt import MqttClient
from plumbing.settings import MqttSettings
from server.app import Server

pytestmark = [pytest.mark.broker, pytest.mark.e2e, pytest.mark.xdist_group("browser")]

CHROMIUM: Final = "/usr/lib/chromium/chromium"
CHROMIUM_ARGS: Final = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TABLET: Final = {"width": 800, "height": 1000}
WAIT_MS: Final = 15_000
"""Generous: the machine is shared; the stream itself polls far more often."""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


class Loopback:
    """Lets requests to 127.0.0.1 through and aborts (and records) every other one."""

    def __init__(self) -> None:
        self.allowed: list[str] = []
        self.refused: list[str] = []

    async def __call__(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            self.allowed.append(url)
            await route.continue_()
        else:
            self.refused.append(url)
            await route.abort()


async def open_page(browser: Browser, loopback: Loopback) -> Page:
    context = await browser.new_context(viewport=TABLET)  # type: ignore[arg-type]
    await context.route("**/*", loopback)
    return await context.new_page()


async def sign_in(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/")
    await expect(page).to_have_url(f"{base}/sign-in")
    await page.fill("input[name=key]", key)
    await page.click("button:has-text('Sign in')")
    await expect(page.locator("h1")).to_contain_text("Doors")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=WAIT_MS)


async def on_hand(page: Page, base: str, query: str, location: str) -> str:
    await page.goto(f"{base}/stock")
    await page.fill("input[name=q]", query)
    await page.press("input[name=q]", "Enter")
    await expect(page.locator("p.taken")).to_be_visible()
    cell = page.locator(f'tr[data-location="{location}"] td.on-hand')
    return await cell.inner_text() if await cell.count() else "0"


def screenshot_dirs(tmp_path: Path) -> list[Path]:
    wanted = [tmp_path]
    if extra := os.environ.get("STOCKGATE_SCREENSHOTS"):
        wanted.append(Path(extra))
    for folder in wanted:
        folder.mkdir(parents=True, exist_ok=True)
    return wanted


async def shoot(page: Page, name: str, folders: list[Path]) -> None:
    for folder in folders:
        await page.screenshot(path=folder / f"{name}.png", full_page=True)


async def fits(page: Page) -> bool:
    """The page needs no horizontal scrolling at the viewport's width."""
    width: Any = await page.evaluate("document.documentElement.scrollWidth")
    return int(width) <= TABLET["width"]


LIVE_DEADLINE_MS: Final = 2000
"""The issue's functional deadline: a pass shows on the Doors page this soon after the
edge publishes it (a deadline, not a benchmark: the figure is in the assertion message)."""

WATCH: Final = """(epc) => {
    // When a row holding the EPC enters a door's recent passes or queue: Date.now().
    window.__seen = window.__seen || {};
    const found = () => [...document.querySelectorAll("section.door tr")]
        .some((row) => row.textContent.includes(epc));
    const observer = new MutationObserver(() => {
        if (!window.__seen[epc] && found()) { window.__seen[epc] = Date.now(); }
    });
    observer.observe(document.body, {childList: true, subtree: true});
}"""


async def watch(page: Page, epc: str) -> None:
    await page.evaluate(WATCH, epc)


async def seen_after(page: Page, epc: str, published_ms: float) -> float:
    """Milliseconds from ``published_ms`` (wall clock) to the row's arrival in the DOM."""
    seen: Any = await page.evaluate("(epc) => window.__seen[epc]", epc)
    return float(seen) - published_ms


async def test_console_in_the_browser(
    browser: Browser, mosquitto: Any, database_url: str, tmp_path: Path
) -> None:
    folders = screenshot_dirs(tmp_path)
    settings = make_settings(
        database_url, mqtt={"url": mosquitto.url, "client_id": "stockgate-server-console"}
    )
    batches = Batches()
    loopback = Loopback()
    wide: dict[str, bool] = {}
    async with (
        running(Server(settings)) as server,
        MqttClient(MqttSettings(url=mosquitto.url), "edge-gw1") as edge,
    ):
        await edge.wait_connected(MESSAGE_TIMEOUT_S)
        await edge.subscribe(batches.ack_topic)
        base = f"http://127.0.0.1:{server.api_port}"
        page = await open_page(browser, loopback)
        await sign_in(page, base, OPERATOR_KEY)
        wide["doors"] = await fits(page)

        # A directed pass through the broker shows up at its door without a reload, within
        # the deadline (the page notes when the row enters the DOM).
        await watch(page, sgtin(5))
        live = batches.event(epc=sgtin(5), read_point="wh1.dock.1")
        published_ms = time.time() * 1000
        await edge.publish(batches.topic, batches.payload([live]))
        recent = page.locator('section[data-read-point="wh1.dock.1"] table.recent tbody')
        await expect(recent).to_contain_text(sgtin(5), timeout=WAIT_MS)
        pass_ms = await seen_after(page, sgtin(5), published_ms)
        await next_message(edge)  # its ack
        stock_before = await on_hand(page, base, GTIN_A, "wh1.receiving")

        # Undirected passes join the doors' queues live (no reload), and are resolved with
        # a click, one and then a whole group.
        await page.goto(f"{base}/")
        await expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        await watch(page, sgtin(4))
        passes = [
            undirected(batches, sgtin(1), group="pallet-1"),
            undirected(batches, sgtin(2), group="pallet-1"),
            undirected(batches, sgtin(3)),
            undirected(batches, sgtin(4), read_point="wh1.dock.2"),
        ]
        queued_at_ms = time.time() * 1000
        await edge.publish(batches.topic, batches.payload(passes))
        queue = page.locator("table.unresolved tbody tr")
        await expect(queue).to_have_count(4, timeout=WAIT_MS)
        queue_ms = await seen_after(page, sgtin(4), queued_at_ms)
        await next_message(edge)
        await shoot(page, "doors", folders)
        await page.locator(f"tr[data-pass]:has-text('{sgtin(3)}') button[value=in]").click()
        await expect(page.locator("p.notice")).to_contain_text("Resolved 1 pass(es) as in")
        stock_after_one = await on_hand(page, base, GTIN_A, "wh1.receiving")
        await page.goto(f"{base}/")
        await page.click("button:has-text('whole group in')")
        await expect(page.locator("p.notice")).to_contain_text("Resolved 2 pass(es) as in")
        stock_after_group = await on_hand(page, base, GTIN_A, "wh1.receiving")
        await shoot(page, "stock", folders)
        wide["stock"] = await fits(page)

        # A gateway reports its health; the Gateways page shows it.
        await edge.publish(
            "stockgate/v1/wh1/gw1/status", online(at=datetime.now(UTC).isoformat()), retain=True
        )
        await page.goto(f"{base}/gateways")
        gateway = page.locator("section#gw-gw1")
        for _ in range(50):
            if await gateway.count():
                break
            await asyncio.sleep(0.2)
            await page.reload()
        await expect(gateway).to_contain_text("61.9 °C")
        await shoot(page, "gateways", folders)
        wide["gateways"] = await fits(page)

        # The item page (from the Stock page's link) with its charts, and a unit's life.
        await page.goto(f"{base}/stock?q={GTIN_A}")
        await page.locator("table.stock a").first.click()
        await expect(page.locator("svg.chart")).to_have_count(2)
        await shoot(page, "item", folders)
        wide["item"] = await fits(page)
        await page.goto(f"{base}/units/{sgtin(5)}")
        await expect(page.locator("dd.status")).to_have_text("in_stock")
        await shoot(page, "unit", folders)
        wide["unit"] = await fits(page)

        # Movements: filter by a door, then download the CSV of that filter.
        await page.goto(f"{base}/movements")
        await page.fill("input[name=read_point]", "wh1.dock.1")
        await page.click("button:has-text('Filter')")
        shown = await page.locator("table.movements tbody tr").count()
        await shoot(page, "movements", folders)
        wide["movements"] = await fits(page)
        async with page.expect_download() as download_info:
            await page.click("a.csv")
        download = await download_info.value
        saved = tmp_path / "movements.csv"
        await download.save_as(saved)
        with saved.open(newline="") as file:
            exported = list(csv.DictReader(file))
        # The first page of a filter tails it live: a pass at dock 1 joins, one at dock 2
        # (outside the filter) does not.
        await expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        tail = [
            batches.event(epc=sgtin(6), read_point="wh1.dock.2"),
            batches.event(epc=sgtin(7), read_point="wh1.dock.1"),
        ]
        await edge.publish(batches.topic, batches.payload(tail))
        await expect(page.locator("table.movements tbody")).to_contain_text(
            sgtin(7), timeout=WAIT_MS
        )
        await next_message(edge)
        tailed = await page.locator("table.movements tbody").inner_text()

        # Alerts: the door's unresolved pass (one is still open at dock 2) is acknowledged.
        await page.goto(f"{base}/alerts")
        row = page.locator("tr:has-text('unresolved_passes')")
        await row.locator("button:has-text('Acknowledge')").click()
        await expect(page.locator("p.notice")).to_contain_text("acknowledged")
        await expect(page.locator("tr:has-text('unresolved_passes')")).to_contain_text(
            "acknowledged by olga"
        )
        await shoot(page, "alerts", folders)
        wide["alerts"] = await fits(page)

        # Reports: every report route listed; one run in the page.
        await page.goto(f"{base}/reports")
        await shoot(page, "reports", folders)
        wide["reports"] = await fits(page)
        await page.click("a:has-text('Dead stock')")
        await expect(page.locator("h1")).to_have_text("Dead stock")

        # A viewer: the open pass is shown, no write button; a forged post is refused.
        viewer = await open_page(browser, loopback)
        await sign_in(viewer, base, VIEWER_KEY)
        await expect(viewer.locator("table.unresolved tbody tr")).to_have_count(1)
        write_buttons = await viewer.locator("form[action*='resolve'] button").count()
        pass_id = await viewer.locator("tr[data-pass]").get_attribute("data-pass")
        forged = await viewer.evaluate(
            """async (id) => {
                const csrf = document.querySelector("input[name=csrf]").value;
                const body = new URLSearchParams({csrf, direction: "in"});
                const response = await fetch(`/doors/passes/${id}/resolve`, {
                    method: "POST", body, redirect: "manual"});
                return response.status;
            }""",
            pass_id,
        )
        await viewer.reload()
        still_open = await viewer.locator("table.unresolved tbody tr").count()
        await viewer.goto(f"{base}/alerts")
        viewer_acks = await viewer.locator("button:has-text('Acknowledge')").count()
        await viewer.click("button:has-text('Sign out')")
        await expect(viewer).to_have_url(f"{base}/sign-in")
        await shoot(viewer, "sign-in", folders)

    print(f"publish to DOM: pass {pass_ms:.0f} ms, unresolved pass {queue_ms:.0f} ms")
    assert pass_ms <= LIVE_DEADLINE_MS, f"the pass took {pass_ms:.0f} ms to show"
    assert queue_ms <= LIVE_DEADLINE_MS, f"the unresolved pass took {queue_ms:.0f} ms to show"
    assert (stock_before, stock_after_one, stock_after_group) == ("1", "2", "4")
    assert wide == dict.fromkeys(wide, True)
    assert len(wide) == 8
    # dock 1: the live receipt and the three resolved passes.
    assert shown == 4
    assert len(exported) == shown
    assert {row["read_point"] for row in exported} == {"wh1.dock.1"}
    assert sgtin(6) not in tailed
    assert write_buttons == 0
    assert viewer_acks == 0
    assert forged == 403
    assert still_open == 1
    assert loopback.refused == []
    assert any("/console/static/console.js" in url for url in loopback.allowed)
