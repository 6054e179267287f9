"""Applying events to the store, inside the caller's transaction.

Exactly once, also with several server instances on one PostgreSQL: the events' ids are
claimed first (``server.ingest.claims``), in the transaction that writes their rows, and
only the ids this transaction won are applied. A pallet's event stands for its recorded
contents (``server.ingest.pallet_contents``); the rules plan the effects
(``server.rules``), from a read of the store (``server.ingest.planning``), made in the
transaction or ahead of it. The plan is then settled against the site's negative-stock
policy (``server.ingest.negative_stock``) and written (``server.ingest.ledger_writes``),
with its side effects: shelf watches, open order lines, shipping notices and alerts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy.ext.asyncio import AsyncConnection

from server import rules
from server.alerts.store import clear_alert, open_alerts
from server.commands.asn import Receipt, reconcile_receipts
from server.config.settings import ReadPointSettings
from server.ingest.claims import claim_events
from server.ingest.ledger_writes import Applied, BalanceDeltas, write_rows
from server.ingest.negative_stock import settle_plan
from server.ingest.order_book import apply_line_deltas
from server.ingest.pallet_contents import expand_pallets, hold_unknown
from server.ingest.planning import PlannedEvents, RuleInputs, distinct, rule_inputs
from server.ingest.prefetch import Prefetched
from server.ingest.shelf_watches import record_watches, watching
from server.rules.model import Plan
from server.rules.policy import DEFAULT_POLICY, Policy
from wire.models import Event


@dataclass(frozen=True, slots=True)
class ApplyContext:
    """Where, when and as whom events are applied.

    Attributes:
        read_points: the configured read points by id (every event's is among them).
        known_locations: location ids known to exist (read only here).
        actor: recorded on every ledger row (the gateway id).
        site: recorded on the alerts raised.
        now: the recording time.
        policy: what the rules take from the config (travel times, orders, picks).
        actors: the actor of each event by id, where it is not ``actor`` (the events of
            several gateways applied together).
        pending: where the balance deltas go, written by the caller at the end of its
            transaction (``ledger_writes.write_rows``); None: written as they come.
    """

    read_points: Mapping[str, ReadPointSettings]
    known_locations: set[str]
    actor: str
    site: str | None
    now: datetime
    policy: Policy = DEFAULT_POLICY
    actors: Mapping[str, str] | None = None
    pending: BalanceDeltas | None = None


async def apply_events(
    conn: AsyncConnection, events: Sequence[Event], context: ApplyContext
) -> Applied:
    """Apply the events not applied before, inside the caller's transaction.

    Args:
        conn: a connection in a transaction the caller commits.
        events: validated events whose read points are all in ``context.read_points``.
        context: where, when and as whom.
    """
    result, _ = await _claim_then_apply(conn, distinct(events), len(events), context)
    return result


FollowUp = Callable[[], Awaitable[None]]
"""What a group does besides its rows (``_follow_up``), left for later (``deferred``)."""


async def run_deferred(deferred: list[FollowUp]) -> None:
    """Do what the groups left for later, in their order (and forget it)."""
    while deferred:
        await deferred.pop(0)()


async def apply_planned(
    conn: AsyncConnection,
    planned: PlannedEvents,
    context: ApplyContext,
    *,
    still_valid: Callable[[PlannedEvents], bool],
    prefetched: Prefetched | None = None,
    deferred: list[FollowUp] | None = None,
) -> tuple[Applied, bool]:
    """``apply_events`` for events planned ahead: the claim first, as always, then the
    plan made ahead if it still holds, else a plan made now.

    Args:
        still_valid: called inside the transaction once the ids are claimed: False when
            something committed since the plan's read may have changed what it read.
        prefetched: the reads the plan needs, made earlier in the transaction
            (``server.ingest.prefetch``); used with the plan made ahead only.
        deferred: where the plan made ahead leaves what it does besides its rows (alerts,
            watches, notices marked), for the caller to do (``run_deferred``) before it
            commits; a plan made now does what was left there first, then its own at once.
        (the rest as ``apply_events``)

    Returns:
        What was applied, and whether the plan made ahead was the one written. With
        ``deferred``, ``Applied.alerts`` is filled in when what was left is done.
    """
    return await _claim_then_apply(
        conn,
        planned.unique,
        len(planned.events),
        context,
        planned,
        still_valid,
        prefetched,
        deferred,
    )


async def _claim_then_apply(
    conn: AsyncConnection,
    unique: Mapping[str, Event],
    given: int,
    context: ApplyContext,
    planned: PlannedEvents | None = None,
    still_valid: Callable[[PlannedEvents], bool] | None = None,
    prefetched: Prefetched | None = None,
    deferred: list[FollowUp] | None = None,
) -> tuple[Applied, bool]:
    """Claim ``unique``'s ids, then apply the fresh ones (with ``planned``'s plan if it
    holds); ``given`` events came in, repeats included."""
    seen = prefetched.seen if prefetched is not None else None
    fresh_ids = await claim_events(conn, list(unique), context.now, seen=seen)
    fresh = [event for event_id, event in unique.items() if event_id in fresh_ids]
    kept = (
        planned is not None
        and still_valid is not None
        and fresh_ids == planned.fresh_ids
        and still_valid(planned)
    )
    if planned is not None and kept and fresh:
        result = await _apply_plan(
            conn, fresh, planned.plan, planned.inputs, context, prefetched, deferred
        )
    else:
        if deferred:
            # Planning now reads the store: what the groups before left to do is done first.
            await run_deferred(deferred)
        result = await apply_claimed(conn, fresh, context)
    result.fresh_ids = fresh_ids
    result.duplicates = given - len(fresh)
    return result, kept


async def apply_fresh(
    conn: AsyncConnection,
    fresh: Sequence[Event],
    read_points: Mapping[str, ReadPointSettings],
    *,
    known_locations: set[str],
    actor: str,
    site: str | None,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
    actors: Mapping[str, str] | None = None,
) -> Applied:
    """Apply events whose ids are claimed already (a held pallet, a resolved pass).

    ``fresh`` holds distinct event ids this transaction owns; the rest is ``ApplyContext``.
    """
    context = ApplyContext(read_points, known_locations, actor, site, now, policy, actors)
    return await apply_claimed(conn, fresh, context)


async def apply_claimed(
    conn: AsyncConnection, fresh: Sequence[Event], context: ApplyContext
) -> Applied:
    """``apply_fresh`` with its context: plan ``fresh`` in the transaction, and write it."""
    if not fresh:
        return Applied()
    # A pallet's event stands for its contents (server.rules.pallets); from here on the
    # batch is planned as those.
    expansion = await expand_pallets(conn, fresh, context.read_points)
    item_ids, state = await rule_inputs(conn, expansion.events, context.policy)
    plan = rules.plan(expansion.events, state, context.read_points, context.policy)
    return await _apply_plan(conn, fresh, plan, RuleInputs(item_ids, state, expansion), context)


async def _apply_plan(
    conn: AsyncConnection,
    fresh: Sequence[Event],
    plan: Plan,
    inputs: RuleInputs,
    context: ApplyContext,
    prefetched: Prefetched | None = None,
    deferred: list[FollowUp] | None = None,
) -> Applied:
    """Write ``plan`` (made by the rules for ``fresh``, as ``inputs.expansion``, from
    ``inputs``) in the transaction, with its side effects (left in ``deferred`` if given).
    """
    result = Applied()
    result.applied = len(fresh)
    for event in fresh:
        if event.group is not None and event.direction is not None:
            key = (event.read_point, event.direction)
            result.grouped[key] = result.grouped.get(key, 0) + 1
    item_ids, state, expansion = inputs.item_ids, inputs.state, inputs.expansion
    read_points, policy, now = context.read_points, context.policy, context.now
    replan = partial(rules.plan, state=state, read_points=read_points, policy=policy)
    plan, refused = await settle_plan(
        conn,
        expansion.events,
        plan,
        replan,
        item_ids,
        policy,
        context.pending,
        stored=prefetched.on_hand if prefetched is not None else None,
    )
    # A pallet is refused whole: report its own event, not the line that fell short.
    result.refused = [(expansion.pallets.get(e.event_id, e), why) for e, why in refused]
    result.applied -= len(result.refused)
    plan.alerts.extend(
        await hold_unknown(
            conn,
            expansion.unknown,
            read_points,
            actor=context.actor,
            actors=context.actors,
            now=now,
        )
    )
    await write_rows(
        conn,
        plan,
        item_ids,
        context.known_locations,
        context.actor,
        now,
        result,
        context.actors,
        context.pending,
    )
    result.units_written = set(plan.units)
    result.items_created = set(plan.new_items)
    result.movements = len(plan.movements)
    by_event: dict[str, int] = defaultdict(int)
    for movement in plan.movements:
        if movement.event_id is not None:
            by_event[movement.event_id] += 1
    result.movements_by_event = dict(by_event)
    noticed = prefetched.noticed if prefetched is not None else True
    follow_up = partial(_follow_up, conn, plan, inputs, context, result, noticed=noticed)
    if deferred is None:
        await follow_up()
    else:
        deferred.append(follow_up)
    return result


async def _follow_up(
    conn: AsyncConnection,
    plan: Plan,
    inputs: RuleInputs,
    context: ApplyContext,
    result: Applied,
    *,
    noticed: bool,
) -> None:
    """What a written plan does besides its rows: shelf watches, open order lines, units
    marked on shipping notices, and its alerts (into ``result.alerts``)."""
    item_ids, now = inputs.item_ids, context.now
    if plan.departures or (plan.sightings and watching(context.read_points)):
        await record_watches(conn, plan, item_ids)
    overfilled = await apply_line_deltas(
        conn, plan.order_updates, inputs.state.orders, context.policy
    )
    # Units a supplier's shipping notice listed (server.commands.asn): marked, or alerted if
    # unlisted; ``noticed`` False: no notice covers the items (``prefetch``).
    if noticed:
        overfilled.extend(
            await reconcile_receipts(
                conn,
                [
                    Receipt(m.epc, item_ids[m.item.ref], m.to_location, m.event_time, m.event_id)
                    for m in plan.movements
                    if m.kind == "receipt" and m.epc is not None and m.to_location is not None
                ],
            )
        )
    for kind, subject in plan.cleared:
        await clear_alert(conn, kind, subject, reason="a later event ended it", now=now)
    result.alerts = await open_alerts(conn, [*plan.alerts, *overfilled], context.site, now)
