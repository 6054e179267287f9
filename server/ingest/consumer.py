"""Ingest: one MQTT events message in, one committed transaction and one Ack out.

``Ingestor.handle(topic, payload)`` knows nothing of MQTT: the composition root feeds it the
messages and gives it a publisher for Acks, so tests drive it directly or through a broker.

For each message:

1. The topic must be ``stockgate/v1/{site}/{gateway}/events``; the payload at most
   ``wire.models.MAX_PAYLOAD_BYTES``, JSON, and a valid ``BatchEnvelope`` whose site and
   gateway are the topic's. Otherwise the whole message is dead-lettered and not acked
   (there is nothing trustworthy to ack); it is never retried by the server.
   The gateway must be one the registry takes (``server.ingest.gateway_trust``).
2. Each event is validated on its own. An invalid event, or one naming a read point that is
   not configured (reason ``unknown read point``) or that belongs to another site, or one
   ``server.ingest.gateway_trust`` refuses (an id outside the batch's range, a read point the
   gateway does not own, a time from the future), becomes one dead-letter row; its
   neighbours still apply.
3. One transaction: claim the event ids, apply the rules to the fresh ones, write ledger,
   balances, units, items, locations, alerts, dead letters and the batch record; commit.
4. Only then the Ack goes to ``stockgate/v1/{site}/{gateway}/ack``. A batch that was applied
   before (every id seen) is acked again: the edge re-sends when it lost the first Ack.
   Events the rules refused (negative stock where a site refuses it,
   ``server.ingest.negative_stock``) are dead letters too, and the Ack lists them with the reason
   so the gateway can show it on the scanner that sent them.

A database failure rolls the batch back and sends no Ack; transient ones (locks, deadlocks)
are retried ``[ingest] max_attempts`` times, then the edge's own re-send brings the batch
back later. A full disk (``StoreFull``) is not retried: the batch waits at the edge until
the database has room, and the store reports the state (``Store.full``). Nothing here
raises for bad input, so one bad message never stops the loop.

Throughput (the server keeps up with many gateways on one core):

- ``prepare`` (steps 1 and 2) and ``apply`` (steps 3 and 4) are separate, so the composition
  root checks the next messages while the database commits the previous ones, and hands
  ``apply`` every batch that queued up meanwhile: they share one transaction (one commit,
  one fsync), and their Acks go out after that commit, one message per gateway. If the
  shared transaction fails for a reason that is not transient, each batch is retried in a
  transaction of its own, so one batch the database refuses cannot hold back the others.
  On PostgreSQL the batches of each site share a transaction of their own
  (``_commit_sites``), so one site's balance rows never make another site's batches wait.
- ``plan`` plans a group from a read of the store before its transaction, while the group
  before is written: ``apply`` keeps that plan only if its claim and every commit since
  the read say nothing it read has changed (``_still_valid``), else it plans again inside
  the transaction. The claim is made in the writing transaction either way.
- A well-formed batch (the common case) is parsed and validated in one call
  (``EventBatch.model_validate_json``); only when that fails, or an event needs a dead
  letter, does the per-event path above run, so the outcome is the same either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts.relay import AlertRelay
from server.commands.read_points import ReadPointCatalog
from server.config.settings import ReadPointSettings, ServerSettings
from server.errors import PublishFailed, StoreError, StoreFull, TransientStoreError
from server.ingest.apply import Applied, PlannedEvents, apply_events, apply_planned, plan_ahead
from server.ingest.dead_letters import DeadLetter, insert_dead_letters, printable
from server.ingest.gateway_trust import GatewayTrust, raise_trust_alerts, store_rejected
from server.ingest.payloads import (
    VALIDATION_ERRORS,
    PayloadError,
    control_characters,
    decode_json,
    describe,
)
from server.metrics import Metrics
from server.queries.views import AlertView
from server.rules import location_problem
from server.store.database import Store
from server.store.schema.core import MAX_EVENT_ID, batches
from wire import topics
from wire.models import (
    MAX_ACK_BATCHES,
    MAX_ACK_REFUSED,
    MAX_PAYLOAD_BYTES,
    Ack,
    AckedBatch,
    BatchEnvelope,
    BatchHeader,
    Event,
    EventBatch,
    RefusedEvent,
    now_utc,
)

log = logging.getLogger(__name__)

Publisher = Callable[[str, bytes], Awaitable[None]]
"""Publishes ``payload`` on ``topic`` with QoS 1; raises ``PublishFailed`` when it cannot."""
Outcome = Literal["applied", "duplicate", "rejected", "failed"]
RETRY_BASE_S = 0.05
BUSY_TAIL_S = 0.5
"""Ingest counts as busy this long after its last group (``Ingestor.busy``): between two
groups of a burst it is not idle."""
COMMITS_KEPT = 64
"""Ingest's own recent commits remembered for checking plans made ahead (older: replan)."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What became of one message.

    ``outcome`` is ``applied`` (committed, maybe with dead-lettered events), ``duplicate``
    (every event applied before), ``rejected`` (the whole message dead-lettered, no Ack) or
    ``failed`` (the database failed; no Ack, the edge will re-send).
    """

    outcome: Outcome
    batch_id: str | None = None
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    movements: int = 0
    acked: bool = False
    reason: str | None = None
    alerts: tuple[AlertView, ...] = ()


@dataclass(frozen=True, slots=True)
class Prepared:
    """A message that passed the whole-message checks, with its events checked one by one."""

    topic: str
    header: EventBatch | BatchEnvelope
    events: list[Event]
    """The events to apply."""
    letters: list[DeadLetter]
    """The events that became dead letters."""
    seconds: float
    """Time spent preparing it."""

    @property
    def count(self) -> int:
        """Events the message held."""
        return len(self.header.events)


@dataclass(frozen=True, slots=True)
class Ahead:
    """A group's events planned per site before its transaction (``Ingestor.plan``)."""

    since: int
    """``Store.stock_writes`` before the plans' read: later commits are checked."""
    sites: dict[str, PlannedEvents | None] = field(default_factory=dict)
    """Per site, its plan; None: planned inside the transaction (counts, open orders)."""


