"""Master data: what an item, an item category and a location are, as the API and the CSV
import take them (fields, request bodies, views). Reading and writing them is in
``server.commands.items``, ``server.commands.categories`` and ``server.commands.locations``.

Decisions written down here:

- **Items** are keyed by SKU in the API; the ledger refers to them by their numeric id, so
  a SKU may change (reviewing an item ingest created under its GTIN gives it its real SKU).
  A GTIN is stored as 14 digits with its check digit verified; two items may not share one.
  An item created through the API is ``reviewed`` unless it says otherwise, with unit of
  measure ``ea`` when none is given.
- **Locations** form a tree by their dotted ids (site > zone > bin). The kind follows from
  the depth, as for locations ingest creates; the id cannot change (ledger rows name it),
  only the display name. A new location's parent must exist already (or come earlier in
  the same import), so a typo does not grow a new branch.
- **Deleting** master data is allowed only while nothing refers to it (no ledger row,
  balance, unit, child location, read point or item of a category); otherwise 409. Ledger
  rows are never deleted, so anything that ever moved stays.
- Every change records ``updated_at``. Writers run inside the caller's transaction.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from epcpy import ConvertException
from epcpy.epc_schemes import SGLN
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from server.errors import Invalid
from server.rules.points import LOCATION_PATTERN, MAX_LOCATION_LENGTH
from server.store.schema.core import MAX_SGLN
from server.store.schema.master import (
    DEFAULT_UNIT,
    MAX_CATEGORY_CODE,
    MAX_NAME,
    MAX_UNIT,
    InventoryType,
)
from wire.gs1 import with_check_digit

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
"""A SKU the API accepts (and can carry in a URL path): letters, digits and ``._:-``."""
CATEGORY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
UNIT_PATTERN = r"^[A-Za-z0-9_.%-]{1,16}$"
NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""Free text without control characters (NUL cannot even be stored in PostgreSQL)."""
GTIN_INPUT_PATTERN = r"^(\d{8}|\d{12}|\d{13}|\d{14})$"
MAX_QUANTITY_SETTING = 10**12


def normalize_gtin(value: str) -> str:
    """A GTIN-8/12/13/14 as the 14 digits the store keeps, its check digit verified.

    Raises:
        ValueError: the check digit is wrong or the GTIN is all zeros.
    """
    if not re.fullmatch(GTIN_INPUT_PATTERN, value):
        raise ValueError("a GTIN is 8, 12, 13 or 14 digits")
    gtin = value.zfill(14)
    if int(gtin) == 0:
        raise ValueError("a GTIN cannot be all zeros")
    if with_check_digit(gtin[:-1]) != gtin:
        raise ValueError(f"GTIN {value} has a wrong check digit")
    return gtin


Sku = Annotated[str, Field(pattern=SKU_PATTERN, min_length=1, max_length=64)]
Gtin = Annotated[
    str,
    Field(pattern=GTIN_INPUT_PATTERN, description="GTIN-8/12/13/14; stored as 14 digits."),
    AfterValidator(normalize_gtin),
]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)]
CategoryCode = Annotated[
    str, Field(min_length=1, max_length=MAX_CATEGORY_CODE, pattern=CATEGORY_PATTERN)
]
Unit = Annotated[str, Field(min_length=1, max_length=MAX_UNIT, pattern=UNIT_PATTERN)]
ReorderPoint = Annotated[int, Field(ge=0, le=MAX_QUANTITY_SETTING)]
ReorderQuantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY_SETTING)]
LocationId = Annotated[
    str, Field(pattern=LOCATION_PATTERN, min_length=1, max_length=MAX_LOCATION_LENGTH)
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemFields(Strict):
    """An item as created through the API or a CSV row."""

    sku: Sku
    gtin: Gtin | None = None
    name: Name
    category: CategoryCode | None = None
    unit: Unit = DEFAULT_UNIT
    inventory_type: InventoryType | None = None
    reorder_point: ReorderPoint | None = None
    """Low stock when available stock falls to or below this (none: never)."""
    reorder_quantity: ReorderQuantity | None = None
    """How much to order when stock is low."""
    reviewed: bool = True


class ItemChanges(Strict):
    """A partial change of an item: fields left out stay as they are; null clears a field."""

    sku: Sku | None = None
    gtin: Gtin | None = None
    name: Name | None = None
    category: CategoryCode | None = None
    unit: Unit | None = None
    inventory_type: InventoryType | None = None
    reorder_point: ReorderPoint | None = None
    reorder_quantity: ReorderQuantity | None = None
    reviewed: bool | None = None

    def values(self) -> dict[str, Any]:
        """The fields the request set; raises ``Invalid`` for null where null is not allowed."""
        changes = {name: getattr(self, name) for name in self.model_fields_set}
        for required in ("sku", "name", "unit", "reviewed"):
            if required in changes and changes[required] is None:
                raise Invalid(required, "cannot be null")
        return changes


class ItemDetail(BaseModel):
    """An item of the master."""

    model_config = ConfigDict(frozen=True)

    id: int
    sku: str
    gtin: str | None
    name: str
    category: str | None
    unit: str | None
    inventory_type: str | None
    reorder_point: int | None
    reorder_quantity: int | None
    reviewed: bool
    created_at: datetime
    updated_at: datetime | None


class CategoryFields(Strict):
    code: CategoryCode
    name: Name


class CategoryChanges(Strict):
    name: Name


class CategoryView(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    created_at: datetime
    updated_at: datetime


def _sgln(value: str) -> str:
    """An SGLN pure identity, checked by epcpy (company prefix, location reference, extension)."""
    try:
        SGLN(value)
    except (ConvertException, ValueError) as err:
        raise ValueError(
            f"{value!r} is not an SGLN URN (urn:epc:id:sgln:<company prefix>.<location "
            "reference>.<extension>)"
        ) from err
    return value


Sgln = Annotated[
    str,
    Field(min_length=20, max_length=MAX_SGLN, pattern=r"^urn:epc:id:sgln:[0-9]+\.[0-9]*\.\S+$"),
    AfterValidator(_sgln),
]
"""A location's GS1 SGLN, shown as its read point and business location in EPCIS."""


class LocationFields(Strict):
    """A location as created through the API or a CSV row; its parent must exist."""

    id: LocationId
    name: Name | None = None
    sgln: Sgln | None = None


class LocationChanges(Strict):
    name: Name | None
    sgln: Sgln | None = None
    """Left out: unchanged; null: removed."""


class LocationView(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    parent: str | None
    kind: str
    """``site``, ``zone`` or ``bin``, by depth."""
    name: str | None
    sgln: str | None = None
    """The location's GS1 SGLN (EPCIS read point / business location), if known."""
    created_at: datetime
    updated_at: datetime | None


def parent_of(location: str) -> str | None:
    """The id of a location's parent (None for a site)."""
    return location.rpartition(".")[0] or None
