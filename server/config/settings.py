"""Server settings: the stable keys of server.toml (docs/architecture.md §6) plus bounded
tuning knobs.

Decisions written down here:

- ``[[api.keys]]`` must hold at least one key, and every key must be at least
  ``MIN_API_KEY_LENGTH`` characters long. The example key ``"change-me"`` is a
  placeholder and is refused on purpose (docs/architecture.md §7: never start on a
  default secret). A key is given either as ``key_sha256`` (the hex SHA-256 of the key; what
  ``stockgate server mint-key`` prints, so the file never holds the key) or as plaintext
  ``key``. Plaintext stays accepted (the demo, tests and existing files use it) but the
  server logs a warning at start-up for each; either way the running server keeps only the
  digests (``server.api.context.KeyRing``). A plain SHA-256 is enough because a key is a
  random secret of at least 128 bits (``mint-key`` makes 256): there is no dictionary to
  search, so a slow password hash would only cost every request.
- A key's ``name`` is what the ledger and the alerts record as the actor of a write; it
  defaults to ``"<role>-<n>"`` (n counting from 1 in file order).
- ``[[read_points]]`` say what a pass at a read point means. An event whose ``read_point``
  is not listed goes to the dead-letter table with the reason ``unknown read point`` (nothing
  is guessed). A read point may name the ``site`` it belongs to; a batch from another site
  that names it is dead-lettered too.
- ``[[gateways]]`` is the gateway registry (docs/architecture.md §4; checked at ingest by
  ``server.ingest.gateway_trust``). Without any entry the server runs open, as the demo and the
  single-box default do: every gateway and read point is taken, and a warning says so at
  start-up.
- ``[mqtt] url = "embedded"`` makes ``stockgate server`` start the in-process broker on
  ``[embedded_broker] port`` (loopback only); the demo passes its own broker's URL instead.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from plumbing.settings import FileSettings, MqttSettings, Section
from server.config.alerts import MAX_WEBHOOKS, AlertSettings, StreamSettings, Webhooks
from server.config.epcis import EpcisSettings
from server.config.history import HistorySettings, InfluxSettings
from server.config.operations import OperationsSettings, OrdersSettings
from server.config.replenishment import ReplenishmentSettings
from server.rules.points import LOCATION_PATTERN, MAX_LOCATION_LENGTH, Outbound
from server.rules.policy import Policy
from wire.models import MAX_PAYLOAD_BYTES
from wire.topics import ID_PATTERN

Role = Literal["viewer", "operator", "admin"]
ROLE_RANK: dict[Role, int] = {"viewer": 0, "operator": 1, "admin": 2}
MIN_API_KEY_LENGTH = 12
MAX_API_KEY_LENGTH = 256
MAX_API_KEYS = 1000
MAX_READ_POINTS = 10_000
MAX_GATEWAYS = 10_000
MAX_BODY_BYTES = 16 * 1024 * 1024
"""Upper bound of ``[api] max_body_bytes``."""
MAX_MISSING_AFTER_S = 30 * 86_400.0

LocationId = Annotated[
    str, Field(pattern=LOCATION_PATTERN, min_length=1, max_length=MAX_LOCATION_LENGTH)
]
ReadPointId = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^\S+$")]
SITE_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
"""A site id: the first segment of a location id."""
SiteId = Annotated[str, Field(pattern=SITE_PATTERN)]
MAX_KEY_SITES = 1000


class DatabaseSettings(Section):
    """``[database]``: SQLite (the default) or PostgreSQL through asyncpg."""

    url: str = Field(
        default="sqlite+aiosqlite:///stockgate.db",
        pattern=r"^(sqlite\+aiosqlite|postgresql\+asyncpg)://",
    )
    """``sqlite+aiosqlite:///<file>`` or ``postgresql+asyncpg://<user>@<host>/<db>``. On
    PostgreSQL each connection must be a session of its own (directly, or a pooler in
    session mode, not transaction mode): the server keeps prepared statements and a
    temporary staging table per connection (``server.store.dialect.STAGED``)."""
    pool_size: int = Field(default=5, ge=1, le=100)
    """Connections kept open to PostgreSQL (SQLite uses one file and ignores it)."""
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)
    command_timeout_s: float = Field(default=150.0, gt=0, le=86_400)
    """PostgreSQL: the client gives up on a statement after this long (asyncpg's
    ``command_timeout``), so a half-open connection after a failover cannot hold the apply
    loop for ever. Keep it above ``statement_timeout_s``: the server's own cancel is the
    cleaner end."""
    statement_timeout_s: float = Field(default=120.0, gt=0, le=86_400)
    """PostgreSQL ``statement_timeout``: the server cancels a statement running longer."""
    idle_in_transaction_timeout_s: float = Field(default=60.0, gt=0, le=86_400)
    """PostgreSQL ``idle_in_transaction_session_timeout``: a session that holds a
    transaction open and idle this long is ended (its locks freed)."""
    tcp_keepalives_idle_s: int = Field(default=30, ge=1, le=7200)
    """PostgreSQL ``tcp_keepalives_idle``: idle seconds before the server probes the link."""
    tcp_keepalives_interval_s: int = Field(default=10, ge=1, le=600)
    """PostgreSQL ``tcp_keepalives_interval``: seconds between unanswered probes."""
    tcp_keepalives_count: int = Field(default=3, ge=1, le=100)
    """PostgreSQL ``tcp_keepalives_count``: unanswered probes before the link is dropped."""
    busy_timeout_s: float = Field(default=30.0, gt=0, le=600)
    """How long a SQLite writer waits for another writer's lock before giving up."""
    sqlite_cache_mb: int = Field(default=64, ge=2, le=4096)
    """SQLite page cache per connection (SQLite's own default is 2 MB). Ingest touches a
    page of each ledger and unit index per item and location every batch; once those stop
    fitting, every insert reads its page back from the OS."""
    sqlite_checkpoint_mb: int = Field(default=64, ge=1, le=4096)
    """WAL size at which the WAL is copied back into the database file (SQLite's default
    is 4 MB): by the write connection's process, right after it answers the commit that
    reached it. A page written by many commits is copied (and fsynced) once per
    checkpoint, so a larger WAL costs the writer less; the WAL file is trimmed back to this
    size after each checkpoint."""
    echo: bool = False


