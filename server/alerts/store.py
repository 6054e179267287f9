"""Alert rows and their change log: raise (open or update), clear, reconcile, acknowledge.

Every function here runs inside the caller's transaction and writes, with the change, one
``alert_events`` row holding a snapshot of the alert after it. Those rows are what the MQTT
relay, the webhooks and the live stream deliver, so an alert change is delivered if and
only if its transaction commits, whichever code path made it.

Life of an alert (``server.rules.alerts`` says, per kind, how it clears):

- **opened** once per (kind, subject) while open: the partial unique index
  ``uq_alerts_open`` makes concurrent raises (two server instances) open one row;
- **updated** while open: raising it again records the new evidence, ``updated_at`` and
  ``count``; a condition re-evaluated with ``reconcile`` updates only when the evidence or
  severity changed, and evidence changes at most once per ``min_update_s`` (a status every
  10 s must not flood webhooks);
- **cleared** (``closed_at``) when its condition ends: ``clear_alert``, ``reconcile``, or
  the quiet period of an occurrence (``close_quiet``);
- **acknowledged**: an operator has seen it; it stays open until its condition clears.

For code elsewhere in the server (orders, counts, moves) the two calls to know are::

    await raise_alert(conn, "unit_seen_after_shipped", epc, {"read_point": rp}, site="wh1")
    await clear_alert(conn, "short_receipt", "PO-7/3", reason="received in full")
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.queries.views import AlertView
from server.rules.alerts import alert_kind
from server.rules.model import AlertSpec, Severity
from server.store.dialect import upsert
from server.store.schema.alerts import alert_events
from server.store.schema.core import MAX_MESSAGE, alerts
from wire.models import AlertChange as ChangeKind
from wire.models import now_utc

Change = ChangeKind
MAX_SUBJECT = 256
MAX_EVIDENCE_BYTES = 16_384
"""Evidence larger than this (as JSON) is replaced by a note saying so."""


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One change of one alert, as recorded in ``alert_events``."""

    change: Change
    alert: AlertView
    event_id: int
    """The ``alert_events`` row id (increasing; what deliveries and the stream carry)."""


def alert_view(row: sa.Row[Any]) -> AlertView:
    return AlertView.model_validate(row._mapping)


