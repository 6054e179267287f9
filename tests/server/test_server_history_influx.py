"""The InfluxDB history sink against a real time-series database.

Always against VictoriaMetrics (Debian's ``victoria-metrics``, which takes the InfluxDB v2
write API that influxdb-client speaks); also against a real InfluxDB 2 when
``INFLUXDB_URL`` and ``INFLUXDB_TOKEN`` are set (``INFLUXDB_ORG``, default ``stockgate``;
each test writes into a bucket of its own, made and dropped here). Points are read back
from the database and compared with the ledger: every side of every row exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
import sqlalchemy as sa
from server_helpers import ADMIN_KEY, BASE_TIME, GTIN_B, Batches, Probe, RecordingPublisher, sgtin

from bench.broker import Mosquitto, free_port
from bench.victoria import VictoriaMetrics
from plumbing.settings import load
from server.config.history import HistorySettings, InfluxSettings
from server.config.settings import ServerSettings
from server.errors import SinkUnavailable
from server.history.check import history_report
from server.history.follow import LedgerFollower, cursor_position, last_ledger_id, read_rows
from server.history.influx import GATEWAY, INFLUXDB, MOVEMENT, STOCK, InfluxSink
from server.history.rollups import ROLLUPS
from server.ingest.consumer import Ingestor
from server.metrics import Metrics
from server.store.database import Store
from server.store.schema.core import gateways
from server.store.schema.history import history_cursors

STOCKGATE = Path(sys.executable).parent / "stockgate"
FOLLOW = HistorySettings(batch_rows=40, retry_s=0.2, poll_interval_s=0.1)
WAIT_S = 120.0
INFLUX_ENV = ("INFLUXDB_URL", "INFLUXDB_TOKEN")
BACKENDS = ["victoriametrics"] + (
    ["influxdb"] if all(os.environ.get(k) for k in INFLUX_ENV) else []
)


class PointStore(Protocol):
    url: str
    org: str
    bucket: str
    token: str | None

    def movements(self) -> list[dict[str, Any]]:
        """Every ``stockgate_movement`` point: its tags plus ``ledger_id`` and ``quantity``."""
        ...

    def tags(self, measurement: str) -> list[dict[str, str]]:
        """The tag sets of ``measurement``'s series."""
        ...


class VictoriaStore:
    def __init__(self, server: VictoriaMetrics) -> None:
        self.server = server
        self.url = server.url
        self.org = "stockgate"
        self.bucket = "history"
        self.token: str | None = None

    def movements(self) -> list[dict[str, Any]]:
        points: dict[tuple[Any, ...], dict[str, Any]] = {}
        for field in ("ledger_id", "quantity"):
            for series in self.server.export(f'{{__name__="{MOVEMENT}_{field}"}}'):
                tags = {k: v for k, v in series["metric"].items() if k not in ("__name__", "db")}
                for value, stamp in zip(series["values"], series["timestamps"], strict=True):
                    key = (tuple(sorted(tags.items())), stamp)
                    points.setdefault(key, dict(tags))[field] = int(value)
        return list(points.values())

    def tags(self, measurement: str) -> list[dict[str, str]]:
        return [
            {k: v for k, v in series["metric"].items() if k not in ("__name__", "db")}
            for series in self.server.export(f'{{__name__=~"{measurement}_.*"}}')
        ]


class InfluxStore:
    def __init__(self) -> None:
        from influxdb_client import InfluxDBClient

        self.url = os.environ["INFLUXDB_URL"]
        self.token = os.environ["INFLUXDB_TOKEN"]
        self.org = os.environ.get("INFLUXDB_ORG", "stockgate")
        self.bucket = f"stockgate-test-{uuid.uuid4().hex[:12]}"
        self.client = InfluxDBClient(url=self.url, token=self.token, org=self.org)
        self.client.buckets_api().create_bucket(bucket_name=self.bucket, org=self.org)

    def close(self) -> None:
        api = self.client.buckets_api()
        found = api.find_bucket_by_name(self.bucket)
        if found is not None:
            api.delete_bucket(found)
        self.client.close()

    def _records(self, measurement: str) -> list[Any]:
        flux = (
            f'from(bucket: "{self.bucket}") |> range(start: 1970-01-01T00:00:00Z) '
            f'|> filter(fn: (r) => r._measurement == "{measurement}")'
        )
        return [
            record
            for table in self.client.query_api().query(flux, org=self.org)
            for record in table.records
        ]

    def movements(self) -> list[dict[str, Any]]:
        points: dict[tuple[Any, ...], dict[str, Any]] = {}
        for record in self._records(MOVEMENT):
            if record.get_field() not in ("ledger_id", "quantity"):
                continue
            tags = {
                k: v
                for k, v in record.values.items()
                if not k.startswith("_") and k not in ("result", "table")
            }
            key = (tuple(sorted(tags.items())), record.get_time())
            points.setdefault(key, dict(tags))[record.get_field()] = int(record.get_value())
        return list(points.values())

    def tags(self, measurement: str) -> list[dict[str, str]]:
        return [
            {
                k: v
                for k, v in record.values.items()
                if not k.startswith("_") and k not in ("result", "table")
            }
            for record in self._records(measurement)
        ]


