"""Gateway status: the last ``Status`` of each gateway, and the ``gateway_offline`` alert.

Statuses are applied in the order they arrive, not by their ``at``: a gateway's last will is
written when it connects, so the ``offline`` status the broker publishes when it dies
carries an ``at`` older than the ``online`` ones before it, yet it is the newest news. The
broker delivers one publisher's messages in order, and a retained status replayed at
(re)subscribe is the latest one there is, so arrival order is the truth. An ``offline``
status opens a ``gateway_offline`` alert; the next ``online`` one closes it and reconciles
the gateway's health alerts (``server.ingest.gateway_health``: readers, antennas, outbox). An
empty payload is how a retained status is cleared and is not an error. Anything else that
does not validate is dead-lettered, and so is a status from a gateway the registry does not
take (``server.ingest.gateway_trust``): it records nothing and opens no ``gateway_offline``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from server.alerts.store import close_alerts, open_alerts, reconcile
from server.config.alerts import AlertSettings
from server.config.settings import IngestSettings
from server.errors import StoreError
from server.ingest.gateway_health import health_alerts, subject_prefix
from server.ingest.gateway_trust import GatewayTrust
from server.ingest.payloads import PayloadError, validated
from server.ingest.rejects import RejectedMessages
from server.metrics import Metrics
from server.queries.views import AlertView
from server.rules.alerts import GATEWAY_HEALTH_KINDS, GATEWAY_OFFLINE
from server.store.database import Store
from server.store.dialect import upsert
from server.store.schema.core import gateways
from wire import topics
from wire.models import Status, now_utc

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StatusResult:
    outcome: str
    """``recorded``, ``cleared`` (empty retained message), ``rejected`` or ``failed``."""
    gateway: str | None = None
    reason: str | None = None
    alerts: tuple[AlertView, ...] = ()


class StatusRecorder:
    """Stores each gateway's latest status.

    Args:
        store: the database.
        ingest: dead-letter payload bound.
        metrics: counters to update.
        clock: the server's time, recorded as ``last_seen``.
        alerts: thresholds of the gateway health alerts (``server.ingest.gateway_health``).
        on_alerts: called after a commit that may have changed alerts (wakes the relay).
    """

    def __init__(
        self,
        store: Store,
        ingest: IngestSettings,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime] = now_utc,
        alerts: AlertSettings | None = None,
        on_alerts: Callable[[], None] | None = None,
        trust: GatewayTrust | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._alerts = alerts if alerts is not None else AlertSettings()
        self._on_alerts = on_alerts
        self._trust = trust
        self._rejects = RejectedMessages(
            store,
            ingest.dead_letter_payload_bytes,
            metrics,
            clock=clock,
            trust=trust,
            on_alerts=on_alerts,
        )

    async def handle(self, topic: str, payload: bytes) -> StatusResult:
        """Take one message from ``stockgate/v1/+/+/status``. Never raises for bad input."""
        gateway: str | None = None
        try:
            site, gateway, kind = topics.parse_gateway_topic(topic)
            if kind != "status":
                raise PayloadError("topic", f"topic {topic!r} is not a status topic")
            if self._trust is not None and (refusal := self._trust.gateway_problem(site, gateway)):
                raise PayloadError(refusal.kind, refusal.reason)
            if not payload:
                return StatusResult("cleared", gateway)
            status = validated(Status, payload, "status", "not a valid gateway status")
            if status.site != site or status.gateway != gateway:
                raise PayloadError(
                    "mismatch",
                    f"status says site {status.site!r} gateway {status.gateway!r} but was "
                    f"published on the topic of site {site!r} gateway {gateway!r}",
                )
        except topics.TopicError as err:
            return await self._reject(topic, payload, None, PayloadError("topic", str(err)))
        except PayloadError as err:
            return await self._reject(topic, payload, gateway, err)
        return await self._record(status)

    async def _record(self, status: Status) -> StatusResult:
        now = self._clock()
        opened: list[AlertView] = []
        try:
            async with self._store.begin(f"recording status of {status.gateway}") as conn:
                insert = upsert(conn, gateways)
                document = status.model_dump(mode="json")
                values = {
                    "id": status.gateway,
                    "site": status.site,
                    "state": status.state,
                    "status": document,
                    "status_at": status.at,
                    "last_seen": now,
                }
                if status.state == "online":
                    # Kept through a last will: the fleet view's details (versions, outbox,
                    # readers) as the gateway was when last seen.
                    values["online_status"] = document
                await conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=[gateways.c.id],
                        set_={key: insert.excluded[key] for key in values if key != "id"},
                    ),
                    values,
                )
                if status.state == "offline":
                    opened = await open_alerts(
                        conn,
                        [
                            GATEWAY_OFFLINE.raise_(
                                status.gateway,
                                {"site": status.site, "at": status.at.isoformat()},
                            )
                        ],
                        status.site,
                        now,
                    )
                else:
                    await close_alerts(conn, GATEWAY_OFFLINE.kind, status.gateway, now)
                    # Readers, antennas, outbox: what this snapshot shows holds, the rest
                    # of this gateway's health alerts clear.
                    await reconcile(
                        conn,
                        kinds=GATEWAY_HEALTH_KINDS,
                        holding=health_alerts(status, self._alerts),
                        now=now,
                        subject_prefix=subject_prefix(status.gateway),
                        site=status.site,
                        min_update_s=self._alerts.min_update_s,
                        reason="the gateway's status no longer shows it",
                    )
        except StoreError as err:
            log.error("status of %s not recorded: %s", status.gateway, err)
            return StatusResult("failed", status.gateway, reason=str(err))
        self._metrics.statuses.inc()
        if self._on_alerts is not None:
            self._on_alerts()
        return StatusResult("recorded", status.gateway, alerts=tuple(opened))

    async def _reject(
        self, topic: str, payload: bytes, gateway: str | None, err: PayloadError
    ) -> StatusResult:
        dropped = await self._rejects.keep(topic, payload, gateway, err, kind="status")
        return StatusResult("rejected", gateway, reason=dropped or err.reason)
