"""Acks: sent only after the commit, one message per gateway for the batches it applied.

An Ack goes to ``stockgate/v1/{site}/{gateway}/ack`` and names the batches committed; the
edge deletes a batch from its outbox only on that (docs/architecture.md §4). A batch that
was applied before (every id seen) is acked again: the edge re-sends when it lost the first
Ack. Events the rules refused (negative stock where a site refuses it,
``server.ingest.negative_stock``) are listed with their reason, so the gateway can show it
on the scanner that sent them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from server.errors import PublishFailed
from server.ingest.intake import Prepared
from server.ingest.ledger_writes import Applied
from server.metrics import Metrics
from wire import topics
from wire.models import MAX_ACK_BATCHES, MAX_ACK_REFUSED, Ack, AckedBatch, RefusedEvent

log = logging.getLogger(__name__)

Publisher = Callable[[str, bytes], Awaitable[None]]
"""Publishes ``payload`` on ``topic`` with QoS 1; raises ``PublishFailed`` when it cannot."""


async def send_acks(
    publish: Publisher,
    metrics: Metrics,
    group: Sequence[Prepared],
    done: Sequence[Applied | None],
) -> list[bool]:
    """Ack the applied batches of ``group`` (``done``: what each did, None: not applied).

    Returns:
        Per batch, whether its Ack was sent.
    """
    by_gateway: dict[tuple[str, str], list[int]] = {}
    for index, (prepared, applied) in enumerate(zip(group, done, strict=True)):
        if applied is not None:
            header = prepared.header
            by_gateway.setdefault((header.site, header.gateway), []).append(index)
    sends = [
        _send(
            publish, metrics, site, gateway, group, done, indexes[start : start + MAX_ACK_BATCHES]
        )
        for (site, gateway), indexes in by_gateway.items()
        for start in range(0, len(indexes), MAX_ACK_BATCHES)
    ]
    acked = [False] * len(group)
    # All at once: waiting for each PUBACK in turn put the later gateways' Acks behind the
    # first gateway's next batches, which arrive on the same connection (a group of 31
    # batches of four gateways took 161 ms to ack, one at a time).
    for chunk in await asyncio.gather(*sends):
        for i in chunk:
            acked[i] = True
    return acked


async def _send(
    publish: Publisher,
    metrics: Metrics,
    site: str,
    gateway: str,
    group: Sequence[Prepared],
    done: Sequence[Applied | None],
    chunk: list[int],
) -> list[int]:
    """One Ack for the batches ``chunk`` (indexes in ``group``) of ``gateway``; returns the
    indexes acked (none when it could not be sent)."""
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
        body = ack.model_dump_json(exclude=None if refused else {"refused", "refused_more"})
        await publish(topics.ack(site, gateway), body.encode())
    except PublishFailed as err:
        # Committed already; the edge re-sends and gets a duplicate's Ack then.
        metrics.acks_failed.inc(len(chunk))
        log.warning("ack of %d batch(es) of %s not sent: %s", len(chunk), gateway, err)
        return []
    return chunk


def _refused(applied: Applied | None) -> list[RefusedEvent]:
    """What an Ack tells the gateway of a batch's refused events."""
    if applied is None:
        return []
    return [
        RefusedEvent(event_id=event.event_id, read_point=event.read_point, reason=reason[:1000])
        for event, reason in applied.refused
    ]
