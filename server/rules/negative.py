"""No silent negative stock: what a batch's movements do to the balances they take from. Pure.

Stock taken out of a location that the books say does not hold it (a pick from an empty bin,
a move of more than is there, a shipment or a loss of goods never received) follows the
``[operations] negative_stock`` policy of the location's site (``Policy.negative_stock_at``):

- ``allow`` (the default): the movement applies, the balance goes below zero and the
  condition alert ``negative_stock`` (subject ``<location>/<item>``) opens; it clears when
  the balance is back at zero or above. The default, because the goods did move: a scan or
  a pass is a fact about the floor, and refusing it would leave the books wrong in a second
  place (the goods would still be wherever they went). The alert asks a person to count.
- ``refuse``: the whole event that would take the balance below zero (or further below) is
  refused: none of its movements apply, and the caller says why (ingest dead-letters it and
  tells the gateway in its Ack, the API answers 409).

Balances are per item and location (``server.store.schema.core.balances``); the check walks the
movements in the order the planner made them (event time), one event's movements at a
time, from the balances as the store held them before the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby

from server.rules.alerts import NEGATIVE_STOCK
from server.rules.model import AlertSpec, Movement
from server.rules.policy import Policy, site_of

Pair = tuple[str, str]
"""(``ItemKey.ref``, location): one balance."""


@dataclass(frozen=True, slots=True)
class Shortfall:
    """An event that takes more out of a location than the books hold there."""

    event_id: str | None
    movement: Movement
    on_hand: int
    """What the location held before the event."""

    @property
    def site(self) -> str:
        assert self.movement.from_location is not None
        return site_of(self.movement.from_location)

    def reason(self) -> str:
        movement = self.movement
        what = movement.reason or movement.kind
        return (
            f"{movement.from_location} holds {self.on_hand} of {movement.item.ref}, fewer than "
            f"the {movement.quantity} this {what} takes out; [operations] negative_stock is "
            f"'refuse' at site {self.site}"
        )


@dataclass(slots=True)
class StockCheck:
    """The outcome of ``check_movements``."""

    refused: dict[str | None, Shortfall] = field(default_factory=dict)
    """Per event id, the first shortfall of each refused event."""
    alerts: list[AlertSpec] = field(default_factory=list)
    """``negative_stock`` for every balance the movements leave below zero."""
    cleared: list[tuple[str, str]] = field(default_factory=list)
    """``negative_stock`` of balances that were below zero and are not any more."""


def subject(pair: Pair) -> str:
    """The alert subject of a balance: ``wh1.a01.b01/09506000016924``."""
    return f"{pair[1]}/{pair[0]}"


def touched(movements: Iterable[Movement]) -> set[Pair]:
    """Every balance the movements change."""
    pairs: set[Pair] = set()
    for movement in movements:
        for location in (movement.from_location, movement.to_location):
            if location is not None:
                pairs.add((movement.item.ref, location))
    return pairs


def _deltas(movements: Iterable[Movement]) -> dict[Pair, int]:
    deltas: dict[Pair, int] = {}
    for movement in movements:
        ref = movement.item.ref
        if movement.from_location is not None:
            key = (ref, movement.from_location)
            deltas[key] = deltas.get(key, 0) - movement.quantity
        if movement.to_location is not None:
            key = (ref, movement.to_location)
            deltas[key] = deltas.get(key, 0) + movement.quantity
    return deltas


def check_movements(
    movements: Sequence[Movement],
    on_hand: Mapping[Pair, int],
    policy: Policy,
    *,
    refusable: bool = True,
) -> StockCheck:
    """Judge ``movements`` against the balances ``on_hand`` held before them.

    Args:
        movements: in the order they apply; one event's movements are adjacent.
        on_hand: the balance of every pair the movements touch (absent: 0).
        policy: the ``negative_stock`` policy per site.
        refusable: False for what may never be refused (a reversal): alerts only.
    """
    result = StockCheck()
    running: dict[Pair, int] = {}
    if not refusable or not policy.refuses_anywhere:
        # Nothing can be refused: each balance ends at what it held plus all its deltas,
        # and no event needs judging on its own.
        for key, delta in _deltas(movements).items():
            running[key] = on_hand.get(key, 0) + delta
        return _judged(result, running, on_hand)
    for event_id, group in groupby(movements, key=lambda m: m.event_id):
        moves = list(group)
        deltas = _deltas(moves)
        short: list[Shortfall] = []
        for move in moves:
            if move.from_location is None:
                continue
            key = (move.item.ref, move.from_location)
            have = running.get(key, on_hand.get(key, 0))
            delta = deltas[key]
            if delta < 0 and have + delta < 0:
                short.append(Shortfall(event_id, move, have))
        refused = [s for s in short if refusable and policy.negative_stock_at(s.site) == "refuse"]
        if refused:
            result.refused[event_id] = refused[0]
            continue
        for key, delta in deltas.items():
            running[key] = running.get(key, on_hand.get(key, 0)) + delta
    return _judged(result, running, on_hand)


def _judged(
    result: StockCheck, running: Mapping[Pair, int], on_hand: Mapping[Pair, int]
) -> StockCheck:
    """``result`` with the alerts of the balances ``running`` left below zero and the clears
    of those that were below zero (``on_hand``) and are not any more."""
    for key, after in sorted(running.items()):
        before = on_hand.get(key, 0)
        if after < 0:
            result.alerts.append(
                NEGATIVE_STOCK.raise_(
                    subject(key),
                    {"location": key[1], "item": key[0], "on_hand": after, "before": before},
                    site=site_of(key[1]),
                )
            )
        elif before < 0:
            result.cleared.append((NEGATIVE_STOCK.kind, subject(key)))
    return result


__all__ = ["Pair", "Shortfall", "StockCheck", "check_movements", "subject", "touched"]
