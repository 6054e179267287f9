"""Opaque cursors over a text key (SKU, location id, ...) for lists ordered by that key."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import HTTPException, Query, status

MAX_KEY_CURSOR = 400
KeyCursor = Annotated[
    str | None, Query(min_length=1, max_length=MAX_KEY_CURSOR, pattern=r"^[A-Za-z0-9_-]+$")
]
"""The ``cursor`` query parameter of a list by key: what ``encode_key`` made, or nothing."""


def encode_key(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_key(cursor: str | None) -> str | None:
    """The key a cursor stands for (None for None).

    Raises:
        HTTPException: 400 when the cursor is not one this server issued.
    """
    if cursor is None:
        return None
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as err:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "bad cursor: not one this server issued"
        ) from err
    if not key or "\x00" in key:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "bad cursor: not one this server issued")
    return key
