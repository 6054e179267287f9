"""The transaction of groups of prepared batches: claims, rows, dead letters, batch records.

One transaction for the groups planned while the transaction before was written (one
commit, one fsync); their Acks go out after that commit (``server.ingest.acks``). On
PostgreSQL several writers run such transactions at once, each after taking its turn
(``server.ingest.write_turns``: a transaction waits for earlier ones that touch what it
reads). A
database failure rolls the group back and its batches are not acked: transient ones
(locks, deadlocks) are retried ``[ingest] max_attempts`` times, then the edge's own
re-send brings the batches back later. A full disk (``StoreFull``) is not retried: the
batches wait at the edge until the database has room. If the transaction fails for a
reason that is not transient, each batch is retried in a transaction of its own, so one
batch the database refuses cannot hold back the others. On PostgreSQL the batches of each
site share a transaction of their own (``GroupWriter.commit``), so one site's balance rows
never make another site's batches wait.

``GroupWriter.plan`` plans a group from a read of the store before its transaction, while
the groups before are written: ``commit`` keeps that plan only if its claim, every commit
since the read and the groups written before it in the same transaction say nothing it
read has changed (``_still_valid``), else it plans again inside the transaction. The claim
is made in the writing transaction either way. The reads of the groups planned ahead are
made together when the transaction begins, and what those groups do besides their rows
follows once all their rows are sent (``server.ingest.prefetch``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from server.config.settings import IngestSettings, ReadPointSettings
from server.errors import StoreError, StoreFull, TransientStoreError
from server.ingest.apply import (
    ApplyContext,
    FollowUp,
    apply_events,
    apply_planned,
    run_deferred,
)
from server.ingest.dead_letters import DeadLetter, insert_dead_letters, printable
from server.ingest.gateway_trust import raise_trust_alerts
from server.ingest.intake import Prepared
from server.ingest.ledger_writes import Applied, BalanceDeltas, write_balance_deltas
from server.ingest.outboxes import OutboxMarks
from server.ingest.planning import EVENT_ID, PlannedEvents, plan_ahead
from server.ingest.prefetch import prefetch
from server.ingest.write_turns import EVERYTHING, Keys, WriteTurns, conflict_keys
from server.metrics import Metrics
from server.rules.policy import Policy
from server.store.database import Store
from server.store.schema.core import MAX_EVENT_ID, batches

log = logging.getLogger(__name__)

RETRY_BASE_S = 0.05
COMMITS_KEPT = 64
"""Ingest's own recent commits remembered for checking plans made ahead (older: replan)."""


@dataclass(frozen=True, slots=True)
class Ahead:
    """A group's events planned per site before its transaction (``GroupWriter.plan``)."""

    since: int
    """``Store.stock_writes`` before the plans' read: later commits are checked."""
    sites: dict[str, PlannedEvents | None] = field(default_factory=dict)
    """Per site, its plan; None: planned inside the transaction (counts, open orders)."""


Part = tuple[Sequence[Prepared], Ahead | None]
"""Batches planned together, with their plans made ahead (None: planned in the transaction)."""


@dataclass(frozen=True, slots=True)
class _Touched:
    """What one of ingest's commits changed that a plan made ahead may have read."""

    units: frozenset[str]
    items: frozenset[str]


