"""Read models: what the store hands out, and what the API serialises."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, computed_field

from server.rules.model import LedgerKind, Severity, UnitStatus

AlertState = Literal["open", "acknowledged", "closed"]


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class ItemView(View):
    id: int
    sku: str
    gtin: str | None
    name: str
    reviewed: bool


class StockRow(View):
    """On hand of one item at one location."""

    sku: str
    gtin: str | None
    name: str
    reviewed: bool
    location: str
    on_hand: int


class MovementView(View):
    """One ledger row."""

    id: int
    event_id: str | None
    event_time: datetime
    recorded_at: datetime
    kind: LedgerKind
    sku: str
    gtin: str | None
    epc: str | None
    from_location: str | None
    to_location: str | None
    quantity: int
    reason: str | None
    actor: str
    read_point: str | None


class UnitView(View):
    """A tagged unit: where it is now, and its ledger history (newest first)."""

    epc: str
    status: UnitStatus
    location: str | None
    item: ItemView
    last_event_time: datetime
    last_event_id: str
    history: list[MovementView]


class AlertView(View):
    id: int
    kind: str
    severity: Severity
    subject: str
    site: str | None
    message: str
    evidence: dict[str, Any]
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    closed_at: datetime | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def state(self) -> AlertState:
        """``open``, ``acknowledged`` (seen, still open) or ``closed``."""
        if self.closed_at is not None:
            return "closed"
        return "acknowledged" if self.acknowledged_at is not None else "open"


class GatewayView(View):
    """A gateway's last reported status and when the server last heard from it."""

    id: str
    site: str
    state: str
    status_at: datetime
    last_seen: datetime
    status: dict[str, Any]


class DeadLetterView(View):
    id: int
    received_at: datetime
    topic: str
    gateway: str | None
    event_id: str | None
    reason: str
    payload: str
    payload_bytes: int
    truncated: bool
