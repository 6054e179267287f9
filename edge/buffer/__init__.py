"""The durable edge outbox (aiosqlite): events wait here until the server acknowledges them."""

from edge.buffer.outbox import Outbox, OutboxError, OutboxFull, OutboxLocked

__all__ = ["Outbox", "OutboxError", "OutboxFull", "OutboxLocked"]
