"""The operations console over HTTP (no browser): sessions, CSRF, roles, resolve, search.

The browser tests (``tests/e2e/test_console_browser.py``) drive the same pages in Chromium
against a running server; these check the rules of each request on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from server_helpers import (
    GTIN_A,
    OPERATOR_KEY,
    VIEWER_KEY,
    Batches,
    Probe,
    make_settings,
    sgtin,
)
from test_server_unresolved import undirected

from server.api.context import Principal
from server.api.factory import create_app
from server.config.settings import ServerSettings
from server.console.sessions import COOKIE, Sessions
from server.ingest.consumer import Ingestor
from server.metrics import Metrics
from server.store.database import Store
from wire.barcodes import location_label
from wire.gs1 import gs1_item

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def app(store: Store, settings: ServerSettings, metrics: Metrics) -> FastAPI:
    made = create_app(store, settings, metrics)
    await made.state.read_points.seed()  # as the server does at start
    return made


def browser(app: FastAPI) -> httpx.AsyncClient:
    """A client with its own cookie jar (one person at one browser)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://stockgate.test"
    )


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as http:
        yield http


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, key: str) -> str:
    """Signs ``client`` in with ``key``; the session's CSRF token (from the Doors page)."""
    form = await client.get("/sign-in")
    done = await client.post("/sign-in", data={"csrf": csrf_of(form), "key": key})
    assert done.status_code == 303, done.text
    doors = await client.get("/")
    assert doors.status_code == 200, doors.text
    return csrf_of(doors)


async def ingest_passes(ingestor: Ingestor) -> None:
    """Three undirected passes at wh1.dock.1: a pallet of two and a stray one."""
    batches = Batches()
    events = [
        undirected(batches, sgtin(1), group="pallet-1"),
        undirected(batches, sgtin(2), group="pallet-1"),
        undirected(batches, sgtin(3)),
    ]
    result = await ingestor.handle(batches.topic, batches.payload(events))
    assert result.applied == 3


async def open_pass_ids(client: httpx.AsyncClient) -> dict[str, int]:
    """EPC -> id of the open passes, read from the Doors page."""
    page = await client.get("/")
    rows = re.findall(r'<tr data-pass="(\d+)">.*?<td class="epc">([^<]+)</td>', page.text, re.S)
    return {epc: int(pass_id) for pass_id, epc in rows}


async def on_hand(client: httpx.AsyncClient, query: str) -> dict[str, int]:
    """Location -> on hand of the Stock page's rows for ``query``."""
    page = await client.get("/stock", params={"q": query})
    assert page.status_code == 200, page.text
    rows = re.findall(
        r'data-location="([^"]+)">.*?<td class="on-hand">(-?\d+)</td>', page.text, re.S
    )
    return {location: int(count) for location, count in rows}


async def test_sign_in_gives_a_strict_http_only_session_and_sign_out_ends_it(
    client: httpx.AsyncClient,
) -> None:
    before = await client.get("/")
    form = await client.get("/sign-in")
    token = csrf_of(form)
    forged = await client.post("/sign-in", data={"csrf": "x" * 43, "key": OPERATOR_KEY})
    unknown = await client.post("/sign-in", data={"csrf": token, "key": "no-such-key-0123456"})
    # A failed attempt gets a fresh form (and token).
    stale_form = await client.post("/sign-in", data={"csrf": token, "key": OPERATOR_KEY})
    signed = await client.post("/sign-in", data={"csrf": csrf_of(unknown), "key": OPERATOR_KEY})
    cookie = client.cookies.get(COOKIE)
    doors = await client.get("/")
    csrf = csrf_of(doors)
    stale = await client.post("/sign-out", data={"csrf": "wrong"})
    out = await client.post("/sign-out", data={"csrf": csrf})
    after = await client.get("/")
    assert cookie is not None
    client.cookies.set(COOKIE, cookie)  # the old cookie, replayed
    replayed = await client.get("/")

    assert (before.status_code, before.headers["location"]) == (303, "/sign-in")
    assert forged.status_code == 403
    assert unknown.status_code == 401
    assert "not known" in unknown.text
    assert stale_form.status_code == 403
    assert signed.status_code == 303
    set_cookie = signed.headers["set-cookie"].lower()
    assert f"{COOKIE}=" in set_cookie
    assert "httponly" in set_cookie
    assert "samesite=strict" in set_cookie
    assert doors.status_code == 200
    assert "olga (operator)" in doors.text
    assert "default-src 'self'" in doors.headers["content-security-policy"]
    assert stale.status_code == 403
    assert (out.status_code, out.headers["location"]) == (303, "/sign-in")
    assert after.status_code == 303
    assert replayed.status_code == 303


