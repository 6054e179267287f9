"""The server's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

The Alembic migrations in ``server/store/migrations/versions`` create exactly these tables; a test
compares the migrated database with this metadata so the two cannot drift apart.

Invariants the code relies on:

- ``ledger`` is append-only: corrections are new rows, never edits (docs/architecture.md §4).
- ``balances`` equals the ledger summed per item and location (``server.store.check``).
- ``seen_events`` holds every applied event id forever; it is what makes "applied exactly
  once" hold across redeliveries and across server instances.
- At most one alert per (kind, subject) is open (partial unique index ``uq_alerts_open``).
- Location ids are compared bytewise (SQLite's default, PostgreSQL's "C" collation), so the
  subtree of ``wh1`` is exactly the range ``["wh1.", "wh1/")`` and an index can serve it.
- Every item and location a ledger row, unit or balance names exists. On SQLite its
  foreign keys say so; on PostgreSQL those seven (``HELD_BY_WRITERS``) are not in the
  database (revision 0022): a foreign key there is a trigger that looks up and locks the
  parent row for every row written, a third of PostgreSQL's work in ingest. The writers
  of those tables lock the items and locations they name once per statement instead
  (``server.ingest.references``), and deleting an item or location locks its row before
  it looks for references.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from server.rules.points import MAX_LOCATION_LENGTH

UNIT_STATUSES = ("in_stock", "in_transit", "shipped", "missing")
LEDGER_KINDS = ("receipt", "shipment", "transfer", "count_adjustment", "loss")
SEVERITIES = ("info", "warning", "critical")

MAX_EVENT_ID = 256
MAX_EPC = 200
MAX_READ_POINT = 256
MAX_SGLN = 80
MAX_TOPIC = 512
MAX_REASON = 2000
MAX_KIND = 32
MAX_MESSAGE = 2000
SQLITE_UTC_TEXT_LENGTH = len("2024-11-25 08:00:00.000000")
NAIVE_REFUSED = "refusing a naive datetime; the store keeps UTC only"
UTC_TEXT_CACHE = 16_384
"""Timestamp texts kept (``sqlite_utc_text``, about 4 MB): twice the events of an ingest
transaction on SQLite (``server.ingest.pipeline.events_per_write``, 8,000), whose ledger
rows and unit states bind the same event times, all ledger rows first. With 4,096 every
unit's time had been evicted by the time it was bound, and was made again: 4.7 against
1.9 µs an event for the two."""


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that goes in and comes out as an aware UTC ``datetime``.

    SQLite has no time zones, so the value is stored as naive UTC text (fixed width, so text
    order is time order); PostgreSQL stores ``timestamptz``. Naive input is refused rather
    than guessed.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(NAIVE_REFUSED)
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite":
            # The text SQLAlchemy's SQLite DATETIME writes, made in one C call instead of
            # two Python layers: ingest stores three timestamps per event.
            return sqlite_utc_text
        if self.impl_instance.dialect_impl(dialect).bind_processor(dialect) is None:
            # asyncpg takes an aware datetime as the instant it is (timestamptz), so
            # converting it to UTC first changes nothing stored: only the naive one is
            # refused, without SQLAlchemy's wrapper and astimezone (about 3% of the
            # event loop's time in ingest on PostgreSQL).
            return aware_instant
        return super().bind_processor(dialect)

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[Any], datetime | None] | None:
        standard = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite":
            return standard

        def from_sqlite_text(value: Any) -> datetime | None:
            # The naive UTC text ``sqlite_utc_text`` writes, read with its offset by one
            # C call: the standard way (parse, then ``replace(tzinfo=...)`` in Python) cost
            # more than the rest of a row. Anything else goes the standard way.
            if isinstance(value, str) and len(value) == SQLITE_UTC_TEXT_LENGTH:
                try:
                    return datetime.fromisoformat(value + "+00:00")
                except ValueError:
                    pass
            return standard(value) if standard is not None else value

        return from_sqlite_text

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


@functools.lru_cache(maxsize=UTC_TEXT_CACHE)
def sqlite_utc_text(value: datetime | None) -> str | None:
    """``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC, the fixed-width text of SQLite timestamps.

    Cached: an ingest transaction binds its recording time on every ledger row and seen
    event id, and an event's time on its ledger row and its unit. Equal aware datetimes
    are the same instant, whatever their offset, so they share one text.
    """
    if value is None:
        return None
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(NAIVE_REFUSED)
    # A time in UTC (every time ingest binds) is formatted as it is: astimezone() took
    # about 1 µs of the 2.5 µs this took for a time pydantic parsed.
    if offset:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:-6]


def aware_instant(value: datetime | None) -> datetime | None:
    """``value`` as it is, once it is known to be aware (the store keeps instants)."""
    if value is not None and value.utcoffset() is None:
        raise ValueError(NAIVE_REFUSED)
    return value


HELD_BY_WRITERS = frozenset(
    {
        "fk_ledger_item_id",
        "fk_ledger_from_location",
        "fk_ledger_to_location",
        "fk_units_item_id",
        "fk_units_location_id",
        "fk_balances_item_id",
        "fk_balances_location_id",
    }
)
"""The foreign keys the tables declare that a PostgreSQL database does not hold (see the
module docstring): its writers hold them (``server.ingest.references``)."""


def compared(dialect_name: str) -> Callable[..., bool]:
    """Alembic's ``include_object`` for comparing a database of ``dialect_name`` with the
    tables: on PostgreSQL the foreign keys in ``HELD_BY_WRITERS`` are left out."""

    def include(obj: object, name: str | None, type_: str, *_: object) -> bool:
        return not (
            dialect_name == "postgresql"
            and type_ == "foreign_key_constraint"
            and name in HELD_BY_WRITERS
        )

    return include


def big_id() -> sa.types.TypeEngine[int]:
    """A 64-bit surrogate key; SQLite needs plain INTEGER for its rowid alias."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def location_id() -> sa.types.TypeEngine[str]:
    """A location id column compared bytewise (see the module docstring)."""
    return sa.String(MAX_LOCATION_LENGTH).with_variant(
        sa.String(MAX_LOCATION_LENGTH, collation="C"), "postgresql"
    )


