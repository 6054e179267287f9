"""Whole messages the server refuses, kept as dead letters: the one place that records them.

Ingest (``server.ingest.consumer``) and the status recorder (``server.ingest.gateway_status``)
both refuse a message whole when nothing in it can be trusted (a bad topic, an unknown
gateway, a payload that does not validate). Each refusal is counted by kind; a gateway's
refusals are bounded per minute (``GatewayTrust.may_store_reject``), since each costs a
transaction of its own; within the bound it is stored with its trust alert
(``server.ingest.gateway_trust``), and whoever relays alerts is woken when one opened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from server.errors import StoreError
from server.ingest.dead_letters import DeadLetter, insert_dead_letters
from server.ingest.gateway_trust import GatewayTrust, raise_trust_alerts
from server.ingest.payloads import PayloadError
from server.metrics import Metrics
from server.store.database import Store
from wire import topics

log = logging.getLogger(__name__)


class RejectedMessages:
    """Records refused messages.

    Args:
        store: the database.
        payload_limit: ``[ingest] dead_letter_payload_bytes``.
        metrics: counts the dead letters by kind.
        clock: the recording time (UTC).
        trust: the rate bound; None: no bound.
        on_alerts: called when storing one raised or updated an alert.
    """

    def __init__(
        self,
        store: Store,
        payload_limit: int,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime],
        trust: GatewayTrust | None,
        on_alerts: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._limit = payload_limit
        self._metrics = metrics
        self._clock = clock
        self._trust = trust
        self._on_alerts = on_alerts

    async def keep(
        self,
        topic: str,
        payload: bytes,
        gateway: str | None,
        err: PayloadError,
        *,
        kind: str | None = None,
    ) -> str | None:
        """Count the refused message and store it unless past its gateway's bound.

        Args:
            topic: where it came.
            payload: the message.
            gateway: the topic's gateway, if the topic said.
            err: why it was refused.
            kind: the dead-letter metric's kind (default: ``err.kind``).

        Returns:
            None when it was kept (or the store failed: logged, the sender re-sends), else
            the refusal's reason saying it was not.
        """
        self._metrics.dead_letters.labels(kind=kind or err.kind).inc()
        if self._trust is not None and not self._trust.may_store_reject(gateway):
            return f"{err.reason} (not stored: rate bound)"
        if await self._store_one(topic, payload, gateway, err) and self._on_alerts is not None:
            self._on_alerts()
        return None

    async def _store_one(
        self, topic: str, payload: bytes, gateway: str | None, err: PayloadError
    ) -> bool:
        """Keep one refused message as a dead letter, with its trust alert.

        A store error is logged and the message is lost (the sender's re-send brings it
        again).

        Returns:
            Whether an alert was raised or updated.
        """
        log.warning("dead letter on %r: %s", topic[:200], err.reason)
        letter = DeadLetter(
            topic=topic, reason=err.reason, payload=payload, gateway=gateway, kind=err.kind
        )
        try:
            async with self._store.begin("recording a dead letter") as conn:
                at = self._clock()
                await insert_dead_letters(conn, [letter], at, self._limit)
                return bool(await raise_trust_alerts(conn, [letter], _topic_site(topic), at))
        except StoreError as store_err:
            log.error("dead letter not stored (%s): %s", store_err, err.reason)
            return False


def _topic_site(topic: str) -> str | None:
    """The site level of a gateway topic; None for a topic that is not one of ours."""
    try:
        return topics.parse_gateway_topic(topic)[0]
    except topics.TopicError:
        return None
