"""SQLite's plans for the history pages the benchmark times (``history.pages_p99_ms``).

A page over a site's hours grouped by location and kind must come out of
``ix_history_place_movements_site`` in the order it is served: no temporary B-tree for the
grouping or the order, so SQLite stops after the rows of one page instead of reading and
sorting every row of the window (revision 0019). A dock's page and an item's page must be
read from their tables' keys, which start with the read point (then kind and side) and the
item (revision 0021: their rows are next to each other in the file).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from server.config.settings import DatabaseSettings
from server.history.queries import MovementHistoryQuery, movement_select
from server.store.database import Store

WEEK_START = datetime(2025, 3, 3, tzinfo=UTC)
WEEK_END = WEEK_START + timedelta(days=7)
PAGE = 1000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = Store.open(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}"))
    try:
        await opened.migrate()
        yield opened
    finally:
        await opened.close()


SITE_WEEK = MovementHistoryQuery(
    period="hour", since=WEEK_START, until=WEEK_END, group_by=("location", "kind"), location="wh2"
)
"""A site's week per hour by location and kind (the benchmark's ``site_location_hours``)."""


async def _plan(
    store: Store, query: MovementHistoryQuery, after: list[Any] | None = None
) -> list[str]:
    select = movement_select(query, after=after).limit(PAGE + 1)
    sql = str(select.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    async with store.read("explaining a history page") as conn:
        rows = await conn.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}"))
        return [str(row[-1]) for row in rows]


def _read_in_order(plan: list[str], index: str) -> None:
    assert any(index in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


async def test_a_site_page_by_location_and_kind_is_read_in_page_order(store: Store) -> None:
    _read_in_order(await _plan(store, SITE_WEEK), "ix_history_place_movements_site")


async def test_the_next_site_page_is_read_in_page_order_too(store: Store) -> None:
    after: list[Any] = [WEEK_START + timedelta(hours=5), "in", "wh2.a01.b01", "receipt"]
    _read_in_order(await _plan(store, SITE_WEEK, after), "ix_history_place_movements_site")


async def test_a_dock_page_is_read_from_the_place_rollup_by_its_key(store: Store) -> None:
    query = MovementHistoryQuery(
        period="hour",
        since=WEEK_START,
        until=WEEK_END,
        read_point="wh2.dock.1",
        kind="receipt",
        side="in",
    )
    plan = await _plan(store, query)
    _read_in_order(
        plan,
        "history_place_movements USING PRIMARY KEY "
        "(period=? AND read_point=? AND kind=? AND side=? AND bucket>? AND bucket<?)",
    )


async def test_an_item_page_is_read_from_the_item_rollup_by_its_key(store: Store) -> None:
    query = MovementHistoryQuery(
        period="day",
        since=WEEK_START - timedelta(days=83),
        until=WEEK_END,
        group_by=("site",),
        sku="SKU-1",
    )
    plan = await _plan(store, query)
    assert any(
        "history_movements USING PRIMARY KEY (period=? AND item_id=?" in step for step in plan
    ), plan
