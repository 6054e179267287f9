"""Backtest of the replenishment method against a fixed reorder point, on the same demand.

A generated year (plus a warm-up quarter of history) of daily demand for a mix of items:

- **seasonal**: a daily rate between 2 and 40 with a yearly sine swing of +-40 % (each
  item's peak at its own time of year) and Poisson noise;
- **intermittent**: a day has demand with probability 0.1 to 0.35, of 1 to 12 units;

and lead times that vary per order (normal around the item's mean of 3 to 14 days, a
spread of 30 %, at least one day). Demand that finds no stock is lost.

Two policies run on the same days, demand and lead-time draws:

- **planner**: every ``RECOMPUTE_DAYS`` the item's figures are recomputed by the planner's
  own code with the server's default ``[replenishment]`` settings
  (``server.replenishment.method``: ``demand_stats`` over the last ``demand_window_days``
  of observed demand, Croston/SBA where intermittent; ``lead_time_stats`` over the lead
  times of the orders received so far; ``reorder_figures`` at the class B service level
  and the default service measure; ``order_quantity`` order-up-to ``review_days`` of
  demand); each day an order is placed when the position (on hand + on order) is at or
  below the reorder point. (The planner's SQL side, history from the ledger, is tested in
  ``tests/server/test_server_replenishment.py``; the backtest drives its arithmetic.)
- **fixed**: the reorder point typed once from the warm-up history, as a person does today
  (``server.alerts.stock_levels``): average daily demand x average lead time, plus half of that as
  safety stock, never updated; the reorder quantity ``review_days`` of average demand.

Figures (over the simulated year, all items together):

- ``replenishment.fill_rate``: units delivered from stock / units demanded, planner
  (target: at least the configured service level);
- ``replenishment.avg_stock_ratio``: the planner's average on-hand stock / the fixed
  policy's (target: at most 1, i.e. less stock); the fixed policy's fill rate and both
  policies' figures per demand kind are in the details.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Final, Literal

from bench.figures import Figure, Target
from server.config.replenishment import ReplenishmentSettings
from server.replenishment.method import (
    OrderTerms,
    demand_stats,
    lead_time_stats,
    order_quantity,
    reorder_figures,
)

SETTINGS: Final = ReplenishmentSettings()
"""The planner runs with the server's defaults (window, order-up-to days, service measure)."""
SERVICE_LEVEL: Final = SETTINGS.service_level_b
DAYS: Final = 365
WARMUP_DAYS: Final = 91
WINDOW_DAYS: Final = SETTINGS.demand_window_days
ORDER_DAYS: Final = SETTINGS.review_days
RECOMPUTE_DAYS: Final = 7
ITEMS: Final = 60
INTERMITTENT_SHARE: Final = 0.4
SEED: Final = 20_241_125
FIXED_SAFETY: Final = 0.5
"""The fixed policy's safety stock as a share of lead-time demand."""

Kind = Literal["seasonal", "intermittent"]


@dataclass(frozen=True, slots=True)
class ItemCase:
    """One generated item: its demand per day and its lead-time draws in order."""

    kind: Kind
    demand: tuple[int, ...]
    lead_times: tuple[int, ...]
    mean_lead_time: float


@dataclass(slots=True)
class Outcome:
    demanded: int = 0
    delivered: int = 0
    stock_days: float = 0.0
    orders: int = 0


@dataclass(slots=True)
class _Pending:
    arrives: int
    quantity: int
    placed: int


@dataclass(slots=True)
class _State:
    on_hand: int
    pipeline: list[_Pending] = field(default_factory=list)
    lead_draw: int = 0

    @property
    def on_order(self) -> int:
        return sum(order.quantity for order in self.pipeline)


def _poisson(rng: random.Random, rate: float) -> int:
    # Knuth for small rates, a normal approximation above (rates here stay below ~60).
    if rate > 30:
        return max(0, round(rng.gauss(rate, math.sqrt(rate))))
    limit, product, count = math.exp(-rate), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count


