"""Opaque cursors over a text key (SKU, location id, ...) for lists ordered by that key."""

from __future__ import annotations

import base64
import binascii

from fastapi import HTTPException, status

MAX_KEY_CURSOR = 400


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
