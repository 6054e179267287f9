"""Stock and alert rules as data plus pure functions: ``(events, state) -> effects``.

``server.rules.stock.STOCK_RULES`` is the rule table of passes, ``server.rules.steps`` the
table of business steps (moves, picks, counts in ``server.rules.counts``),
``server.rules.orders`` how movements count against orders, ``server.rules.units`` the unit
life-cycle checks, ``server.rules.alerts`` the alert kinds, ``server.rules.items`` how an
event names its item, ``server.rules.policy`` the config the rules take. Nothing here does
I/O or reads a clock.
"""

from server.rules.model import (
    AlertSpec,
    ItemKey,
    LedgerKind,
    Movement,
    Plan,
    StockState,
    UnitState,
    UnitStatus,
)
from server.rules.policy import Policy
from server.rules.steps import STEP_RULES, StepRule, location_problem
from server.rules.stock import STOCK_RULES, StockRule, plan, rule_for

__all__ = [
    "STEP_RULES",
    "STOCK_RULES",
    "AlertSpec",
    "ItemKey",
    "LedgerKind",
    "Movement",
    "Plan",
    "Policy",
    "StepRule",
    "StockRule",
    "StockState",
    "UnitState",
    "UnitStatus",
    "location_problem",
    "plan",
    "rule_for",
]
