"""Master data in the store: items, item categories and locations (read, create, change, delete).

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from epcpy import ConvertException
from epcpy.epc_schemes import SGLN
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from server.errors import Conflict, Invalid, NotFound
from server.ingest.apply import location_kind
from server.rules.points import LOCATION_PATTERN, MAX_LOCATION_LENGTH
from server.store.database import refused_on_conflict
from server.store.schema.core import MAX_SGLN, balances, items, ledger, locations, units
from server.store.schema.master import (
    DEFAULT_UNIT,
    MAX_CATEGORY_CODE,
    MAX_NAME,
    MAX_UNIT,
    InventoryType,
    item_categories,
    read_points,
)
from server.store.sites import in_sites
from wire.gs1 import with_check_digit

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
"""A SKU the API accepts (and can carry in a URL path): letters, digits and ``._:-``."""
CATEGORY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
UNIT_PATTERN = r"^[A-Za-z0-9_.%-]{1,16}$"
NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""Free text without control characters (NUL cannot even be stored in PostgreSQL)."""
GTIN_INPUT_PATTERN = r"^(\d{8}|\d{12}|\d{13}|\d{14})$"
MAX_QUANTITY_SETTING = 10**12
IN_CHUNK = 500
"""Keys per ``IN (...)`` list, well under every driver's parameter limit."""


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
    return location.rpartition(".")[0] or None


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[start : start + IN_CHUNK] for start in range(0, len(values), IN_CHUNK)]


# --- items -------------------------------------------------------------------------------

_ITEM_COLUMNS = tuple(items.c[name] for name in ItemDetail.model_fields)


@dataclass(frozen=True, slots=True)
class ItemFilter:
    gtin: str | None = None
    category: str | None = None
    inventory_type: str | None = None
    reviewed: bool | None = None
    search: str | None = None
    """Case-insensitive substring of the SKU or the name."""


async def get_item(conn: AsyncConnection, sku: str) -> ItemDetail | None:
    row = (await conn.execute(sa.select(*_ITEM_COLUMNS).where(items.c.sku == sku))).first()
    return ItemDetail.model_validate(row._mapping) if row is not None else None


async def items_by_sku(conn: AsyncConnection, skus: Sequence[str]) -> dict[str, ItemDetail]:
    """The items of ``skus`` that exist, by SKU."""
    found: dict[str, ItemDetail] = {}
    for chunk in _chunks(sorted(set(skus))):
        for row in await conn.execute(sa.select(*_ITEM_COLUMNS).where(items.c.sku.in_(chunk))):
            detail = ItemDetail.model_validate(row._mapping)
            found[detail.sku] = detail
    return found


async def require_item(conn: AsyncConnection, sku: str) -> ItemDetail:
    found = await get_item(conn, sku)
    if found is None:
        raise NotFound(f"no item with SKU {sku!r}")
    return found


async def list_items(
    conn: AsyncConnection, where: ItemFilter, after: str | None, limit: int
) -> tuple[list[ItemDetail], bool]:
    """Items by SKU after ``after`` (exclusive), and whether more follow."""
    conditions: list[sa.ColumnElement[bool]] = []
    if where.gtin is not None:
        conditions.append(items.c.gtin == where.gtin)
    if where.category is not None:
        conditions.append(items.c.category == where.category)
    if where.inventory_type is not None:
        conditions.append(items.c.inventory_type == where.inventory_type)
    if where.reviewed is not None:
        conditions.append(items.c.reviewed.is_(where.reviewed))
    if where.search is not None:
        term = where.search.lower()
        conditions.append(
            sa.or_(
                sa.func.lower(items.c.sku).contains(term, autoescape=True),
                sa.func.lower(items.c.name).contains(term, autoescape=True),
            )
        )
    if after is not None:
        conditions.append(items.c.sku > after)
    rows = await conn.execute(
        sa.select(*_ITEM_COLUMNS).where(*conditions).order_by(items.c.sku).limit(limit + 1)
    )
    found = [ItemDetail.model_validate(row._mapping) for row in rows]
    return found[:limit], len(found) > limit


async def _check_category(conn: AsyncConnection, code: str | None, field: str = "category") -> None:
    if code is None:
        return
    exists = await conn.scalar(
        sa.select(item_categories.c.code).where(item_categories.c.code == code)
    )
    if exists is None:
        raise Invalid(field, f"no item category {code!r}; create it first")


async def _gtin_owner(conn: AsyncConnection, gtin: str) -> str | None:
    owner: str | None = await conn.scalar(sa.select(items.c.sku).where(items.c.gtin == gtin))
    return owner


