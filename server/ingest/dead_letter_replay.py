"""Replaying dead letters: quarantined input applied once what refused it is fixed.

A dead letter is kept with its topic, gateway and payload (``server.ingest.dead_letters``), so it
can be put through ingest again (``stockgate server replay-dead-letters``):

- an event-level letter (one event of a batch; ``event_id`` set) is wrapped in a batch of
  its own, with the gateway and epoch of its id and a sequence range of that one number;
- a whole-message letter is the message as it came.

Each goes through the same checks as live input (``Ingestor.prepare`` without recording a
rejection). One that passes is applied exactly like a live batch (its event id is claimed,
so a second replay, or the edge's own re-send, is a duplicate) and the letter is stamped
``replayed_at``. One that is still refused (a clock-skewed event whose time has not come
yet, a gateway still not enrolled) stays waiting, untouched; a whole message that now
passes except for some events is applied and those events become dead letters of their own.
A letter whose payload was cut (``truncated``) cannot be replayed and is reported.

The replay publishes nothing: Acks are not needed (the edge deleted these events when their
first batch was acknowledged) and alert changes are left to the running server's relay.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa

from server.commands.read_points import ReadPointCatalog
from server.config.settings import ServerSettings
from server.errors import PublishFailed, ServerError
from server.ingest.acks import Publisher
from server.ingest.consumer import Ingestor
from server.ingest.intake import Prepared
from server.metrics import Metrics
from server.store.database import Store
from server.store.schema.core import dead_letters
from wire import topics
from wire.models import now_utc

DEFAULT_KINDS: Final = ("clock_skew",)
MAX_REPLAY: Final = 10_000
"""Most dead letters one replay looks at (run it again for more)."""


@dataclass
class ReplayReport:
    """What a replay did, letter by letter."""

    replayed: list[int] = field(default_factory=list)
    still_refused: dict[int, str] = field(default_factory=dict)
    """Letter id -> why it is still refused."""
    not_replayable: dict[int, str] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)
    """Letters whose batch the database did not take (try again)."""


async def _offline(topic: str, payload: bytes) -> None:
    raise PublishFailed("a replay publishes nothing; the running server relays alerts")


OFFLINE: Publisher = _offline
"""The publisher a replay gives its ingestor: every publish fails, so nothing is sent."""


def _event_batch(row: Any, now: datetime) -> tuple[str, bytes] | str:
    """(topic, batch payload) holding the one event of an event-level letter, or why not."""
    try:
        site, gateway, _ = topics.parse_gateway_topic(row.topic)
    except topics.TopicError as err:
        return f"its topic is not a gateway topic: {err}"
    prefix, _, seq = str(row.event_id).rpartition(":")
    epoch = prefix.rpartition(":")[2]
    if not seq.isdigit():
        return f"its event id {row.event_id!r} has no sequence number"
    try:
        event = json.loads(row.payload)
    except ValueError as err:
        return f"its payload is not JSON: {err}"
    batch = {
        "version": 1,
        "batch_id": f"replay:{row.id}",
        "site": site,
        "gateway": gateway,
        "epoch": epoch,
        "seq_first": int(seq),
        "seq_last": int(seq),
        "sent_at": now.isoformat(),
        "events": [event],
    }
    return row.topic, json.dumps(batch).encode()


async def replay_dead_letters(
    store: Store,
    ingestor: Ingestor,
    *,
    kinds: Sequence[str] = DEFAULT_KINDS,
    ids: Sequence[int] = (),
    limit: int = MAX_REPLAY,
) -> ReplayReport:
    """Put waiting dead letters through ingest again.

    Args:
        store: the database.
        ingestor: an ingestor over ``store`` that publishes nothing (``OFFLINE``).
        kinds: replay the letters of these kinds (ignored when ``ids`` is given).
        ids: replay exactly these letters.
        limit: at most this many letters.
    """
    query = sa.select(dead_letters).where(dead_letters.c.replayed_at.is_(None))
    if ids:
        query = query.where(dead_letters.c.id.in_(list(ids)))
    else:
        query = query.where(dead_letters.c.kind.in_(list(kinds)))
    async with store.read("finding dead letters to replay") as conn:
        rows = (await conn.execute(query.order_by(dead_letters.c.id).limit(limit))).all()
    report = ReplayReport()
    now = now_utc()
    for row in rows:
        if row.truncated:
            report.not_replayable[row.id] = "its payload was cut when it was stored"
            continue
        if row.event_id is not None:
            built = _event_batch(row, now)
            if isinstance(built, str):
                report.not_replayable[row.id] = built
                continue
            topic, payload = built
        else:
            topic, payload = row.topic, row.payload.encode()
        prepared = await ingestor.prepare(topic, payload, keep_rejects=False)
        if not isinstance(prepared, Prepared):
            report.still_refused[row.id] = prepared.reason or prepared.outcome
            continue
        if row.event_id is not None and prepared.letters:
            report.still_refused[row.id] = prepared.letters[0].reason
            continue
        [result] = await ingestor.apply([prepared])
        if result.outcome == "failed":
            report.failed.append(row.id)
            continue
        async with store.begin("marking a dead letter replayed") as conn:
            await conn.execute(
                dead_letters.update().where(dead_letters.c.id == row.id).values(replayed_at=now)
            )
        report.replayed.append(row.id)
    return report


async def replay_command(settings: ServerSettings, kinds: Sequence[str], ids: Sequence[int]) -> int:
    """``stockgate server replay-dead-letters``: exit 0 when every letter looked at was
    replayed, 1 when some wait on, 2 on a database error."""
    store = Store.open(settings.database)
    try:
        await store.migrate()
        catalog = ReadPointCatalog(store, settings.read_points)
        ingestor = Ingestor(store, settings, OFFLINE, Metrics(), read_points=catalog)
        report = await replay_dead_letters(store, ingestor, kinds=kinds or DEFAULT_KINDS, ids=ids)
    except ServerError as err:
        print(f"error: {err}")
        return 2
    finally:
        await store.close()
    print(f"replayed {len(report.replayed)} dead letter(s)")
    for letter, reason in sorted({**report.still_refused, **report.not_replayable}.items()):
        print(f"dead letter {letter} not replayed: {reason}")
    for letter in report.failed:
        print(f"dead letter {letter} not replayed: the database refused it; try again")
    return 0 if not (report.still_refused or report.not_replayable or report.failed) else 1
