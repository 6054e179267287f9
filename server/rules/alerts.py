"""The alert kinds the server raises, as data: kind, severity and message template."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.rules.model import AlertSpec, Severity


@dataclass(frozen=True, slots=True)
class AlertKind:
    """One kind of alert.

    Args:
        kind: the stable name clients filter on.
        severity: how urgent it is.
        template: ``str.format`` template of the message; fields come from ``raise_``.
    """

    kind: str
    severity: Severity
    template: str

    def raise_(self, subject: str, evidence: Mapping[str, Any], **fields: object) -> AlertSpec:
        """An alert of this kind about ``subject``."""
        return AlertSpec(
            kind=self.kind,
            severity=self.severity,
            subject=subject,
            message=self.template.format(subject=subject, **fields),
            evidence=dict(evidence),
        )


UNKNOWN_ITEM = AlertKind(
    "unknown_item",
    "warning",
    "GTIN {subject} is not in the item master; created an unreviewed item and moved stock",
)
UNIDENTIFIED_EPC = AlertKind(
    "unidentified_epc",
    "info",
    "EPCs of kind {scheme!r} carry no GTIN; their units are kept under item {subject}",
)
UNIT_NOT_IN_STOCK = AlertKind(
    "unit_not_in_stock",
    "warning",
    "unit {subject} left through {read_point} but was {status}; shipped it from {location}",
)
UNIT_ALREADY_IN_STOCK = AlertKind(
    "unit_already_in_stock",
    "warning",
    "unit {subject} came in through {read_point} while in stock at {location}; "
    "received it again (an outbound pass was probably missed)",
)
GATEWAY_OFFLINE = AlertKind(
    "gateway_offline",
    "critical",
    "gateway {subject} is offline",
)

ALERT_KINDS: Mapping[str, AlertKind] = {
    kind.kind: kind
    for kind in (
        UNKNOWN_ITEM,
        UNIDENTIFIED_EPC,
        UNIT_NOT_IN_STOCK,
        UNIT_ALREADY_IN_STOCK,
        GATEWAY_OFFLINE,
    )
}
