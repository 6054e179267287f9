"""The dead-letter table: input the server could not use, kept for people to inspect.

Rows are bounded: the payload is cut to ``[ingest] dead_letter_payload_bytes`` (its full size
is recorded), the reason and topic to their column widths. Bytes that are not UTF-8 are kept
as ``\\xNN`` escapes, and NUL characters are escaped too (PostgreSQL text cannot hold them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from server.store.schema.core import MAX_EVENT_ID, MAX_KIND, MAX_REASON, MAX_TOPIC, dead_letters


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Something received that could not be applied, and why."""

    topic: str
    reason: str
    payload: bytes
    gateway: str | None = None
    event_id: str | None = None
    kind: str | None = None
    """What went wrong, as a short name (``event``, ``read_point``, ``clock_skew``, ...)."""


def printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with NUL escaped."""
    return text.replace("\x00", "\\x00")[:limit]


def as_text(payload: bytes, limit: int) -> tuple[str, bool]:
    """The first ``limit`` bytes of ``payload`` as text, and whether anything was cut."""
    cut = payload[:limit]
    text = cut.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
    return text, len(payload) > limit


async def insert_dead_letters(
    conn: AsyncConnection,
    letters: Sequence[DeadLetter],
    received_at: datetime,
    payload_limit: int,
) -> None:
    """Insert ``letters`` in one statement."""
    if not letters:
        return
    rows = []
    for letter in letters:
        text, truncated = as_text(letter.payload, payload_limit)
        rows.append(
            {
                "received_at": received_at,
                "topic": printable(letter.topic, MAX_TOPIC),
                "gateway": printable(letter.gateway, 64) if letter.gateway else None,
                "event_id": printable(letter.event_id, MAX_EVENT_ID) if letter.event_id else None,
                "reason": printable(letter.reason, MAX_REASON),
                "payload": text,
                "payload_bytes": len(letter.payload),
                "truncated": truncated,
                "kind": letter.kind[:MAX_KIND] if letter.kind else None,
            }
        )
    await conn.execute(dead_letters.insert(), rows)