def generate(items: int = ITEMS, seed: int = SEED) -> list[ItemCase]:
    """The items of the backtest (deterministic for a seed)."""
    rng = random.Random(seed)
    total = WARMUP_DAYS + DAYS
    cases: list[ItemCase] = []
    for index in range(items):
        kind: Kind = "intermittent" if index < items * INTERMITTENT_SHARE else "seasonal"
        if kind == "seasonal":
            rate = rng.uniform(2, 40)
            phase = rng.uniform(0, 2 * math.pi)
            demand = tuple(
                _poisson(rng, rate * (1 + 0.4 * math.sin(2 * math.pi * day / 365 + phase)))
                for day in range(total)
            )
        else:
            chance = rng.uniform(0.1, 0.35)
            demand = tuple(rng.randint(1, 12) if rng.random() < chance else 0 for _ in range(total))
        mean_lead = rng.uniform(3, 14)
        draws = tuple(max(1, round(rng.gauss(mean_lead, 0.3 * mean_lead))) for _ in range(total))
        cases.append(ItemCase(kind, demand, draws, mean_lead))
    return cases


def _deliver(state: _State, day: int, seen: list[float]) -> None:
    arrived = [order for order in state.pipeline if order.arrives <= day]
    for order in arrived:
        state.on_hand += order.quantity
        seen.append(float(order.arrives - order.placed))
    state.pipeline = [order for order in state.pipeline if order.arrives > day]


def _place(state: _State, case: ItemCase, day: int, quantity: int) -> None:
    lead = case.lead_times[state.lead_draw % len(case.lead_times)]
    state.lead_draw += 1
    state.pipeline.append(_Pending(day + lead, quantity, day))


def _serve(state: _State, want: int, outcome: Outcome, counted: bool) -> None:
    give = min(want, state.on_hand)
    state.on_hand -= give
    if counted:
        outcome.demanded += want
        outcome.delivered += give
        outcome.stock_days += state.on_hand


def _warmup_lead_times(case: ItemCase) -> list[float]:
    # Three past orders' lead times, as the purchase order history would hold them.
    return [float(lead) for lead in case.lead_times[-3:]]


def run_planner(case: ItemCase) -> Outcome:
    """The item's year under the planner (``server.replenishment.method``)."""
    outcome = Outcome()
    history = _warmup_lead_times(case)
    observed: list[float] = [float(x) for x in case.demand[:WARMUP_DAYS]]
    terms = OrderTerms(review_days=ORDER_DAYS)
    state = _State(on_hand=round(sum(observed[-WINDOW_DAYS:]) / WINDOW_DAYS * 14))
    point, up_to = 0, 0
    for day in range(WARMUP_DAYS, WARMUP_DAYS + DAYS):
        _deliver(state, day, history)
        if (day - WARMUP_DAYS) % RECOMPUTE_DAYS == 0:
            figures = reorder_figures(
                demand_stats(
                    observed[-WINDOW_DAYS:],
                    alpha=SETTINGS.croston_alpha,
                    intermittent_adi=SETTINGS.intermittent_adi,
                ),
                lead_time_stats(
                    history[-20:],
                    min_samples=2,
                    item_days=None,
                    item_sd_days=None,
                    default_days=7.0,
                    default_sd_days=0.0,
                ),
                SERVICE_LEVEL,
                terms,
            )
            point, up_to = (
                figures.reorder_point,
                max(figures.order_up_to, figures.reorder_point + 1),
            )
        _serve(state, case.demand[day], outcome, counted=True)
        observed.append(float(case.demand[day]))
        position = state.on_hand + state.on_order
        quantity = order_quantity(position, point, up_to, None, terms)
        if quantity > 0:
            _place(state, case, day, quantity)
            outcome.orders += 1
    return outcome


