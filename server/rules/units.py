"""A tagged unit's life cycle: which sightings of a unit are suspicious. Pure.

A unit's state (``in_stock``, ``in_transit``, ``shipped``, ``missing``, where, and the site
and time of its newest event) is decided by event time, not arrival order: a rule's new
state applies only when its event is newer than the state the store holds
(``server.rules.stock.plan``). Every tagged event is also checked against that state:

- ``unit_seen_after_shipped``: the unit is ``shipped`` and the event is newer than the
  shipment. Not raised for passes: an inbound pass of a shipped unit is a return (it is
  received again), an outbound one is reported as ``unit_not_in_stock``. Raised for
  sightings with no direction, zone arrivals and departures, moves, picks and counts.
- ``impossible_movement``: the event is at another site than the unit's newest event and
  the two are closer in time (either way round, so a late event is judged too) than
  ``Policy.min_travel`` between the sites.

Sightings that move no stock (no direction, a departure) never change the unit's state.
"""

from __future__ import annotations

from server.rules.alerts import IMPOSSIBLE_MOVEMENT, UNIT_SEEN_AFTER_SHIPPED
from server.rules.model import AlertSpec, UnitState
from server.rules.policy import Policy
from wire.models import Event


def lifecycle_alerts(
    event: Event, unit: UnitState, site: str, policy: Policy, *, sighting: bool
) -> list[AlertSpec]:
    """The alerts a tagged ``event`` at ``site`` raises about ``unit`` (its state before).

    Args:
        event: a tagged event (``epc`` set).
        unit: the unit's state before the event.
        site: where the event happened.
        policy: travel times.
        sighting: whether seeing a shipped unit is suspicious for this kind of event.
    """
    alerts: list[AlertSpec] = []
    evidence: dict[str, object] = {
        "event_id": event.event_id,
        "event_time": event.event_time.isoformat(),
        "read_point": event.read_point,
        "epc": unit.epc,
    }
    newer = unit.is_older_than(event.event_time, event.event_id)
    if sighting and unit.status == "shipped" and newer:
        alerts.append(
            UNIT_SEEN_AFTER_SHIPPED.raise_(
                unit.epc,
                evidence | {"shipped_at": unit.last_event_time.isoformat(), "site": site},
                site=site,
            )
        )
    if unit.site is not None and unit.site != site:
        gap = abs(event.event_time - unit.last_event_time)
        need = policy.min_travel(unit.site, site)
        if gap < need:
            alerts.append(
                IMPOSSIBLE_MOVEMENT.raise_(
                    unit.epc,
                    evidence
                    | {
                        "from_site": unit.site,
                        "to_site": site,
                        "from_event_id": unit.last_event_id,
                        "from_time": unit.last_event_time.isoformat(),
                        "seconds": round(gap.total_seconds(), 3),
                        "min_travel_s": need.total_seconds(),
                    },
                    site=site,
                )
            )
    return alerts
