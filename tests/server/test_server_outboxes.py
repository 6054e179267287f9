"""``server.ingest.outboxes``: which batches' event ids planning need not look up."""

from __future__ import annotations

from server_helpers import Batches, sgtin

from server.ingest.intake import Prepared
from server.ingest.outboxes import OutboxMarks
from wire.models import EventBatch


def _batch(batches: Batches, count: int, *, seq_first: int | None = None) -> Prepared:
    first = batches.seq + 1 if seq_first is None else seq_first
    events = [batches.event(epc=sgtin(batches.seq + 1)) for _ in range(count)]
    header = EventBatch.model_validate_json(batches.payload(events, seq_first=first))
    return Prepared(batches.topic, header, list(header.events), [], 0.0)


def test_only_batches_past_the_outbox_s_last_commit_are_taken_as_not_seen() -> None:
    marks = OutboxMarks()
    batches = Batches()
    first = _batch(batches, 2)
    # Nothing committed of the outbox yet (a server just started): every id is read.
    assert marks.not_seen([first]) == set()
    marks.committed([first])
    after = _batch(batches, 3)
    overlapping = _batch(batches, 1, seq_first=2)
    other_epoch = _batch(Batches(epoch="ffff0000"), 1)

    assert marks.not_seen([after, overlapping, other_epoch]) == {
        event.event_id for event in after.events
    }


def test_the_least_recently_committed_outbox_is_forgotten_past_the_bound() -> None:
    marks = OutboxMarks(kept=2)
    outboxes = [Batches(gateway=f"gw{n}") for n in range(3)]
    for batches in outboxes:
        marks.committed([_batch(batches, 1)])
    nexts = [_batch(batches, 1) for batches in outboxes]

    assert marks.not_seen(nexts[:1]) == set()
    assert marks.not_seen(nexts[1:]) == {event.event_id for p in nexts[1:] for event in p.events}
