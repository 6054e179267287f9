"""The replenishment method: demand and lead-time statistics to reorder point and quantity.

Pure (no I/O, no clock), so the planner, the API and the backtest run the same code.

For one item at one site, with daily demand over a window of ``n`` days (days without
demand count as 0) and lead times measured from purchase orders:

- **Demand per day** ``d_bar`` and its standard deviation ``sigma_d`` (sample standard deviation
  of the daily series). When demand is **intermittent** — the average interval between
  days with demand (ADI = n / days with demand) is above 1.32, the Syntetos-Boylan
  cut-off — the mean of the series is a poor forecast of the next lead time's demand, and
  ``d_bar`` is Croston's forecast with the Syntetos-Boylan correction (SBA): exponential
  smoothing (alpha) of the demand sizes ``z`` and of the intervals between them ``p``,
  ``d_bar = (1 - alpha/2) · z / p``. ``sigma_d`` stays the standard deviation of the daily series
  (what the safety stock must cover on days that do have demand).
- **Lead time** ``L`` (days) and ``sigma_L``: mean and sample standard deviation of the
  measured lead times of the item's supplier; with fewer than the minimum number of
  measurements, the item's configured lead time (else the default) and its deviation.
- **z** from the service level ``p`` (the item's own, else its ABC class's), measured one
  of two ways (``[replenishment] service_measure``):

  - ``fill_rate`` (the default): ``p`` is the share of demand served from stock. The
    expected shortage per replenishment cycle, ``sigma_LT * G(z)`` (``G`` the unit normal
    loss function, ``sigma_LT = sqrt(L*sigma_d^2 + d_bar^2*sigma_L^2)``), may be
    ``(1 - p)`` of what one order brings (``Q``: ``d_bar * R`` order-up-to, the EOQ with
    ``eoq``); ``z`` solves that (bisection), and is never below 0 (the reorder point never
    below the expected lead-time demand). Frequent small orders need a larger ``z`` than
    large ones for the same fill rate.
  - ``cycle``: ``p`` is the chance of no stock-out in a cycle: ``z = Phi^-1(p)``
    (``statistics.NormalDist``). It holds more stock than a fill rate of the same ``p``
    (the backtest in ``bench/replenishment.py`` measured a fill rate near 0.98 for
    ``p`` = 0.95).
- **Safety stock** ``SS = z · √(L · sigma_d² + d_bar² · sigma_L²)`` (demand and lead time both vary,
  independent of each other).
- **Reorder point** ``ROP = d_bar · L + SS``, rounded up to whole units.
- **Order quantity**: ``order_up_to`` orders up to ``S = ROP + d_bar · R`` (R = review days):
  ``q = S - position``; ``eoq`` (when order and holding costs are known) orders
  ``EOQ = √(2 · D · K / h)`` (D = 365 · d_bar per year, K per order, h per unit and year),
  enough multiples of it to bring the position above the reorder point. Either is raised
  to the supplier's minimum and rounded up to its pack size.
- **Position** (projected stock) ``= on hand + on order + in transit - allocated``; an
  order is suggested when it is at or below ``ROP``; ``position - d_bar · L`` is what is
  projected to be left when an order placed now arrives (it should be the safety stock).
- **ABC**: per site, items sorted by demand volume over the window; those making the first
  ``a`` share of the units are A, up to ``b`` B, the rest C.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal, TypeVar

Method = Literal["order_up_to", "eoq"]
ServiceMeasure = Literal["fill_rate", "cycle"]
Forecast = Literal["mean", "sba", "none"]
LeadTimeSource = Literal["history", "item", "default"]
AbcClass = Literal["A", "B", "C"]
K = TypeVar("K", bound=Hashable)
SBA_ADI = 1.32
"""Syntetos-Boylan: demand with an average inter-demand interval above this is intermittent."""


@dataclass(frozen=True, slots=True)
class DemandStats:
    """Daily demand over a window, and how its rate was forecast."""

    mean: float
    """d_bar: units per day."""
    sd: float
    """sigma_d: standard deviation of the daily demand."""
    days: int
    """The window, in days."""
    demand_days: int
    """Days with any demand."""
    total: float
    adi: float | None
    """Average inter-demand interval (days per demand day); None with no demand."""
    forecast: Forecast


@dataclass(frozen=True, slots=True)
class LeadTimeStats:
    """Lead time in days, and where it came from."""

    mean: float
    """L."""
    sd: float
    """sigma_L."""
    samples: int
    source: LeadTimeSource


@dataclass(frozen=True, slots=True)
class OrderTerms:
    """How an item is ordered."""

    method: Method = "order_up_to"
    review_days: float = 14.0
    min_order: int | None = None
    pack_size: int | None = None
    order_cost: float | None = None
    """K: cost of placing one order."""
    holding_cost: float | None = None
    """h: cost of holding one unit for a year."""


@dataclass(frozen=True, slots=True)
class ReorderFigures:
    """A computed reorder point and everything that produced it."""

    reorder_point: int
    safety_stock: float
    order_up_to: int
    eoq: float | None
    z: float
    service_level: float
    service_measure: ServiceMeasure
    cycle_quantity: float
    """Q: what one order brings on average (the fill-rate measure divides by it)."""
    demand: DemandStats
    lead_time: LeadTimeStats
    method: Method

    def explain(self) -> dict[str, object]:
        """The figures as the API shows them (``d_bar, sigma_d, L, sigma_L, z, window``)."""
        return {
            "d_bar": round(self.demand.mean, 4),
            "sigma_d": round(self.demand.sd, 4),
            "L": round(self.lead_time.mean, 4),
            "sigma_L": round(self.lead_time.sd, 4),
            "z": round(self.z, 4),
            "service_level": self.service_level,
            "service_measure": self.service_measure,
            "cycle_quantity": round(self.cycle_quantity, 4),
            "sigma_lead_time_demand": round(lead_time_demand_sd(self.demand, self.lead_time), 4),
            "window_days": self.demand.days,
            "demand": asdict(self.demand),
            "lead_time": asdict(self.lead_time),
            "safety_stock": round(self.safety_stock, 4),
            "reorder_point": self.reorder_point,
            "order_up_to": self.order_up_to,
            "eoq": None if self.eoq is None else round(self.eoq, 4),
            "method": self.method,
            "formula": "SS = z*sqrt(L*sigma_d^2 + d_bar^2*sigma_L^2); ROP = d_bar*L + SS",
        }


def croston_sba(series: Sequence[float], alpha: float) -> float:
    """Croston's forecast of demand per period, Syntetos-Boylan corrected."""
    size: float | None = None
    interval: float | None = None
    since = 0
    for value in series:
        since += 1
        if value <= 0:
            continue
        if size is None or interval is None:
            size, interval = float(value), float(since)
        else:
            size += alpha * (value - size)
            interval += alpha * (since - interval)
        since = 0
    if size is None or interval is None:
        return 0.0
    return (1 - alpha / 2) * size / interval


