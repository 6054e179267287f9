"""Valuation books at rest: their JSON form, the checkpoint boundaries, the cost marks.

A checkpoint holds every book (``server.reports.valuation.Book``) as it stood at a
``boundary``: after the ledger rows with an event time before it. The books there count
their flows from the first row on (received, shipped, lost: cumulative), so the flows of a
period are the difference between the books at its end and at its start; the demand per
day is not kept (it is read from the ledger when a report needs it).

Boundaries fall every ``CHECKPOINT_DAYS`` days from the Unix epoch (UTC midnights), and one
is only made once it has passed (``latest_boundary``), so rows in time order never change
a checkpoint; a row that arrives late changes the checkpoints of its item after it.

Costs. A checkpoint is valid for an item while the item's cost rows are what they were
when its books were computed (``book_cost_marks``: how many ``item_costs`` and
``receipt_costs`` rows it had; both tables are append-only, so a count changes with every
new cost). A report replays an item whose count differs from its mark from the start.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.reports.valuation import Book, Flow, Layer
from server.store.schema.core import ledger
from server.store.schema.costs import item_costs, receipt_costs

CHECKPOINT_DAYS: Final = 1
"""Days between checkpoints: a report replays at most this many days of the ledger per
moment it asks about."""
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
FIRST_FORMAT_FIELDS: Final = 11
STEP: Final = timedelta(days=CHECKPOINT_DAYS)


def boundary_at_or_before(moment: datetime, step: timedelta = STEP) -> datetime:
    """The latest boundary (every ``step`` from the epoch) at or before ``moment``."""
    return EPOCH + step * ((moment - EPOCH) // step)


def boundaries_between(
    after: datetime | None, through: datetime, step: timedelta = STEP
) -> list[datetime]:
    """Boundaries (every ``step`` from the epoch) after ``after`` (exclusive; None: from the
    one after the epoch) up to and including ``through``."""
    first = EPOCH + step if after is None else after + step
    out: list[datetime] = []
    boundary = first
    while boundary <= through:
        out.append(boundary)
        boundary += step
    return out


def _money(value: Decimal) -> str:
    return str(value)


def _layer_text(layer: Layer) -> str:
    """``[quantity,"unit cost","received at"]``, as ``json.dumps`` writes it (neither text
    has a character JSON escapes); the costly part made once per layer."""
    kept = layer.kept
    if kept is None:
        kept = layer.kept = f'"{_money(layer.unit_cost)}","{layer.received_at.isoformat()}"'
    return f"[{layer.quantity},{kept}]"


def dump_book(book: Book) -> str:
    """The JSON of ``book`` (amounts as exact decimal strings; the demand left out; the
    layers as a JSON text of their own, read only when the book is used)."""
    flow = book.flow
    layers = (
        book.packed
        if book.packed is not None
        else "[" + ",".join([_layer_text(layer) for layer in book.unpacked]) + "]"
    )
    return json.dumps(
        [
            book.quantity,
            _money(book.average_value),
            layers,
            _money(book.layers_value),
            book.shortfall,
            None if book.last_cost is None else _money(book.last_cost),
            book.unvalued,
            flow.received_quantity,
            _money(flow.received_value),
            flow.shipped_quantity,
            [_money(value) for value in flow.shipped_value],
            {
                reason: [entry[0], _money(entry[1]), _money(entry[2])]
                for reason, entry in flow.losses.items()
            },
        ],
        separators=(",", ":"),
    )


def load_book(text: str) -> Book:
    """The book ``dump_book`` wrote."""
    values: list[Any] = json.loads(text)
    if len(values) == FIRST_FORMAT_FIELDS:  # kept before the layers' value was kept with them
        values[2] = json.dumps(values[2])
        values.insert(3, None)
    (
        quantity,
        average,
        layers,
        layers_value,
        shortfall,
        last_cost,
        unvalued,
        received_quantity,
        received_value,
        shipped_quantity,
        shipped_value,
        losses,
    ) = values
    book = Book(
        quantity=quantity,
        average_value=Decimal(average),
        packed=layers,
        shortfall=shortfall,
        last_cost=None if last_cost is None else Decimal(last_cost),
        unvalued=unvalued,
        flow=Flow(
            received_quantity=received_quantity,
            received_value=Decimal(received_value),
            shipped_quantity=shipped_quantity,
            shipped_value=[Decimal(value) for value in shipped_value],
            losses={
                reason: [entry[0], Decimal(entry[1]), Decimal(entry[2])]
                for reason, entry in losses.items()
            },
        ),
    )
    if layers_value is None:
        book.layers  # noqa: B018 (unpacks them: their value is computed from them)
    else:
        book.packed_value = Decimal(layers_value)
    return book


CostCounts = dict[int, tuple[int, int]]
"""item id -> (item_costs rows, receipt_costs rows)."""


async def cost_counts(conn: AsyncConnection, item_ids: Iterable[int] | None = None) -> CostCounts:
    """How many cost rows each item has (items without any are left out)."""
    wanted = None if item_ids is None else sorted(set(item_ids))
    standard = sa.select(item_costs.c.item_id, sa.func.count()).group_by(item_costs.c.item_id)
    # Counted per ledger row first: SQLite otherwise plans the join from the ledger (every
    # row's item, by its index) instead of from the few rows with a recorded cost.
    per_row = (
        sa.select(receipt_costs.c.ledger_id, sa.func.count().label("costs"))
        .group_by(receipt_costs.c.ledger_id)
        .subquery("per_row")
    )
    recorded = (
        sa.select(ledger.c.item_id, sa.func.sum(per_row.c.costs))
        .select_from(per_row.join(ledger, ledger.c.id == per_row.c.ledger_id))
        .group_by(ledger.c.item_id)
    )
    if wanted is not None:
        standard = standard.where(item_costs.c.item_id.in_(wanted))
        recorded = recorded.where(ledger.c.item_id.in_(wanted))
    counts: dict[int, list[int]] = {}
    for item_id, count in await conn.execute(standard):
        counts.setdefault(int(item_id), [0, 0])[0] = int(count)
    for item_id, count in await conn.execute(recorded):
        counts.setdefault(int(item_id), [0, 0])[1] = int(count)
    return {item_id: (pair[0], pair[1]) for item_id, pair in counts.items()}


def changed_costs(
    marks: dict[int, tuple[int, int]], counts: CostCounts, item_ids: Sequence[int]
) -> set[int]:
    """Of ``item_ids`` (items with books at a checkpoint), those whose cost rows are not
    what their mark says."""
    return {
        item_id for item_id in item_ids if counts.get(item_id, (0, 0)) != marks.get(item_id, (0, 0))
    }