KEY_SHA256_PATTERN = r"^[0-9a-f]{64}$"


class ApiKeySettings(Section):
    """``[[api.keys]]``: one bearer key (plaintext ``key`` or its ``key_sha256``) and role."""

    key: SecretStr | None = None
    key_sha256: str | None = Field(default=None, pattern=KEY_SHA256_PATTERN)
    """Lower-case hex SHA-256 of the key (``stockgate server mint-key`` prints it)."""
    role: Role
    name: str | None = Field(default=None, pattern=ID_PATTERN)
    sites: list[SiteId] = Field(default_factory=list, max_length=MAX_KEY_SITES)
    """Sites (first segment of location ids) this key may see and change; empty = all."""

    @field_validator("key")
    @classmethod
    def _strong_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value()
        if len(secret) < MIN_API_KEY_LENGTH:
            raise ValueError(
                f"API key is shorter than {MIN_API_KEY_LENGTH} characters; placeholders such "
                "as the example 'change-me' are refused. Generate a key with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(24))'"
            )
        if len(secret) > MAX_API_KEY_LENGTH:
            raise ValueError(f"API key is longer than {MAX_API_KEY_LENGTH} characters")
        if not secret.isascii() or not secret.isprintable() or " " in secret:
            raise ValueError("API key must be printable ASCII without spaces")
        return value

    @field_validator("sites")
    @classmethod
    def _sites_unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a site is listed twice in sites")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> ApiKeySettings:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("give each [[api.keys]] entry exactly one of key and key_sha256")
        return self

    def digest(self) -> str:
        """The hex SHA-256 of the key, whichever way the file gave it."""
        if self.key_sha256 is not None:
            return self.key_sha256
        assert self.key is not None  # _one_form
        return hashlib.sha256(self.key.get_secret_value().encode()).hexdigest()