@dataclass(frozen=True, slots=True)
class _Touched:
    """What one of ingest's commits changed that a plan made ahead may have read."""

    units: frozenset[str]
    items: frozenset[str]


class Ingestor:
    """Applies event batches exactly once and acknowledges them after the commit.

    Args:
        store: the database.
        settings: read points and ``[ingest]`` knobs.
        publish: sends Acks and alerts (QoS 1).
        metrics: counters to update.
        clock: the recording time (UTC); tests may fix it.
        relay: delivers alert changes (MQTT, webhooks); default: one of its own over
            ``publish`` and ``settings``.
        read_points: the read point table (``server.commands.read_points``); None: the config's
            ``[[read_points]]`` as they are.
    """

    def __init__(
        self,
        store: Store,
        settings: ServerSettings,
        publish: Publisher,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime] = now_utc,
        relay: AlertRelay | None = None,
        read_points: ReadPointCatalog | None = None,
    ) -> None:
        self._store = store
        self._read_points: Mapping[str, ReadPointSettings] = settings.read_point_table()
        self._catalog = read_points
        self._policy = settings.policy()
        self._ingest = settings.ingest
        self._publish = publish
        self._metrics = metrics
        self._clock = clock
        self._relay = relay or AlertRelay(
            store, publish, settings.alerts, settings.webhooks, clock=clock
        )
        self._trust = GatewayTrust(settings)
        self._commits: OrderedDict[int, _Touched] = OrderedDict()
        """Ingest's recent commits by their ``Store.stock_writes`` number."""
        self._working = 0
        self._worked_at = -BUSY_TAIL_S

    def busy(self) -> bool:
        """True while a group is planned or applied, and ``BUSY_TAIL_S`` after the last.

        The history followers defer to it (``server.history.follow``).
        """
        return self._working > 0 or time.monotonic() - self._worked_at < BUSY_TAIL_S

    @contextlib.contextmanager
    def _at_work(self) -> Iterator[None]:
        self._working += 1
        try:
            yield
        finally:
            self._working -= 1
            self._worked_at = time.monotonic()

    async def handle(self, topic: str, payload: bytes) -> IngestResult:
        """Take one message from ``stockgate/v1/+/+/events``. Never raises for bad input."""
        prepared = await self.prepare(topic, payload)
        if isinstance(prepared, IngestResult):
            return prepared
        [result] = await self.apply([prepared])
        return result

    async def prepare(
        self, topic: str, payload: bytes, *, keep_rejects: bool = True
    ) -> Prepared | IngestResult:
        """Steps 1 and 2 for one message: a ``Prepared`` batch, or the rejection.

        Writes to the database only to keep a rejected message as a dead letter (not when
        ``keep_rejects`` is False: a replay of a dead letter). Never raises for bad input.
        """
        started = time.perf_counter()
        gateway: str | None = None
        try:
            site, gateway, kind = topics.parse_gateway_topic(topic)
            if kind != "events":
                raise PayloadError("topic", f"topic {topic!r} is not an events topic")
            if (refusal := self._trust.gateway_problem(site, gateway)) is not None:
                raise PayloadError(refusal.kind, refusal.reason)
            if self._catalog is not None:
                # The read point table as data (API changes included); cached, see read_points.
                self._read_points = await self._catalog.table()
            header, events, letters = self._checked(topic, payload, site, gateway)
        except topics.TopicError as err:
            result = await self._reject(topic, payload, None, PayloadError("topic", str(err)))
        except PayloadError as err:
            if not keep_rejects:
                return IngestResult("rejected", reason=err.reason)
            result = await self._reject(topic, payload, gateway, err)
        else:
            return Prepared(topic, header, events, letters, time.perf_counter() - started)
        self._metrics.batch_seconds.observe(time.perf_counter() - started)
        self._metrics.batches.labels(outcome=result.outcome).inc()
        return result

    async def plan(self, group: Sequence[Prepared]) -> Ahead | None:
        """Plan ``group``'s events before its transaction, from a read of the store.

        The composition root plans the next group while the previous one is written and
        committed (the rules and the reads they need overlap the database's work); ``apply``
        claims the ids in its transaction as always and keeps a plan only if nothing that
        committed since its read can have changed what it read (see ``_still_valid``).

        Returns:
            The plans, or None when the read failed (``apply`` then plans as usual).
        """
        since = self._store.stock_writes
        sites: dict[str, PlannedEvents | None] = {}
        try:
            with self._at_work():
                async with self._store.read("planning a group of batches") as conn:
                    for site, members in _by_site(group):
                        sites[site] = await plan_ahead(
                            conn,
                            [event for prepared in members for event in prepared.events],
                            self._read_points,
                            self._policy,
                        )
        except StoreError as err:
            log.warning("planning ahead failed (%s); planning in the transaction", err)
            return None
        return Ahead(since, sites)

    async def apply(
        self, group: Sequence[Prepared], ahead: Ahead | None = None
    ) -> list[IngestResult]:
        """Steps 3 and 4 for prepared batches: one transaction, then their Acks.

        Args:
            group: the batches.
            ahead: their plans made by ``plan`` (None: planned in the transaction).

        Returns:
            One result per batch, in order.
        """
        started = time.perf_counter()
        now = self._clock()
        with self._at_work():
            done = await self._commit_sites(group, now, ahead)
            acked = await self._ack(group, done)
        await self._relay_alerts(done)
        elapsed = time.perf_counter() - started
        results: list[IngestResult] = []
        for prepared, applied, ack in zip(group, done, acked, strict=True):
            batch_id = prepared.header.batch_id
            if applied is None:
                why = "database full" if self._store.full is not None else "database failure"
                result = IngestResult("failed", batch_id, reason=f"{why}; no Ack, edge re-sends")
            else:
                self._metrics.events_applied.inc(applied.applied)
                self._metrics.events_duplicate.inc(applied.duplicates)
                self._count_passes(applied)
                duplicate = applied.applied == 0 and applied.duplicates > 0 and not prepared.letters
                result = IngestResult(
                    "duplicate" if duplicate else "applied",
                    batch_id,
                    applied=applied.applied,
                    duplicates=applied.duplicates,
                    dead_letters=len(prepared.letters) + len(applied.refused),
                    movements=applied.movements,
                    acked=ack,
                    alerts=tuple(applied.alerts),
                )
            self._metrics.batch_seconds.observe(prepared.seconds + elapsed)
            self._metrics.batches.labels(outcome=result.outcome).inc()
            results.append(result)
        return results

    def _count_passes(self, applied: Applied) -> None:
        for point, count in applied.unresolved.items():
            self._metrics.unresolved_passes.labels(read_point=point).inc(count)
        for (point, direction), count in applied.grouped.items():
            self._metrics.group_passes.labels(read_point=point, direction=direction).inc(count)

    def _checked(
        self, topic: str, payload: bytes, site: str, gateway: str
    ) -> tuple[EventBatch | BatchEnvelope, list[Event], list[DeadLetter]]:
        """The batch header, the events to apply and the dead letters of one message.

        Raises:
            PayloadError: the whole message is unusable.
        """
        batch = self._whole_batch(payload)
        latest = self._trust.latest_time(self._clock())
        if (
            batch is not None
            and batch.site == site
            and batch.gateway == gateway
            and not any(self._problem(event, batch, latest) for event in batch.events)
        ):
            return batch, list(batch.events), []
        # Something in it is wrong: the per-event path says what, and keeps the rest.
        envelope = self._envelope(payload)
        if envelope.site != site or envelope.gateway != gateway:
            raise PayloadError(
                "mismatch",
                f"batch says site {envelope.site!r} gateway {envelope.gateway!r} but was "
                f"published on the topic of site {site!r} gateway {gateway!r}",
            )
        events, letters = self._split(topic, envelope, latest)
        return envelope, events, letters

    @staticmethod
    def _whole_batch(payload: bytes) -> EventBatch | None:
        """The whole batch parsed and validated in one call, or None if anything is wrong."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            return None
        try:
            return EventBatch.model_validate_json(payload)
        except VALIDATION_ERRORS:
            return None

    def _problem(
        self, event: Event, header: BatchHeader, latest: datetime
    ) -> tuple[str, str] | None:
        """Why a valid event cannot be applied: (reason, dead-letter kind), or None."""
        site = header.site
        if control_characters(event.event_id) or control_characters(event.epc or ""):
            # Identities are stored and compared verbatim; NUL cannot be stored.
            return "invalid event: event_id or epc holds control characters", "event"
        if (refusal := self._trust.event_problem(event, header, latest)) is not None:
            return refusal.reason, refusal.kind
        point = self._read_points.get(event.read_point)
        if point is None:
            return f"unknown read point {event.read_point!r}", "read_point"
        if point.site is not None and point.site != site:
            return (
                f"read point {event.read_point!r} belongs to site {point.site!r}, not {site!r}",
                "read_point",
            )
        if (problem := location_problem(event)) is not None:
            return f"invalid event: {problem}", "event"
        return None

    @staticmethod
    def _envelope(payload: bytes) -> BatchEnvelope:
        data = decode_json(payload)
        try:
            return BatchEnvelope.model_validate(data)
        except VALIDATION_ERRORS as err:
            raise PayloadError("envelope", f"not a valid event batch: {describe(err)}") from err

    def _split(
        self, topic: str, envelope: BatchEnvelope, latest: datetime
    ) -> tuple[list[Event], list[DeadLetter]]:
        """Validate each event alone; the bad ones become dead letters."""
        events: list[Event] = []
        letters: list[DeadLetter] = []
        for raw in envelope.events:
            raw_id = raw.get("event_id")
            event_id = raw_id if isinstance(raw_id, str) else None
            try:
                event = Event.model_validate(raw)
            except VALIDATION_ERRORS as err:
                reason, kind = f"invalid event: {describe(err)}", "event"
            else:
                problem = self._problem(event, envelope, latest)
                if problem is None:
                    events.append(event)
                    continue
                reason, kind = problem
            self._metrics.dead_letters.labels(kind=kind).inc()
            log.warning("dead letter from %s: %s", envelope.gateway, reason)
            letters.append(
                DeadLetter(
                    topic=topic,
                    reason=reason,
                    payload=json.dumps(raw, default=str).encode(),
                    gateway=envelope.gateway,
                    event_id=event_id,
                    kind=kind,
                )
            )
        return events, letters

    async def _commit_sites(
        self, group: Sequence[Prepared], now: datetime, ahead: Ahead | None
    ) -> list[Applied | None]:
        """``_commit`` of the group; on PostgreSQL one transaction per site.

        Instances on a shared subscription get batches of every site. A transaction holding
        the balance rows of two sites would make an instance applying the other site's
        batches wait for it too; one transaction per site keeps the waits within a site
        (its balance rows). SQLite has one writer whatever the split, so it keeps one
        transaction (one commit) for the group.
        """
        sites = _by_site(group)
        if self._store.dialect != "postgresql" or len(sites) == 1:
            return await self._commit(group, now, ahead)
        done: dict[int, Applied | None] = {}
        for site, members in sites:
            mine = None if ahead is None else Ahead(ahead.since, {site: ahead.sites.get(site)})
            for prepared, applied in zip(
                members, await self._commit(members, now, mine), strict=True
            ):
                done[id(prepared)] = applied
        return [done[id(prepared)] for prepared in group]

    async def _commit(
        self, group: Sequence[Prepared], now: datetime, ahead: Ahead | None = None
    ) -> list[Applied | None]:
        """Apply ``group`` in one transaction; None for a batch that could not be applied."""
        attempts = self._ingest.max_attempts
        names = ", ".join(prepared.header.batch_id for prepared in group[:3])
        doing = f"applying batch {names}" + (
            f" and {len(group) - 3} more" if len(group) > 3 else ""
        )
        for attempt in range(1, attempts + 1):
            try:
                async with self._store.begin(doing, events=True) as conn:
                    # A retry plans again: the first try may have settled the plan already.
                    done = await self._write(conn, group, now, ahead if attempt == 1 else None)
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
                return [(await self._commit([prepared], now))[0] for prepared in group]
            # Only after the commit (nothing awaited since): what it changed, for the plans
            # made ahead of it; a rolled-back location insert must not be cached.
            self._committed(done)
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

    def _still_valid(self, since: int) -> Callable[[PlannedEvents], bool]:
        """Whether a plan made from a read after commit number ``since`` still holds.

        Called inside the writing transaction (on SQLite it holds the write lock, so no
        commit of this process can come between). Every stock commit after ``since`` must
        be one of ingest's own, and none may have written a unit the plan read or created
        an item the plan creates. Anything else committed (an API operation, a sweep) or
        too old to remember: plan again. Other processes' commits (PostgreSQL instances)
        are not seen here; they race with a plan as they race with any transaction's
        reads, and the SQL guards (claims, newer unit states, balance increments) hold.
        """

        def check(planned: PlannedEvents) -> bool:
            epcs = planned.epcs
            created = planned.new_items
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
        group: Sequence[Prepared],
        now: datetime,
        ahead: Ahead | None = None,
    ) -> list[Applied]:
        """The rows of ``group``'s batches, inside the caller's transaction.

        The batches of one site are applied in one ``apply_events`` call: their events are
        planned together in event-time order (ties by event id), and every statement runs
        once for the group instead of once per batch (each costs a round trip, and
        SQLAlchemy's fixed cost, whatever it holds). Each event keeps its gateway as the
        ledger row's actor; each batch's record says what became of its own events. A plan
        made ahead (``plan``) is written if it still holds, else the site is planned again.
        """
        applied: dict[int, Applied] = {}
        # Sites in one order in every transaction, so instances lock their balance rows in
        # one order too (arrival order could deadlock two groups holding two sites each).
        for site, members in _by_site(group):
            gateways = {prepared.header.gateway for prepared in members}
            actors = (
                None
                if len(gateways) == 1
                else {
                    event.event_id: prepared.header.gateway
                    for prepared in members
                    for event in prepared.events
                }
            )
            planned = ahead.sites.get(site) if ahead is not None else None
            if planned is not None and ahead is not None:
                merged, kept = await apply_planned(
                    conn,
                    planned,
                    self._read_points,
                    still_valid=self._still_valid(ahead.since),
                    known_locations=self._store.known_locations,
                    actor=members[0].header.gateway,
                    actors=actors,
                    site=site,
                    now=now,
                    policy=self._policy,
                )
                self._metrics.ingest_plans.labels(outcome="ahead" if kept else "replanned").inc()
            else:
                merged = await apply_events(
                    conn,
                    [event for prepared in members for event in prepared.events],
                    self._read_points,
                    known_locations=self._store.known_locations,
                    actor=members[0].header.gateway,
                    actors=actors,
                    site=site,
                    now=now,
                    policy=self._policy,
                )
                self._metrics.ingest_plans.labels(outcome="in_transaction").inc()
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
        return done

    async def _ack(self, group: Sequence[Prepared], done: Sequence[Applied | None]) -> list[bool]:
        """Ack the applied batches: one message per gateway (several batches each)."""
        by_gateway: dict[tuple[str, str], list[int]] = {}
        for index, (prepared, applied) in enumerate(zip(group, done, strict=True)):
            if applied is not None:
                header = prepared.header
                by_gateway.setdefault((header.site, header.gateway), []).append(index)
        acked = [False] * len(group)
        for (site, gateway), indexes in by_gateway.items():
            for start in range(0, len(indexes), MAX_ACK_BATCHES):
                chunk = indexes[start : start + MAX_ACK_BATCHES]
                refused = [event for i in chunk for event in _refused(done[i])]
                ack = Ack(
                    refused=refused[:MAX_ACK_REFUSED],
                    refused_more=max(0, len(refused) - MAX_ACK_REFUSED),
                    gateway=gateway,
                    batches=[
                        AckedBatch(
                            batch_id=group[i].header.batch_id,
                            epoch=group[i].header.epoch,
                            seq_first=group[i].header.seq_first,
                            seq_last=group[i].header.seq_last,
                        )
                        for i in chunk
                    ],
                )
                try:
                    # Without refusals the Ack is what an edge of before them accepts.
                    body = ack.model_dump_json(
                        exclude=None if refused else {"refused", "refused_more"}
                    )
                    await self._publish(topics.ack(site, gateway), body.encode())
                except PublishFailed as err:
                    # Committed already; the edge re-sends and gets a duplicate's Ack then.
                    self._metrics.acks_failed.inc(len(chunk))
                    log.warning("ack of %d batch(es) of %s not sent: %s", len(chunk), gateway, err)
                    continue
                for i in chunk:
                    acked[i] = True
        return acked

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

    async def _relay_alerts(self, done: Sequence[Applied | None]) -> None:
        if not any(applied is not None and applied.alerts for applied in done):
            # Updates of open alerts: the relay's own loop picks them up within moments.
            self._relay.poke()
            return
        # New alerts go out at once, after the Acks (the edge is not kept waiting).
        try:
            await self._relay.flush()
        except StoreError as err:
            log.warning("alerts of these batches left to the relay loop: %s", err)

    async def _reject(
        self, topic: str, payload: bytes, gateway: str | None, err: PayloadError
    ) -> IngestResult:
        self._metrics.dead_letters.labels(kind=err.kind).inc()
        if not self._trust.may_store_reject(gateway):
            return IngestResult("rejected", reason=f"{err.reason} (not stored: rate bound)")
        limit = self._ingest.dead_letter_payload_bytes
        if await store_rejected(self._store, self._clock, limit, topic, payload, gateway, err):
            self._relay.poke()
        return IngestResult("rejected", dead_letters=1, reason=err.reason)


def _by_site(group: Sequence[Prepared]) -> list[tuple[str, list[Prepared]]]:
    """The batches of ``group`` by site, sites sorted, batches in their order."""
    by_site: dict[str, list[Prepared]] = {}
    for prepared in group:
        by_site.setdefault(prepared.header.site, []).append(prepared)
    return sorted(by_site.items())


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


def _refused(applied: Applied | None) -> list[RefusedEvent]:
    """What an Ack tells the gateway of a batch's refused events."""
    if applied is None:
        return []
    return [
        RefusedEvent(event_id=event.event_id, read_point=event.read_point, reason=reason[:1000])
        for event, reason in applied.refused
    ]
