"""Why the store refused a request about master data or stock: the caller's mistake, not ours.

These are ``ServerError``s the API turns into 4xx responses with the reason
(``server.api.refusals``): ``Forbidden`` 403 (outside the caller's sites), ``NotFound``
404, ``Conflict`` 409 (the request is well formed but the current state forbids it),
``Invalid`` 422 (a field names something that does not exist or breaks a rule),
``ImportRejected`` 422 with one entry per bad CSV row and field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from server.errors import ServerError


class Refused(ServerError):
    """A request the store refuses; ``reason`` says why, for people."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Forbidden(Refused):
    """The request touches a site the caller's key is not for."""


class NotFound(Refused):
    """The thing the request names does not exist (or is outside the caller's sites)."""


class Conflict(Refused):
    """The request cannot apply to the current state (already reversed, not in stock, ...)."""


class Invalid(Refused):
    """A field of the request is wrong in a way only the store can tell.

    Args:
        field: the request field at fault (``"to_location"``, ``"category"``).
        reason: what is wrong with it.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem in an uploaded CSV file.

    ``row`` counts lines of the file as a spreadsheet does: the header is row 1, the first
    data row is row 2; None for a problem with the whole file. ``field`` is the column.
    """

    row: int | None
    field: str | None
    message: str


class ImportRejected(Refused):
    """A CSV import with errors: nothing was applied; ``errors`` lists every problem found."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        super().__init__(f"import rejected: {len(errors)} error(s); nothing was applied")
        self.errors = list(errors)
