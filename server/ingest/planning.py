"""What the rules read from the store for a group of events, and plans made ahead of time.

Ingest plans a group while the group before is written (``server.ingest.transactions``):
``plan_ahead`` reads the store outside the writing transaction and runs the rules;
``server.ingest.apply.apply_planned`` writes that plan only if it still holds once the
ids are claimed, else it plans again inside the transaction. No writes here.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from server.config.settings import ReadPointSettings
from server.ingest.claims import seen_before
from server.ingest.count_basis import counts_of, load_counts, units_where
from server.ingest.ledger_writes import load_items
from server.ingest.order_book import load_order_book, load_ordering_sites
from server.ingest.pallet_contents import Expansion, expand_pallets
from server.rules.items import event_items
from server.rules.model import Plan, StockState, UnitState
from server.rules.policy import DEFAULT_POLICY, Policy
from server.rules.stock import plan_in_steps
from server.store.dialect import one_of
from server.store.schema.core import units
from wire.models import Event

EVENT_ID = operator.attrgetter("event_id")


def distinct(events: Sequence[Event]) -> dict[str, Event]:
    """The first event of each id, in order (a repeat of an id is a duplicate)."""
    # The common case, no repeat, in C; with repeats the dict kept the last of each.
    unique = dict(zip(map(EVENT_ID, events), events, strict=True))
    if len(unique) < len(events):
        unique.clear()
        for event in events:
            unique.setdefault(event.event_id, event)
    return unique


@dataclass(frozen=True, slots=True)
class RuleInputs:
    """What the rules were given for a plan: item ids by ``ItemKey.ref``, the stock state."""

    item_ids: dict[str, int]
    state: StockState
    expansion: Expansion
    """The events planned (pallets' replaced by their contents)."""


async def _load_units(conn: AsyncConnection, epcs: Sequence[str]) -> dict[str, UnitState]:
    if not epcs:
        return {}
    condition, params = one_of(conn, units.c.epc, "epcs", epcs)
    return await units_where(conn, condition, params)


async def rule_inputs(
    conn: AsyncConnection, planned: Sequence[Event], policy: Policy
) -> tuple[dict[str, int], StockState]:
    """Everything the rules read from the store for ``planned`` (see ``PlannedEvents``)."""
    counts = await load_counts(conn, planned)
    keys = [key for event in planned for key in event_items(event)]
    keys.extend(counts.items.values())
    item_ids = await load_items(conn, keys)
    epcs = sorted({event.epc for event in planned if event.epc is not None} - set(counts.units))
    loaded = counts.units | await _load_units(conn, epcs)
    book = await load_order_book(conn, item_ids)
    with_orders = "with_orders" in (policy.unexpected_receipts, policy.unexpected_shipments)
    state = StockState(
        units=loaded,
        known_items=frozenset(item_ids),
        counts=counts.bases,
        orders=book,
        ordering_sites=await load_ordering_sites(conn) if with_orders else frozenset(),
    )
    return item_ids, state


@dataclass(frozen=True, slots=True)
class PlannedEvents:
    """Events planned by the rules before their transaction began (``plan_ahead``).

    The plan was made from what the store held in a read before the transaction: the event
    ids seen then, and the units, items and open orders the events name. It stands only if,
    inside the transaction, the claim of the ids gives exactly ``fresh_ids`` and nothing
    that committed since that read changed one of ``epcs`` or created one of the plan's new
    items (the caller's ``still_valid``); otherwise ``apply_planned`` plans again.
    """

    events: list[Event]
    """The events as given (repeats included)."""
    unique: dict[str, Event]
    """The first event of each id, in order."""
    fresh_ids: frozenset[str]
    """The ids not seen in the read: the plan's events."""
    inputs: RuleInputs
    plan: Plan

    @property
    def epcs(self) -> frozenset[str]:
        """The units whose state the plan read (whether they existed or not)."""
        return frozenset(self.inputs.state.units) | frozenset(
            event.epc for event in self.unique.values() if event.epc is not None
        )

    @property
    def new_items(self) -> frozenset[str]:
        """``ItemKey.ref`` of the items the plan creates."""
        return frozenset(self.plan.new_items)


async def _no_wait() -> None:
    return None


async def plan_ahead(
    conn: AsyncConnection,
    events: Sequence[Event],
    read_points: Mapping[str, ReadPointSettings],
    policy: Policy = DEFAULT_POLICY,
    *,
    between_steps: Callable[[], Awaitable[None]] = _no_wait,
    not_seen: Collection[str] = frozenset(),
) -> PlannedEvents | None:
    """Plan ``events`` from a read outside their transaction (``conn`` only reads);
    ``between_steps`` is awaited between steps of the rules (``plan_in_steps``). The ids
    in ``not_seen`` are taken as not seen before without reading them (the caller knows
    they are new; the claim in the transaction decides all the same).

    Returns None when the plan has to be made inside the transaction: the events hold
    cycle counts (they compare with the ledger at the count's time) or pallets (their
    contents are read, or the events held, in the transaction: ``server.ingest.pallet_contents``),
    or open orders name their items (ingest counts against those under a lock,
    ``server.ingest.order_book``).
    """
    unique = distinct(events)
    if counts_of(unique.values()):
        return None
    seen = await seen_before(conn, [event_id for event_id in unique if event_id not in not_seen])
    fresh = [event for event_id, event in unique.items() if event_id not in seen]
    expansion = await expand_pallets(conn, fresh, read_points)
    if expansion.pallets or expansion.unknown:
        return None
    item_ids, state = await rule_inputs(conn, fresh, policy)
    if state.orders:
        return None
    plan = Plan()
    for _ in plan_in_steps(plan, fresh, state, read_points, policy):
        # The writer's next statement runs between steps (``plan_in_steps``).
        await asyncio.sleep(0)
        await between_steps()
    return PlannedEvents(
        list(events),
        unique,
        frozenset(unique.keys() - seen),
        RuleInputs(item_ids, state, expansion),
        plan,
    )