@pytest.fixture(params=BACKENDS)
def points(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PointStore]:
    if request.param == "victoriametrics":
        with VictoriaMetrics(tmp_path) as server:
            yield VictoriaStore(server)
        return
    store = InfluxStore()
    try:
        yield store
    finally:
        store.close()


class TcpRelay:
    """A TCP relay in front of the sink, so a test can take the sink off the network and
    bring it back without touching the database behind it."""

    def __init__(self, target: str) -> None:
        host_port = target.split("://", 1)[1].rstrip("/")
        self._host, _, port = host_port.rpartition(":")
        self._port = int(port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._relay, "127.0.0.1", self.port, reuse_address=True
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self._host, self._port)
        except OSError:
            writer.close()
            return
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sink.close()


def _sink_settings(points: PointStore, url: str | None = None) -> InfluxSettings:
    return InfluxSettings(
        url=url or points.url,
        org=points.org,
        bucket=points.bucket,
        token=points.token,
        timeout_s=5.0,
        batch_points=50,
    )


async def _fill(ingestor: Ingestor, rounds: int, first_serial: int = 0) -> None:
    """Receipts, shipments and quantity receipts at two sites, each at its own millisecond."""
    epoch = f"{first_serial:08x}"
    wh1 = Batches(epoch=epoch)
    wh2 = Batches(site="wh2", gateway="gw2", epoch=epoch)
    for round_no in range(rounds):
        base = BASE_TIME + timedelta(hours=round_no, minutes=first_serial)
        events1, events2 = [], []
        for n in range(20):
            serial = first_serial + round_no * 100 + n
            at = base + timedelta(seconds=n * 7)
            events1.append(wh1.event(epc=sgtin(serial), at=at))
            if n % 3 == 0:
                events1.append(
                    wh1.event(epc=sgtin(serial), direction="out", at=at + timedelta(seconds=1))
                )
            events2.append(wh2.event(gtin=GTIN_B, qty=n + 1, read_point="wh2.dock.1", at=at))
        await ingestor.handle(wh1.topic, wh1.payload(events1))
        await ingestor.handle(wh2.topic, wh2.payload(events2))


async def _expected(probe: Probe) -> Counter[tuple[Any, ...]]:
    skus = {row["id"]: row["sku"] for row in (await probe.items()).values()}
    expected: Counter[tuple[Any, ...]] = Counter()
    for row in await probe.ledger():
        for place, side in ((row["from_location"], "out"), (row["to_location"], "in")):
            if place is not None:
                expected[
                    (
                        row["id"],
                        side,
                        place.split(".")[0],
                        place,
                        row["read_point"],
                        row["kind"],
                        skus[row["item_id"]],
                        row["quantity"],
                    )
                ] += 1
    return expected


def _found(points: PointStore) -> Counter[tuple[Any, ...]]:
    return Counter(
        (
            point["ledger_id"],
            point["side"],
            point["site"],
            point["location"],
            point.get("read_point"),
            point["kind"],
            point["sku"],
            point["quantity"],
        )
        for point in points.movements()
    )


async def _follow_all(follower: LedgerFollower, bound: int = 500) -> None:
    for _ in range(bound):
        if not await follower.step():
            return
    raise AssertionError("the follower did not catch up")


async def test_every_side_of_every_row_arrives_once_with_its_tags(
    store: Store, ingestor: Ingestor, probe: Probe, points: PointStore
) -> None:
    await _fill(ingestor, rounds=3)
    sink = InfluxSink(_sink_settings(points))
    follower = LedgerFollower(store, sink, FOLLOW)
    try:
        await _follow_all(follower)
        # Sending a step again (a crash between the write and the position) adds nothing.
        async with store.read("test") as conn:
            await sink.send(await read_rows(conn, 0, 30))
    finally:
        await sink.close()
    assert await cursor_position(store, INFLUXDB) == await last_ledger_id(store)
    expected = await _expected(probe)
    assert len(expected) > 100
    assert _found(points) == expected