class ApiSettings(Section):
    """``[api]``: where the HTTP API listens and who may use it."""

    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    port: int = Field(default=8000, ge=0, le=65535)
    """0 binds any free port (the bound port is reported once the server is up)."""
    keys: list[ApiKeySettings] = Field(default_factory=list, max_length=MAX_API_KEYS)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=MAX_BODY_BYTES)
    """Largest request body a route takes (CSV imports take ``csv_import.MAX_IMPORT_BYTES``).
    Counted while the body streams in, and no body is read before its key is checked."""
    auth_failures_per_minute: int = Field(default=30, ge=1, le=100_000)
    """Requests with a missing or unknown key one client address may make per minute; past
    that it gets 429 until the minute has passed (a key cannot be guessed by brute force)."""

    @model_validator(mode="after")
    def _keys_usable(self) -> ApiSettings:
        if not self.keys:
            raise ValueError(
                "at least one [[api.keys]] entry (key and role) is required; the server "
                "does not run an API nobody may use"
            )
        digests = [entry.digest() for entry in self.keys]
        if len(set(digests)) != len(digests):
            raise ValueError("two [[api.keys]] entries hold the same key")
        names = self.key_names()
        if len(set(names)) != len(names):
            raise ValueError("two [[api.keys]] entries share a name")
        return self

    def key_names(self) -> list[str]:
        """The actor name of each key, in file order."""
        return [entry.name or f"{entry.role}-{index}" for index, entry in enumerate(self.keys, 1)]


class ReadPointSettings(Section):
    """``[[read_points]]``: what a pass at one read point means for stock."""

    id: ReadPointId
    inbound_location: LocationId
    """Where a pass with direction ``in`` receives the goods."""
    outbound: Outbound = "ship"
    site: str | None = Field(default=None, pattern=ID_PATTERN)
    """The site the read point belongs to; when set, other sites' batches may not name it."""
    missing_after_s: float | None = Field(default=None, gt=0, le=MAX_MISSING_AFTER_S)
    """A shelf read point (continuous counting): a tagged unit in stock that departs here
    (biz step ``departing``) and is read nowhere (nor shipped, picked or moved) for this
    long becomes ``missing`` (a ``shrinkage`` count adjustment, alert ``unit_missing``);
    unset, a departure is only a sighting."""


RESERVED_GATEWAY_IDS = frozenset({"api"})
"""Gateway ids that cannot be enrolled: ``api`` is the prefix of the API's own event ids."""


class GatewaySettings(Section):
    """``[[gateways]]``: one enrolled gateway, the site it belongs to and its read points.

    With at least one ``[[gateways]]`` table the registry is closed: a batch from a gateway
    not listed, from another site than its own, or naming a read point it does not own is
    dead-lettered and alerted, never applied (``server.ingest.gateway_trust``).
    """

    id: str = Field(pattern=ID_PATTERN)
    """The gateway id: its ``[gateway] id``, its broker user name and its topic level."""
    site: SiteId
    """The only site whose topics it may publish on."""
    read_points: list[ReadPointId] = Field(default_factory=list, max_length=MAX_READ_POINTS)
    """The read points whose events this gateway may send."""

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_GATEWAY_IDS:
            raise ValueError(f"gateway id {value!r} is reserved (the API's event ids use it)")
        return value


class IngestSettings(Section):
    """``[ingest]``: how the server takes batches off the broker."""

    shared_subscription: bool = False
    """Subscribe as ``$share/stockgate/...`` so N server instances split the batches."""
    dead_letter_payload_bytes: int = Field(default=65_536, ge=1024, le=MAX_PAYLOAD_BYTES)
    """Payload bytes kept per dead letter (the rest is cut; its full size is recorded)."""
    max_attempts: int = Field(default=3, ge=1, le=10)
    """Tries per batch on a transient database error before leaving it to the edge's resend."""
    max_clock_skew_s: float = Field(default=300.0, ge=1, le=30 * 86_400)
    """An event stamped more than this far ahead of the server's clock is quarantined (a
    ``clock_skew`` dead letter and alert; ``stockgate server replay-dead-letters`` applies
    it once its time has come), so a gateway with a wrong clock cannot decide a unit's
    state from the future."""
    rejects_per_minute: int = Field(default=60, ge=1, le=100_000)
    """Whole messages one gateway (by topic) may have dead-lettered per minute; past that
    they are counted and dropped, so no publisher can fill the disk with dead letters."""
    writers: int = Field(default=3, ge=1, le=16)
    """Write transactions ingest runs at once on PostgreSQL, each on a connection of its
    own (a transaction waits for earlier ones that touch the same units, items or new
    locations: ``server.ingest.write_turns``). SQLite has one writer whatever this says.
    Keep ``[database] pool_size`` above it."""


