"""The InfluxDB history sink: ledger rows and sampled gauges as points, through influxdb-client.

Measurements (tags are bounded sets; EPCs, event ids and ledger ids are fields, never tags,
since every distinct tag value makes a series):

- ``stockgate_movement``, one point per side of a ledger row (as the SQL rollups count
  them): tags ``site``, ``location``, ``side`` (``in``/``out``), ``read_point`` (absent for
  rows without one), ``kind``, ``sku``; fields ``quantity`` (int), ``ledger_id`` (int),
  ``epc`` and ``event_id`` (strings, when the row has them). Time: the event time in
  nanoseconds plus ``ledger id mod 1000``, so two rows of one series in the same
  microsecond stay two points, and the same row written twice is one point (InfluxDB keeps
  one point per series and timestamp: a re-sent step replaces itself, which is what makes
  the follower's at-least-once delivery exactly once in the sink).
- ``stockgate_stock``, sampled every ``[influxdb] sample_interval_s``: tags ``site``,
  ``sku``; field ``on_hand`` (int, the item's balances summed over the site).
- ``stockgate_gateway``, sampled likewise from each gateway's last status: tags ``gateway``,
  ``site``, ``state``; fields ``buffer_depth``, ``oldest_unacked_age_s``, ``reads_per_s``,
  ``events_refused``, ``unread_windows``, ``online`` (1/0).
- ``stockgate_reader`` (portal pass quality as the edge reports it): tags ``gateway``,
  ``site``, ``reader``, ``state``; fields ``reads_per_s``, ``exceptions``,
  ``antennas_disconnected``.

Samples are stamped with the start of their interval, so a sample written twice is one
point. The batching write API of influxdb-client runs on its own threads (rx): it is
fenced in here, its callbacks only count what was written and hand that to the event loop
(``call_soon_threadsafe``); a step returns once every point it wrote is confirmed, and
raises ``SinkUnavailable`` otherwise (the follower keeps its position and sends again).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import WriteApi, WriteOptions, WriteType

from server.config.history import InfluxSettings
from server.errors import SinkUnavailable, StoreError
from server.history.follow import LedgerRow
from server.store.database import Store
from server.store.schema.core import balances, gateways, items
from server.store.sites import site_of

log = logging.getLogger(__name__)

INFLUXDB: Final = "influxdb"
"""The InfluxDB follower's cursor name."""
MOVEMENT: Final = "stockgate_movement"
STOCK: Final = "stockgate_stock"
GATEWAY: Final = "stockgate_gateway"
READER: Final = "stockgate_reader"
MEASUREMENTS: Final = {
    MOVEMENT: ("site", "location", "side", "read_point", "kind", "sku"),
    STOCK: ("site", "sku"),
    GATEWAY: ("gateway", "site", "state"),
    READER: ("gateway", "site", "reader", "state"),
}
"""Every measurement the sink writes and its tag keys (the Grafana test reads this)."""
FIELDS: Final = {
    MOVEMENT: ("quantity", "ledger_id", "epc", "event_id"),
    STOCK: ("on_hand",),
    GATEWAY: (
        "online",
        "buffer_depth",
        "events_refused",
        "unread_windows",
        "oldest_unacked_age_s",
        "reads_per_s",
    ),
    READER: ("reads_per_s", "exceptions", "antennas_disconnected"),
}
"""The fields of each measurement."""
SAME_MICROSECOND_SLOTS: Final = 1000
FLUSH_INTERVAL_MS: Final = 50
"""How long the batching writer waits for more points before it sends a partial batch."""


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _nanoseconds(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


_STRING_FIELD: Final = str.maketrans({'"': '\\"', "\\": "\\\\"})
"""Line protocol's escapes inside a string field value: double quote and backslash."""


def _string_field(text: str) -> str:
    """``text`` escaped as a string field value (most need no escape: no new string)."""
    return text.translate(_STRING_FIELD) if '"' in text or "\\" in text else text


SERIES_CACHED: Final = 65_536
"""Distinct movement series whose measurement and tags are kept written out."""


@functools.lru_cache(maxsize=SERIES_CACHED)
def _series(location: str, side: str, kind: str, sku: str, read_point: str | None) -> str:
    """``stockgate_movement`` and its tags as line protocol, up to the fields
    (``measurement,tag=value,... ``), written by influxdb-client's ``Point``: a step's
    thousands of points fall in a few series, and a ``Point`` per point cost more than
    the rest of the follower."""
    point = (
        Point(MOVEMENT)
        .tag("site", site_of(location))
        .tag("location", location)
        .tag("side", side)
        .tag("kind", kind)
        .tag("sku", sku)
        .tag("read_point", read_point or None)
        .field("quantity", 0)
    )
    line: str = point.to_line_protocol()
    return line.removesuffix("quantity=0i")


def movement_lines(rows: Iterable[LedgerRow]) -> list[str]:
    """The points of ``rows`` (one per side of each row) as line protocol."""
    lines: list[str] = []
    for row in rows:
        stamp = _nanoseconds(row.event_time) + row.id % SAME_MICROSECOND_SLOTS
        # Fields in name order, as ``Point`` writes them.
        fields = f"ledger_id={row.id}i,quantity={row.quantity}i {stamp}"
        if row.event_id is not None:
            fields = f'event_id="{_string_field(row.event_id)}",{fields}'
        if row.epc is not None:
            fields = f'epc="{_string_field(row.epc)}",{fields}'
        for location, side in ((row.from_location, "out"), (row.to_location, "in")):
            if location is not None:
                lines.append(_series(location, side, row.kind, row.sku, row.read_point) + fields)
    return lines


def _lines(body: Any) -> int:
    text = body.decode() if isinstance(body, bytes) else str(body)
    return text.count("\n") + 1 if text else 0


class _Ticket:
    """What one write is waiting for: its points confirmed, or the first failure."""

    def __init__(self, loop: asyncio.AbstractEventLoop, expected: int) -> None:
        self.loop = loop
        self.expected = expected
        self.confirmed = 0
        self.done: asyncio.Future[None] = loop.create_future()

    def confirm(self, lines: int) -> None:
        self.confirmed += lines
        if self.confirmed >= self.expected and not self.done.done():
            self.done.set_result(None)

    def fail(self, message: str) -> None:
        if not self.done.done():
            self.done.set_exception(SinkUnavailable(message))


class InfluxSink:
    """Writes ledger rows and samples to InfluxDB (see the module docstring).

    Args:
        settings: ``[influxdb]``.
    """

    name = INFLUXDB

    def __init__(self, settings: InfluxSettings) -> None:
        self._settings = settings
        self._client: InfluxDBClient | None = None
        self._writer: WriteApi | None = None
        self._ticket: _Ticket | None = None
        self._lock = threading.Lock()
        self.points_written = 0

    def _open(self) -> WriteApi:
        if self._writer is None:
            token = self._settings.token
            self._client = InfluxDBClient(
                url=self._settings.url,
                token=token.get_secret_value() if token is not None else "",
                org=self._settings.org,
                timeout=int(self._settings.timeout_s * 1000),
                enable_gzip=self._settings.gzip,
            )
            self._writer = self._client.write_api(
                write_options=WriteOptions(
                    write_type=WriteType.batching,
                    # Each record is already a chunk of ``batch_points`` lines: one request.
                    batch_size=1,
                    flush_interval=FLUSH_INTERVAL_MS,
                    # The follower retries whole steps; the client must not retry on its
                    # own behind it (a step would wait through the client's backoff).
                    max_retries=0,
                    max_close_wait=int(self._settings.timeout_s * 1000) + 1000,
                ),
                success_callback=self._on_success,
                error_callback=self._on_error,
            )
        return self._writer

    # Called on the client's threads: count and hand over, nothing else.
    def _on_success(self, _conf: Any, data: Any) -> None:
        with self._lock:
            ticket = self._ticket
        if ticket is not None:
            ticket.loop.call_soon_threadsafe(ticket.confirm, _lines(data))

    def _on_error(self, _conf: Any, _data: Any, err: Exception) -> None:
        with self._lock:
            ticket = self._ticket
        if ticket is not None:
            message = f"InfluxDB at {self._settings.url} refused or missed a write: {err}"
            ticket.loop.call_soon_threadsafe(ticket.fail, message[:500])

    async def _write(self, lines: Sequence[str]) -> None:
        """Write points given as line protocol; returns once InfluxDB confirmed them all."""
        if not lines:
            return
        loop = asyncio.get_running_loop()
        ticket = _Ticket(loop, len(lines))
        writer = self._open()
        with self._lock:
            self._ticket = ticket
        # Handed over in chunks of ``batch_points`` lines: the batching pipeline costs per
        # record it is given, and one record per point cost more than the rest of a step.
        size = self._settings.batch_points
        chunks = ["\n".join(lines[at : at + size]) for at in range(0, len(lines), size)]
        try:
            writer.write(
                bucket=self._settings.bucket,
                org=self._settings.org,
                record=chunks,
                write_precision=WritePrecision.NS,
            )
            async with asyncio.timeout(self._settings.timeout_s * 2 + 1):
                await ticket.done
        except (TimeoutError, SinkUnavailable) as err:
            # Writes still in flight would be counted for the next step: start afresh.
            await self.close()
            if isinstance(err, SinkUnavailable):
                raise
            raise SinkUnavailable(f"InfluxDB at {self._settings.url} did not answer") from err
        finally:
            with self._lock:
                self._ticket = None
        self.points_written += len(lines)

    async def send(self, rows: Sequence[LedgerRow]) -> None:
        """Write the points of ``rows``; returns once InfluxDB has them all.

        Raises:
            SinkUnavailable: some were not confirmed (all are sent again next time).
        """
        await self._write(movement_lines(rows))

    async def sample(self, store: Store, now: datetime) -> int:
        """Write stock levels and gateway health as of ``now``; returns the points written.

        Raises:
            StoreError: the database failed.
            SinkUnavailable: InfluxDB did not take them (the next sample is the next try).
        """
        interval = int(self._settings.sample_interval_s * 1_000_000_000)
        stamp = _nanoseconds(now) // interval * interval
        points = [*await _stock_points(store, stamp), *await _gateway_points(store, stamp)]
        await self._write([point.to_line_protocol() for point in points])
        return len(points)

    async def close(self) -> None:
        """Flush and close the client (its threads end)."""
        writer, client = self._writer, self._client
        self._writer = self._client = None
        if writer is not None:
            await asyncio.to_thread(writer.close)
        if client is not None:
            await asyncio.to_thread(client.close)

    async def run_samples(self, store: Store) -> None:
        """Sample every ``sample_interval_s`` until cancelled; failures are logged.

        Every instance samples; samples are stamped with their interval's start, so two
        instances write the same points.
        """
        try:
            while True:
                try:
                    await self.sample(store, datetime.now(UTC))
                except (StoreError, SinkUnavailable) as err:
                    log.warning("history samples not written: %s", err)
                await asyncio.sleep(self._settings.sample_interval_s)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.close())


