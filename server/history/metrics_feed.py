"""What feeds the labelled metrics: ledger rows as the rollups follower commits them, and
each gateway's last status, read from the database every ``GATEWAY_EXPORT_S``.

Counting ledger rows in the follower rather than in ingest keeps the counters off the
ingest path and complete across instances (every row is followed once, whichever instance
applied it, API operations included).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Final

import sqlalchemy as sa

from server.errors import StoreError
from server.history.follow import LedgerRow
from server.history.rollups import ROLLUPS
from server.metrics import Metrics
from server.store.database import Store
from server.store.schema.core import gateways
from server.store.sites import site_of

log = logging.getLogger(__name__)

GATEWAY_EXPORT_S: Final = 10.0


def ledger_counter(metrics: Metrics) -> Callable[[str, Sequence[LedgerRow]], None]:
    """The ``on_rows`` of the followers: positions for all, row counts for the rollups."""

    def on_rows(follower: str, rows: Sequence[LedgerRow]) -> None:
        if not rows:
            return
        metrics.history_position.labels(follower=follower).set(rows[-1].id)
        if follower != ROLLUPS:
            return
        counts: Counter[tuple[str, str, str]] = Counter()
        quantities: Counter[tuple[str, str, str]] = Counter()
        for row in rows:
            location = row.to_location or row.from_location or ""
            key = (site_of(location), row.read_point or "", row.kind)
            counts[key] += 1
            quantities[key] += row.quantity
        for (site, read_point, kind), count in counts.items():
            labels = {"site": site, "read_point": read_point, "kind": kind}
            metrics.ledger_rows.labels(**labels).inc(count)
            metrics.ledger_quantity.labels(**labels).inc(quantities[(site, read_point, kind)])

    return on_rows


async def export_gateways(store: Store, metrics: Metrics) -> int:
    """Set the gateway gauges from each gateway's last status; returns how many."""
    async with store.read("exporting gateway metrics") as conn:
        rows = (
            await conn.execute(
                sa.select(gateways.c.id, gateways.c.site, gateways.c.state, gateways.c.status)
            )
        ).all()
    for gateway, site, state, status in rows:
        body: dict[str, Any] = status if isinstance(status, dict) else {}
        depth = body.get("buffer_depth")
        metrics.gateway_online.labels(gateway=gateway, site=site).set(1 if state == "online" else 0)
        if isinstance(depth, int):
            metrics.gateway_outbox_depth.labels(gateway=gateway, site=site).set(depth)
    return len(rows)


async def run_gateway_export(store: Store, metrics: Metrics) -> None:
    """``export_gateways`` every ``GATEWAY_EXPORT_S`` until cancelled."""
    while True:
        try:
            await export_gateways(store, metrics)
        except StoreError as err:
            log.warning("gateway metrics not exported: %s", err)
        await asyncio.sleep(GATEWAY_EXPORT_S)
