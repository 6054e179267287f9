"""What the stock operation routes take and give: the requests, the result, the caller.

The rules each operation follows are in ``server.commands.operations``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.commands.masterdata import NAME_PATTERN, Gtin, Sku
from server.errors import Forbidden
from server.queries.views import MovementView
from server.rules.points import LOCATION_PATTERN, MAX_LOCATION_LENGTH
from server.store.schema.master import MAX_NOTE
from server.store.sites import site_of

AdjustmentReason = Literal["lost", "stolen", "damaged", "expired", "found", "correction"]
MAX_OPERATION_QUANTITY = 1_000_000_000
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
EPC_PATTERN = r"^urn:epc:[A-Za-z0-9:._%-]+$"

Note = Annotated[str, Field(min_length=1, max_length=MAX_NOTE, pattern=NAME_PATTERN)]
Location = Annotated[
    str, Field(pattern=LOCATION_PATTERN, min_length=1, max_length=MAX_LOCATION_LENGTH)
]
Epc = Annotated[str, Field(min_length=9, max_length=200, pattern=EPC_PATTERN)]
RequestId = Annotated[
    str,
    Field(
        pattern=REQUEST_ID_PATTERN,
        description="Optional client-chosen id; sending it again returns the first result.",
    ),
]


class OperationRequest(BaseModel):
    """What every operation request has."""

    model_config = ConfigDict(extra="forbid")

    note: Note | None = None
    event_time: datetime | None = None
    """When it happened; no offset means UTC; default now."""
    request_id: RequestId | None = None


class ItemOperationRequest(OperationRequest):
    """An operation on an item's quantity or on one unit."""

    sku: Sku | None = None
    gtin: Gtin | None = None
    epc: Epc | None = None
    """A tagged unit; ``sku`` or ``gtin`` beside it name the item of a unit never seen."""

    @model_validator(mode="after")
    def _one_identity(self) -> ItemOperationRequest:
        if self.sku is not None and self.gtin is not None:
            raise ValueError("give sku or gtin, not both")
        if self.sku is None and self.gtin is None and self.epc is None:
            raise ValueError("give sku, gtin or epc")
        return self


class AdjustmentRequest(ItemOperationRequest):
    """Stock found, lost, stolen, damaged, expired, or corrected at a location."""

    reason: AdjustmentReason
    location: Location | None = None
    """Required for quantities and found units; a lost unit is taken from where it is."""
    quantity: (
        Annotated[int, Field(ge=-MAX_OPERATION_QUANTITY, le=MAX_OPERATION_QUANTITY)] | None
    ) = None
    """The signed change (``-3``: three fewer); a unit's is +1 or -1 and may be left out."""


class TransferRequest(ItemOperationRequest):
    """Stock moved from one location to another (also between sites)."""

    from_location: Location | None = None
    """Required for quantities; a unit leaves from where it is."""
    to_location: Location
    quantity: Annotated[int, Field(ge=1, le=MAX_OPERATION_QUANTITY)] | None = None
    """Required for quantities; a unit's is 1 and may be left out."""


class ReversalRequest(OperationRequest):
    """Cancel a ledger row with a new one (see the module docstring)."""

    movement_id: Annotated[int, Field(ge=1, le=2**63 - 1)]
    note: Note
    """Why the row is wrong (required)."""


class OperationResult(BaseModel):
    """The ledger rows an operation appended."""

    event_id: str
    replayed: bool
    """True when ``request_id`` was seen before: these are the first call's rows."""
    movements: list[MovementView]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the name recorded as actor, and the sites the key is for (empty: all)."""

    name: str
    sites: frozenset[str] = frozenset()

    def check(self, *locations: str | None) -> None:
        """Raise ``Forbidden`` unless every location given is in the caller's sites."""
        if not self.sites:
            return
        for location in locations:
            if location is not None and site_of(location) not in self.sites:
                raise Forbidden(
                    f"this key is restricted to sites {sorted(self.sites)}; location "
                    f"{location!r} is outside them"
                )


__all__ = [
    "AdjustmentReason",
    "AdjustmentRequest",
    "Caller",
    "ItemOperationRequest",
    "OperationRequest",
    "OperationResult",
    "ReversalRequest",
    "TransferRequest",
]