async def _stock_points(store: Store, stamp: int) -> list[Point]:
    async with store.read("sampling stock levels") as conn:
        rows = (
            await conn.execute(
                sa.select(items.c.sku, balances.c.location_id, balances.c.on_hand).join(
                    items, items.c.id == balances.c.item_id
                )
            )
        ).all()
    totals: dict[tuple[str, str], int] = {}
    for sku, location, on_hand in rows:
        key = (site_of(location), sku)
        totals[key] = totals.get(key, 0) + int(on_hand)
    return [
        Point(STOCK)
        .tag("site", site)
        .tag("sku", sku)
        .field("on_hand", on_hand)
        .time(stamp, WritePrecision.NS)
        for (site, sku), on_hand in sorted(totals.items())
    ]


async def _gateway_points(store: Store, stamp: int) -> list[Point]:
    async with store.read("sampling gateway health") as conn:
        rows = (
            await conn.execute(
                sa.select(gateways.c.id, gateways.c.site, gateways.c.state, gateways.c.status)
            )
        ).all()
    points: list[Point] = []
    for gateway, site, state, status in rows:
        body: dict[str, Any] = status if isinstance(status, dict) else {}
        point = (
            Point(GATEWAY)
            .tag("gateway", gateway)
            .tag("site", site)
            .tag("state", state)
            .field("online", 1 if state == "online" else 0)
            .time(stamp, WritePrecision.NS)
        )
        for name in ("buffer_depth", "events_refused", "unread_windows"):
            value = body.get(name)
            if isinstance(value, int):
                point.field(name, value)
        for name in ("oldest_unacked_age_s", "reads_per_s"):
            value = body.get(name)
            if isinstance(value, int | float):
                point.field(name, float(value))
        points.append(point)
        readers = body.get("readers")
        for reader in readers if isinstance(readers, list) else []:
            if not isinstance(reader, dict) or not isinstance(reader.get("name"), str):
                continue
            disconnected = reader.get("antennas_disconnected")
            points.append(
                Point(READER)
                .tag("gateway", gateway)
                .tag("site", site)
                .tag("reader", reader["name"])
                .tag("state", str(reader.get("state", "unknown")))
                .field("reads_per_s", float(reader.get("reads_per_s") or 0.0))
                .field("exceptions", int(reader.get("exceptions") or 0))
                .field(
                    "antennas_disconnected",
                    len(disconnected) if isinstance(disconnected, list) else 0,
                )
                .time(stamp, WritePrecision.NS)
            )
    return points