async def create_item(conn: AsyncConnection, fields: ItemFields, now: datetime) -> ItemDetail:
    """Add an item to the master.

    Raises:
        Conflict: the SKU or the GTIN belongs to another item already.
        Invalid: the category does not exist.
    """
    if await get_item(conn, fields.sku) is not None:
        raise Conflict(f"an item with SKU {fields.sku!r} exists already")
    if fields.gtin is not None and (owner := await _gtin_owner(conn, fields.gtin)) is not None:
        raise Conflict(f"GTIN {fields.gtin} belongs to item {owner!r} already")
    await _check_category(conn, fields.category)
    async with refused_on_conflict(f"item {fields.sku!r}"):
        await conn.execute(
            items.insert().values(**fields.model_dump(), created_at=now, updated_at=now)
        )
    return await require_item(conn, fields.sku)


async def update_item(
    conn: AsyncConnection, sku: str, changes: Mapping[str, Any], now: datetime
) -> ItemDetail:
    """Change the given fields of the item with ``sku``.

    Raises:
        NotFound: no such item.
        Conflict: the new SKU or GTIN belongs to another item.
        Invalid: the new category does not exist.
    """
    current = await require_item(conn, sku)
    new_sku = changes.get("sku")
    if new_sku is not None and new_sku != sku and await get_item(conn, new_sku) is not None:
        raise Conflict(f"an item with SKU {new_sku!r} exists already")
    gtin = changes.get("gtin")
    if gtin is not None and (owner := await _gtin_owner(conn, gtin)) not in (None, sku):
        raise Conflict(f"GTIN {gtin} belongs to item {owner!r} already")
    await _check_category(conn, changes.get("category"))
    if changes:
        async with refused_on_conflict(f"item {sku!r}"):
            await conn.execute(
                items.update().where(items.c.id == current.id).values(**changes, updated_at=now)
            )
    return await require_item(conn, new_sku if new_sku is not None else sku)


async def _referenced(conn: AsyncConnection, checks: Sequence[tuple[str, sa.Select[Any]]]) -> None:
    for what, query in checks:
        if await conn.scalar(query.limit(1)) is not None:
            raise Conflict(what)


async def delete_item(conn: AsyncConnection, sku: str) -> None:
    """Remove an item nothing refers to.

    Raises:
        NotFound: no such item.
        Conflict: ledger rows, balances or units refer to it.
    """
    item = await require_item(conn, sku)
    await _referenced(
        conn,
        [
            (
                f"item {sku!r} has ledger rows; items that moved are never deleted",
                sa.select(ledger.c.id).where(ledger.c.item_id == item.id),
            ),
            (
                f"item {sku!r} has balances",
                sa.select(balances.c.item_id).where(balances.c.item_id == item.id),
            ),
            (
                f"item {sku!r} has units",
                sa.select(units.c.epc).where(units.c.item_id == item.id),
            ),
        ],
    )
    async with refused_on_conflict(
        Conflict(f"item {sku!r} is still referred to; it cannot be deleted")
    ):
        await conn.execute(items.delete().where(items.c.id == item.id))


# --- item categories -------------------------------------------------------------------


async def get_category(conn: AsyncConnection, code: str) -> CategoryView | None:
    row = (
        await conn.execute(sa.select(item_categories).where(item_categories.c.code == code))
    ).first()
    return CategoryView.model_validate(row._mapping) if row is not None else None


async def require_category(conn: AsyncConnection, code: str) -> CategoryView:
    found = await get_category(conn, code)
    if found is None:
        raise NotFound(f"no item category {code!r}")
    return found


async def list_categories(
    conn: AsyncConnection, after: str | None, limit: int
) -> tuple[list[CategoryView], bool]:
    conditions = [item_categories.c.code > after] if after is not None else []
    rows = await conn.execute(
        sa.select(item_categories)
        .where(*conditions)
        .order_by(item_categories.c.code)
        .limit(limit + 1)
    )
    found = [CategoryView.model_validate(row._mapping) for row in rows]
    return found[:limit], len(found) > limit


async def create_category(
    conn: AsyncConnection, fields: CategoryFields, now: datetime
) -> CategoryView:
    if await get_category(conn, fields.code) is not None:
        raise Conflict(f"item category {fields.code!r} exists already")
    async with refused_on_conflict(f"item category {fields.code!r}"):
        await conn.execute(
            item_categories.insert().values(
                code=fields.code, name=fields.name, created_at=now, updated_at=now
            )
        )
    return await require_category(conn, fields.code)


async def rename_category(
    conn: AsyncConnection, code: str, changes: CategoryChanges, now: datetime
) -> CategoryView:
    await require_category(conn, code)
    await conn.execute(
        item_categories.update()
        .where(item_categories.c.code == code)
        .values(name=changes.name, updated_at=now)
    )
    return await require_category(conn, code)


async def delete_category(conn: AsyncConnection, code: str) -> None:
    await require_category(conn, code)
    await _referenced(
        conn,
        [
            (
                f"item category {code!r} still has items; move them to another category first",
                sa.select(items.c.id).where(items.c.category == code),
            )
        ],
    )
    async with refused_on_conflict(Conflict(f"item category {code!r} is still referred to")):
        await conn.execute(item_categories.delete().where(item_categories.c.code == code))


# --- locations ---------------------------------------------------------------------------

_LOCATION_COLUMNS = tuple(locations.c[name] for name in LocationView.model_fields)


