"""The alert catalogue, as data: every kind the server raises, how it opens and clears.

Each ``AlertKind`` row says what the alert is about (``condition``), how urgent it is, the
message template, and how it clears (``clears``):

- ``condition``: the alert stays open while its condition holds and is closed by whoever
  re-evaluates that condition: a gateway status (``server.ingest.gateway_health``), the periodic
  sweeps (``server.alerts.sweeps``: stock levels, stale gateways, reviewed items), or the
  domain code that raised it, through ``server.alerts.store.clear_alert``.
- ``quiet``: an occurrence (something happened once: a unit seen after it was shipped). It
  has no lasting condition, so it closes by itself once it has not happened again for
  ``[alerts] occurrence_quiet_s``. Each recurrence while open updates it (count, evidence).

Acknowledging an alert records who saw it and never closes it: the condition decides.

Subjects are chosen so one open alert stands for one thing: a GTIN, an EPC, a gateway, a
reader (``gw1/dock1``), an antenna (``gw1/dock1/antenna 2``), an item at a site
(``wh1/SKU-1``), a purchase order line. Gateway-scoped subjects start with ``<gateway>/`` so
a status can reconcile all of one gateway's alerts at once.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from server.rules.model import AlertSpec, Severity

ClearPolicy = Literal["condition", "quiet"]
Raiser = Literal["ingest", "status", "sweep", "orders", "counts"]


class _Lenient(string.Formatter):
    """``str.format`` that renders a missing field as ``?`` instead of raising."""

    def get_value(self, key: int | str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        if isinstance(key, str):
            return kwargs.get(key, "?")
        return super().get_value(key, args, kwargs)


_FORMATTER = _Lenient()


@dataclass(frozen=True, slots=True)
class AlertKind:
    """One kind of alert.

    Args:
        kind: the stable name clients filter on.
        severity: how urgent it is (a raise may escalate it, e.g. a full outbox).
        template: ``str.format`` template of the message; fields come from the subject,
            the evidence and the keyword arguments of ``raise_`` (a missing one shows ``?``).
        condition: when it opens, in words (served by ``GET /api/v1/alert-kinds``).
        clears: ``condition`` or ``quiet`` (see the module docstring).
        clears_when: how it clears, in words.
        raised_by: which part of the server raises it.
    """

    kind: str
    severity: Severity
    template: str
    condition: str = ""
    clears: ClearPolicy = "condition"
    clears_when: str = ""
    raised_by: Raiser = "ingest"

    def message(self, subject: str, evidence: Mapping[str, Any], **fields: object) -> str:
        """The message for ``subject``: the template filled from evidence and ``fields``."""
        values = {**evidence, **fields, "subject": subject}
        return _FORMATTER.format(self.template, **values)

    def raise_(
        self,
        subject: str,
        evidence: Mapping[str, Any],
        *,
        severity: Severity | None = None,
        site: str | None = None,
        **fields: object,
    ) -> AlertSpec:
        """An alert of this kind about ``subject``."""
        return AlertSpec(
            kind=self.kind,
            severity=severity or self.severity,
            subject=subject,
            message=self.message(subject, evidence, **fields),
            evidence=dict(evidence),
            site=site,
        )


# --- master data ------------------------------------------------------------------------

UNKNOWN_ITEM = AlertKind(
    "unknown_item",
    "warning",
    "GTIN {subject} is not in the item master; created an unreviewed item and moved stock",
    condition="an event names a GTIN the item master does not hold",
    clears_when="the item is marked reviewed",
)
UNIDENTIFIED_EPC = AlertKind(
    "unidentified_epc",
    "info",
    "EPCs of kind {scheme!r} carry no GTIN; their units are kept under item {subject}",
    condition="an EPC without a GTIN (SSCC, GRAI, raw tag) moves stock",
    clears_when="the reserved item of the scheme is marked reviewed",
)

# --- stock levels -----------------------------------------------------------------------

LOW_STOCK = AlertKind(
    "low_stock",
    "warning",
    "{sku} at {site}: available {available} is at or below the reorder point "
    "{reorder_point} (on hand {on_hand}, on order {on_order}, allocated {allocated})",
    condition="available (on hand + on order - allocated) <= the item's reorder point, "
    "per item and site",
    clears_when="available rises above the reorder point (or the reorder point is removed)",
    raised_by="sweep",
)
OVERSTOCK = AlertKind(
    "overstock",
    "info",
    "{sku} at {site}: on hand {on_hand} is above the maximum {max_stock}",
    condition="on hand > the item's maximum stock level, per item and site",
    clears_when="on hand falls to the maximum or below (or the maximum is removed)",
    raised_by="sweep",
)

NEGATIVE_STOCK = AlertKind(
    "negative_stock",
    "warning",
    "{item} at {location}: on hand {on_hand}, below zero: more was taken out than the books "
    "held there (count the location)",
    condition="a pick, move, shipment or adjustment took a balance (item at a location) below "
    "zero while [operations] negative_stock is 'allow' at its site",
    clears_when="the balance is back at zero or above",
)

# --- units and passes -------------------------------------------------------------------

UNIT_NOT_IN_STOCK = AlertKind(
    "unit_not_in_stock",
    "warning",
    "unit {subject} left through {read_point} but was {status}; shipped it from {location}",
    condition="an outbound pass of a unit the store does not hold in stock",
    clears="quiet",
    clears_when="no recurrence for the quiet period",
)
UNIT_ALREADY_IN_STOCK = AlertKind(
    "unit_already_in_stock",
    "warning",
    "unit {subject} came in through {read_point} while in stock at {location}; "
    "received it again (an outbound pass was probably missed)",
    condition="an inbound pass of a unit already in stock",
    clears="quiet",
    clears_when="no recurrence for the quiet period",
)
UNIT_SEEN_AFTER_SHIPPED = AlertKind(
    "unit_seen_after_shipped",
    "warning",
    "unit {subject} was seen at {read_point} after it was shipped",
    condition="a read of a unit whose status is shipped (a ghost read, a return, or a "
    "shipment that never left)",
    clears="quiet",
    clears_when="no recurrence for the quiet period",
    raised_by="orders",
)
UNIT_MISSING = AlertKind(
    "unit_missing",
    "warning",
    "unit {subject} left shelf {read_point} ({location}) at {departed_at} and was read "
    "nowhere for {missing_after_s}s: recorded missing (shrinkage)",
    condition="a tagged unit in stock departed a shelf read point with missing_after_s and "
    "was not read by any read point (nor shipped, picked or moved) within that time",
    clears_when="the unit is read again (it comes back into stock where it is read)",
    raised_by="sweep",
)
IMPOSSIBLE_MOVEMENT = AlertKind(
    "impossible_movement",
    "critical",
    "unit {subject} was seen at {to_site} {seconds}s after {from_site}, faster than it "
    "could travel",
    condition="a unit read at two sites closer in time than the travel time between them",
    clears="quiet",
    clears_when="no recurrence for the quiet period",
    raised_by="orders",
)

UNKNOWN_PALLET = AlertKind(
    "unknown_pallet",
    "warning",
    "pallet SSCC {subject} ({biz_step} at {read_point}) holds nothing the server knows of: "
    "nothing moved; the event is held until its contents are recorded "
    "(POST /api/v1/aggregations)",
    condition="an event with a stock effect names a pallet (an SSCC tag, label or Digital "
    "Link) whose contents no aggregation records (subject: the SSCC's 18 digits)",
    clears_when="the pallet's contents are recorded and its held events applied",
)

UNRESOLVED_PASSES = AlertKind(
    "unresolved_passes",
    "warning",
    "passes at {subject} have no direction and moved no stock; an operator resolves them "
    "(GET /api/v1/unresolved-passes?read_point={subject})",
    condition="a portal pass reached the server without a direction: an unresolved pass is "
    "open at the read point (subject: the read point; count: the passes that raised it)",
    clears_when="every unresolved pass at the read point is resolved",
)

# --- orders and counts (raised by the order and count code through raise_alert) ----------

UNEXPECTED_SHIPMENT = AlertKind(
    "unexpected_shipment",
    "warning",
    "{subject} left through {read_point} with no open sales order line for it",
    condition="an outbound pass of an item with no open sales order line",
    clears="quiet",
    clears_when="no recurrence for the quiet period",
    raised_by="orders",
)
UNEXPECTED_RECEIPT = AlertKind(
    "unexpected_receipt",
    "warning",
    "{subject} was received at {read_point} with no open purchase order line for it",
    condition="a receipt of an item no open purchase order expects",
    clears="quiet",
    clears_when="no recurrence for the quiet period",
    raised_by="orders",
)
SHORT_RECEIPT = AlertKind(
    "short_receipt",
    "warning",
    "{subject}: received {received} of {ordered} ordered",
    condition="a purchase order line closed or received with less than ordered",
    clears_when="the line is received in full, or cancelled",
    raised_by="orders",
)
OVER_RECEIPT = AlertKind(
    "over_receipt",
    "warning",
    "{subject}: received {received}, more than the {ordered} ordered",
    condition="a purchase order line received with more than ordered",
    clears_when="the line is corrected to what was received, or reversed",
    raised_by="orders",
)
ASN_UNEXPECTED_UNITS = AlertKind(
    "asn_unexpected_units",
    "warning",
    "{subject}: {count} unit(s) received that the supplier's shipping notice did not list",
    condition="a portal receives a unit of an item an open purchase order's advance shipping "
    "notice (EPCIS capture) covers, and the notice does not list that EPC",
    clears="quiet",
    clears_when="no recurrence for the quiet period",
    raised_by="orders",
)
ASN_MISSING_UNITS = AlertKind(
    "asn_missing_units",
    "warning",
    "{subject}: {count} unit(s) on the supplier's shipping notice were never received",
    condition="a purchase order with an advance shipping notice is closed while units the "
    "notice listed were not received",
    clears_when="the order is cancelled",
    raised_by="orders",
)
REORDER_SUGGESTED = AlertKind(
    "reorder_suggested",
    "info",
    "draft purchase order {number} (id {order_id}) for {supplier} at {site}: {lines} line(s) "
    "projected at or below their reorder point; review and confirm it",
    condition="the replenishment planner drafted a purchase order for items whose projected "
    "stock is at or below their reorder point",
    clears_when="the draft is confirmed (opened) or cancelled",
    raised_by="sweep",
)
COUNT_DISCREPANCY = AlertKind(
    "count_discrepancy",
    "warning",
    "count of {subject} differed from the books: {summary}",
    condition="a cycle count closes with units missing, units found, or quantities off",
    clears="quiet",
    clears_when="no further discrepancy at the location for the quiet period",
    raised_by="counts",
)

# --- gateways ---------------------------------------------------------------------------

GATEWAY_OFFLINE = AlertKind(
    "gateway_offline",
    "critical",
    "gateway {subject} is offline",
    condition="the gateway's last will (offline status), or no status for [alerts] gateway_stale_s",
    clears_when="the gateway reports online again",
    raised_by="status",
)
READER_DOWN = AlertKind(
    "reader_down",
    "critical",
    "reader {reader} on gateway {gateway} is {state}: {last_error}",
    condition="a reader's state is disconnected or error, or it keeps failing to connect",
    clears_when="a later status shows the reader connected (or no longer lists it)",
    raised_by="status",
)
ANTENNA_DOWN = AlertKind(
    "antenna_down",
    "warning",
    "antenna {antenna} of reader {reader} on gateway {gateway} is disconnected",
    condition="a reader reports an antenna disconnected",
    clears_when="a later status no longer lists the antenna as disconnected",
    raised_by="status",
)
OUTBOX_BACKLOG = AlertKind(
    "outbox_backlog",
    "warning",
    "gateway {gateway} holds {buffer_depth} unacknowledged events, the oldest "
    "{oldest_unacked_age_s}s old{full}",
    condition="the outbox is full, or deeper than [alerts] backlog_depth, or its oldest "
    "event older than [alerts] backlog_age_s (critical when full)",
    clears_when="a later status shows the outbox below both thresholds and not full",
    raised_by="status",
)
GATEWAY_ISSUE = AlertKind(
    "gateway_issue",
    "warning",
    "gateway {gateway}: {issue_message}",
    condition="the gateway lists a health issue in its status that no other kind covers",
    clears_when="a later status no longer lists the issue",
    raised_by="status",
)
UNKNOWN_GATEWAY = AlertKind(
    "unknown_gateway",
    "critical",
    "gateway {subject} is not enrolled in [[gateways]]; its messages are dead-lettered: {reason}",
    condition="a message from a gateway that the [[gateways]] registry does not list",
    clears="quiet",
    clears_when="no further message from it for the quiet period",
)
GATEWAY_REFUSED = AlertKind(
    "gateway_refused",
    "critical",
    "gateway {subject} sent what it may not; dead-lettered: {reason}",
    condition="a gateway's batch names another site, a read point it does not own, or "
    "event ids outside its own outbox range (gateway, epoch, sequence)",
    clears="quiet",
    clears_when="no further refusal for the quiet period",
)
CLOCK_SKEW = AlertKind(
    "clock_skew",
    "warning",
    "gateway {subject} sent events stamped ahead of the server's clock; quarantined: {reason}",
    condition="an event more than [ingest] max_clock_skew_s ahead of the server's time",
    clears="quiet",
    clears_when="no further future event for the quiet period",
)

ALERT_KINDS: Mapping[str, AlertKind] = {
    kind.kind: kind
    for kind in (
        UNKNOWN_ITEM,
        UNIDENTIFIED_EPC,
        LOW_STOCK,
        OVERSTOCK,
        NEGATIVE_STOCK,
        UNIT_NOT_IN_STOCK,
        UNIT_ALREADY_IN_STOCK,
        UNIT_SEEN_AFTER_SHIPPED,
        UNIT_MISSING,
        IMPOSSIBLE_MOVEMENT,
        UNRESOLVED_PASSES,
        UNKNOWN_PALLET,
        UNEXPECTED_SHIPMENT,
        UNEXPECTED_RECEIPT,
        SHORT_RECEIPT,
        OVER_RECEIPT,
        COUNT_DISCREPANCY,
        ASN_UNEXPECTED_UNITS,
        ASN_MISSING_UNITS,
        REORDER_SUGGESTED,
        GATEWAY_OFFLINE,
        READER_DOWN,
        ANTENNA_DOWN,
        OUTBOX_BACKLOG,
        GATEWAY_ISSUE,
        UNKNOWN_GATEWAY,
        GATEWAY_REFUSED,
        CLOCK_SKEW,
    )
}
"""Every kind the server raises, by name."""

QUIET_KINDS: frozenset[str] = frozenset(k.kind for k in ALERT_KINDS.values() if k.clears == "quiet")
GATEWAY_HEALTH_KINDS: frozenset[str] = frozenset(
    (READER_DOWN.kind, ANTENNA_DOWN.kind, OUTBOX_BACKLOG.kind, GATEWAY_ISSUE.kind)
)
"""Kinds a gateway's status reconciles (their subjects start with ``<gateway>/``)."""
STOCK_LEVEL_KINDS: frozenset[str] = frozenset((LOW_STOCK.kind, OVERSTOCK.kind))


def alert_kind(kind: str) -> AlertKind:
    """The catalogue row of ``kind``.

    Raises:
        KeyError: ``kind`` is not in the catalogue (a programming error: raise only known
            kinds, so clients can rely on the list).
    """
    try:
        return ALERT_KINDS[kind]
    except KeyError:
        raise KeyError(f"alert kind {kind!r} is not in the catalogue") from None
