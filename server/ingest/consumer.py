"""Ingest: one MQTT events message in, one committed transaction and one Ack out.

``Ingestor.handle(topic, payload)`` knows nothing of MQTT: the composition root feeds it the
messages (``server.ingest.pipeline``) and gives it a publisher for Acks, so tests drive it
directly or through a broker.

For each message:

1. The topic must be ``stockgate/v1/{site}/{gateway}/events`` and the gateway one the
   registry takes (``server.ingest.gateway_trust``); the payload a valid batch of that site
   and gateway. Otherwise the whole message is dead-lettered (``server.ingest.rejects``) and
   not acked (there is nothing trustworthy to ack); it is never retried by the server.
2. Each event is checked on its own (``server.ingest.intake``): a bad one becomes one
   dead-letter row; its neighbours still apply.
3. One transaction (``server.ingest.transactions``): claim the event ids, apply the rules
   to the fresh ones (``server.ingest.apply``), write ledger, balances, units, items,
   locations, alerts, dead letters and the batch record; commit.
4. Only then the Ack goes out (``server.ingest.acks``). A batch that was applied before
   (every id seen) is acked again. Events the rules refused are dead letters too, and the
   Ack lists them with the reason.

A database failure rolls the batch back and sends no Ack (see ``server.ingest.transactions``
for retries and a full disk). Nothing here raises for bad input, so one bad message never
stops the loop.

Throughput (the server keeps up with many gateways on one core): ``prepare`` (steps 1 and
2), ``plan`` and ``apply`` (steps 3 and 4) are separate, so the composition root checks the
next messages while the database commits the previous ones, plans the next group
meanwhile, and hands ``apply`` every batch that queued up: they share one transaction (one
commit, one fsync), and their Acks go out after that commit, one message per gateway.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from server.alerts.relay import AlertRelay
from server.commands.read_points import ReadPointCatalog
from server.config.settings import ReadPointSettings, ServerSettings
from server.errors import StoreError
from server.ingest.acks import Publisher, send_acks
from server.ingest.gateway_trust import GatewayTrust
from server.ingest.intake import BatchChecks, Prepared
from server.ingest.ledger_writes import Applied
from server.ingest.payloads import PayloadError
from server.ingest.rejects import RejectedMessages
from server.ingest.transactions import Ahead, GroupWriter, Part
from server.metrics import Metrics
from server.queries.views import AlertView
from server.store.database import Store
from wire import topics
from wire.models import now_utc

log = logging.getLogger(__name__)

Outcome = Literal["applied", "duplicate", "rejected", "failed"]
BUSY_TAIL_S = 0.5
"""Ingest counts as busy this long after its last group (``Ingestor.busy``): between two
groups of a burst it is not idle."""


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
class Committed:
    """What ``Ingestor.commit_parts`` did, for ``Ingestor.acknowledge``."""

    group: list[Prepared]
    done: list[Applied | None]
    """Per batch of ``group``, what it did; None: not applied."""
    started: float
    """When its transaction began (``time.perf_counter``)."""


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
        self._publish = publish
        self._metrics = metrics
        self._clock = clock
        self._relay = relay or AlertRelay(
            store, publish, settings.alerts, settings.webhooks, clock=clock
        )
        self._trust = GatewayTrust(settings)
        self._checks = BatchChecks(self._trust, metrics, clock)
        self._writer = GroupWriter(store, settings.ingest, settings.policy(), metrics)
        self._rejects = RejectedMessages(
            store,
            settings.ingest.dead_letter_payload_bytes,
            metrics,
            clock=clock,
            trust=self._trust,
            on_alerts=self._relay.poke,
        )
        self._writers = settings.ingest.writers
        self._working = 0
        self._worked_at = -BUSY_TAIL_S

    @property
    def writers(self) -> int:
        """Write transactions that may run at once (``[ingest] writers``; 1 on SQLite)."""
        return 1 if self._store.dialect == "sqlite" else self._writers

    def busy(self) -> bool:
        """True while a group is planned or applied, and ``BUSY_TAIL_S`` after the last.

        The history followers defer to it (``server.history.follow``).
        """
        return self._working > 0 or time.monotonic() - self._worked_at < BUSY_TAIL_S

    def _spent(self, stage: str, started: float) -> float:
        """Seconds since ``started`` (``time.perf_counter``), added to ``stage``'s time in
        progress (``stockgate_ingest_stage_seconds_total``)."""
        seconds = time.perf_counter() - started
        self._metrics.ingest_stage_seconds.labels(stage=stage).inc(seconds)
        return seconds

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
            header, events, letters = self._checks.check(
                topic, payload, site, gateway, self._read_points
            )
        except topics.TopicError as err:
            result = await self._reject(topic, payload, None, PayloadError("topic", str(err)))
        except PayloadError as err:
            if not keep_rejects:
                return IngestResult("rejected", reason=err.reason)
            result = await self._reject(topic, payload, gateway, err)
        else:
            return Prepared(topic, header, events, letters, self._spent("check", started))
        self._metrics.batch_seconds.observe(self._spent("check", started))
        self._metrics.batches.labels(outcome=result.outcome).inc()
        return result

    async def yield_to_writes(self) -> None:
        """Wait while a write transaction is about to go on (``Store.yield_to_writes``):
        the composition root calls it before checking a message."""
        await self._store.yield_to_writes()

    async def plan(self, group: Sequence[Prepared]) -> Ahead | None:
        """Plan ``group``'s events before its transaction, from a read of the store.

        The composition root plans the next group while the previous one is written and
        committed (the rules and the reads they need overlap the database's work); ``apply``
        claims the ids in its transaction as always and keeps a plan only if nothing that
        committed since its read can have changed what it read
        (``server.ingest.transactions``).

        Returns:
            The plans, or None when the read failed (``apply`` then plans as usual).
        """
        started = time.perf_counter()
        with self._at_work():
            ahead = await self._writer.plan(group, self._read_points)
        self._spent("plan", started)
        return ahead

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
        return await self.apply_parts([(group, ahead)])

    async def apply_parts(self, parts: Sequence[Part]) -> list[IngestResult]:
        """``apply`` for several groups planned one after the other (``plan``): one
        transaction for them all, written in that order, then their Acks.

        Returns:
            One result per batch, the groups' batches in order.
        """
        return await self.acknowledge(await self.commit_parts(parts))

    async def commit_parts(self, parts: Sequence[Part]) -> Committed:
        """Step 3 of ``apply_parts``: the transaction. ``acknowledge`` does step 4; the
        composition root begins the next transaction meanwhile."""
        started = time.perf_counter()
        now = self._clock()
        with self._at_work():
            done = await self._writer.commit(parts, self._read_points, now)
        self._spent("write", started)
        return Committed([prepared for members, _ in parts for prepared in members], done, started)

    async def acknowledge(self, committed: Committed) -> list[IngestResult]:
        """Step 4 of ``apply_parts``: the Acks of what ``commit_parts`` committed, then the
        alerts it opened.

        Returns:
            One result per batch, in order.
        """
        group, done, started = committed.group, committed.done, committed.started
        with self._at_work():
            acked = await send_acks(self._publish, self._metrics, group, done)
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
        dropped = await self._rejects.keep(topic, payload, gateway, err)
        if dropped is not None:
            return IngestResult("rejected", reason=dropped)
        return IngestResult("rejected", dead_letters=1, reason=err.reason)
