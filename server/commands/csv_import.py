"""CSV import and export of items and locations.

An import is all or nothing: every row is checked (its fields, its neighbours in the file,
and the database) before anything is written, and a file with any error changes nothing
and gets every error back, each naming its row and field (``RowError``; the header is
row 1, so rows are numbered as a spreadsheet shows them). At most ``MAX_REPORTED_ERRORS``
are listed, with the total count.

Decisions written down here:

- Files are UTF-8 (an Excel byte-order mark is skipped), comma-separated, with a header
  row. At most ``MAX_IMPORT_BYTES`` and ``MAX_IMPORT_ROWS`` data rows.
- A row creates the item (by ``sku``) or location (by ``id``) or changes the existing one.
  Only the columns in the header are written: a column left out of the file leaves that
  field of existing rows alone (new rows get its default).
- An empty cell means "no value": optional fields become empty, ``unit`` becomes ``ea``,
  ``reviewed`` becomes true. ``sku``/``name`` (items) and ``id`` (locations) are required.
- Items: a GTIN may appear once in the file and may not belong to another item; the
  category must exist. Locations: ``kind`` and ``parent`` columns are accepted (the export
  writes them) but must agree with the id; a new location's parent must exist or be in the
  file; a key restricted to sites may only import locations of its sites.
- An export writes the same columns, so export → edit → import round-trips.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.commands.audit import ViewsByKey, audited
from server.commands.items import items_by_sku
from server.commands.locations import locations_by_id
from server.commands.masterdata import ItemFields, LocationFields, parent_of
from server.errors import ImportRejected, RowError
from server.ingest.ledger_writes import location_kind
from server.store.database import Store, refused_on_conflict
from server.store.rows import rows_with_keys
from server.store.schema.core import items, locations
from server.store.schema.costs import Entity
from server.store.schema.master import DEFAULT_UNIT, item_categories
from server.store.sites import in_sites, site_of

MAX_IMPORT_BYTES = 4 * 1024 * 1024
MAX_IMPORT_ROWS = 10_000
MAX_REPORTED_ERRORS = 1000
EXPORT_PAGE = 1000
MAX_CELL = 4096

ITEM_COLUMNS = (
    "sku",
    "gtin",
    "name",
    "category",
    "unit",
    "inventory_type",
    "reorder_point",
    "reorder_quantity",
    "reviewed",
)
ITEM_REQUIRED = ("sku", "name")
LOCATION_COLUMNS = ("id", "name", "kind", "parent")
LOCATION_REQUIRED = ("id",)
Fields = TypeVar("Fields", bound=BaseModel)
EMPTY_MEANS: Mapping[str, Any] = {"unit": DEFAULT_UNIT, "reviewed": True}
"""What an empty cell stands for in a column whose field cannot be empty."""


class ImportSummary(BaseModel):
    created: int
    updated: int
    dry_run: bool
    """True when nothing was written on purpose (``dry_run=true``)."""


@dataclass
class _Errors:
    found: list[RowError] = field(default_factory=list)
    total: int = 0

    def add(self, row: int | None, column: str | None, message: str) -> None:
        self.total += 1
        if len(self.found) < MAX_REPORTED_ERRORS:
            self.found.append(RowError(row, column, message))

    def raise_if_any(self) -> None:
        if self.total:
            if self.total > len(self.found):
                self.found.append(
                    RowError(
                        None,
                        None,
                        f"{self.total - len(self.found)} more error(s) not listed",
                    )
                )
            raise ImportRejected(self.found)


@dataclass(frozen=True, slots=True)
class CsvRow:
    number: int
    """The row as a spreadsheet numbers it (header = 1)."""
    values: dict[str, str]
    """Cell by column, for the header's columns."""


def _decode(data: bytes) -> str:
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        row = data[: err.start].count(b"\n") + 1
        raise ImportRejected(
            [RowError(row, None, f"not UTF-8 text (byte {err.start}); save the file as UTF-8")]
        ) from err


