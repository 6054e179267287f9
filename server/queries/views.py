"""Read models: what the store hands out, and what the API serialises."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, computed_field, field_validator

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
    """On hand of one item at one location, and what open orders add to it.

    ``on_order``: not yet received on open purchase orders receiving here; ``allocated``:
    not yet shipped on open sales and transfer orders shipping from here; ``in_transit``:
    shipped on open transfer orders to here, not yet received (shown, not in available).
    The order figures are now's; a listing as of a past time shows them as 0.
    """

    sku: str
    gtin: str | None
    name: str
    reviewed: bool
    location: str
    on_hand: int
    on_order: int = 0
    allocated: int = 0
    in_transit: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def available(self) -> int:
        """On hand + on order - allocated."""
        return self.on_hand + self.on_order - self.allocated


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
    note: str | None = None
    """What the person who recorded an API stock operation wrote about it."""
    reverses: int | None = None
    """Set on a reversal: the id of the row it cancels (same kind, locations swapped)."""
    confidence: float | None = None
    """A portal pass's: the edge's confidence in its direction (0..1); null otherwise."""


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
    updated_at: datetime | None = None
    """When it last changed while open (None: not since it opened)."""
    count: int = 1
    """How often it was raised while open."""

    @field_validator("count", mode="before")
    @classmethod
    def _count_of_old_rows(cls, value: object) -> object:
        # Rows from before revision 0004 have no count: they were raised once.
        return 1 if value is None else value

    @computed_field  # type: ignore[prop-decorator]
    @property
    def state(self) -> AlertState:
        """``open``, ``acknowledged`` (seen, still open) or ``closed``."""
        if self.closed_at is not None:
            return "closed"
        return "acknowledged" if self.acknowledged_at is not None else "open"


class ReaderSummary(View):
    """One reader or scanner of a gateway, as its last online status showed it."""

    name: str
    kind: str
    state: str
    antennas: list[int] = []
    """The antennas the gateway's config uses on it (empty: all, or a scanner)."""
    antennas_disconnected: list[int] = []
    reads_per_s: float = 0.0
    antenna_reads_per_s: dict[str, float] = {}
    """Reads per second by antenna (its number as text), over the reader's last window."""


class GatewayView(View):
    """A gateway's last reported status and when the server last heard from it, with the
    fleet view's fields drawn from it.

    The fleet fields come from the last status the gateway sent while online
    (``details_at``): for a gateway that is offline now they say how it was when it was
    last seen, which is what someone walking to it wants to know.
    """

    id: str
    site: str
    state: str
    status_at: datetime
    last_seen: datetime
    status: dict[str, Any]
    details_at: datetime | None = None
    """Time of the online status the fields below come from."""
    software_version: str | None = None
    config_version: int | None = None
    """The remote configuration version the gateway runs (None: its local file alone)."""
    config_latest: int | None = None
    """The newest version recorded here; differs from ``config_version`` while the
    gateway has not applied it (offline, or it refused it: ``config_rejected``)."""
    config_rejected: dict[str, Any] | None = None
    uptime_s: float | None = None
    outbox_depth: int | None = None
    oldest_event_age_s: float | None = None
    """Age of the oldest event the gateway holds unacknowledged."""
    disk_free_bytes: int | None = None
    cpu_temp_c: float | None = None
    throttled: list[str] | None = None
    """Raspberry Pi firmware conditions now (None off a Pi)."""
    throttled_since_boot: list[str] | None = None
    readers: list[ReaderSummary] = []


class GatewayConfigView(View):
    """One recorded remote configuration of a gateway."""

    gateway: str
    version: int
    site: str
    settings: dict[str, Any]
    created_at: datetime
    created_by: str


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
