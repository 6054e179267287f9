"""The server's exception tree.

``ServerError`` is the root. Storage problems are ``StoreError`` (wrapping SQLAlchemy's
``DBAPIError`` with ``raise ... from``); ``TransientStoreError`` marks the kind worth a retry
(a lock, a deadlock, a dropped connection), ``StoreFull`` the one that lasts until the disk
has room again. ``PublishFailed`` is what a publisher raises when
an Ack or alert did not reach the broker; the edge re-sends, so the server only logs it.
"""

from __future__ import annotations


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
