"""What a gateway may send: the registry, its event id namespace, and its clock.

Ingest (``server.ingest.consumer``) and the status recorder (``server.ingest.gateway_status``)
ask this module, so the checks live in one place and their hooks stay one call each.

Checks, each a dead letter of its own kind and an alert (never applied):

- **Registry** (``[[gateways]]`` in server.toml, docs/architecture.md §4). With at least one
  entry it is closed: a message from a gateway not listed (``unknown_gateway``), or on the
  topic of another site than its own (``gateway_refused``), is dead-lettered whole; an
  event naming a read point the gateway does not own is dead-lettered alone
  (``gateway_refused``). A status from an unknown gateway is dead-lettered too, so it opens
  no ``gateway_offline``. With no entry the server runs open (the demo and single-box
  default): any gateway and read point is taken; the server says so at start-up.
- **Event ids** (always, registry or not). An id is ``{gateway}:{epoch}:{seq}`` and must be
  of the batch that carries it: its gateway and epoch, a sequence number inside the batch's
  ``seq_first..seq_last``. So a gateway cannot take another gateway's ids (which would make
  the real events duplicates, acked and deleted at their edge) nor the API's ``api:`` ids
  (which would refuse an API call's ``request_id``); the gateway id ``api`` is reserved.
  The ACL lets a gateway publish only on its own topic, and ingest checks the batch names
  the topic's gateway, so the namespace is the gateway's own.
- **Horizon** (only with ``[retention] seen_event_days``): an event older than the horizon
  of pruned event ids is dead-lettered (``stale_event``); see ``server.store.retention``.
- **Clock** (always). An event stamped more than ``[ingest] max_clock_skew_s`` ahead of the
  server's clock is quarantined (``clock_skew``): a dead letter that
  ``stockgate server replay-dead-letters`` applies once its time has come. A unit's state
  is decided by the latest event time, so one event from 2099 would otherwise lock it.

Event ids stay visible to viewers in ``/api/v1/movements``: with the namespace checked they
are no longer a way to pre-empt anyone's events, and they are the EPCIS event ids that tie
a movement to its source.

Whole-message dead letters cost a transaction each, so they are bounded per gateway (by
topic) to ``[ingest] rejects_per_minute``; past that they are counted and dropped
(``server.ingest.rejects`` records them).
Event-level dead letters ride in their batch's transaction and are bounded by the message
size limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts.store import raise_alert
from server.config.settings import RESERVED_GATEWAY_IDS, ServerSettings
from server.ingest.dead_letters import DeadLetter
from server.rules.alerts import CLOCK_SKEW, GATEWAY_REFUSED, UNKNOWN_GATEWAY
from wire.models import BatchHeader, Event

log = logging.getLogger(__name__)

TRUST_KINDS: Final = frozenset({UNKNOWN_GATEWAY.kind, GATEWAY_REFUSED.kind, CLOCK_SKEW.kind})
"""Dead-letter kinds this module gives; each is also the kind of the alert it raises."""
STALE_EVENT: Final = "stale_event"
"""Dead-letter kind of an event older than the seen-id horizon (no alert of its own)."""
REJECT_WINDOW_S: Final = 60.0
MAX_TRACKED_GATEWAYS: Final = 10_000
MAX_EVIDENCE_IDS: Final = 10


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why something from a gateway is not applied: the dead letter's kind and reason."""

    kind: str
    reason: str