async def test_an_operator_resolves_passes_on_the_doors_page_and_stock_follows(
    client: httpx.AsyncClient, ingestor: Ingestor, probe: Probe
) -> None:
    await ingest_passes(ingestor)
    csrf = await sign_in(client, OPERATOR_KEY)
    ids = await open_pass_ids(client)
    assert set(ids) == {sgtin(1), sgtin(2), sgtin(3)}
    before = await on_hand(client, GTIN_A)

    single = await client.post(
        f"/doors/passes/{ids[sgtin(3)]}/resolve", data={"csrf": csrf, "direction": "in"}
    )
    after_single = await on_hand(client, GTIN_A)
    again = await client.post(
        f"/doors/passes/{ids[sgtin(3)]}/resolve", data={"csrf": csrf, "direction": "out"}
    )
    notice = (await client.get(again.headers["location"])).text
    group = await client.post(
        "/doors/groups/resolve",
        data={"csrf": csrf, "group": "pallet-1", "read_point": "wh1.dock.1", "direction": "in"},
    )
    after_group = await on_hand(client, GTIN_A)
    bad = await client.post(
        "/doors/groups/resolve",
        data={"csrf": csrf, "group": "pallet-1", "direction": "sideways"},
    )

    assert before == {}
    assert single.status_code == 303
    assert after_single == {"wh1.receiving": 1}
    assert again.status_code == 303
    assert "Not resolved" in notice
    assert "already" in notice
    assert group.status_code == 303
    assert after_group == {"wh1.receiving": 3}
    assert bad.status_code == 422
    assert "sideways" in bad.text
    assert await open_pass_ids(client) == {}
    assert [row["actor"] for row in await probe.ledger()] == ["olga"] * 3


async def test_a_viewer_sees_no_write_buttons_and_forged_posts_are_refused(
    app: FastAPI, client: httpx.AsyncClient, ingestor: Ingestor, probe: Probe
) -> None:
    await ingest_passes(ingestor)
    csrf = await sign_in(client, VIEWER_KEY)
    page = await client.get("/")
    ids = await open_pass_ids(client)
    # The viewer's own session and token: still no write.
    forged = await client.post(
        f"/doors/passes/{ids[sgtin(1)]}/resolve", data={"csrf": csrf, "direction": "in"}
    )
    forged_group = await client.post(
        "/doors/groups/resolve", data={"csrf": csrf, "group": "pallet-1", "direction": "in"}
    )
    # An operator's session without the token (what another site's form would send).
    async with browser(app) as operator:
        await sign_in(operator, OPERATOR_KEY)
        no_token = await operator.post(
            f"/doors/passes/{ids[sgtin(1)]}/resolve", data={"direction": "in"}
        )
        wrong_type = await operator.post(
            f"/doors/passes/{ids[sgtin(1)]}/resolve",
            json={"csrf": "x", "direction": "in"},
        )
    async with browser(app) as anonymous:
        no_session = await anonymous.post(
            f"/doors/passes/{ids[sgtin(1)]}/resolve", data={"csrf": csrf, "direction": "in"}
        )

    assert "alice (viewer)" in page.text
    assert sgtin(1) in page.text
    assert "/resolve" not in page.text
    assert "<button" in page.text  # sign-out only
    assert page.text.count("<button") == 1
    assert forged.status_code == 403
    assert "operator" in forged.text
    assert forged_group.status_code == 403
    assert no_token.status_code == 403
    assert "CSRF" in no_token.text
    assert wrong_type.status_code == 415
    assert no_session.status_code == 401
    assert await probe.ledger() == []
    assert len(ids) == 3