@dataclass(frozen=True, slots=True)
class LocationFilter:
    under: str | None = None
    """A location id: that location and its subtree."""
    kind: str | None = None
    sites: frozenset[str] = frozenset()
    """Only these sites (empty: every site)."""


async def get_location(conn: AsyncConnection, location: str) -> LocationView | None:
    row = (
        await conn.execute(sa.select(*_LOCATION_COLUMNS).where(locations.c.id == location))
    ).first()
    return LocationView.model_validate(row._mapping) if row is not None else None


async def locations_by_id(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, LocationView]:
    """The locations of ``ids`` that exist, by id."""
    found: dict[str, LocationView] = {}
    for chunk in _chunks(sorted(set(ids))):
        for row in await conn.execute(
            sa.select(*_LOCATION_COLUMNS).where(locations.c.id.in_(chunk))
        ):
            view = LocationView.model_validate(row._mapping)
            found[view.id] = view
    return found


async def require_location(conn: AsyncConnection, location: str) -> LocationView:
    found = await get_location(conn, location)
    if found is None:
        raise NotFound(f"no location {location!r}")
    return found


async def missing_locations(conn: AsyncConnection, wanted: Sequence[str]) -> list[str]:
    """The ids among ``wanted`` that are not in the location table, sorted."""
    unique = sorted(set(wanted))
    found: set[str] = set()
    for chunk in _chunks(unique):
        found.update(
            (await conn.execute(sa.select(locations.c.id).where(locations.c.id.in_(chunk))))
            .scalars()
            .all()
        )
    return [location for location in unique if location not in found]


async def list_locations(
    conn: AsyncConnection, where: LocationFilter, after: str | None, limit: int
) -> tuple[list[LocationView], bool]:
    """Locations by id (parents before their children) after ``after``, and whether more."""
    conditions: list[sa.ColumnElement[bool]] = []
    if where.under is not None:
        conditions.append(in_sites(locations.c.id, [where.under]))
    if where.kind is not None:
        conditions.append(locations.c.kind == where.kind)
    if where.sites:
        conditions.append(in_sites(locations.c.id, where.sites))
    if after is not None:
        conditions.append(locations.c.id > after)
    rows = await conn.execute(
        sa.select(*_LOCATION_COLUMNS).where(*conditions).order_by(locations.c.id).limit(limit + 1)
    )
    found = [LocationView.model_validate(row._mapping) for row in rows]
    return found[:limit], len(found) > limit


async def create_location(
    conn: AsyncConnection, fields: LocationFields, now: datetime
) -> LocationView:
    """Add a location under an existing parent.

    Raises:
        Conflict: the location exists already.
        Invalid: its parent does not exist.
    """
    if await get_location(conn, fields.id) is not None:
        raise Conflict(f"location {fields.id!r} exists already")
    parent = parent_of(fields.id)
    if parent is not None and await get_location(conn, parent) is None:
        raise Invalid("id", f"parent location {parent!r} does not exist; create it first")
    async with refused_on_conflict(f"location {fields.id!r}"):
        await conn.execute(
            locations.insert().values(
                id=fields.id,
                parent=parent,
                kind=location_kind(fields.id),
                name=fields.name,
                sgln=fields.sgln,
                created_at=now,
                updated_at=now,
            )
        )
    return await require_location(conn, fields.id)


async def rename_location(
    conn: AsyncConnection, location: str, changes: LocationChanges, now: datetime
) -> LocationView:
    await require_location(conn, location)
    await conn.execute(
        locations.update()
        .where(locations.c.id == location)
        .values(
            name=changes.name,
            updated_at=now,
            **({"sgln": changes.sgln} if "sgln" in changes.model_fields_set else {}),
        )
    )
    return await require_location(conn, location)


async def delete_location(conn: AsyncConnection, location: str) -> None:
    """Remove a location nothing refers to.

    Raises:
        NotFound: no such location.
        Conflict: it has children, ledger rows, balances, units or read points.
    """
    await require_location(conn, location)
    await _referenced(
        conn,
        [
            (
                f"location {location!r} has child locations; delete them first",
                sa.select(locations.c.id).where(locations.c.parent == location),
            ),
            (
                f"location {location!r} has ledger rows; locations stock moved through are "
                "never deleted",
                sa.select(ledger.c.id).where(
                    sa.or_(ledger.c.from_location == location, ledger.c.to_location == location)
                ),
            ),
            (
                f"location {location!r} has balances",
                sa.select(balances.c.item_id).where(balances.c.location_id == location),
            ),
            (
                f"location {location!r} has units",
                sa.select(units.c.epc).where(units.c.location_id == location),
            ),
            (
                f"location {location!r} is the inbound location of a read point",
                sa.select(read_points.c.id).where(read_points.c.inbound_location == location),
            ),
        ],
    )
    async with refused_on_conflict(
        Conflict(f"location {location!r} is still referred to; it cannot be deleted")
    ):
        await conn.execute(locations.delete().where(locations.c.id == location))
