"""PostgreSQL: the foreign keys of ledger rows, units and balances held by their writers.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07

On PostgreSQL a foreign key is a trigger that, for every row written, looks up the parent
row and locks it (``SELECT ... FOR KEY SHARE``): with a ledger row and a unit state per
event naming an item and a location each, a third of PostgreSQL's work in ingest (a
profile of the server benchmark). These seven are dropped there; the writers lock the
items and locations a statement names once per statement instead
(``server.ingest.references``), and deleting an item or location locks its row before it
looks for references (``server.store.schema.core``). SQLite keeps them: its check is an
index lookup in the writer's own process. Written out in full: a revision is frozen in time.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEYS = (
    ("fk_ledger_item_id", "ledger", "item_id", "items", "id"),
    ("fk_ledger_from_location", "ledger", "from_location", "locations", "id"),
    ("fk_ledger_to_location", "ledger", "to_location", "locations", "id"),
    ("fk_units_item_id", "units", "item_id", "items", "id"),
    ("fk_units_location_id", "units", "location_id", "locations", "id"),
    ("fk_balances_item_id", "balances", "item_id", "items", "id"),
    ("fk_balances_location_id", "balances", "location_id", "locations", "id"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, _, _, _ in FOREIGN_KEYS:
        op.drop_constraint(name, table, type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, column, parent, key in FOREIGN_KEYS:
        op.create_foreign_key(name, table, parent, [column], [key])
