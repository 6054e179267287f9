"""Master-data tables (revision 0002): item categories and read points as data.

The columns revision 0002 adds to ``items``, ``locations`` and ``ledger`` are declared with
those tables in ``server.store.schema.core``; this module holds the new tables and the value
lists the API validates against (kept in code, not in CHECK constraints, so a new value needs no
table rebuild on SQLite).

Read points are stored as their ``[[read_points]]`` definition (a JSON object validated by
``server.config.settings.ReadPointSettings`` on load) plus the columns queries need (site, inbound
location, where the definition came from). Storing the definition whole means a key added
to ``[[read_points]]`` later round-trips through the table and the API without a migration.
"""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa

from server.store.schema.core import MAX_READ_POINT, UtcDateTime, location_id, metadata

MAX_CATEGORY_CODE = 64
MAX_NAME = 256
MAX_NOTE = 1000
MAX_UNIT = 16

InventoryType = Literal[
    "raw_material",
    "component",
    "subassembly",
    "work_in_progress",
    "finished_good",
    "merchandise",
    "mro",
    "packaging",
    "consumable",
    "returnable",
]
"""What an item is to the business: inputs (raw materials, components, subassemblies),
work in progress, outputs (finished goods, merchandise bought for resale), maintenance,
repair and operating supplies (``mro``), packaging, consumables, and returnable assets
(pallets, crates; GRAI tags)."""
INVENTORY_TYPES: tuple[InventoryType, ...] = (
    "raw_material",
    "component",
    "subassembly",
    "work_in_progress",
    "finished_good",
    "merchandise",
    "mro",
    "packaging",
    "consumable",
    "returnable",
)
DEFAULT_UNIT = "ea"
"""Unit of measure of an item created through the API when none is given (each)."""

ReadPointSource = Literal["config", "api"]
"""``config``: seeded from ``[[read_points]]`` at start and changed only there.
``api``: created and changed through the API."""

item_categories = sa.Table(
    "item_categories",
    metadata,
    sa.Column("code", sa.String(MAX_CATEGORY_CODE), primary_key=True),
    sa.Column("name", sa.String(MAX_NAME), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

read_points = sa.Table(
    "read_points",
    metadata,
    sa.Column("id", sa.String(MAX_READ_POINT), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("inbound_location", location_id(), nullable=False),
    sa.Column("definition", sa.JSON(), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint("source IN ('config', 'api')", name="source_known"),
    sa.Index("ix_read_points_site", "site"),
    sa.Index("ix_read_points_inbound_location", "inbound_location"),
)