class GroupWriter:
    """Plans groups of batches ahead and writes them, each group in its transaction.

    Args:
        store: the database.
        ingest: ``[ingest]`` (retries, dead-letter payload bound).
        policy: what the rules take from the config.
        metrics: counters to update.
    """

    def __init__(
        self, store: Store, ingest: IngestSettings, policy: Policy, metrics: Metrics
    ) -> None:
        self._store = store
        self._ingest = ingest
        self._policy = policy
        self._metrics = metrics
        self._commits: OrderedDict[int, _Touched] = OrderedDict()
        """Ingest's recent commits by their ``Store.stock_writes`` number."""
        self._outboxes = OutboxMarks()
        self._turns = WriteTurns()

    async def plan(
        self, group: Sequence[Prepared], read_points: Mapping[str, ReadPointSettings]
    ) -> Ahead | None:
        """Plan ``group``'s events before its transaction, from a read of the store.

        Returns:
            The plans, or None when the read failed (``commit`` then plans as usual).
        """
        since = self._store.stock_writes
        sites: dict[str, PlannedEvents | None] = {}
        try:
            async with self._store.read("planning a group of batches") as conn:
                for site, members in by_site(group):
                    sites[site] = await plan_ahead(
                        conn,
                        [event for prepared in members for event in prepared.events],
                        read_points,
                        self._policy,
                        between_steps=self._store.yield_to_writes,
                        not_seen=self._outboxes.not_seen(members),
                    )
        except StoreError as err:
            log.warning("planning ahead failed (%s); planning in the transaction", err)
            return None
        return Ahead(since, sites)

    async def commit(
        self,
        parts: Sequence[Part],
        read_points: Mapping[str, ReadPointSettings],
        now: datetime,
    ) -> list[Applied | None]:
        """Write ``parts`` (groups in the order they were planned, each with its plans made
        ahead) in one transaction; on PostgreSQL one transaction per site.

        Instances on a shared subscription get batches of every site. A transaction holding
        the balance rows of two sites would make an instance applying the other site's
        batches wait for it too; one transaction per site keeps the waits within a site
        (its balance rows). SQLite has one writer whatever the split, so it keeps one
        transaction (one commit) for all the parts.

        Returns:
            Per batch (the parts' batches in order), what it did; None for a batch that
            could not be applied.
        """
        group = [prepared for members, _ in parts for prepared in members]
        sites = sorted({prepared.header.site for prepared in group})
        # The turn is taken before anything is awaited: in the order the writers took
        # their parts from the planner (``server.ingest.write_turns``).
        async with self._turns.take(self._keys(parts, sites)):
            if self._store.dialect != "postgresql" or len(sites) == 1:
                return await self._commit(parts, read_points, now)
            done: dict[int, Applied | None] = {}
            for site in sites:
                mine = _of_site(parts, site)
                flat = [prepared for members, _ in mine for prepared in members]
                for prepared, applied in zip(
                    flat, await self._commit(mine, read_points, now), strict=True
                ):
                    done[id(prepared)] = applied
            return [done[id(prepared)] for prepared in group]

    def _keys(self, parts: Sequence[Part], sites: Sequence[str]) -> Keys:
        """The write-turn keys of ``parts``: SQLite writes one transaction at a time
        whatever they are, so its turns simply go in order."""
        if self._store.dialect == "sqlite":
            return EVERYTHING
        plans = [
            None if ahead is None else ahead.sites.get(site)
            for site in sites
            for _, ahead in _of_site(parts, site)
        ]
        return conflict_keys(plans, self._policy, self._store.known_locations)

    async def _commit(
        self,
        parts: Sequence[Part],
        read_points: Mapping[str, ReadPointSettings],
        now: datetime,
    ) -> list[Applied | None]:
        """Apply ``parts`` in one transaction; None for a batch that could not be applied."""
        group = [prepared for members, _ in parts for prepared in members]
        attempts = self._ingest.max_attempts
        names = ", ".join(prepared.header.batch_id for prepared in group[:3])
        doing = f"applying batch {names}" + (
            f" and {len(group) - 3} more" if len(group) > 3 else ""
        )
        for attempt in range(1, attempts + 1):
            try:
                async with self._store.begin(doing, events=True) as conn:
                    # A retry plans again: the first try may have settled the plan already.
                    mine = parts if attempt == 1 else [(group, None)]
                    done = await self._write(conn, mine, read_points, now)
            except StoreFull as err:
                # Every try would fail alike until space returns (the store logged it once
                # and reports it); the gateways keep these batches and re-send them.
                log.warning("%s: %s; not acked", doing, err)
                return [None] * len(group)
            except TransientStoreError as err:
                if attempt == attempts:
                    log.error("%s failed after %d tries: %s", doing, attempts, err)
                    return [None] * len(group)
                log.warning("%s: %s; retrying", doing, err)
                await asyncio.sleep(RETRY_BASE_S * 2 ** (attempt - 1))
                continue
            except StoreError as err:
                if len(group) == 1:
                    log.error("batch %s not applied: %s", names, err)
                    return [None]
                # One of them may be what the database refuses: each on its own.
                log.warning("%s failed (%s); applying each batch alone", doing, err)
                return [(await self._commit([([one], None)], read_points, now))[0] for one in group]
            # Only after the commit (nothing awaited since): what it changed, for the plans
            # made ahead of it; a rolled-back location insert must not be cached.
            self._committed(done)
            self._outboxes.committed(group)
            for applied in done:
                self._store.known_locations.update(applied.new_locations)
            return list(done)
        return [None] * len(group)

    def _committed(self, done: Sequence[Applied]) -> None:
        self._commits[self._store.stock_writes] = _Touched(
            frozenset().union(*(applied.units_written for applied in done)),
            frozenset().union(*(applied.items_created for applied in done)),
        )
        while len(self._commits) > COMMITS_KEPT:
            self._commits.popitem(last=False)

    def _still_valid(self, since: int, written: _Touched) -> Callable[[PlannedEvents], bool]:
        """Whether a plan made from a read after commit number ``since`` still holds.

        Called inside the writing transaction (on SQLite it holds the write lock, so no
        commit of this process can come between). Every stock commit after ``since`` must
        be one of ingest's own, and none of them, nor the parts ``written`` before in this
        transaction, may have written a unit the plan read or created an item the plan
        creates. Anything else committed (an API operation, a sweep) or too old to
        remember: plan again. Other processes' commits (PostgreSQL instances) are not seen
        here; they race with a plan as they race with any transaction's reads, and the SQL
        guards (claims, newer unit states, balance increments) hold.
        """

        def check(planned: PlannedEvents) -> bool:
            epcs = planned.epcs
            created = planned.new_items
            if not written.units.isdisjoint(epcs) or not written.items.isdisjoint(created):
                return False
            for number in range(since + 1, self._store.stock_writes + 1):
                touched = self._commits.get(number)
                if touched is None or not touched.units.isdisjoint(epcs):
                    return False
                if not touched.items.isdisjoint(created):
                    return False
            return True

        return check

    async def _write(
        self,
        conn: AsyncConnection,
        parts: Sequence[Part],
        read_points: Mapping[str, ReadPointSettings],
        now: datetime,
    ) -> list[Applied]:
        """The rows of ``parts``' batches, inside the caller's transaction.

        The batches of one site in one part are applied in one ``apply_events`` call: their
        events are planned together in event-time order (ties by event id), and every
        statement runs once for them instead of once per batch (each costs a round trip, and
        SQLAlchemy's fixed cost, whatever it holds). Each event keeps its gateway as the
        ledger row's actor; each batch's record says what became of its own events. A plan
        made ahead (``plan``) is written if it still holds, else the site's part is planned
        again; parts of one site are written in the order they were planned.
        """
        applied: dict[int, Applied] = {}
        units: set[str] = set()
        items: set[str] = set()
        claimed: set[str] = set()
        # Balances last: their row locks are then held for the commit only.
        pending: BalanceDeltas = {}
        group = [prepared for members, _ in parts for prepared in members]
        by_site = {site: _of_site(parts, site) for site in sorted({p.header.site for p in group})}
        # The reads of every group planned ahead at once, and what the groups do besides
        # their rows after all of them (``server.ingest.prefetch``).
        fetched = await prefetch(
            conn,
            [
                planned
                for site, site_parts in by_site.items()
                for _, ahead in site_parts
                if ahead is not None and (planned := ahead.sites.get(site)) is not None
            ],
            self._policy,
        )
        deferred: list[FollowUp] | None = [] if fetched is not None else None
        merged_parts: list[tuple[Sequence[Prepared], Applied]] = []
        # Sites in one order in every transaction, so instances lock their balance rows in
        # one order too (arrival order could deadlock two groups holding two sites each).
        for site, site_parts in by_site.items():
            for members, ahead in site_parts:
                context = self._context(members, read_points, site, now, pending)
                planned = ahead.sites.get(site) if ahead is not None else None
                if planned is not None and ahead is not None:
                    written = _Touched(frozenset(units), frozenset(items))
                    merged, kept = await apply_planned(
                        conn,
                        planned,
                        context,
                        still_valid=self._still_valid(ahead.since, written),
                        prefetched=None if fetched is None else fetched.seen_with(claimed),
                        deferred=deferred,
                    )
                    outcome = "ahead" if kept else "replanned"
                else:
                    if deferred:
                        await run_deferred(deferred)
                    events = [event for prepared in members for event in prepared.events]
                    merged = await apply_events(conn, events, context)
                    outcome = "in_transaction"
                self._metrics.ingest_plans.labels(outcome=outcome).inc()
                units |= merged.units_written
                items |= merged.items_created
                claimed |= merged.fresh_ids
                merged_parts.append((members, merged))
        if deferred:
            await run_deferred(deferred)
        for members, merged in merged_parts:
            for prepared, mine in zip(members, _split(merged, members), strict=True):
                applied[id(prepared)] = mine
        done = [applied[id(prepared)] for prepared in group]
        for prepared, result in zip(group, done, strict=True):
            letters = [*prepared.letters, *self._refusal_letters(prepared, result)]
            await insert_dead_letters(conn, letters, now, self._ingest.dead_letter_payload_bytes)
            await raise_trust_alerts(conn, prepared.letters, prepared.header.site, now)
        await conn.execute(
            batches.insert(),
            [
                {
                    "batch_id": printable(prepared.header.batch_id, MAX_EVENT_ID),
                    "site": prepared.header.site,
                    "gateway": prepared.header.gateway,
                    "epoch": prepared.header.epoch,
                    "seq_first": prepared.header.seq_first,
                    "seq_last": prepared.header.seq_last,
                    "events": prepared.count,
                    "applied": result.applied,
                    "duplicates": result.duplicates,
                    "dead_letters": len(prepared.letters) + len(result.refused),
                    "received_at": now,
                }
                for prepared, result in zip(group, done, strict=True)
            ],
        )
        await write_balance_deltas(conn, pending)
        return done

    def _context(
        self,
        members: Sequence[Prepared],
        read_points: Mapping[str, ReadPointSettings],
        site: str,
        now: datetime,
        pending: BalanceDeltas,
    ) -> ApplyContext:
        """Where, when and as whom ``members`` (batches of ``site``) are applied."""
        gateways = {prepared.header.gateway for prepared in members}
        return ApplyContext(
            read_points,
            self._store.known_locations,
            actor=members[0].header.gateway,
            site=site,
            now=now,
            policy=self._policy,
            actors=None if len(gateways) == 1 else _actors(members),
            pending=pending,
        )

    def _refusal_letters(self, prepared: Prepared, applied: Applied) -> list[DeadLetter]:
        letters = []
        for event, reason in applied.refused:
            self._metrics.dead_letters.labels(kind="negative_stock").inc()
            log.warning("event %s from %s refused: %s", event.event_id, prepared.topic, reason)
            letters.append(
                DeadLetter(
                    topic=prepared.topic,
                    reason=reason,
                    payload=event.model_dump_json(exclude_none=True).encode(),
                    gateway=prepared.header.gateway,
                    event_id=event.event_id,
                    kind="negative_stock",
                )
            )
        return letters


