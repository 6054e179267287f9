"""Which gateway health alerts hold, given one gateway status. Pure: no I/O, no clock.

A status is a snapshot, so each one is reconciled against the gateway's open alerts of
``GATEWAY_HEALTH_KINDS`` (``server.alerts.store.reconcile``): what the snapshot shows opens or
updates, what it no longer shows clears. Subjects start with ``<gateway>/`` so the
reconciliation stays within one gateway.

- ``reader_down``: a reader whose state is ``disconnected`` or ``error``, or that is
  ``connecting`` after a failure (``last_error`` set: it keeps failing to connect).
  ``connecting`` without an error is a start-up and not an alert.
- ``antenna_down``: each antenna a connected reader lists in ``antennas_disconnected``
  (a reader that is down already says enough).
- ``outbox_backlog``: the outbox is full, or holds ``[alerts] backlog_depth`` events or
  more, or its oldest event is ``backlog_age_s`` old or older, or the edge raised its own
  age alarm; critical when full (events are being refused).
- ``gateway_issue``: an issue the gateway lists itself (``Status.issues``) whose kind the
  server does not derive above (``DERIVED_ISSUE_KINDS``), so one condition is one alert.
- An ``offline`` status (the last will) says nothing current about readers or the outbox:
  the caller leaves the health alerts as they were, and ``gateway_offline`` says what
  matters. The next online status reconciles them again.
"""

from __future__ import annotations

from server.config.alerts import AlertSettings
from server.rules.alerts import ANTENNA_DOWN, GATEWAY_ISSUE, OUTBOX_BACKLOG, READER_DOWN
from server.rules.model import AlertSpec
from wire.models import ReaderStatus, Status

DERIVED_ISSUE_KINDS = frozenset(
    {
        "reader_down",
        "antenna_disconnected",
        "antenna_down",
        "outbox_filling",
        "outbox_full",
        "outbox_backlog",
        "outbox_backlog_old",
    }
)
"""Issue kinds an edge may list that the server derives itself from the same status."""


def subject_prefix(gateway: str) -> str:
    """The subject prefix of one gateway's health alerts."""
    return f"{gateway}/"


def _reader_down(reader: ReaderStatus) -> bool:
    if reader.state in ("disconnected", "error"):
        return True
    return reader.state == "connecting" and reader.last_error is not None


def health_alerts(status: Status, settings: AlertSettings) -> list[AlertSpec]:
    """The health alerts that hold for the gateway in ``status`` (an online one)."""
    gateway = status.gateway
    prefix = subject_prefix(gateway)
    holding: list[AlertSpec] = []
    for reader in status.readers:
        base: dict[str, object] = {"gateway": gateway, "reader": reader.name, "kind": reader.kind}
        if _reader_down(reader):
            down = {**base, "state": reader.state, "last_error": reader.last_error}
            holding.append(READER_DOWN.raise_(f"{prefix}{reader.name}", down))
            continue
        for antenna in sorted(set(reader.antennas_disconnected)):
            holding.append(
                ANTENNA_DOWN.raise_(
                    f"{prefix}{reader.name}/antenna {antenna}", {**base, "antenna": antenna}
                )
            )
    age = status.oldest_unacked_age_s
    reasons = []
    if status.buffer_full:
        reasons.append("full")
    if status.buffer_depth >= settings.backlog_depth:
        reasons.append("depth")
    if age is not None and age >= settings.backlog_age_s:
        reasons.append("age")
    if status.buffer_age_alarm:
        reasons.append("edge_age_alarm")
    if reasons:
        evidence: dict[str, object] = {
            "gateway": gateway,
            "buffer_depth": status.buffer_depth,
            "oldest_unacked_age_s": round(age) if age is not None else None,
            "buffer_full": status.buffer_full,
            "events_refused": status.events_refused,
            "reasons": reasons,
        }
        holding.append(
            OUTBOX_BACKLOG.raise_(
                f"{prefix}outbox",
                evidence,
                severity="critical" if status.buffer_full else None,
                full="; the outbox is FULL and refuses new events" if status.buffer_full else "",
            )
        )
    for issue in status.issues:
        if issue.kind in DERIVED_ISSUE_KINDS:
            continue
        holding.append(
            GATEWAY_ISSUE.raise_(
                f"{prefix}{issue.kind}/{issue.subject}",
                {
                    "gateway": gateway,
                    "issue": issue.kind,
                    "about": issue.subject,
                    "since": issue.since.isoformat(),
                    "count": issue.count,
                },
                severity=issue.severity,
                issue_message=issue.message,
            )
        )
    return holding