async def test_stock_search_reads_scans_locations_skus_and_names(
    client: httpx.AsyncClient, ingestor: Ingestor
) -> None:
    batches = Batches()
    events = [
        batches.event(gtin=GTIN_A, qty=5, read_point="wh1.dock.1"),
        batches.event(epc=sgtin(9), read_point="wh1.dock.2"),
    ]
    assert (await ingestor.handle(batches.topic, batches.payload(events))).applied == 2
    await sign_in(client, VIEWER_KEY)

    by_gs1 = await on_hand(client, gs1_item(GTIN_A, lot="L1"))
    by_bare_gtin = await on_hand(client, GTIN_A)
    by_label = await on_hand(client, location_label("wh1.receiving"))
    by_location = await on_hand(client, "wh1.receiving.overflow")
    by_name = await on_hand(client, "unreviewed")
    everything = await on_hand(client, "")
    bad_digit = await client.get("/stock", params={"q": GTIN_A[:-1] + "0"})
    command = await client.get("/stock", params={"q": "CMD:RECEIVE"})
    control = await client.get("/stock", params={"q": "wh1\x07"})
    too_long = await client.get("/stock", params={"q": "a" * 201})
    nothing = await on_hand(client, "no such thing")

    assert by_gs1 == by_bare_gtin == {"wh1.receiving": 5, "wh1.receiving.overflow": 1}
    # A location means its subtree, as in the API (overflow lies under receiving).
    assert by_label == {"wh1.receiving": 5, "wh1.receiving.overflow": 1}
    assert by_location == {"wh1.receiving.overflow": 1}
    assert by_name == everything == by_gs1
    assert bad_digit.status_code == 400
    assert "check digit" in bad_digit.text
    assert command.status_code == 400
    assert "scanner command" in command.text
    assert control.status_code == 400
    assert "control character" in control.text
    assert too_long.status_code == 400
    assert "at most 200" in too_long.text
    assert nothing == {}


async def test_pages_load_nothing_from_outside_the_server(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    sign_in_page = await client.get("/sign-in")
    await sign_in(client, OPERATOR_KEY)
    pages = [sign_in_page, await client.get("/"), await client.get("/stock")]
    references = [ref for page in pages for ref in re.findall(r'(?:src|href)="([^"]*)"', page.text)]
    assets = [ref for ref in references if ref.startswith("/console/static/")]
    fetched = [await client.get(ref) for ref in sorted(set(assets))]
    async with browser(app) as anonymous:
        stream_without_session = await anonymous.get("/console/stream")

    assert references
    assert all(ref.startswith("/") and not ref.startswith("//") for ref in references)
    assert {ref.rsplit(".", 1)[-1] for ref in assets} == {"css", "js"}
    assert all(response.status_code == 200 for response in fetched)
    assert not any("http://" in r.text or "https://" in r.text for r in fetched)
    assert stream_without_session.status_code == 401


async def test_unknown_keys_at_sign_in_count_as_failed_authentications(
    store: Store, database_url: str
) -> None:
    api = {
        "host": "127.0.0.1",
        "port": 0,
        "keys": [{"key": OPERATOR_KEY, "role": "operator"}],
        "auth_failures_per_minute": 2,
    }
    app = create_app(store, make_settings(database_url, api=api))
    async with browser(app) as http:
        form = await http.get("/sign-in")
        first = await http.post("/sign-in", data={"csrf": csrf_of(form), "key": "guess-1-0123456"})
        second = await http.post(
            "/sign-in", data={"csrf": csrf_of(first), "key": "guess-2-0123456"}
        )
        third = await http.get("/sign-in")
    assert (first.status_code, second.status_code, third.status_code) == (401, 401, 429)


def test_sessions_are_bounded_and_expire() -> None:
    now = [0.0]
    sessions = Sessions(lifetime_s=10, max_sessions=2, clock=lambda: now[0])
    alice = Principal("alice", "viewer")
    first, _ = sessions.start(alice)
    second, _ = sessions.start(alice)
    third, _ = sessions.start(alice)
    assert sessions.find(first) is None  # the oldest made room
    assert sessions.find(second) is not None
    now[0] = 10.0
    assert sessions.find(third) is None
    assert sessions.find(None) is None
