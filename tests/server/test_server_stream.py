"""The live stream (SSE) on a real uvicorn port, read with httpx streaming, on both stores."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from server_helpers import (
    GTIN_A,
    GTIN_B,
    VIEWER_KEY,
    Batches,
    RecordingPublisher,
    make_settings,
    sgtin,
)

from server.alerts.stream import IdTail, StreamEnded, StreamEvent, StreamFeed, Subscription
from server.api.factory import create_app
from server.config.settings import ServerSettings
from server.ingest.consumer import Ingestor
from server.metrics import Metrics
from server.store.database import Store

WH2_KEY = "wh2-viewer-key-0123456789"
READ_TIMEOUT_S = 10.0


@dataclass
class Sse:
    event: str | None = None
    id: str | None = None
    data: Any = None
    comments: list[str] = field(default_factory=list)


class Reader:
    """Parses a text/event-stream body into events (comments kept for heartbeats)."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def next(self) -> Sse:
        event = Sse()
        async with asyncio.timeout(READ_TIMEOUT_S):
            async for line in self._lines:
                if line == "":
                    if event.event or event.comments:
                        return event
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    event.comments.append(value)
                elif name == "event":
                    event.event = value
                elif name == "id":
                    event.id = value
                elif name == "data":
                    event.data = json.loads(value)
        raise AssertionError("stream ended")

    async def until(self, kinds: set[str], limit: int = 50) -> list[Sse]:
        found: list[Sse] = []
        for _ in range(limit):
            event = await self.next()
            if event.event is not None:
                found.append(event)
                if kinds <= {e.event for e in found}:
                    return found
        raise AssertionError(f"no {kinds} within {limit} events: {found}")


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """``app`` on a real uvicorn, on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1000):  # up to 10 s
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        await app.state.stream_feed.close()
        server.should_exit = True
        await task
        sock.close()


def stream_settings(database_url: str, **stream: Any) -> ServerSettings:
    base = make_settings(database_url)
    keys = [key.model_dump() for key in base.api.keys]
    for key in keys:
        key["key"] = key["key"].get_secret_value()
    keys.append({"key": WH2_KEY, "role": "viewer", "name": "wh2", "sites": ["wh2"]})
    return make_settings(
        database_url,
        api={"host": "127.0.0.1", "port": 0, "keys": keys},
        stream={"poll_interval_s": 0.05, **stream},
    )


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return stream_settings(database_url)


def headers(key: str = VIEWER_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_stream_receives_movements_and_alerts_live(
    store: Store, settings: ServerSettings, ingestor: Ingestor, batches: Batches
) -> None:
    async with (
        serving(create_app(store, settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=READ_TIMEOUT_S) as http,
        http.stream("GET", "/api/v1/stream", headers=headers()) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = Reader(response)
        hello = await reader.next()  # sent once the stream is subscribed
        await ingestor.handle(batches.topic, batches.payload([batches.event(epc=sgtin(1))]))
        events = await reader.until({"movement", "alert"})

    assert "stockgate stream of alerts,movements" in hello.comments
    movement = next(e for e in events if e.event == "movement")
    alert = next(e for e in events if e.event == "alert")
    assert (movement.data["kind"], movement.data["epc"], movement.data["to_location"]) == (
        "receipt",
        sgtin(1),
        "wh1.receiving",
    )
    assert movement.id == f"m-{movement.data['id']}"
    assert (alert.data["change"], alert.data["alert"]["kind"], alert.data["alert"]["subject"]) == (
        "opened",
        "unknown_item",
        GTIN_A,
    )
    assert alert.id == f"a-{alert.data['event_id']}"


async def test_topics_and_sites_narrow_what_a_stream_gets(
    store: Store, settings: ServerSettings, ingestor: Ingestor
) -> None:
    wh1, wh2 = Batches(), Batches(site="wh2", gateway="gw2")
    async with (
        serving(create_app(store, settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=READ_TIMEOUT_S) as http,
        http.stream(
            "GET", "/api/v1/stream", params={"topics": "movements"}, headers=headers(WH2_KEY)
        ) as response,
    ):
        reader = Reader(response)
        await reader.next()
        await ingestor.handle(wh1.topic, wh1.payload([wh1.event(epc=sgtin(1))]))
        await ingestor.handle(
            wh2.topic, wh2.payload([wh2.event(gtin=GTIN_B, qty=4, read_point="wh2.dock.1")])
        )
        [event] = await reader.until({"movement"})

    # Only wh2's movement; no alerts (not asked for), nothing of wh1 (not this key's site).
    assert (event.data["gtin"], event.data["quantity"]) == (GTIN_B, 4)


async def test_stream_requests_are_checked(store: Store, database_url: str) -> None:
    settings = stream_settings(database_url, max_clients=1, heartbeat_s=0.1)
    feed = StreamFeed(store, settings.stream)
    async with (
        serving(create_app(store, settings, stream_feed=feed)) as url,
        httpx.AsyncClient(base_url=url, timeout=READ_TIMEOUT_S) as http,
    ):
        anonymous = await http.get("/api/v1/stream")
        unknown = await http.get("/api/v1/stream", params={"topics": "x,alerts"}, headers=headers())
        async with http.stream("GET", "/api/v1/stream", headers=headers()) as first:
            reader = Reader(first)
            await reader.next()
            heartbeat = await reader.next()
            second = await http.get("/api/v1/stream", headers=headers())
        # The slot is free again once the first stream's connection is closed.
        for _ in range(100):
            if feed.clients == 0:
                break
            await asyncio.sleep(0.05)
        async with http.stream("GET", "/api/v1/stream", headers=headers()) as third:
            third_status = third.status_code

    assert anonymous.status_code == 401
    assert unknown.status_code == 422
    assert "'x'" in unknown.json()["detail"]
    assert heartbeat.comments == ["heartbeat"]
    assert second.status_code == 429
    assert "1 streams are open" in second.json()["detail"]
    assert third_status == 200


async def test_shutdown_ends_open_streams(store: Store, settings: ServerSettings) -> None:
    feed = StreamFeed(store, settings.stream)
    app = create_app(store, settings, Metrics(), stream_feed=feed)
    async with (
        serving(app) as url,
        httpx.AsyncClient(base_url=url, timeout=READ_TIMEOUT_S) as http,
        http.stream("GET", "/api/v1/stream", headers=headers()) as response,
    ):
        reader = Reader(response)
        await reader.next()
        assert feed.clients == 1
        await feed.close()
        [end] = await reader.until({"end"})
    assert end.data == {"reason": "the server is stopping"}


# --- the pieces, without HTTP --------------------------------------------------------------


def test_id_tail_waits_for_ids_committed_out_of_order_then_gives_up() -> None:
    tail = IdTail(10, grace_s=5)
    assert tail.accept([11, 14], now=0) == [11, 14]
    assert tail.missing() == [12, 13]
    assert tail.accept([14, 12], now=1) == [12]  # 14 again: not delivered twice
    assert tail.missing() == [13]
    assert tail.accept([15], now=5) == [15]  # 13 waited 5 s: given up (rolled back)
    assert tail.missing() == []
    assert tail.accept([13], now=6) == []
    assert tail.high == 15


async def test_a_client_too_slow_is_ended_not_waited_for() -> None:
    subscription = Subscription(frozenset({"movements"}), lambda site: site == "wh1", size=2)
    for n in range(3):
        subscription.offer(StreamEvent("movements", frozenset({"wh1"}), f"{n}".encode()))
    subscription.offer(StreamEvent("alerts", frozenset({"wh1"}), b"not wanted"))
    with pytest.raises(StreamEnded, match="fell too far behind"):
        await subscription.next(1.0)

    other = Subscription(frozenset({"movements"}), lambda site: site == "wh1", size=2)
    other.offer(StreamEvent("movements", frozenset({"wh2"}), b"not this site"))
    other.offer(StreamEvent("movements", frozenset({"wh2", "wh1"}), b"a transfer"))
    assert await other.next(1.0) == b"a transfer"
    assert await other.next(0.01) is None


async def test_a_stream_on_a_busy_ledger_sees_every_row_once(
    store: Store, settings: ServerSettings, publisher: RecordingPublisher, metrics: Metrics
) -> None:
    feed = StreamFeed(store, settings.stream)
    ingestors = [Ingestor(store, settings, publisher, metrics) for _ in range(3)]
    gateways = [Batches(gateway=f"gw{n}") for n in range(3)]
    async with feed.subscribe(frozenset({"movements"}), lambda site: True) as subscription:

        async def feed_batches(ingestor: Ingestor, batches: Batches) -> None:
            for _ in range(5):
                events = [batches.event(gtin=GTIN_A, qty=1) for _ in range(20)]
                await ingestor.handle(batches.topic, batches.payload(events))

        pairs = zip(ingestors, gateways, strict=True)
        await asyncio.gather(*(feed_batches(ingestor, batches) for ingestor, batches in pairs))
        seen: list[int] = []
        async with asyncio.timeout(READ_TIMEOUT_S):
            for _ in range(1000):
                if len(seen) >= 300:
                    break
                chunk = await subscription.next(1.0)
                if chunk is not None:
                    seen.append(int(chunk.split(b"\n", 1)[0].removeprefix(b"id: m-")))
    await feed.close()
    assert sorted(seen) == sorted(set(seen))
    assert len(seen) == 300
