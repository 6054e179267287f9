"""The outbox's errors: one root, ``OutboxError`` (an ``EdgeError``), and two kinds of it."""

from __future__ import annotations

from edge.errors import EdgeError

__all__ = ["OutboxError", "OutboxFull", "OutboxLocked"]


class OutboxError(EdgeError):
    """Base of the outbox's errors: the file cannot be opened, read or written."""


class OutboxLocked(OutboxError):
    """Another process has the outbox open."""


class OutboxFull(OutboxError):
    """The outbox holds ``max_events`` events; the new event was refused, none was dropped."""