async def test_a_sink_that_is_down_holds_the_position_and_is_caught_up_later(
    store: Store, ingestor: Ingestor, probe: Probe, points: PointStore
) -> None:
    relay = TcpRelay(points.url)
    await relay.start()
    sink = InfluxSink(_sink_settings(points, relay.url))
    follower = LedgerFollower(store, sink, FOLLOW)
    try:
        await _fill(ingestor, rounds=1)
        await _follow_all(follower)
        reached = await cursor_position(store, INFLUXDB)
        assert reached == await last_ledger_id(store)

        await relay.stop()
        await _fill(ingestor, rounds=2, first_serial=5000)
        with pytest.raises(SinkUnavailable):
            await follower.step()
        assert await cursor_position(store, INFLUXDB) == reached

        await relay.start()
        await _follow_all(follower)
    finally:
        await sink.close()
        await relay.stop()
    assert await cursor_position(store, INFLUXDB) == await last_ledger_id(store)
    assert _found(points) == await _expected(probe)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_samples_of_stock_and_gateways_carry_the_documented_tags(
    store: Store, ingestor: Ingestor, points: PointStore
) -> None:
    await _fill(ingestor, rounds=1)
    async with store.begin("test") as conn:
        await conn.execute(
            gateways.insert().values(
                id="gw1",
                site="wh1",
                state="online",
                status={"buffer_depth": 12, "reads_per_s": 3.5, "readers": []},
                status_at=BASE_TIME,
                last_seen=BASE_TIME,
            )
        )
    sink = InfluxSink(_sink_settings(points))
    try:
        written = await sink.sample(store, BASE_TIME + timedelta(days=1))
    finally:
        await sink.close()
    stock = points.tags(STOCK)
    assert {(tags["site"], tags["sku"]) for tags in stock} >= {("wh2", GTIN_B)}
    assert written >= len({(t["site"], t["sku"]) for t in stock}) + 1
    assert {"gateway": "gw1", "site": "wh1", "state": "online"} in points.tags(GATEWAY)


CONFIG = """
[mqtt]
url = "{mqtt}"
client_id = "history-{n}"
[database]
url = "sqlite+aiosqlite:///{db}"
[api]
port = 0
[[api.keys]]
key = "{key}"
role = "admin"
[[read_points]]
id = "wh1.dock.1"
inbound_location = "wh1.receiving"
[[read_points]]
id = "wh2.dock.1"
inbound_location = "wh2.receiving"
[history]
batch_rows = 25
poll_interval_s = 0.1
retry_s = 0.2
# The killed instance holds its leases until they run out; keep that short here.
lease_s = 2
[influxdb]
url = "{influx}"
org = "{org}"
bucket = "{bucket}"
batch_points = 20
sample_interval_s = 3600
"""


async def _wait(condition: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_killing_the_server_mid_follow_loses_and_doubles_nothing(
    tmp_path: Path, mosquitto: Mosquitto, points: PointStore
) -> None:
    db = tmp_path / "server.db"
    config = tmp_path / "server.toml"
    env = {**os.environ}
    if points.token:
        env["STOCKGATE_INFLUXDB__TOKEN"] = points.token
    config.write_text(
        CONFIG.format(
            mqtt=mosquitto.url,
            n=uuid.uuid4().hex[:8],
            db=db,
            key=ADMIN_KEY,
            influx=points.url,
            org=points.org,
            bucket=points.bucket,
        )
    )
    settings = load(ServerSettings, config)
    store = Store.open(settings.database)
    try:
        await store.migrate()
        await _fill(Ingestor(store, settings, RecordingPublisher(), Metrics()), rounds=12)
        newest = await last_ledger_id(store)
        probe = Probe(store)

        def start() -> subprocess.Popen[bytes]:
            with (tmp_path / "server.log").open("ab") as log:
                return subprocess.Popen(
                    [str(STOCKGATE), "server", "--config", str(config), "--log-level", "info"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )

        server = start()
        try:

            async def part_way() -> bool:
                return 0 < await cursor_position(store, INFLUXDB) < newest

            await _wait(part_way, "the sink follower to start")
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=30)
            killed_at = await cursor_position(store, INFLUXDB)
            assert killed_at < newest

            server = start()

            async def caught_up() -> bool:
                return (
                    await cursor_position(store, INFLUXDB) == newest
                    and await cursor_position(store, ROLLUPS) == newest
                )

            await _wait(caught_up, "both followers to catch up")
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.wait(timeout=30)
            if server.poll() is None:
                server.kill()
                server.wait()
        assert _found(points) == await _expected(probe)
        assert (await history_report(store)).lines == []
        async with store.read("test") as conn:
            owners = (await conn.execute(sa.select(history_cursors.c.owner))).scalars().all()
        assert owners == [None, None]  # released at the clean stop
    finally:
        await store.close()
