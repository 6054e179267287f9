"""Balances read for the negative-stock check (``server.rules.negative``), and a batch's plan
made again without the events that check refuses.

The check needs the balances a plan takes from and adds to, as the store holds them inside
the writing transaction. Where some site refuses negative stock, they are read ``FOR
UPDATE`` on PostgreSQL: two instances taking the last unit of one bin queue on its row, and
the second sees what the first left (SQLite has one writer, which the transaction already
is). With ``allow`` everywhere they are read without a lock: the alert they feed is
reconciled by the sweep anyway (``server.alerts.sweeps``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.rules.alerts import NEGATIVE_STOCK
from server.rules.model import AlertSpec, Plan
from server.rules.negative import Pair, Shortfall, StockCheck, check_movements, subject, touched
from server.rules.policy import Policy, site_of
from server.store.schema.core import balances, items
from wire.models import Event

MAX_NEGATIVE_LISTED = 10_000
"""Most negative balances one sweep reconciles (the rest wait for the next sweep)."""


async def load_on_hand(
    conn: AsyncConnection,
    pairs: Collection[Pair],
    item_ids: Mapping[str, int],
    *,
    lock: bool,
) -> dict[Pair, int]:
    """On hand of ``pairs`` (item ref, location); an item without an id holds nothing yet."""
    rows = [
        row
        for query in on_hand_queries(pairs, item_ids, lock=lock)
        for row in await conn.execute(query)
    ]
    return on_hand_of(rows, item_ids)


def on_hand_queries(
    pairs: Collection[Pair], item_ids: Mapping[str, int], *, lock: bool
) -> list[sa.Select[Any]]:
    """The reads of ``load_on_hand``: in chunks, so a huge batch never builds one enormous
    statement."""
    wanted = sorted((item_ids[ref], location) for ref, location in pairs if ref in item_ids)
    statements = []
    for start in range(0, len(wanted), 500):
        statement = (
            sa.select(balances.c.item_id, balances.c.location_id, balances.c.on_hand)
            .where(
                sa.tuple_(balances.c.item_id, balances.c.location_id).in_(
                    wanted[start : start + 500]
                )
            )
            .order_by(balances.c.item_id, balances.c.location_id)
        )
        statements.append(statement.with_for_update() if lock else statement)
    return statements


def on_hand_of(rows: Iterable[Sequence[Any]], item_ids: Mapping[str, int]) -> dict[Pair, int]:
    """Rows of ``on_hand_queries`` by (item ref, location)."""
    by_id = {item_id: ref for ref, item_id in item_ids.items()}
    return {(by_id[item_id], location): int(on_hand) for item_id, location, on_hand in rows}


async def check_stock(
    conn: AsyncConnection,
    movements_of: Plan,
    item_ids: Mapping[str, int],
    policy: Policy,
    *,
    refusable: bool = True,
    lock: bool | None = None,
    pending: Mapping[tuple[int, str], int] | None = None,
    stored: Mapping[Pair, int] | None = None,
) -> StockCheck:
    """``check_movements`` of one plan, from the balances the store holds now.

    Args:
        lock: read the balances ``FOR UPDATE``; None: where some site refuses.
        pending: deltas of this transaction not written to the balances yet, by (item id,
            location): added to what the store holds.
        stored: the balances of the plan's pairs, read earlier in this transaction
            without a lock (``server.ingest.prefetch``); None: read them now.
    """
    if lock is None:
        lock = policy.refuses_anywhere
    pairs = touched(movements_of.movements)
    if stored is None:
        on_hand = await load_on_hand(conn, pairs, item_ids, lock=lock)
    else:
        on_hand = {pair: stored[pair] for pair in pairs if pair in stored}
    if pending:
        for ref, location in pairs:
            if ref in item_ids and (delta := pending.get((item_ids[ref], location), 0)):
                on_hand[(ref, location)] = on_hand.get((ref, location), 0) + delta
    return check_movements(movements_of.movements, on_hand, policy, refusable=refusable)


async def settle_plan(
    conn: AsyncConnection,
    events: Sequence[Event],
    plan: Plan,
    replan: Callable[[list[Event]], Plan],
    item_ids: Mapping[str, int],
    policy: Policy,
    pending: Mapping[tuple[int, str], int] | None = None,
    stored: Mapping[Pair, int] | None = None,
) -> tuple[Plan, list[tuple[Event, str]]]:
    """``plan`` with the negative-stock check applied: alerts and clears added, and, where
    a site refuses, the plan made again without the refused events (``stored``: balances
    read earlier, for ``plan``'s first check; a plan made again reads them now).

    Refusing an event can change what later events in the batch do (a unit not picked is
    shipped from its bin, not from the pick zone), so the batch is planned again and
    checked again until no further event is refused (at most once per event).

    Returns:
        The plan to write, and each refused event with the reason.
    """
    refused: dict[str, tuple[Event, str]] = {}
    by_id: dict[str, Event] = {}  # ``events`` by id, made at the first refusal (most have none)
    for attempt in range(len(events) + 1):
        check = await check_stock(
            conn, plan, item_ids, policy, pending=pending, stored=None if attempt else stored
        )
        fresh = {
            event_id: shortfall
            for event_id, shortfall in check.refused.items()
            if event_id is not None and event_id not in refused
        }
        if not fresh:
            break
        by_id = by_id or {event.event_id: event for event in events}
        for event_id, shortfall in fresh.items():
            refused[event_id] = (by_id[event_id], _reason(shortfall))
        plan = replan([event for event in events if event.event_id not in refused])
    _merge(plan, check)
    return plan, list(refused.values())


def _reason(shortfall: Shortfall) -> str:
    return f"negative stock refused: {shortfall.reason()}"


def _merge(plan: Plan, check: StockCheck) -> None:
    # The check runs on the finished plan: its alerts and clears are the batch's last word
    # on those balances.
    keys = {(alert.kind, alert.subject) for alert in check.alerts}
    plan.cleared[:] = [key for key in plan.cleared if key not in keys]
    plan.alerts.extend(check.alerts)
    for key in check.cleared:
        if key not in plan.cleared:
            plan.cleared.append(key)


async def negative_balances(conn: AsyncConnection) -> list[AlertSpec]:
    """``negative_stock`` for every balance below zero now (the sweep's reconciliation)."""
    rows = await conn.execute(
        sa.select(balances.c.location_id, balances.c.on_hand, items.c.gtin, items.c.sku)
        .join(items, items.c.id == balances.c.item_id)
        .where(balances.c.on_hand < 0)
        .order_by(balances.c.location_id, items.c.id)
        .limit(MAX_NEGATIVE_LISTED)
    )
    return [
        NEGATIVE_STOCK.raise_(
            subject((gtin or sku, location)),
            {"location": location, "item": gtin or sku, "on_hand": int(on_hand)},
            site=site_of(location),
        )
        for location, on_hand, gtin, sku in rows
    ]


__all__ = ["check_stock", "load_on_hand", "negative_balances", "settle_plan"]
