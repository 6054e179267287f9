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

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, Route, async_playwright, expect
from server_helpers import GTIN_A, OPERATOR_KEY, VIEWER_KEY, Batches, make_settings, sgtin
from test_server_broker import MESSAGE_TIMEOUT_S, next_message, running
from test_server_unresolved import undirected

from server.app import Server
from stockgate.mqtt import MqttClient
from stockgate.settings import MqttSettings

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


async def test_console_in_the_browser(
    browser: Browser, mosquitto: Any, database_url: str, tmp_path: Path
) -> None:
    folders = screenshot_dirs(tmp_path)
    settings = make_settings(
        database_url, mqtt={"url": mosquitto.url, "client_id": "stockgate-server-console"}
    )
    batches = Batches()
    loopback = Loopback()
    async with (
        running(Server(settings)) as server,
        MqttClient(MqttSettings(url=mosquitto.url), "edge-gw1") as edge,
    ):
        await edge.wait_connected(MESSAGE_TIMEOUT_S)
        await edge.subscribe(batches.ack_topic)
        base = f"http://127.0.0.1:{server.api_port}"
        page = await open_page(browser, loopback)
        await sign_in(page, base, OPERATOR_KEY)
        assert await fits(page)

        # A directed pass through the broker shows up at its door without a reload.
        live = batches.event(epc=sgtin(5), read_point="wh1.dock.1")
        await edge.publish(batches.topic, batches.payload([live]))
        recent = page.locator('section[data-read-point="wh1.dock.1"] table.recent tbody')
        await expect(recent).to_contain_text(sgtin(5), timeout=WAIT_MS)
        await next_message(edge)  # its ack
        stock_before = await on_hand(page, base, GTIN_A, "wh1.receiving")

        # Undirected passes: resolved with a click, one and then a whole group.
        passes = [
            undirected(batches, sgtin(1), group="pallet-1"),
            undirected(batches, sgtin(2), group="pallet-1"),
            undirected(batches, sgtin(3)),
            undirected(batches, sgtin(4), read_point="wh1.dock.2"),
        ]
        await edge.publish(batches.topic, batches.payload(passes))
        await next_message(edge)
        await page.goto(f"{base}/")
        queue = page.locator("table.unresolved tbody tr")
        await expect(queue).to_have_count(4)
        await shoot(page, "doors", folders)
        await page.locator(f"tr[data-pass]:has-text('{sgtin(3)}') button[value=in]").click()
        await expect(page.locator("p.notice")).to_contain_text("Resolved 1 pass(es) as in")
        stock_after_one = await on_hand(page, base, GTIN_A, "wh1.receiving")
        await page.goto(f"{base}/")
        await page.click("button:has-text('whole group in')")
        await expect(page.locator("p.notice")).to_contain_text("Resolved 2 pass(es) as in")
        stock_after_group = await on_hand(page, base, GTIN_A, "wh1.receiving")
        await shoot(page, "stock", folders)
        stock_fits = await fits(page)

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
        await viewer.click("button:has-text('Sign out')")
        await expect(viewer).to_have_url(f"{base}/sign-in")
        await shoot(viewer, "sign-in", folders)

    assert (stock_before, stock_after_one, stock_after_group) == ("1", "2", "4")
    assert stock_fits
    assert write_buttons == 0
    assert forged == 403
    assert still_open == 1
    assert loopback.refused == []
    assert any("/console/static/console.js" in url for url in loopback.allowed)
