"""Decoding MQTT payloads into wire models, with errors that say what was wrong. No I/O."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from server.errors import ServerError
from wire.models import MAX_PAYLOAD_BYTES

MAX_ERRORS_SHOWN = 5
VALIDATION_ERRORS = (ValidationError, ValueError, OverflowError)
"""What validating a wire model can raise: a timestamp far out of range makes the UTC
conversion raise OverflowError, which pydantic lets through unwrapped."""
ModelT = TypeVar("ModelT", bound=BaseModel)


class PayloadError(ServerError, ValueError):
    """A payload the server cannot use (a ``ValueError`` too: it is bad input).

    Args:
        kind: bounded category for metrics (``size``, ``json``, ``envelope``, ...).
        reason: what was wrong, for people (stored with the dead letter).
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def describe(err: Exception) -> str:
    """A one-line account of a validation error: ``where: what; where: what``."""
    if not isinstance(err, ValidationError):
        return f"{type(err).__name__}: {err}"
    problems = err.errors(include_url=False, include_input=False)
    parts = []
    for problem in problems[:MAX_ERRORS_SHOWN]:
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        parts.append(f"{where}: {problem['msg']}")
    if len(problems) > MAX_ERRORS_SHOWN:
        parts.append(f"and {len(problems) - MAX_ERRORS_SHOWN} more")
    return "; ".join(parts)


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def control_characters(text: str) -> bool:
    """True if ``text`` holds C0 control characters or DEL (NUL cannot be stored at all)."""
    # A regex, not a loop over characters: this runs for every event id and EPC ingested.
    return _CONTROL.search(text) is not None


def may_hold_control_characters(payload: bytes) -> bool:
    """False if no string of the JSON text ``payload`` can hold a control character.

    A JSON string holds one (U+0000 to U+001F) only as an escape, which begins with a
    backslash; DEL (U+007F) it may hold as it is, and in UTF-8 that byte is DEL and nothing
    else. A message with neither byte needs no check of each event's strings.
    """
    return b"\\" in payload or b"\x7f" in payload


def decode_json(payload: bytes, limit: int = MAX_PAYLOAD_BYTES) -> Any:
    """Parse a bounded JSON payload.

    Raises:
        PayloadError: larger than ``limit`` bytes, or not UTF-8 JSON.
    """
    if len(payload) > limit:
        raise PayloadError("size", f"payload of {len(payload)} bytes exceeds {limit} bytes")
    try:
        # The contract is UTF-8; json.loads(bytes) would also guess UTF-16/32.
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PayloadError(
            "json", f"payload is not JSON: not UTF-8 ({err.reason} at byte {err.start})"
        ) from err
    try:
        return json.loads(text)
    except RecursionError as err:
        raise PayloadError("json", "payload is not JSON: nested too deeply") from err
    except ValueError as err:
        raise PayloadError("json", f"payload is not JSON: {err}") from err


def validated(model: type[ModelT], payload: bytes, kind: str, what: str) -> ModelT:
    """``payload`` parsed (``decode_json``) and validated as ``model``.

    Raises:
        PayloadError: ``decode_json``'s, or one of ``kind`` saying ``what``, then the
            validation errors (``describe``).
    """
    data = decode_json(payload)
    try:
        return model.model_validate(data)
    except VALIDATION_ERRORS as err:
        raise PayloadError(kind, f"{what}: {describe(err)}") from err
