"""Which ledger ids a follower may hand over: the unbroken run after its position, and past
a missing id once it is known never to commit (``server.history.follow``, "Settled ids").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger(__name__)


class _Numbered(Protocol):
    @property
    def id(self) -> int: ...


Row = TypeVar("Row", bound=_Numbered)
"""A ledger row as a follower reads it (``server.history.follow.LedgerRow``)."""


async def transaction_horizon(conn: AsyncConnection) -> tuple[int, int]:
    """PostgreSQL: (oldest transaction still running, first transaction id not yet given)."""
    row = (
        await conn.execute(
            sa.text(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text, "
                "pg_snapshot_xmax(pg_current_snapshot())::text"
            )
        )
    ).one()
    return int(row[0]), int(row[1])


@dataclass(slots=True)
class _Gap:
    first: int
    """The lowest missing id."""
    seen_at: float
    horizon: int | None = None
    """``xmax`` noted after ``gap_settle_s``: transactions below it may still hold the id."""


class GapWatch:
    """Decides how much of a read is settled (see the module docstring).

    Args:
        dialect: ``sqlite`` or ``postgresql``.
        settle_s: how long a missing id is waited for before the transaction check.
        monotonic: the clock (tests pass their own).
    """

    def __init__(
        self, dialect: str, settle_s: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._one_writer = dialect == "sqlite"
        self._settle_s = settle_s
        self._monotonic = monotonic
        self._gap: _Gap | None = None

    @property
    def waiting_on(self) -> int | None:
        """The missing id the follower is waiting for, if any."""
        return self._gap.first if self._gap is not None else None

    def settled(self, position: int, rows: Sequence[Row], xmin: int | None) -> list[Row]:
        """The rows that may be handed over now: the unbroken run after ``position``, and
        past a missing id once it is known never to commit.

        Args:
            position: the follower's position.
            rows: rows read after ``position``, in id order.
            xmin: PostgreSQL: the oldest running transaction, read before ``rows`` were.
        """
        taken: list[Row] = []
        expected = position + 1
        for row in rows:
            if row.id != expected and not self._gone(expected, xmin):
                break
            taken.append(row)
            expected = row.id + 1
        return taken

    def note_horizon(self, xmax: int) -> None:
        """Record ``xmax`` for a gap that has waited ``settle_s`` without a horizon."""
        gap = self._gap
        if gap is not None and gap.horizon is None and self.wants_horizon():
            gap.horizon = xmax

    def wants_horizon(self) -> bool:
        """True when a gap has waited long enough to note the transaction horizon."""
        gap = self._gap
        return (
            gap is not None
            and gap.horizon is None
            and self._monotonic() - gap.seen_at >= self._settle_s
        )

    def _gone(self, missing: int, xmin: int | None) -> bool:
        if self._one_writer:
            return True
        gap = self._gap
        if gap is None or gap.first != missing:
            self._gap = _Gap(missing, self._monotonic())
            return False
        if gap.horizon is not None and xmin is not None and xmin >= gap.horizon:
            log.info("ledger id %d never committed; the history steps over it", missing)
            self._gap = None
            return True
        return False