def by_site(group: Sequence[Prepared]) -> list[tuple[str, list[Prepared]]]:
    """The batches of ``group`` by site, sites sorted, batches in their order."""
    sites: dict[str, list[Prepared]] = {}
    for prepared in group:
        sites.setdefault(prepared.header.site, []).append(prepared)
    return sorted(sites.items())


def _of_site(parts: Sequence[Part], site: str) -> list[Part]:
    """``parts`` cut to ``site``'s batches and plans (parts with none of them left out)."""
    mine: list[Part] = []
    for members, ahead in parts:
        here = [prepared for prepared in members if prepared.header.site == site]
        if here:
            mine.append(
                (here, None if ahead is None else Ahead(ahead.since, {site: ahead.sites.get(site)}))
            )
    return mine


def _split(merged: Applied, members: Sequence[Prepared]) -> list[Applied]:
    """What one ``apply_events`` call over ``members``' events did, batch by batch.

    An event id belongs to the first batch that holds it (later ones, and repeats within a
    batch, are duplicates, as they are when the batches are applied one by one). The
    alerts opened, the locations created and any ledger row not tied to an event go with
    the first batch (the pass counters too: they are summed over the batches).
    """
    claimed = set(merged.fresh_ids)
    parts: list[Applied] = []
    for prepared in members:
        mine = []
        for event in prepared.events:
            if event.event_id in claimed:
                claimed.discard(event.event_id)
                mine.append(event.event_id)
        movements = sum(merged.movements_by_event.get(event_id, 0) for event_id in mine)
        ids = set(mine)
        refused = [(event, reason) for event, reason in merged.refused if event.event_id in ids]
        parts.append(
            Applied(
                applied=len(mine) - len(refused),
                duplicates=len(prepared.events) - len(mine),
                movements=movements,
                fresh_ids=ids,
                refused=refused,
            )
        )
    first = parts[0]
    first.alerts = merged.alerts
    first.new_locations = merged.new_locations
    first.unresolved = merged.unresolved
    first.grouped = merged.grouped
    first.units_written = merged.units_written
    first.items_created = merged.items_created
    first.movements += merged.movements - sum(part.movements for part in parts)
    return parts


def _actors(members: Sequence[Prepared]) -> dict[str, str]:
    """The gateway of each event of ``members``, by event id."""
    actors: dict[str, str] = {}
    for prepared in members:
        actors.update(dict.fromkeys(map(EVENT_ID, prepared.events), prepared.header.gateway))
    return actors
