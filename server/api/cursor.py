"""Opaque keyset cursors for newest-first listings: (event time, row id), base64url."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from server.errors import ServerError

MAX_CURSOR_LENGTH = 200
MAX_ROW_ID = 2**63 - 1


class CursorError(ServerError, ValueError):
    """A cursor this server did not issue (a ``ValueError`` too: it is a bad argument)."""


def encode_cursor(event_time: datetime, row_id: int) -> str:
    raw = f"{event_time.astimezone(UTC).isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The position a cursor stands for.

    Raises:
        CursorError: the cursor is malformed.
    """
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise CursorError(f"cursor must be 1..{MAX_CURSOR_LENGTH} characters")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, row_id = raw.partition("|")
        at = datetime.fromisoformat(when)
        position = int(row_id)
        if at.tzinfo is None or not 0 <= position <= MAX_ROW_ID:
            raise ValueError("out of range")
        return at.astimezone(UTC), position
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as err:
        raise CursorError("cursor is not one this server issued") from err
