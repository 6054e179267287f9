"""Query parameters shared by several routers, each bounded and validated."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import HTTPException, Query, status

from server.rules.points import LOCATION_PATTERN, MAX_LOCATION_LENGTH

MAX_PAGE = 1000
DEFAULT_PAGE = 100
GTIN_PATTERN = r"^(\d{8}|\d{12}|\d{13}|\d{14})$"
EPC_PATTERN = r"^urn:epc:[A-Za-z0-9:._%-]+$"

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Rows per page, 1..{MAX_PAGE}.")]
Gtin = Annotated[
    str | None,
    Query(pattern=GTIN_PATTERN, description="GTIN-8/12/13/14; shorter ones are zero-padded."),
]
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""Free text without control characters (NUL cannot even be sent to PostgreSQL)."""
Sku = Annotated[str | None, Query(min_length=1, max_length=64, pattern=TEXT_PATTERN)]
Location = Annotated[
    str | None,
    Query(
        pattern=LOCATION_PATTERN,
        max_length=MAX_LOCATION_LENGTH,
        description="A location id; matches the location and everything under it.",
    ),
]
Epc = Annotated[
    str | None,
    Query(min_length=9, max_length=200, pattern=EPC_PATTERN, description="An EPC URN."),
]


def gtin14(gtin: str | None) -> str | None:
    """A GTIN in the 14-digit form the store keeps."""
    return gtin.zfill(14) if gtin is not None else None


def as_utc(value: datetime | None, name: str) -> datetime | None:
    """A timestamp as UTC; one without an offset is taken to be UTC already.

    Raises:
        HTTPException: 400 when the time is out of range once converted to UTC.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as err:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{name} is out of range in UTC") from err
