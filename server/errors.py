"""The server's exception tree.

``ServerError`` is the root. Storage problems are ``StoreError`` (wrapping SQLAlchemy's
``DBAPIError`` with ``raise ... from``); ``TransientStoreError`` marks the kind worth a retry
(a lock, a deadlock, a dropped connection), ``StoreFull`` the one that lasts until the disk
has room again. ``PublishFailed`` is what a publisher raises when
an Ack or alert did not reach the broker; the edge re-sends, so the server only logs it.

``Refused`` and its kinds say why the store refused a request about master data or stock: the
caller's mistake, not ours. The API turns them into 4xx responses with the reason
(``server.api.errors``): ``Forbidden`` 403 (outside the caller's sites), ``NotFound`` 404,
``Conflict`` 409 (the request is well formed but the current state forbids it), ``Invalid``
422 (a field names something that does not exist or breaks a rule), ``ImportRejected`` 422
with one entry per bad CSV row and field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ServerError(Exception):
    """Base of every error the server raises on purpose."""


class StoreError(ServerError):
    """The database refused or failed an operation."""


class TransientStoreError(StoreError):
    """A database failure that may pass on retry (lock, deadlock, lost connection)."""


class StoreFull(TransientStoreError):
    """The database refused a write for lack of space (SQLite's ``SQLITE_FULL``, PostgreSQL's
    ``disk_full``). It passes when space returns; until then every write fails alike, so a
    caller does not retry at once (ingest leaves the batch unacknowledged: the gateway keeps
    it and re-sends)."""


class PublishFailed(ServerError):
    """A message (Ack, alert) could not be published; the caller logs and moves on."""


class SinkUnavailable(ServerError):
    """A history sink (InfluxDB) did not take a write; the follower keeps its position and
    tries again later, so nothing is lost."""


class LeaseLost(ServerError):
    """Another instance took a history follower's lease; this instance stops following."""


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