def run_fixed(case: ItemCase) -> Outcome:
    """The item's year under a reorder point typed once from the warm-up history."""
    outcome = Outcome()
    warmup = case.demand[:WARMUP_DAYS]
    mean_demand = sum(warmup) / len(warmup)
    leads = _warmup_lead_times(case)
    mean_lead = sum(leads) / len(leads)
    point = math.ceil(mean_demand * mean_lead * (1 + FIXED_SAFETY))
    quantity = max(1, math.ceil(mean_demand * ORDER_DAYS))
    state = _State(on_hand=round(mean_demand * 14))
    ignored: list[float] = []
    for day in range(WARMUP_DAYS, WARMUP_DAYS + DAYS):
        _deliver(state, day, ignored)
        _serve(state, case.demand[day], outcome, counted=True)
        position = state.on_hand + state.on_order
        if position <= point:
            # Enough lots of the fixed quantity to lift the position above the point.
            lots = (point - position) // quantity + 1
            _place(state, case, day, lots * quantity)
            outcome.orders += 1
    return outcome


def _rate(outcomes: list[Outcome]) -> float:
    demanded = sum(outcome.demanded for outcome in outcomes)
    return sum(outcome.delivered for outcome in outcomes) / demanded if demanded else 1.0


def _stock(outcomes: list[Outcome]) -> float:
    return sum(outcome.stock_days for outcome in outcomes) / DAYS


def backtest(items: int = ITEMS, seed: int = SEED) -> list[Figure]:
    """``replenishment.fill_rate`` and ``replenishment.avg_stock_ratio``."""
    began = time.monotonic()
    cases = generate(items, seed)
    planned = [run_planner(case) for case in cases]
    fixed = [run_fixed(case) for case in cases]
    by_kind: dict[str, dict[str, float]] = {}
    for kind in ("seasonal", "intermittent"):
        chosen = [i for i, case in enumerate(cases) if case.kind == kind]
        mine = [planned[i] for i in chosen]
        theirs = [fixed[i] for i in chosen]
        by_kind[kind] = {
            "items": len(chosen),
            "planner_fill_rate": round(_rate(mine), 4),
            "fixed_fill_rate": round(_rate(theirs), 4),
            "stock_ratio": round(_stock(mine) / _stock(theirs), 4) if _stock(theirs) else 0.0,
        }
    ratio = _stock(planned) / _stock(fixed) if _stock(fixed) else 0.0
    detail: dict[str, object] = {
        "items": items,
        "days": DAYS,
        "warmup_days": WARMUP_DAYS,
        "service_level": SERVICE_LEVEL,
        "seed": seed,
        "fixed_fill_rate": round(_rate(fixed), 4),
        "planner_avg_stock": round(_stock(planned), 1),
        "fixed_avg_stock": round(_stock(fixed), 1),
        "planner_orders": sum(outcome.orders for outcome in planned),
        "fixed_orders": sum(outcome.orders for outcome in fixed),
        "by_kind": by_kind,
        "seconds": round(time.monotonic() - began, 2),
    }
    how = (
        f"{items} generated items ({int(INTERMITTENT_SHARE * 100)} % intermittent, the rest "
        f"seasonal), {DAYS} days after a {WARMUP_DAYS}-day warm-up, lead times varying "
        "per order, lost sales; the planner's own method recomputed weekly vs a reorder "
        "point typed once (mean demand x mean lead time x 1.5)"
    )
    return [
        Figure(
            "replenishment.fill_rate",
            round(_rate(planned), 4),
            "share",
            how,
            Target(">=", SERVICE_LEVEL),
            detail,
        ),
        Figure(
            "replenishment.avg_stock_ratio",
            round(ratio, 4),
            "planner / fixed",
            "average on-hand stock of the planner over that of the fixed reorder point, "
            "same demand and lead times",
            Target("<=", 1.0),
            detail,
        ),
    ]
