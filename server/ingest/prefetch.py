"""The reads of a transaction's groups planned ahead, made once when the transaction begins.

A transaction writes several groups (``server.ingest.transactions``), and each group needs
three reads before its rows go out: which of its event ids were seen before (the claim, on
SQLite), the balances its movements take from and add to (the negative-stock check), and
whether an open purchase order's shipping notice lists an item it receives. Made group by
group, the reads of the second group queued behind the first group's rows (one process
runs SQLite's statements, in order) while the event loop waited with nothing to build.
Made for all groups at the start (on SQLite in one request to its process,
``dialect.read_together``), the rows of every group are sent one after the other: the
database writes one group's while the loop builds the next one's, and what the groups do
besides their rows (alerts, watches, notices marked) follows in their order once every row
is sent (``server.ingest.apply``, ``deferred``).

What the reads give holds until it is used, in the same transaction:

- seen ids: ids claimed by the transaction's earlier groups are added (``seen_with``);
- balances: ingest writes its deltas at the end of the transaction (``pending``), and the
  check adds the earlier groups' from there, as it does to balances read later;
- notices: receiving a unit marks it on a notice; it adds no notice and opens no order.

Only where no site refuses negative stock: a refusal plans again and reads the balances
again (under a lock on PostgreSQL). A group planned again in the transaction reads for
itself, after what the groups before it left to do is done.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from plumbing.records import record
from server.commands.asn import covering_query
from server.ingest.claims import seen_query
from server.ingest.negative_stock import on_hand_of, on_hand_queries
from server.ingest.planning import PlannedEvents
from server.rules.negative import Pair, touched
from server.rules.policy import Policy
from server.store.dialect import read_together


@record
class Prefetched:
    """What ``prefetch`` read for a transaction's groups planned ahead."""

    seen: frozenset[str] | None
    """SQLite: the groups' event ids seen before the transaction; None on PostgreSQL, where
    the claim's insert itself says which ids it won."""
    on_hand: dict[Pair, int]
    """The balances the groups' plans touch, as the store holds them."""
    noticed: bool
    """Whether an open purchase order's notice lists an item the groups receive (an item
    the transaction creates is on no notice yet)."""

    def seen_with(self, claimed: Collection[str]) -> Prefetched:
        """These reads for a later group: ``claimed``, the ids the transaction's earlier
        groups claimed, count as seen."""
        if self.seen is None or not claimed:
            return self
        return dataclasses.replace(self, seen=self.seen | frozenset(claimed))


async def prefetch(
    conn: AsyncConnection, planned: Sequence[PlannedEvents], policy: Policy
) -> Prefetched | None:
    """The reads of ``planned`` (groups planned ahead, in a transaction), or None where a
    site refuses negative stock (each group then reads for itself)."""
    if not planned or policy.refuses_anywhere:
        return None
    item_ids: dict[str, int] = {}
    pairs: set[Pair] = set()
    received: set[int] = set()
    for group in planned:
        known = group.inputs.item_ids
        item_ids.update(known)
        pairs |= touched(group.plan.movements)
        received.update(
            known[movement.item.ref]
            for movement in group.plan.movements
            if movement.kind == "receipt" and movement.item.ref in known
        )
    balances = on_hand_queries(pairs, item_ids, lock=False)
    queries: list[tuple[sa.Select[Any], Mapping[str, Any]]] = [(query, {}) for query in balances]
    queries.append((covering_query(received), {}))
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        ids = list(dict.fromkeys(event_id for group in planned for event_id in group.unique))
        queries.append(seen_query(conn, ids))
    # One wait for all of them on SQLite's process (``dialect.read_together``).
    rows = await read_together(conn, queries)
    return Prefetched(
        seen=frozenset(event_id for (event_id,) in rows[-1]) if sqlite else None,
        on_hand=on_hand_of((row for found in rows[: len(balances)] for row in found), item_ids),
        noticed=bool(rows[len(balances)]),
    )
