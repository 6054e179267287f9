"""Checking one events message before anything is written: the batch and each event.

The message must be a valid ``BatchEnvelope`` of at most ``wire.models.MAX_PAYLOAD_BYTES``
whose site and gateway are the topic's; otherwise it is refused whole (``PayloadError``)
and the caller dead-letters it. Then each event is checked on its own: an invalid event,
one naming a read point that is not configured (reason ``unknown read point``) or that
belongs to another site, or one ``server.ingest.gateway_trust`` refuses (an id outside the
batch's range, a read point the gateway does not own, a time from the future), becomes one
dead letter; its neighbours still apply.

A well-formed batch (the common case) is parsed and validated in one call
(``EventBatch.model_validate_json``); only when that fails, or an event needs a dead
letter, does the per-event path run, so the outcome is the same either way. No I/O.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from server.config.settings import ReadPointSettings
from server.ingest.dead_letters import DeadLetter
from server.ingest.gateway_trust import BatchTrust, GatewayTrust
from server.ingest.payloads import (
    VALIDATION_ERRORS,
    PayloadError,
    control_characters,
    describe,
    may_hold_control_characters,
    validated,
)
from server.metrics import Metrics
from server.rules import location_problem
from wire.models import MAX_PAYLOAD_BYTES, BatchEnvelope, Event, EventBatch

log = logging.getLogger(__name__)


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


class BatchChecks:
    """The checks of one message's batch and events.

    Args:
        trust: the gateway's event ids, read points and clock (``server.ingest.gateway_trust``).
        metrics: counts the dead letters by kind.
        clock: the server's time (UTC), for the clock-skew check.
    """

    def __init__(
        self, trust: GatewayTrust, metrics: Metrics, clock: Callable[[], datetime]
    ) -> None:
        self._trust = trust
        self._metrics = metrics
        self._clock = clock

    def check(
        self,
        topic: str,
        payload: bytes,
        site: str,
        gateway: str,
        read_points: Mapping[str, ReadPointSettings],
    ) -> tuple[EventBatch | BatchEnvelope, list[Event], list[DeadLetter]]:
        """The batch header, the events to apply and the dead letters of one message.

        Args:
            topic: the message's topic, of ``site`` and ``gateway``.
            payload: the message.
            site: the topic's site.
            gateway: the topic's gateway.
            read_points: the read point table.

        Raises:
            PayloadError: the whole message is unusable.
        """
        batch = _whole_batch(payload)
        latest = self._trust.latest_time(self._clock())
        if batch is not None and batch.site == site and batch.gateway == gateway:
            controls = may_hold_control_characters(payload)
            trust = self._trust.for_batch(batch, latest)
            problem = self._problem
            if not any(
                problem(event, site, trust, read_points, controls=controls)
                for event in batch.events
            ):
                return batch, list(batch.events), []
        # Something in it is wrong: the per-event path says what, and keeps the rest.
        envelope = validated(BatchEnvelope, payload, "envelope", "not a valid event batch")
        if envelope.site != site or envelope.gateway != gateway:
            raise PayloadError(
                "mismatch",
                f"batch says site {envelope.site!r} gateway {envelope.gateway!r} but was "
                f"published on the topic of site {site!r} gateway {gateway!r}",
            )
        events, letters = self._split(topic, envelope, latest, read_points)
        return envelope, events, letters

    @staticmethod
    def _problem(
        event: Event,
        site: str,
        trust: BatchTrust,
        read_points: Mapping[str, ReadPointSettings],
        *,
        controls: bool = True,
    ) -> tuple[str, str] | None:
        """Why a valid event of a batch of ``site`` cannot be applied: (reason, dead-letter
        kind), or None. ``controls`` False: its message holds no control character in any
        string (``may_hold_control_characters``)."""
        if controls and (control_characters(event.event_id) or control_characters(event.epc or "")):
            # Identities are stored and compared verbatim; NUL cannot be stored.
            return "invalid event: event_id or epc holds control characters", "event"
        if (refusal := trust.problem(event)) is not None:
            return refusal.reason, refusal.kind
        point = read_points.get(event.read_point)
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

    def _split(
        self,
        topic: str,
        envelope: BatchEnvelope,
        latest: datetime,
        read_points: Mapping[str, ReadPointSettings],
    ) -> tuple[list[Event], list[DeadLetter]]:
        """Validate each event alone; the bad ones become dead letters."""
        events: list[Event] = []
        letters: list[DeadLetter] = []
        trust = self._trust.for_batch(envelope, latest)
        for raw in envelope.events:
            raw_id = raw.get("event_id")
            event_id = raw_id if isinstance(raw_id, str) else None
            try:
                event = Event.model_validate(raw)
            except VALIDATION_ERRORS as err:
                reason, kind = f"invalid event: {describe(err)}", "event"
            else:
                problem = self._problem(event, envelope.site, trust, read_points)
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


def _whole_batch(payload: bytes) -> EventBatch | None:
    """The whole batch parsed and validated in one call, or None if anything is wrong."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        return EventBatch.model_validate_json(payload)
    except VALIDATION_ERRORS:
        return None
