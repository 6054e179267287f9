"""``[history]`` and ``[influxdb]``: how the ledger followers run and where the sink writes.

The SQL rollups follow the ledger whenever the server runs (``[history] enabled``); the
InfluxDB sink only when an ``[influxdb]`` table is present. Its token comes from the
environment (``STOCKGATE_INFLUXDB__TOKEN``, like every other override) so the file holds no
secret; InfluxDB 3 and VictoriaMetrics accept writes without one.
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from plumbing.settings import Section

MAX_FOLLOW_ROWS = 50_000
MAX_REPORT_WORKERS = 16


class HistorySettings(Section):
    """``[history]``: the ledger followers (rollups, and the InfluxDB sink when configured)."""

    enabled: bool = True
    """Follow the ledger in this server instance. With several instances only one follows
    at a time (a lease in ``history_cursors``); turning it off on all stops the history."""
    batch_rows: int = Field(default=5000, ge=1, le=MAX_FOLLOW_ROWS)
    """Ledger rows read and handed to a sink per step (one transaction for the rollups)."""
    poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    """Wait between reads once a follower has caught up with the ledger."""
    lease_s: float = Field(default=30.0, ge=1, le=600)
    """How long a follower's lease lasts without renewal; another instance takes over after
    it runs out (a crashed instance is replaced within this time)."""
    gap_settle_s: float = Field(default=1.0, ge=0, le=60)
    """PostgreSQL: how long a ledger id missing below newer ones is waited for before the
    follower asks which transactions could still commit it (see ``server.history.follow``)."""
    retry_s: float = Field(default=5.0, gt=0, le=600)
    """Wait before trying again after the database or a sink failed."""
    report_workers: int = Field(default=1, ge=0, le=MAX_REPORT_WORKERS)
    """Processes besides the API's own that each compute a share of the items of a
    whole-ledger report (stock value, turnover, aging, ABC/XYZ, losses), so a report uses
    more than one core (``server.reports.shards``). 0: the API's process alone."""
    defer_to_ingest_s: float = Field(default=5.0, ge=0, le=300)
    """While this instance's ingest is busy, a follower waits up to this long before it
    follows (then it catches up with the ledger before it waits again): history lags a
    burst of batches by at most about this much, and ingest has the database (SQLite's one
    writer) and the event loop to itself meanwhile. 0: follow at once, alongside ingest."""


class InfluxSettings(Section):
    """``[influxdb]``: the InfluxDB 2/3 (or VictoriaMetrics) the history sink writes to."""

    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    """Base URL of the InfluxDB (or VictoriaMetrics) HTTP API, e.g. ``http://127.0.0.1:8086``."""
    org: str = Field(min_length=1, max_length=256)
    """The organization the bucket belongs to (InfluxDB 3 and VictoriaMetrics ignore it)."""
    bucket: str = Field(min_length=1, max_length=256)
    """Where the points go (InfluxDB 3: the database)."""
    token: SecretStr | None = None
    """Set it through ``STOCKGATE_INFLUXDB__TOKEN``, not in the file."""
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    """One write request, at most."""
    batch_points: int = Field(default=5000, ge=1, le=100_000)
    """Points per write request (a step's points go to the client's batching write API in
    chunks of this many lines)."""
    gzip: bool = True
    """Compress write requests (line protocol compresses about tenfold)."""
    sample_interval_s: float = Field(default=60.0, ge=1, le=3600)
    """How often stock levels and gateway health are sampled into the sink."""
