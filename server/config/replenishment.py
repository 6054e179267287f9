"""``[replenishment]``: how the planner measures history and turns it into reorder points.

Every figure has a default that fits a warehouse with daily movements; an item's own
``replenishment_settings`` row (``PUT /api/v1/replenishment/settings/{sku}``) wins over the
service level, lead-time fallback and order terms here, and the item master's manual
``reorder_point`` / ``reorder_quantity`` win over everything the planner computes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from plumbing.settings import Section


class ReplenishmentSettings(Section):
    """``[replenishment]``: the planner's window, service levels and schedule."""

    enabled: bool = True
    """Run the planner on its schedule (``POST /api/v1/replenishment/run`` works regardless)."""
    interval_s: float = Field(default=3600.0, ge=10, le=7 * 86_400)
    """How often reorder points are recomputed (one instance does it per interval)."""
    demand_window_days: int = Field(default=42, ge=7, le=1096)
    """Days of demand history (outbound shipments to customers) the statistics use. Six
    weeks follow a seasonal swing closely enough: in the backtest (``bench/replenishment``,
    three seeds, order-up-to 7 to 14 days) 42 days kept the fill rate at or above the
    service level, 56 days fell just below it and 91 days further."""
    lead_time_window_days: int = Field(default=365, ge=7, le=1096)
    """Days of purchase orders whose lead times are measured."""
    min_lead_time_samples: int = Field(default=2, ge=1, le=100)
    """Fewer measured lead times than this: the item's or the default lead time is used."""
    default_lead_time_days: float = Field(default=7.0, gt=0, le=365)
    default_lead_time_sd_days: float = Field(default=0.0, ge=0, le=365)
    service_measure: Literal["fill_rate", "cycle"] = "fill_rate"
    """What a service level means: the share of demand served from stock (``fill_rate``),
    or the chance of no stock-out per replenishment cycle (``cycle``); see
    ``server.replenishment.method``."""
    service_level_a: float = Field(default=0.98, gt=0.5, lt=1)
    service_level_b: float = Field(default=0.95, gt=0.5, lt=1)
    service_level_c: float = Field(default=0.90, gt=0.5, lt=1)
    """Service level by ABC class (``service_measure`` says what it measures)."""
    class_a_share: float = Field(default=0.80, gt=0, lt=1)
    class_b_share: float = Field(default=0.95, gt=0, lt=1)
    """ABC by demand volume per site: items making the first 80 % of units are A, up to
    95 % B, the rest C."""
    review_days: float = Field(default=14.0, ge=1, le=365)
    """Order-up-to level = reorder point + this many days of demand."""
    intermittent_adi: float = Field(default=1.32, ge=1, le=100)
    """Average demand interval (days per day with demand) above which demand is intermittent
    and forecast with Croston's method, Syntetos-Boylan corrected (SBA)."""
    croston_alpha: float = Field(default=0.1, gt=0, le=1)
    receiving_zone: str = Field(default="receiving", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """Drafts are received at ``<site>.<receiving_zone>`` when that location exists, else at
    the site."""
    max_items: int = Field(default=50_000, ge=1, le=1_000_000)
    """(Item, site) pairs planned per run at most."""

    @model_validator(mode="after")
    def _ordered(self) -> ReplenishmentSettings:
        if self.class_a_share >= self.class_b_share:
            raise ValueError("class_a_share must be below class_b_share")
        return self