metadata = sa.MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "ix": "ix_%(table_name)s_%(column_0_name)s",
    }
)

items = sa.Table(
    "items",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("sku", sa.String(64), nullable=False, unique=True),
    sa.Column("gtin", sa.String(14), nullable=True, unique=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("reviewed", sa.Boolean(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    # Master data (revision 0002, nullable: items created by ingest have none of it yet).
    sa.Column("category", sa.String(64), sa.ForeignKey("item_categories.code"), nullable=True),
    sa.Column("unit", sa.String(16), nullable=True),
    sa.Column("inventory_type", sa.String(32), nullable=True),
    sa.Column("reorder_point", sa.BigInteger(), nullable=True),
    sa.Column("reorder_quantity", sa.BigInteger(), nullable=True),
    sa.Column("updated_at", UtcDateTime(), nullable=True),
    sa.Index("ix_items_category", "category"),
)

locations = sa.Table(
    "locations",
    metadata,
    sa.Column("id", location_id(), primary_key=True),
    sa.Column("parent", location_id(), sa.ForeignKey("locations.id"), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    # Master data (revision 0002).
    sa.Column("name", sa.String(256), nullable=True),
    sa.Column("updated_at", UtcDateTime(), nullable=True),
    # Partner exchange (revision 0011): the location's GS1 SGLN (EPC URN), for EPCIS.
    sa.Column("sgln", sa.String(MAX_SGLN), nullable=True),
    sa.Index("ix_locations_parent", "parent"),
)

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(MAX_EVENT_ID), nullable=True),
    sa.Column("event_time", UtcDateTime(), nullable=False),
    sa.Column("recorded_at", UtcDateTime(), nullable=False),
    sa.Column("item_id", big_id(), sa.ForeignKey("items.id"), nullable=False),
    sa.Column("epc", sa.String(MAX_EPC), nullable=True),
    sa.Column("from_location", location_id(), sa.ForeignKey("locations.id"), nullable=True),
    sa.Column("to_location", location_id(), sa.ForeignKey("locations.id"), nullable=True),
    sa.Column("quantity", sa.Integer(), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("reason", sa.String(256), nullable=True),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("read_point", sa.String(MAX_READ_POINT), nullable=True),
    # API stock operations (revision 0002): a free-text note, and the row a reversal cancels.
    sa.Column("note", sa.String(1000), nullable=True),
    sa.Column("reverses", big_id(), sa.ForeignKey("ledger.id"), nullable=True),
    # Revision 0015: the edge's confidence in a portal pass's direction (null otherwise).
    sa.Column("confidence", sa.Float(), nullable=True),
    sa.CheckConstraint("quantity > 0", name="quantity_positive"),
    sa.CheckConstraint("from_location IS NOT NULL OR to_location IS NOT NULL", name="has_location"),
    sa.CheckConstraint(
        "kind IN ('receipt', 'shipment', 'transfer', 'count_adjustment', 'loss')",
        name="kind_known",
    ),
    sa.Index("ix_ledger_time", "event_time", "id"),
    sa.Index("ix_ledger_epc", "epc", "event_time", "id"),
    sa.Index("ix_ledger_item", "item_id", "event_time", "id"),
    sa.Index("ix_ledger_from", "from_location", "event_time", "id"),
    sa.Index("ix_ledger_to", "to_location", "event_time", "id"),
    sa.Index("ix_ledger_event_id", "event_id"),
    sa.Index(
        "uq_ledger_reverses",
        "reverses",
        unique=True,
        sqlite_where=sa.text("reverses IS NOT NULL"),
        postgresql_where=sa.text("reverses IS NOT NULL"),
    ),
)

balances = sa.Table(
    "balances",
    metadata,
    sa.Column("item_id", big_id(), sa.ForeignKey("items.id"), primary_key=True),
    sa.Column("location_id", location_id(), sa.ForeignKey("locations.id"), primary_key=True),
    sa.Column("on_hand", sa.BigInteger(), nullable=False),
    sa.Index("ix_balances_location_held", "location_id", "on_hand"),
)

units = sa.Table(
    "units",
    metadata,
    sa.Column("epc", sa.String(MAX_EPC), primary_key=True),
    sa.Column("item_id", big_id(), sa.ForeignKey("items.id"), nullable=False),
    sa.Column("location_id", location_id(), sa.ForeignKey("locations.id"), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("last_event_time", UtcDateTime(), nullable=False),
    sa.Column("last_event_id", sa.String(MAX_EVENT_ID), nullable=False),
    # The site of the unit's newest event (revision 0003), kept when it leaves.
    sa.Column("site", sa.String(64), nullable=True),
    sa.CheckConstraint(
        "status IN ('in_stock', 'in_transit', 'shipped', 'missing')", name="status_known"
    ),
    sa.Index("ix_units_item", "item_id"),
    sa.Index("ix_units_location", "location_id"),
)

seen_events = sa.Table(
    "seen_events",
    metadata,
    sa.Column("event_id", sa.String(MAX_EVENT_ID), primary_key=True),
    sa.Column("seen_at", UtcDateTime(), nullable=False),
)

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.String(256), nullable=False),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("gateway", sa.String(64), nullable=False),
    sa.Column("epoch", sa.String(32), nullable=False),
    sa.Column("seq_first", sa.BigInteger(), nullable=False),
    sa.Column("seq_last", sa.BigInteger(), nullable=False),
    sa.Column("events", sa.Integer(), nullable=False),
    sa.Column("applied", sa.Integer(), nullable=False),
    sa.Column("duplicates", sa.Integer(), nullable=False),
    sa.Column("dead_letters", sa.Integer(), nullable=False),
    sa.Column("received_at", UtcDateTime(), nullable=False),
    sa.Index("ix_batches_gateway", "gateway", "received_at"),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("received_at", UtcDateTime(), nullable=False),
    sa.Column("topic", sa.String(MAX_TOPIC), nullable=False),
    sa.Column("gateway", sa.String(64), nullable=True),
    sa.Column("event_id", sa.String(MAX_EVENT_ID), nullable=True),
    sa.Column("reason", sa.String(MAX_REASON), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("payload_bytes", sa.Integer(), nullable=False),
    sa.Column("truncated", sa.Boolean(), nullable=False),
    sa.Column("kind", sa.String(MAX_KIND), nullable=True),
    # When ``stockgate server replay-dead-letters`` applied it (kept, not replayed again).
    sa.Column("replayed_at", UtcDateTime(), nullable=True),
    sa.Index("ix_dead_letters_received", "received_at", "id"),
    sa.Index("ix_dead_letters_kind", "kind", "replayed_at", "id"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(256), nullable=False),
    sa.Column("site", sa.String(64), nullable=True),
    sa.Column("message", sa.String(MAX_MESSAGE), nullable=False),
    sa.Column("evidence", sa.JSON(), nullable=False),
    sa.Column("opened_at", UtcDateTime(), nullable=False),
    sa.Column("acknowledged_at", UtcDateTime(), nullable=True),
    sa.Column("acknowledged_by", sa.String(128), nullable=True),
    sa.Column("closed_at", UtcDateTime(), nullable=True),
    # Alert updates (revision 0004): when it last changed while open, and how often it was
    # raised (NULL on rows from before: read as 1).
    sa.Column("updated_at", UtcDateTime(), nullable=True),
    sa.Column("count", sa.Integer(), nullable=True),
    sa.CheckConstraint("severity IN ('info', 'warning', 'critical')", name="severity_known"),
    sa.Index(
        "uq_alerts_open",
        "kind",
        "subject",
        unique=True,
        sqlite_where=sa.text("closed_at IS NULL"),
        postgresql_where=sa.text("closed_at IS NULL"),
    ),
    sa.Index("ix_alerts_opened", "opened_at", "id"),
)

gateways = sa.Table(
    "gateways",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("status", sa.JSON(), nullable=False),
    sa.Column("status_at", UtcDateTime(), nullable=False),
    sa.Column("last_seen", UtcDateTime(), nullable=False),
    sa.Column("online_status", sa.JSON(), nullable=True),
)
"""``online_status``: the last status sent while online (the fleet view's details when
the latest one is a last will)."""

gateway_configs = sa.Table(
    "gateway_configs",
    metadata,
    sa.Column("gateway", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("settings", sa.JSON(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.PrimaryKeyConstraint("gateway", "version"),
    sa.CheckConstraint("version >= 1", name="version_positive"),
)
"""Remote configurations, one row per version of each gateway, never edited; the newest
is what the gateway's config topic carries (``server.commands.gateway_config``)."""