def json_safe(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """Evidence as plain JSON values (times as ISO text), bounded in size."""
    text = json.dumps(dict(evidence), default=str, sort_keys=True)
    if len(text) > MAX_EVIDENCE_BYTES:
        return {"truncated": True, "bytes": len(text)}
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _key(kind: str, subject: str) -> tuple[str, str]:
    return kind, subject[:MAX_SUBJECT]


async def _record(
    conn: AsyncConnection, changes: Sequence[tuple[Change, AlertView]], now: datetime
) -> list[AlertChange]:
    if not changes:
        return []
    result = await conn.execute(
        alert_events.insert().returning(alert_events.c.id, sort_by_parameter_order=True),
        [
            {
                "alert_id": view.id,
                "change": change,
                "at": now,
                "kind": view.kind,
                "site": view.site,
                "alert": view.model_dump(mode="json"),
            }
            for change, view in changes
        ],
    )
    ids = list(result.scalars())
    return [
        AlertChange(change, view, event_id)
        for (change, view), event_id in zip(changes, ids, strict=True)
    ]


async def _update_open(
    conn: AsyncConnection,
    alert_id: int,
    spec: AlertSpec,
    now: datetime,
    *,
    add: int = 1,
    if_updated_at: datetime | Literal["any"] | None = "any",
) -> AlertView | None:
    """Record a new raise of an open alert; None if it is no longer open (or was changed)."""
    conditions: list[sa.ColumnElement[bool]] = [
        alerts.c.id == alert_id,
        alerts.c.closed_at.is_(None),
    ]
    if if_updated_at != "any":
        # Compare-and-set: of two instances re-evaluating one condition, one updates.
        conditions.append(alerts.c.updated_at.is_not_distinct_from(if_updated_at))
    row = (
        await conn.execute(
            alerts.update()
            .where(*conditions)
            .values(
                severity=spec.severity,
                message=spec.message[:MAX_MESSAGE],
                evidence=json_safe(spec.evidence),
                updated_at=now,
                count=sa.func.coalesce(alerts.c.count, 1) + add,
            )
            .returning(*alerts.c)
        )
    ).first()
    return alert_view(row) if row is not None else None


async def raise_alerts(
    conn: AsyncConnection,
    specs: Sequence[AlertSpec],
    site: str | None,
    now: datetime,
    *,
    update_existing: bool = True,
) -> list[AlertChange]:
    """Open each alert, or update the open one of its kind and subject.

    Args:
        conn: a connection in the caller's transaction.
        specs: the alerts; several of one kind and subject count as that many raises (the
            first one's evidence opens it, the last one's is kept on update).
        site: the site of specs that do not name one.
        now: the time of the change.
        update_existing: record a raise of an alert that is open already as an update
            (False: leave it as it is).

    Returns:
        The changes, opened ones first.
    """
    grouped: dict[tuple[str, str], list[AlertSpec]] = {}
    for spec in specs:
        grouped.setdefault(_key(spec.kind, spec.subject), []).append(spec)
    if not grouped:
        return []
    rows = [
        {
            "kind": kind,
            "severity": group[0].severity,
            "subject": subject,
            "site": group[0].site or site,
            "message": group[0].message[:MAX_MESSAGE],
            "evidence": json_safe(group[0].evidence),
            "opened_at": now,
            "count": len(group),
        }
        for (kind, subject), group in grouped.items()
    ]
    insert = upsert(conn, alerts)
    result = await conn.execute(
        insert.on_conflict_do_nothing(
            index_elements=[alerts.c.kind, alerts.c.subject],
            index_where=alerts.c.closed_at.is_(None),
        ).returning(*alerts.c),
        rows,
    )
    opened = {(view.kind, view.subject): view for view in map(alert_view, result)}
    changes: list[tuple[Change, AlertView]] = [("opened", view) for view in opened.values()]
    for key, group in grouped.items():
        if key in opened or not update_existing:
            continue
        # Open already: count every raise, keep the newest evidence.
        current = (
            await conn.execute(
                sa.select(alerts.c.id).where(
                    alerts.c.kind == key[0],
                    alerts.c.subject == key[1],
                    alerts.c.closed_at.is_(None),
                )
            )
        ).scalar()
        if current is None:
            continue  # closed between the insert and now by another transaction
        updated = await _update_open(conn, current, group[-1], now, add=len(group))
        if updated is not None:
            changes.append(("updated", updated))
    return await _record(conn, changes, now)


async def open_alerts(
    conn: AsyncConnection, specs: Sequence[AlertSpec], site: str | None, now: datetime
) -> list[AlertView]:
    """Raise each alert (see ``raise_alerts``); returns the ones that opened."""
    changes = await raise_alerts(conn, specs, site, now)
    return [change.alert for change in changes if change.change == "opened"]


async def raise_alert(
    conn: AsyncConnection,
    kind: str,
    subject: str,
    evidence: Mapping[str, Any],
    *,
    site: str | None = None,
    severity: Severity | None = None,
    now: datetime | None = None,
    **fields: object,
) -> AlertChange | None:
    """Open the alert ``kind`` about ``subject``, or update it if it is open.

    Args:
        conn: a connection in the caller's transaction (the alert commits with it).
        kind: a kind from ``server.rules.alerts.ALERT_KINDS``.
        subject: what it is about (at most 256 characters are kept).
        evidence: JSON-able facts; also fill the kind's message template.
        site: the site it concerns, if any.
        severity: overrides the kind's severity.
        now: the time of the change (default: now).
        fields: more values for the message template.

    Returns:
        The change recorded (opened or updated).

    Raises:
        KeyError: ``kind`` is not in the catalogue.
    """
    spec = alert_kind(kind).raise_(subject, evidence, severity=severity, site=site, **fields)
    changes = await raise_alerts(conn, [spec], site, now or now_utc())
    return changes[0] if changes else None


async def _close(
    conn: AsyncConnection,
    alert_id: int,
    evidence: Mapping[str, Any],
    now: datetime,
    reason: str,
) -> AlertView | None:
    row = (
        await conn.execute(
            alerts.update()
            .where(alerts.c.id == alert_id, alerts.c.closed_at.is_(None))
            .values(
                closed_at=now,
                updated_at=now,
                evidence=json_safe({**evidence, "cleared": reason}),
            )
            .returning(*alerts.c)
        )
    ).first()
    return alert_view(row) if row is not None else None


async def clear_alert(
    conn: AsyncConnection,
    kind: str,
    subject: str,
    *,
    reason: str = "condition ended",
    now: datetime | None = None,
) -> AlertChange | None:
    """Close the open alert ``kind`` about ``subject``, if there is one.

    Args:
        conn: a connection in the caller's transaction.
        kind: the alert kind.
        subject: what it is about.
        reason: why it cleared (kept in the evidence as ``cleared``).
        now: the time of the change (default: now).

    Returns:
        The change recorded, or None if no such alert was open.
    """
    when = now or now_utc()
    kind, subject = _key(kind, subject)
    row = (
        await conn.execute(
            sa.select(alerts.c.id, alerts.c.evidence).where(
                alerts.c.kind == kind, alerts.c.subject == subject, alerts.c.closed_at.is_(None)
            )
        )
    ).first()
    if row is None:
        return None
    closed = await _close(conn, row.id, row.evidence or {}, when, reason)
    if closed is None:
        return None
    [change] = await _record(conn, [("cleared", closed)], when)
    return change


async def close_alerts(conn: AsyncConnection, kind: str, subject: str, now: datetime) -> int:
    """Close the open alert of ``kind`` about ``subject``; returns how many were closed."""
    change = await clear_alert(conn, kind, subject, now=now)
    return 0 if change is None else 1


def _subject_prefix(prefix: str) -> sa.ColumnElement[bool]:
    # substr, not LIKE: gateway ids may hold '_' (a LIKE wildcard).
    return sa.func.substr(alerts.c.subject, 1, len(prefix)) == prefix


async def reconcile(
    conn: AsyncConnection,
    *,
    kinds: Collection[str],
    holding: Sequence[AlertSpec],
    now: datetime,
    subject_prefix: str | None = None,
    site: str | None = None,
    min_update_s: float = 0.0,
    reason: str = "condition ended",
) -> list[AlertChange]:
    """Make the open alerts of ``kinds`` (within ``subject_prefix``) match ``holding``.

    An alert in ``holding`` that is not open opens; one that is open is updated when its
    severity changed, or its evidence changed and it was last updated ``min_update_s`` ago
    or more; an open alert not in ``holding`` clears.

    Args:
        conn: a connection in the caller's transaction.
        kinds: the kinds this evaluation covers.
        holding: the alerts whose condition holds now (each of one of ``kinds``).
        now: the time of the evaluation.
        subject_prefix: only alerts whose subject starts with it are considered (one
            gateway's: ``"gw1/"``); None for all.
        site: the site of specs that do not name one.
        min_update_s: the least time between two evidence updates of one alert.
        reason: why alerts no longer holding cleared.
    """
    conditions: list[sa.ColumnElement[bool]] = [
        alerts.c.kind.in_(sorted(kinds)),
        alerts.c.closed_at.is_(None),
    ]
    if subject_prefix is not None:
        conditions.append(_subject_prefix(subject_prefix))
    open_rows = {
        (row.kind, row.subject): row
        for row in await conn.execute(
            sa.select(
                alerts.c.id,
                alerts.c.kind,
                alerts.c.subject,
                alerts.c.severity,
                alerts.c.evidence,
                alerts.c.opened_at,
                alerts.c.updated_at,
            ).where(*conditions)
        )
    }
    wanted: dict[tuple[str, str], AlertSpec] = {}
    for spec in holding:
        wanted.setdefault(_key(spec.kind, spec.subject), spec)
    new = [spec for key, spec in wanted.items() if key not in open_rows]
    # Opened by a concurrent evaluation meanwhile: that one recorded it.
    changes = await raise_alerts(conn, new, site, now, update_existing=False)

    updates: list[tuple[Change, AlertView]] = []
    for key, spec in wanted.items():
        row = open_rows.get(key)
        if row is None:
            continue
        evidence = json_safe(spec.evidence)
        last = row.updated_at or row.opened_at
        due = (now - last).total_seconds() >= min_update_s
        if spec.severity == row.severity and (evidence == row.evidence or not due):
            continue
        updated = await _update_open(conn, row.id, spec, now, if_updated_at=row.updated_at)
        if updated is not None:
            updates.append(("updated", updated))
    for key, row in open_rows.items():
        if key in wanted:
            continue
        closed = await _close(conn, row.id, row.evidence or {}, now, reason)
        if closed is not None:
            updates.append(("cleared", closed))
    return changes + await _record(conn, updates, now)


async def close_quiet(
    conn: AsyncConnection, kinds: Collection[str], quiet_since: datetime, now: datetime
) -> list[AlertChange]:
    """Close open alerts of ``kinds`` not raised again since ``quiet_since``."""
    last = sa.func.coalesce(alerts.c.updated_at, alerts.c.opened_at)
    rows = await conn.execute(
        sa.select(alerts.c.id, alerts.c.evidence).where(
            alerts.c.kind.in_(sorted(kinds)), alerts.c.closed_at.is_(None), last < quiet_since
        )
    )
    closed: list[tuple[Change, AlertView]] = []
    for row in rows.all():
        view = await _close(conn, row.id, row.evidence or {}, now, "quiet period passed")
        if view is not None:
            closed.append(("cleared", view))
    return await _record(conn, closed, now)


async def acknowledge(
    conn: AsyncConnection, alert_id: int, by: str, now: datetime
) -> AlertView | None:
    """Mark an alert seen by ``by`` (idempotent: a second ack keeps the first's record).

    Returns:
        The alert after the acknowledgement, or None if no alert has that id.
    """
    row = (
        await conn.execute(
            alerts.update()
            .where(alerts.c.id == alert_id, alerts.c.acknowledged_at.is_(None))
            .values(acknowledged_at=now, acknowledged_by=by)
            .returning(*alerts.c)
        )
    ).first()
    if row is not None:
        view = alert_view(row)
        await _record(conn, [("acknowledged", view)], now)
        return view
    row = (await conn.execute(sa.select(alerts).where(alerts.c.id == alert_id))).first()
    return alert_view(row) if row is not None else None
