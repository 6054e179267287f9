"""Console figures: how long the Doors and Stock pages take to load, and how heavy they are.

The same generated ledger as the ``api`` group (``bench.ledger_gen``: ``--ledger-rows``,
10 million by default), with a dock door per site configured as a read point so the Doors
page has its doors. The real server runs as its own process (``stockgate server``,
uvicorn on loopback TCP) with the history follower off, so that nothing catches up on the
generated ledger while pages load. One httpx client signs in with the viewer key (the
session cookie, as a browser would) and loads each page the way a browser's first visit
does: the HTML, then every stylesheet and script it references, one after another on one
keep-alive connection (a browser would fetch the two assets in parallel: this is the
slower order). Latency is from sending the first request to having read the last byte.

Baseline in the same run: the API requests that return the same data as JSON with a
bearer key (the Doors page's recent movements and open unresolved passes; the Stock
page's rows), so the ratio shows what the console adds over its data.

Not measured here: a browser's parse and paint (the browser tests check function, not
speed), and busy days: the generated ledger ends on ``ledger_gen.END``, so the Doors
page's "today" (pass quality) reads an empty range of the time index.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from bench import ledger_gen
from bench.cpu import percentile
from bench.figures import Figure, Target
from bench.files import remove_database
from bench.server_proc import API_KEY, ServerProcess

FIRST_PAGE_TARGET_MS: Final = 1000.0
PAGE_KB_TARGET: Final = 300.0
WARMUP: Final = 3
REQUEST_TIMEOUT_S: Final = 60.0
ASSET = re.compile(r'(?:src|href)="(/console/static/[^"]+)"')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(slots=True)
class Load:
    """One page load: milliseconds and bytes (HTML and assets)."""

    ms: float
    bytes: int


def read_points() -> list[dict[str, object]]:
    """The generated ledger's dock doors (``{site}.dock.1``), one per site."""
    return [
        {
            "id": f"{ledger_gen.site_id(site)}.dock.1",
            "inbound_location": ledger_gen.receiving(site),
            "outbound": "ship",
        }
        for site in range(ledger_gen.SITES)
    ]


async def _sign_in(client: httpx.AsyncClient) -> None:
    form = await client.get("/sign-in")
    token = CSRF.search(form.text)
    if token is None:
        raise RuntimeError(f"no CSRF token on the sign-in page: {form.text[:300]!r}")
    done = await client.post("/sign-in", data={"csrf": token.group(1), "key": API_KEY})
    if done.status_code != 303:
        raise RuntimeError(f"sign-in answered {done.status_code}: {done.text[:300]!r}")


async def _load(client: httpx.AsyncClient, path: str) -> Load:
    started = time.perf_counter()
    page = await client.get(path)
    if page.status_code != 200:
        raise RuntimeError(f"GET {path} -> {page.status_code}: {page.text[:300]!r}")
    size = len(page.content)
    for asset in sorted(set(ASSET.findall(page.text))):
        got = await client.get(asset)
        if got.status_code != 200:
            raise RuntimeError(f"GET {asset} -> {got.status_code}")
        size += len(got.content)
    return Load((time.perf_counter() - started) * 1000, size)


async def _api(client: httpx.AsyncClient, requests: list[tuple[str, dict[str, str]]]) -> float:
    started = time.perf_counter()
    for path, params in requests:
        answer = await client.get(path, params=params)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path} {params} -> {answer.status_code}")
        _ = answer.content
    return (time.perf_counter() - started) * 1000


