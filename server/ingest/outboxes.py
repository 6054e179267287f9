"""What this instance committed of each gateway's outbox: the event ids planning need not
look up.

An event id is ``{gateway}:{epoch}:{seq}`` with its sequence number inside the range of
the batch that carries it (``server.ingest.gateway_trust`` refuses anything else), so a
batch that starts past the last sequence number this instance committed of its gateway's
outbox (gateway, epoch) holds no id this instance claimed. Planning ahead
(``server.ingest.planning.plan_ahead``) reads only the other batches' ids: re-sent ones
(the edge's retry after a lost Ack start at or below the mark) and the first batch of each
outbox after a start. The claim in the write transaction decides all the same: an id
another instance (or a dead-letter replay) claimed meanwhile makes the plan wrong, and it
is made again in the transaction.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from server.ingest.intake import Prepared
from server.ingest.planning import EVENT_ID

OUTBOXES_KEPT = 4096
"""Outboxes whose mark is remembered (the least recently committed are forgotten: their
next batch is read, as after a start)."""


class OutboxMarks:
    """Per gateway outbox (gateway, epoch), the last sequence number committed here."""

    def __init__(self, kept: int = OUTBOXES_KEPT) -> None:
        self._kept = kept
        self._marks: OrderedDict[tuple[str, str], int] = OrderedDict()

    def not_seen(self, batches: Sequence[Prepared]) -> set[str]:
        """The event ids of ``batches`` no commit of this instance can have claimed."""
        fresh: set[str] = set()
        for prepared in batches:
            header = prepared.header
            last = self._marks.get((header.gateway, header.epoch))
            if last is not None and header.seq_first > last:
                fresh.update(map(EVENT_ID, prepared.events))
        return fresh

    def committed(self, batches: Sequence[Prepared]) -> None:
        """After ``batches`` committed: each one's outbox is committed up to the batch's last
        sequence number (its events claimed or dead-lettered)."""
        for prepared in batches:
            header = prepared.header
            key = (header.gateway, header.epoch)
            self._marks[key] = max(self._marks.get(key, 0), header.seq_last)
            self._marks.move_to_end(key)
        while len(self._marks) > self._kept:
            self._marks.popitem(last=False)