def demand_stats(
    series: Sequence[float], *, alpha: float = 0.1, intermittent_adi: float = SBA_ADI
) -> DemandStats:
    """Statistics of a daily demand series (zeros included; see the module docstring)."""
    days = len(series)
    if days == 0:
        return DemandStats(0.0, 0.0, 0, 0, 0.0, None, "none")
    total = float(sum(series))
    demand_days = sum(1 for value in series if value > 0)
    sd = statistics.stdev(series) if days > 1 else 0.0
    if demand_days == 0:
        return DemandStats(0.0, 0.0, days, 0, 0.0, None, "none")
    adi = days / demand_days
    if adi > intermittent_adi and demand_days >= 2:
        return DemandStats(croston_sba(series, alpha), sd, days, demand_days, total, adi, "sba")
    return DemandStats(total / days, sd, days, demand_days, total, adi, "mean")


def lead_time_stats(
    samples: Sequence[float],
    *,
    min_samples: int,
    item_days: float | None,
    item_sd_days: float | None,
    default_days: float,
    default_sd_days: float,
) -> LeadTimeStats:
    """Measured lead times when there are enough, else the item's, else the default."""
    if len(samples) >= min_samples:
        mean = statistics.fmean(samples)
        sd = statistics.stdev(samples) if len(samples) > 1 else 0.0
        return LeadTimeStats(mean, sd, len(samples), "history")
    if item_days is not None:
        return LeadTimeStats(item_days, item_sd_days or 0.0, len(samples), "item")
    return LeadTimeStats(default_days, default_sd_days, len(samples), "default")


def z_of(service_level: float) -> float:
    """The standard normal quantile of the cycle service level."""
    return statistics.NormalDist().inv_cdf(service_level)


def lead_time_demand_sd(demand: DemandStats, lead_time: LeadTimeStats) -> float:
    """``sqrt(L * sigma_d^2 + d_bar^2 * sigma_L^2)``: the spread of demand over a lead time."""
    variance = lead_time.mean * demand.sd**2 + demand.mean**2 * lead_time.sd**2
    return math.sqrt(max(variance, 0.0))


