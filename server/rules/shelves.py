"""Continuous counting from shelf readers: which departures start a watch. Pure.

A shelf read point with ``missing_after_s`` (``[[read_points]]``) turns a departure (biz
step ``departing``, from the edge's ``[[zones]]``) of a unit the books hold in stock into a
``Departure``: unless the unit is read again somewhere (any read point: a pass, an arrival
on another shelf, a pick, a move) within ``missing_after_s`` of its last read on the shelf,
it becomes ``missing`` (``server.ingest.shelves``: a ``count_adjustment`` of reason ``shrinkage``
and the alert ``unit_missing`` naming the shelf). Read again later, it comes back into stock
where it is read (``server.rules.steps.place_unit``) and ``unit_missing`` clears.

Every tagged event of a batch is a sighting (``Plan.sightings``, the newest per EPC); a
departure followed by a sighting of its unit in the same batch starts no watch.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from server.rules.model import Departure, UnitState
from server.rules.points import ReadPoint
from wire.models import Event

DEPARTING: Final = "departing"
"""The CBV business step of a zone departure (the edge's ``[[zones]] depart_biz_step``)."""
SHRINKAGE: Final = "shrinkage"
"""The ``reason`` of the count adjustment that records a unit gone missing from a shelf."""


def departure(event: Event, read_point: ReadPoint, unit: UnitState | None) -> Departure | None:
    """The watch a tagged ``event`` starts, or None.

    Only a departure from a shelf with ``missing_after_s`` of a unit in stock whose state
    is older than the departure (a late departure says nothing new) starts one.
    """
    after = read_point.missing_after_s
    if event.biz_step != DEPARTING or after is None or event.epc is None:
        return None
    if unit is None or unit.status != "in_stock" or unit.location is None:
        return None
    if not unit.is_older_than(event.event_time, event.event_id):
        return None
    return Departure(
        epc=event.epc,
        item=unit.item,
        read_point=event.read_point,
        location=unit.location,
        departed_at=event.event_time,
        event_id=event.event_id,
        due_at=event.event_time + timedelta(seconds=after),
    )


__all__ = ["DEPARTING", "SHRINKAGE", "Departure", "departure"]
