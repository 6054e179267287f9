"""A page of a listing newest first by event time (movements, unresolved passes).

The listing's last query parameters are ``since``, ``until``, ``cursor`` and ``limit``:
one query model (``EventPage``), which FastAPI lists as those four parameters where it
stands in the endpoint's signature. It holds what was asked; the endpoint checks it
(``EventPage.window``, ``EventPage.after``) in its own order.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Final

from fastapi import HTTPException, Query, status
from pydantic import BaseModel

from server.api.cursor import MAX_CURSOR_LENGTH, CursorError, decode_cursor
from server.api.params import DEFAULT_PAGE, Limit, as_utc

MAX_RANGE: Final = timedelta(days=366)
"""Widest ``since``..``until`` window one query may ask for."""


def position(cursor: str | None, name: str) -> tuple[datetime, int] | None:
    """Where the page after ``cursor`` starts (None: at the newest).

    Raises:
        HTTPException: 400 naming the parameter ``name`` when the cursor is not one this
            server issued.
    """
    try:
        return decode_cursor(cursor) if cursor is not None else None
    except CursorError as err:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"bad {name}: {err}") from err


class EventPage(BaseModel):
    """``since``, ``until``, ``cursor`` and ``limit``: which page of the listing."""

    since: Annotated[datetime | None, Query(description="Inclusive; no offset means UTC.")] = None
    until: Annotated[datetime | None, Query(description="Exclusive; no offset means UTC.")] = None
    cursor: Annotated[str | None, Query(min_length=1, max_length=MAX_CURSOR_LENGTH)] = None
    limit: Limit = DEFAULT_PAGE

    def window(self) -> tuple[datetime | None, datetime | None]:
        """``since`` and ``until`` in UTC (either may be open).

        Raises:
            HTTPException: 400 when both are given and ``since`` is not before ``until``, or
                they are more than ``MAX_RANGE`` apart.
        """
        start, end = as_utc(self.since, "since"), as_utc(self.until, "until")
        if start is not None and end is not None:
            if start >= end:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, "since must be before until")
            if end - start > MAX_RANGE:
                raise HTTPException(
                    status.HTTP_400_BAD_REQUEST,
                    f"since..until spans more than {MAX_RANGE.days} days; narrow it",
                )
        return start, end

    def after(self) -> tuple[datetime, int] | None:
        """Where the page starts: after the cursor's row, or at the newest.

        Raises:
            HTTPException: 400 when the cursor is not one this server issued.
        """
        return position(self.cursor, "cursor")


EventPageParams = Annotated[EventPage, Query()]
"""``since``, ``until``, ``cursor`` and ``limit`` as query parameters."""