def safety_stock(z: float, demand: DemandStats, lead_time: LeadTimeStats) -> float:
    """``z · √(L · sigma_d² + d_bar² · sigma_L²)``."""
    return z * lead_time_demand_sd(demand, lead_time)


def unit_normal_loss(k: float) -> float:
    """``G(k) = phi(k) - k * (1 - Phi(k))``: expected shortage of a unit normal beyond ``k``."""
    normal = statistics.NormalDist()
    return normal.pdf(k) - k * (1 - normal.cdf(k))


Z_MAX = 6.0
"""Largest safety factor the fill-rate measure gives (``G(6)`` is about 1e-10)."""


def z_for_fill_rate(fill_rate: float, spread: float, cycle_quantity: float) -> float:
    """The least ``z >= 0`` whose expected shortage per cycle is ``(1 - fill_rate) * Q``."""
    if spread <= 0 or cycle_quantity <= 0:
        return 0.0
    allowed = (1 - fill_rate) * cycle_quantity / spread
    if unit_normal_loss(0.0) <= allowed:
        return 0.0
    low, high = 0.0, Z_MAX
    for _ in range(60):  # G decreases in k: bisection to well below a unit's worth
        middle = (low + high) / 2
        if unit_normal_loss(middle) > allowed:
            low = middle
        else:
            high = middle
    return high


def economic_order_quantity(
    daily_demand: float, order_cost: float | None, holding_cost: float | None
) -> float | None:
    """``√(2 · D · K / h)`` with D per year; None unless both costs are known and positive."""
    if not order_cost or not holding_cost or order_cost <= 0 or holding_cost <= 0:
        return None
    return math.sqrt(2 * daily_demand * 365 * order_cost / holding_cost)


def reorder_figures(
    demand: DemandStats,
    lead_time: LeadTimeStats,
    service_level: float,
    terms: OrderTerms,
    measure: ServiceMeasure = "fill_rate",
) -> ReorderFigures:
    """The reorder point, order-up-to level and EOQ of one item at one site."""
    eoq = economic_order_quantity(demand.mean, terms.order_cost, terms.holding_cost)
    method: Method = "eoq" if terms.method == "eoq" and eoq is not None else "order_up_to"
    cycle = eoq if method == "eoq" and eoq is not None else demand.mean * terms.review_days
    cycle = max(cycle, 1.0)
    if measure == "fill_rate":
        z = z_for_fill_rate(service_level, lead_time_demand_sd(demand, lead_time), cycle)
    else:
        z = z_of(service_level)
    stock = safety_stock(z, demand, lead_time)
    point = math.ceil(demand.mean * lead_time.mean + stock - 1e-9)
    up_to = math.ceil(point + demand.mean * terms.review_days - 1e-9)
    return ReorderFigures(
        reorder_point=max(point, 0),
        safety_stock=stock,
        order_up_to=max(up_to, 0),
        eoq=eoq,
        z=z,
        service_level=service_level,
        service_measure=measure,
        cycle_quantity=cycle,
        demand=demand,
        lead_time=lead_time,
        method=method,
    )


def round_to_terms(quantity: float, terms: OrderTerms) -> int:
    """At least the supplier's minimum, in whole packs."""
    amount = max(math.ceil(quantity - 1e-9), 0)
    if amount <= 0:
        return 0
    if terms.min_order is not None:
        amount = max(amount, terms.min_order)
    if terms.pack_size is not None and terms.pack_size > 1:
        amount = math.ceil(amount / terms.pack_size) * terms.pack_size
    return amount


def order_quantity(
    position: float, reorder_point: int, order_up_to: int, eoq: float | None, terms: OrderTerms
) -> int:
    """What to order now at ``position`` (0 while the position is above the reorder point)."""
    if position > reorder_point:
        return 0
    if terms.method == "eoq" and eoq is not None and eoq > 0:
        lots = math.floor((reorder_point - position) / eoq) + 1
        return round_to_terms(lots * eoq, terms)
    return round_to_terms(max(order_up_to - position, 1), terms)


def abc_classes(volume: Mapping[K, float], a_share: float, b_share: float) -> dict[K, AbcClass]:
    """ABC classes by volume: the items making the first ``a_share`` are A, to ``b_share`` B."""
    total = sum(max(value, 0.0) for value in volume.values())
    ranked = sorted(volume, key=lambda key: (-volume[key], str(key)))
    classes: dict[K, AbcClass] = {}
    running = 0.0
    for key in ranked:
        share_before = running / total if total > 0 else 1.0
        running += max(volume[key], 0.0)
        if share_before < a_share:
            classes[key] = "A"
        elif share_before < b_share:
            classes[key] = "B"
        else:
            classes[key] = "C"
    return classes