def parse(
    data: bytes, known: Sequence[str], required: Sequence[str], errors: _Errors
) -> tuple[list[str], list[CsvRow]]:
    """The header and the well-shaped rows of a CSV file; rows of the wrong shape go to
    ``errors`` (so the caller can go on to find the problems of the others).

    Raises:
        ImportRejected: the file is too big, not UTF-8, not CSV, or its header is wrong.
    """
    if len(data) > MAX_IMPORT_BYTES:
        raise ImportRejected(
            [RowError(None, None, f"the file is larger than {MAX_IMPORT_BYTES} bytes; split it")]
        )
    text = _decode(data)
    if "\x00" in text:
        raise ImportRejected([RowError(None, None, "the file holds NUL characters; not CSV")])
    records: list[list[str]] = []
    try:
        # The whole file is in memory already (and bounded), so read every record first.
        records.extend(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as err:
        raise ImportRejected([RowError(len(records) + 1, None, f"not valid CSV: {err}")]) from err
    if not records or not any(cell.strip() for cell in records[0]):
        raise ImportRejected([RowError(1, None, "the file is empty; it needs a header row")])
    header = [cell.strip() for cell in records[0]]
    for name in header:
        if name not in known:
            errors.add(1, name[:64], f"unknown column; the columns are {', '.join(known)}")
    for name in sorted({name for name in header if header.count(name) > 1}):
        errors.add(1, name, "column appears more than once")
    for name in required:
        if name not in header:
            errors.add(1, name, "required column is missing")
    errors.raise_if_any()
    rows: list[CsvRow] = []
    for number, cells in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue  # blank lines (often the last one) are not rows
        if len(rows) >= MAX_IMPORT_ROWS:
            raise ImportRejected(
                [RowError(number, None, f"more than {MAX_IMPORT_ROWS} rows; split the file")]
            )
        if len(cells) != len(header):
            errors.add(
                number, None, f"{len(cells)} cells, but the header has {len(header)} columns"
            )
            continue
        values = {name: cell.strip() for name, cell in zip(header, cells, strict=True)}
        for name, cell in values.items():
            if len(cell) > MAX_CELL:
                errors.add(number, name, f"longer than {MAX_CELL} characters")
        rows.append(CsvRow(number, values))
    return header, rows


def _validate(model: type[Fields], row: CsvRow, errors: _Errors) -> Fields | None:
    values = {
        name: (cell if cell != "" else EMPTY_MEANS.get(name)) for name, cell in row.values.items()
    }
    values = {name: value for name, value in values.items() if value is not None}
    try:
        return model.model_validate(values)
    except ValidationError as err:
        for problem in err.errors(include_url=False, include_input=False):
            where = str(problem["loc"][0]) if problem["loc"] else None
            errors.add(row.number, where, problem["msg"])
        return None


async def _existing(
    conn: AsyncConnection, column: sa.ColumnElement[str], wanted: Sequence[str], *extra: Any
) -> list[sa.Row[Any]]:
    """``column`` (and ``extra``) of the rows whose ``column`` is one of ``wanted``."""
    return await rows_with_keys(conn, sa.select(column, *extra), column, wanted)


def _duplicates(rows: Iterable[tuple[int, str | None]], column: str, errors: _Errors) -> None:
    first: dict[str, int] = {}
    for number, value in rows:
        if value is None:
            continue
        if value in first:
            errors.add(number, column, f"{value!r} is also on row {first[value]}")
        else:
            first[value] = number


async def import_items(
    conn: AsyncConnection,
    data: bytes,
    now: datetime,
    *,
    dry_run: bool = False,
    actor: str | None = None,
) -> ImportSummary:
    """Create or change items from CSV (see the module docstring); with ``actor``, each
    item created or changed goes to the audit trail (``server.commands.audit``).

    Raises:
        ImportRejected: any problem; nothing was written.
    """
    errors = _Errors()
    header, rows = parse(data, ITEM_COLUMNS, ITEM_REQUIRED, errors)
    valid = [
        (row.number, fields)
        for row in rows
        if (fields := _validate(ItemFields, row, errors)) is not None
    ]
    _duplicates(((number, f.sku) for number, f in valid), "sku", errors)
    _duplicates(((number, f.gtin) for number, f in valid), "gtin", errors)
    existing = {
        row.sku: row.id
        for row in await _existing(conn, items.c.sku, [f.sku for _, f in valid], items.c.id)
    }
    gtins = [f.gtin for _, f in valid if f.gtin is not None and "gtin" in header]
    owners = {row.gtin: row.sku for row in await _existing(conn, items.c.gtin, gtins, items.c.sku)}
    categories = {
        row.code
        for row in await _existing(
            conn,
            item_categories.c.code,
            [f.category for _, f in valid if f.category is not None and "category" in header],
        )
    }
    for number, fields in valid:
        owner = owners.get(fields.gtin) if fields.gtin is not None else None
        if "gtin" in header and owner is not None and owner != fields.sku:
            errors.add(number, "gtin", f"GTIN {fields.gtin} belongs to item {owner!r}")
        if (
            "category" in header
            and fields.category is not None
            and fields.category not in categories
        ):
            errors.add(number, "category", f"no item category {fields.category!r}; create it first")
    errors.raise_if_any()
    new = [fields for _, fields in valid if fields.sku not in existing]
    old = [fields for _, fields in valid if fields.sku in existing]
    if not dry_run:
        skus = [fields.sku for fields in (*new, *old)]
        async with _writing(conn, "item", skus, items_by_sku, actor, now):
            await _write_items(conn, header, new, old, existing, now)
    return ImportSummary(created=len(new), updated=len(old), dry_run=dry_run)


async def _write_items(
    conn: AsyncConnection,
    header: Sequence[str],
    new: Sequence[ItemFields],
    old: Sequence[ItemFields],
    existing: Mapping[str, int],
    now: datetime,
) -> None:
    if new:
        await conn.execute(
            items.insert(),
            [fields.model_dump() | {"created_at": now, "updated_at": now} for fields in new],
        )
    columns = [name for name in header if name != "sku"]
    if old:
        await conn.execute(
            items.update()
            .where(items.c.id == sa.bindparam("row_id"))
            .values({name: sa.bindparam(f"v_{name}") for name in [*columns, "updated_at"]}),
            [
                {"row_id": existing[fields.sku], "v_updated_at": now}
                | {f"v_{name}": getattr(fields, name) for name in columns}
                for fields in old
            ],
        )


@contextlib.asynccontextmanager
async def _writing(
    conn: AsyncConnection,
    entity: Entity,
    keys: Sequence[str],
    views: ViewsByKey,
    actor: str | None,
    now: datetime,
) -> AsyncIterator[None]:
    """Around an import's writes: the audit trail of the records ``keys`` (with ``actor``),
    and a broken constraint refused as a change that came in meanwhile."""
    # Everything was checked inside this transaction; a unique or foreign key violation now
    # means another request changed the same rows meanwhile.
    meanwhile = ImportRejected(
        [RowError(None, None, "another change to the same rows came in meanwhile; retry")]
    )
    async with audited(conn, entity, keys, views, actor, now), refused_on_conflict(meanwhile):
        yield


async def import_locations(
    conn: AsyncConnection,
    data: bytes,
    now: datetime,
    *,
    sites: frozenset[str] = frozenset(),
    dry_run: bool = False,
    actor: str | None = None,
) -> ImportSummary:
    """Create or rename locations from CSV (see the module docstring); with ``actor``, each
    location created or renamed goes to the audit trail (``server.commands.audit``).

    Raises:
        ImportRejected: any problem; nothing was written.
    """
    errors = _Errors()
    header, rows = parse(data, LOCATION_COLUMNS, LOCATION_REQUIRED, errors)
    valid: list[tuple[int, LocationFields]] = []
    for row in rows:
        derived = {k: row.values.pop(k) for k in ("kind", "parent") if k in row.values}
        fields = _validate(LocationFields, row, errors)
        if fields is None:
            continue
        if derived.get("kind") not in (None, "", location_kind(fields.id)):
            errors.add(
                row.number, "kind", f"the kind of {fields.id!r} is {location_kind(fields.id)!r}"
            )
        if derived.get("parent") not in (None, "", parent_of(fields.id)):
            errors.add(
                row.number, "parent", f"the parent of {fields.id!r} is {parent_of(fields.id)!r}"
            )
        if sites and site_of(fields.id) not in sites:
            errors.add(row.number, "id", f"site {site_of(fields.id)!r} is outside this key's sites")
        valid.append((row.number, fields))
    _duplicates(((number, f.id) for number, f in valid), "id", errors)
    in_file = {fields.id for _, fields in valid}
    parents = [p for _, f in valid if (p := parent_of(f.id)) is not None and p not in in_file]
    known = {row.id for row in await _existing(conn, locations.c.id, [*in_file, *parents])}
    for number, fields in valid:
        parent = parent_of(fields.id)
        if parent is not None and parent not in known and parent not in in_file:
            errors.add(
                number, "id", f"parent location {parent!r} does not exist and is not in the file"
            )
    errors.raise_if_any()
    new = sorted(
        (fields for _, fields in valid if fields.id not in known),
        key=lambda f: (f.id.count("."), f.id),
    )
    old = [fields for _, fields in valid if fields.id in known]
    if not dry_run:
        ids = [fields.id for fields in (*new, *old)]
        async with _writing(conn, "location", ids, locations_by_id, actor, now):
            await _write_locations(conn, header, new, old, now)
    return ImportSummary(created=len(new), updated=len(old), dry_run=dry_run)


async def _write_locations(
    conn: AsyncConnection,
    header: Sequence[str],
    new: Sequence[LocationFields],
    old: Sequence[LocationFields],
    now: datetime,
) -> None:
    if new:
        # Parents first, so the self-referencing foreign key holds row by row.
        await conn.execute(
            locations.insert(),
            [
                {
                    "id": fields.id,
                    "parent": parent_of(fields.id),
                    "kind": location_kind(fields.id),
                    "name": fields.name,
                    "created_at": now,
                    "updated_at": now,
                }
                for fields in new
            ],
        )
    if old and "name" in header:
        await conn.execute(
            locations.update()
            .where(locations.c.id == sa.bindparam("row_id"))
            .values(name=sa.bindparam("v_name"), updated_at=sa.bindparam("v_updated_at")),
            [{"row_id": f.id, "v_name": f.name, "v_updated_at": now} for f in old],
        )


def _line(values: Iterable[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(
        "" if value is None else ("true" if value is True else "false" if value is False else value)
        for value in values
    )
    return buffer.getvalue()


async def _export(
    store: Store,
    columns: Sequence[str],
    page: Callable[[str | None], sa.Select[Any]],
    key: str,
    doing: str,
) -> AsyncIterator[str]:
    yield _line(columns)
    after: str | None = None
    while True:
        # One short read per page: a long export does not hold a connection or a snapshot.
        async with store.read(doing) as conn:
            rows = (await conn.execute(page(after))).all()
        for row in rows:
            yield _line(getattr(row, name) for name in columns)
        if len(rows) < EXPORT_PAGE:
            return
        after = getattr(rows[-1], key)


def export_items(store: Store) -> AsyncIterator[str]:
    """Every item as CSV lines (header first), by SKU."""

    def page(after: str | None) -> sa.Select[Any]:
        query = sa.select(*(items.c[name] for name in ITEM_COLUMNS)).order_by(items.c.sku)
        if after is not None:
            query = query.where(items.c.sku > after)
        return query.limit(EXPORT_PAGE)

    return _export(store, ITEM_COLUMNS, page, "sku", "exporting items")


def export_locations(store: Store, sites: frozenset[str] = frozenset()) -> AsyncIterator[str]:
    """Every location (of ``sites``, when given) as CSV lines (header first), by id."""

    def page(after: str | None) -> sa.Select[Any]:
        query = sa.select(*(locations.c[name] for name in LOCATION_COLUMNS)).order_by(
            locations.c.id
        )
        if sites:
            query = query.where(in_sites(locations.c.id, sites))
        if after is not None:
            query = query.where(locations.c.id > after)
        return query.limit(EXPORT_PAGE)

    return _export(store, LOCATION_COLUMNS, page, "id", "exporting locations")
