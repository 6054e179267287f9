"""Which of ingest's write transactions may run at the same time (PostgreSQL's writers).

On PostgreSQL ingest writes with several connections at once (``[ingest] writers``): the
database's work for one group overlaps the next group's, and the event loop's work for
both. One writer got every guarantee from going one group after the other: a plan made
ahead was checked against every commit that came before it (``GroupWriter._still_valid``).
Two writers must not let a group's transaction run beside an earlier one that can change
what it read, so each transaction first takes a turn here, with the keys of what it reads
and writes (``conflict_keys``), and waits for every earlier transaction still running whose
keys meet its own. Earlier means taken from the planner's queue earlier: the turn is taken
before the first ``await`` of the write, so two groups that share a unit are written in
the order they were planned, exactly as one writer would write them, and their plans are
checked against each other's commits as before. Groups that share nothing run side by side.

The keys: every EPC the plan read or its events name (a unit's state and the ledger rows
that move it), every item it creates, every location it creates, and, where some site
refuses negative stock, every (item, location) balance its movements change (the check
reads them). A part planned inside its transaction (cycle counts, pallets, open orders, a
failed read: ``PlannedEvents`` is None) reads more than its plan says: it takes the whole
turn (``EVERYTHING``), waiting for all before it and holding up all after it. SQLite has one
writer, whose turns never wait.

What two transactions running at once may still share: balance rows (increments; the second
waits in PostgreSQL for the first's commit, rows locked in one order) and, where negative
stock is allowed (the default), a balance that a quantity event's check reads without the
other's delta yet: the ``negative_stock`` alert that may raise is reconciled by the sweep
(``server.alerts.sweeps``), as between two server instances.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection, Hashable, Sequence
from dataclasses import dataclass, field

from server.ingest.planning import PlannedEvents
from server.rules.policy import Policy

Keys = frozenset[Hashable] | None
"""What a transaction reads and writes; None: everything (it waits for all, all wait for it)."""
EVERYTHING: Keys = None


@dataclass(eq=False, slots=True)
class _Turn:
    keys: Keys
    done: asyncio.Event = field(default_factory=asyncio.Event)


def _meet(a: Keys, b: Keys) -> bool:
    return a is None or b is None or not a.isdisjoint(b)


class WriteTurns:
    """The transactions of ingest's writers, in the order they took their turn."""

    def __init__(self) -> None:
        self._turns: list[_Turn] = []

    @property
    def running(self) -> int:
        """Transactions that took a turn and have not ended (waiting ones included)."""
        return len(self._turns)

    @contextlib.asynccontextmanager
    async def take(self, keys: Keys) -> AsyncIterator[None]:
        """Wait until no earlier transaction whose keys meet ``keys`` is running, then
        run the body; later transactions that meet ``keys`` wait for its end."""
        turn = _Turn(keys)
        earlier = list(self._turns)
        self._turns.append(turn)
        try:
            for other in earlier:
                if _meet(keys, other.keys):
                    await other.done.wait()
            yield
        finally:
            self._turns.remove(turn)
            turn.done.set()


def conflict_keys(
    plans: Sequence[PlannedEvents | None], policy: Policy, known_locations: Collection[str]
) -> Keys:
    """The keys of a transaction writing ``plans`` (one per part and site; see the module)."""
    keys: set[Hashable] = set()
    for planned in plans:
        if planned is None:
            return EVERYTHING
        keys.update(("unit", epc) for epc in planned.epcs)
        keys.update(("item", ref) for ref in planned.new_items)
        plan = planned.plan
        new = plan.locations().difference(known_locations)
        keys.update(("location", location) for location in new)
        if policy.refuses_anywhere:
            keys.update(
                ("balance", movement.item.ref, location)
                for movement in plan.movements
                for location in (movement.from_location, movement.to_location)
                if location is not None
            )
    return frozenset(keys)