class GatewayTrust:
    """The checks above, over the validated config.

    Args:
        settings: ``[[gateways]]`` and ``[ingest]``.
        clock: a monotonic clock for the dead-letter rate bound (tests may fix it).
    """

    def __init__(
        self, settings: ServerSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._sites = {gateway.id: gateway.site for gateway in settings.gateways}
        self._owned = {gateway.id: frozenset(gateway.read_points) for gateway in settings.gateways}
        self._skew = timedelta(seconds=settings.ingest.max_clock_skew_s)
        days = settings.retention.seen_event_days
        # An id is pruned when its event first came more than ``days`` ago, and that event
        # was stamped at most ``skew`` after it came: a repeat of it now is older than
        # now - days + skew, which is latest_time(now) - days.
        self._max_age = timedelta(days=days) if days else None
        self._rejects_per_minute = settings.ingest.rejects_per_minute
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}
        self.dropped = 0
        """Whole-message dead letters dropped by the rate bound."""

    @property
    def open(self) -> bool:
        """No ``[[gateways]]``: every gateway and read point is taken."""
        return not self._sites

    def gateway_problem(self, site: str, gateway: str) -> Refusal | None:
        """Why nothing from ``gateway`` on the topic of ``site`` may be taken, or None."""
        if gateway in RESERVED_GATEWAY_IDS:
            return Refusal(GATEWAY_REFUSED.kind, f"gateway id {gateway!r} is reserved")
        if self.open:
            return None
        own = self._sites.get(gateway)
        if own is None:
            return Refusal(
                UNKNOWN_GATEWAY.kind, f"gateway {gateway!r} is not listed in [[gateways]]"
            )
        if own != site:
            return Refusal(
                GATEWAY_REFUSED.kind,
                f"gateway {gateway!r} belongs to site {own!r}, not {site!r}",
            )
        return None

    def latest_time(self, now: datetime) -> datetime:
        """The latest event time taken now (later ones are quarantined)."""
        return now + self._skew

    def for_batch(self, header: BatchHeader, latest: datetime) -> BatchTrust:
        """The event checks of one batch, worked out once for all its events.

        Args:
            header: the batch (its gateway, epoch and sequence range).
            latest: ``latest_time(now)``, computed once per batch.
        """
        return BatchTrust(
            gateway=header.gateway,
            prefix=f"{header.gateway}:{header.epoch}:",
            seq_first=header.seq_first,
            seq_last=header.seq_last,
            owned=self._owned.get(header.gateway),
            oldest=latest - self._max_age if self._max_age is not None else None,
            latest=latest,
            skew=self._skew,
        )

    def may_store_reject(self, gateway: str | None) -> bool:
        """Whether one more whole-message dead letter of ``gateway`` may be stored now."""
        key = gateway or ""
        now = self._clock()
        started, count = self._windows.pop(key, (now, 0))
        if now - started >= REJECT_WINDOW_S:
            started, count = now, 0
        self._windows[key] = (started, count + 1)
        while len(self._windows) > MAX_TRACKED_GATEWAYS:
            del self._windows[next(iter(self._windows))]
        if count < self._rejects_per_minute:
            return True
        self.dropped += 1
        if count == self._rejects_per_minute:
            log.warning(
                "gateway %r passed [ingest] rejects_per_minute (%d); its rejected messages "
                "are dropped for the rest of the minute",
                gateway,
                self._rejects_per_minute,
            )
        return False


@dataclass(frozen=True, slots=True)
class BatchTrust:
    """What the events of one batch may be (``GatewayTrust.for_batch``)."""

    gateway: str
    prefix: str
    """``{gateway}:{epoch}:``, the start of every event id of the batch."""
    seq_first: int
    seq_last: int
    owned: frozenset[str] | None
    """The gateway's read points; None if it may name any (an open registry)."""
    oldest: datetime | None
    """The seen-id horizon: an older event could be a repeat whose id was pruned."""
    latest: datetime
    skew: timedelta

    def problem(self, event: Event) -> Refusal | None:
        """Why ``event`` of the batch may not be applied, or None."""
        event_id = event.event_id
        seq = event_id[len(self.prefix) :]
        if (
            not event_id.startswith(self.prefix)
            # ASCII digits only: int() takes other scripts' digits, and str.isdigit()
            # says yes to superscripts, which int() refuses.
            or not (seq.isascii() and seq.isdigit())
            or not self.seq_first <= int(seq) <= self.seq_last
        ):
            return Refusal(
                GATEWAY_REFUSED.kind,
                f"event id {event_id[:100]!r} is not of this batch: ids are "
                f"'{self.prefix}<seq>' with seq in {self.seq_first}..{self.seq_last}",
            )
        if self.owned is not None and event.read_point not in self.owned:
            return Refusal(
                GATEWAY_REFUSED.kind,
                f"read point {event.read_point!r} is not one of gateway {self.gateway!r}'s",
            )
        if self.oldest is not None and event.event_time < self.oldest:
            return Refusal(
                STALE_EVENT,
                f"event time {event.event_time.isoformat()} is older than the seen-id horizon "
                "([retention] seen_event_days): it could be a repeat whose id was pruned",
            )
        if event.event_time > self.latest:
            return Refusal(
                CLOCK_SKEW.kind,
                f"event time {event.event_time.isoformat()} is more than "
                f"{self.skew.total_seconds():g}s ahead of the server's clock",
            )
        return None


async def raise_trust_alerts(
    conn: AsyncConnection, letters: Sequence[DeadLetter], site: str | None, now: datetime
) -> int:
    """One alert per (kind, gateway) among ``letters`` of this module's kinds.

    Returns:
        How many alerts were raised or updated.
    """
    grouped: dict[tuple[str, str], list[DeadLetter]] = {}
    for letter in letters:
        if letter.kind in TRUST_KINDS:
            grouped.setdefault((letter.kind, letter.gateway or "?"), []).append(letter)
    for (kind, gateway), group in grouped.items():
        evidence = {
            "reason": group[0].reason,
            "dead_letters": len(group),
            "event_ids": [
                letter.event_id for letter in group[:MAX_EVIDENCE_IDS] if letter.event_id
            ],
        }
        await raise_alert(conn, kind, gateway, evidence, site=site, now=now)
    return len(grouped)