async def measure(
    base_url: str, items: int, samples: int, seed: int
) -> tuple[dict[str, list[Load]], dict[str, list[float]]]:
    """``samples`` loads of each page (shuffled, after a warm-up) and of its API twin."""
    rng = random.Random(seed)
    pages: dict[str, list[Load]] = {"doors": [], "stock": []}
    apis: dict[str, list[float]] = {"doors": [], "stock": []}
    jobs = [name for name in pages for _ in range(samples)]
    rng.shuffle(jobs)
    bearer = {"Authorization": f"Bearer {API_KEY}"}
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as browser,
        httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S, headers=bearer) as api,
    ):
        await _sign_in(browser)

        def page_of(name: str) -> tuple[str, list[tuple[str, dict[str, str]]]]:
            if name == "doors":
                return "/", [
                    ("/api/v1/movements", {"limit": "200"}),
                    ("/api/v1/unresolved-passes", {"state": "open", "limit": "200"}),
                ]
            sku = ledger_gen.item_sku(rng.randrange(items) + 1)
            return f"/stock?q={sku}", [("/api/v1/stock", {"sku": sku, "limit": "200"})]

        for name in list(pages) * WARMUP:
            path, twin = page_of(name)
            await _load(browser, path)
            await _api(api, twin)
        for name in jobs:
            path, twin = page_of(name)
            pages[name].append(await _load(browser, path))
            apis[name].append(await _api(api, twin))
    return pages, apis


def first_page(
    mqtt_url: str, workdir: Path, ledger_rows: int, samples: int, *, seed: int = 11
) -> list[Figure]:
    """``console.first_page_ms`` (p95 over Doors and Stock loads) and ``console.page_kb``."""
    path = workdir / "console-ledger.db"
    remove_database(path)
    try:
        generated = ledger_gen.generate(path, ledger_rows)
        size_mb = path.stat().st_size / (1024 * 1024)
        with ServerProcess(
            workdir,
            mqtt_url=mqtt_url,
            database=path,
            read_points=read_points(),
            name="console-server",
            history=False,
        ) as server:
            pages, apis = asyncio.run(measure(server.base_url, generated.items, samples, seed))
    finally:
        remove_database(path)
    loads = [load.ms for name in pages for load in pages[name]]
    twins = [ms for name in apis for ms in apis[name]]
    heaviest = max(load.bytes for name in pages for load in pages[name]) / 1024
    by_page = {
        name: {
            "loads": len(pages[name]),
            "p50_ms": round(percentile([load.ms for load in pages[name]], 50), 2),
            "p95_ms": round(percentile([load.ms for load in pages[name]], 95), 2),
            "max_kb": round(max(load.bytes for load in pages[name]) / 1024, 1),
            "api_twin_p95_ms": round(percentile(apis[name], 95), 2),
        }
        for name in pages
    }
    p95 = percentile(loads, 95)
    common = {
        "ledger_rows": generated.ledger_rows,
        "database_mb": round(size_mb, 1),
        "by_page": by_page,
        "api_twin_p95_ms": round(percentile(twins, 95), 2),
        "ratio_to_api_twin": round(p95 / percentile(twins, 95), 2),
        "transport": "httpx.AsyncClient over TCP to uvicorn (stockgate server subprocess)",
    }
    data = (
        f"{generated.ledger_rows:,} generated ledger rows ({ledger_gen.SITES} sites, a dock "
        f"door each as read point; SQLite {size_mb:,.0f} MB); `stockgate server` in its own "
        "process, history follower off; one client signed in with a viewer key"
    )
    return [
        Figure(
            key="console.first_page_ms",
            value=round(p95, 2),
            unit="ms",
            how=(
                f"{data}. A load is the page's HTML then each stylesheet and script it "
                f"references, in turn on one keep-alive connection; {samples} loads each of "
                "the Doors page (/) and the Stock page searching a random SKU, shuffled; "
                f"p95 over all {len(loads)}. Baseline in the same run: the API requests "
                "returning the same data as JSON (ratio in the details)."
            ),
            target=Target("<=", FIRST_PAGE_TARGET_MS),
            detail={**common, "p50_ms": round(percentile(loads, 50), 2)},
        ),
        Figure(
            key="console.page_kb",
            value=round(heaviest, 1),
            unit="KB",
            how=(
                f"{data}. The heaviest single load of the runs above: HTML plus every "
                "stylesheet and script it references, uncompressed."
            ),
            target=Target("<=", PAGE_KB_TARGET),
            detail=common,
        ),
    ]