class RetentionSettings(Section):
    """``[retention]``: how long records are kept (``server.store.retention`` prunes them)."""

    dead_letter_days: int = Field(default=90, ge=1, le=36_500)
    """Dead letters older than this are deleted, replayed or not."""
    batch_days: int = Field(default=90, ge=1, le=36_500)
    """Batch records (the receipt of each batch) older than this are deleted."""
    seen_event_days: int = Field(default=0, ge=0, le=36_500)
    """0: applied event ids are kept for ever (exactly-once needs them while an event can
    still arrive again). Otherwise ids older than this are deleted and ingest refuses events
    older than the same horizon (``stale_event`` dead letters), so a pruned id can never
    let an event apply twice."""
    prune_interval_s: float = Field(default=3600.0, ge=1, le=86_400)
    """How often each server instance prunes."""


class EmbeddedBrokerSettings(Section):
    """``[embedded_broker]``: the in-process broker used when ``[mqtt] url = "embedded"``."""

    port: int = Field(default=1883, ge=1, le=65535)


class ServerSettings(FileSettings):
    """The whole server config file."""

    mqtt: MqttSettings = MqttSettings()
    database: DatabaseSettings = DatabaseSettings()
    api: ApiSettings
    read_points: list[ReadPointSettings] = Field(default_factory=list, max_length=MAX_READ_POINTS)
    gateways: list[GatewaySettings] = Field(default_factory=list, max_length=MAX_GATEWAYS)
    """The gateway registry; empty: open (any gateway, any read point; the demo default)."""
    ingest: IngestSettings = IngestSettings()
    retention: RetentionSettings = RetentionSettings()
    embedded_broker: EmbeddedBrokerSettings = EmbeddedBrokerSettings()
    alerts: AlertSettings = AlertSettings()
    webhooks: Webhooks = Field(default_factory=list, max_length=MAX_WEBHOOKS)
    stream: StreamSettings = StreamSettings()
    operations: OperationsSettings = OperationsSettings()
    orders: OrdersSettings = OrdersSettings()
    history: HistorySettings = HistorySettings()
    influxdb: InfluxSettings | None = None
    """The InfluxDB history sink; absent: no sink (the SQL rollups still follow)."""
    epcis: EpcisSettings = EpcisSettings()
    replenishment: ReplenishmentSettings = ReplenishmentSettings()

    @model_validator(mode="after")
    def _read_points_unique(self) -> ServerSettings:
        seen: set[str] = set()
        for point in self.read_points:
            if point.id in seen:
                raise ValueError(f"read point {point.id!r} is defined twice in [[read_points]]")
            seen.add(point.id)
        ids = [gateway.id for gateway in self.gateways]
        if len(set(ids)) != len(ids):
            raise ValueError("a gateway id is listed twice in [[gateways]]")
        for gateway in self.gateways:
            if len(set(gateway.read_points)) != len(gateway.read_points):
                raise ValueError(f"gateway {gateway.id!r} lists a read point twice")
        return self

    def policy(self) -> Policy:
        """What the stock rules take from ``[operations]`` and ``[orders]``."""
        operations = self.operations
        return Policy(
            min_travel_s=operations.min_travel_s,
            routes={frozenset(route.sites): route.min_s for route in operations.travel},
            pick_zone=operations.pick_zone,
            unexpected_receipts=self.orders.unexpected_receipts,
            unexpected_shipments=self.orders.unexpected_shipments,
            negative_stock=operations.negative_stock,
            negative_stock_sites=dict(operations.negative_stock_sites),
        )

    def read_point_table(self) -> dict[str, ReadPointSettings]:
        """Read points by id."""
        return {point.id: point for point in self.read_points}
