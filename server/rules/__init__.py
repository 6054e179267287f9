"""Stock and alert rules as data plus pure functions: ``(events, state) -> effects``.

``server.rules.stock.STOCK_RULES`` is the rule table, ``server.rules.alerts`` the alert kinds,
``server.rules.items`` how an event names its item. Nothing here does I/O or reads a clock.
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
from server.rules.stock import STOCK_RULES, StockRule, plan, rule_for

__all__ = [
    "STOCK_RULES",
    "AlertSpec",
    "ItemKey",
    "LedgerKind",
    "Movement",
    "Plan",
    "StockRule",
    "StockState",
    "UnitState",
    "UnitStatus",
    "plan",
    "rule_for",
]
