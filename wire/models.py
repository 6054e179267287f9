"""Payload models of wire contract v1 (docs/architecture.md §5).

Field names follow GS1 EPCIS 2.0 where one exists, in snake_case. Every model forbids
unknown fields and bounds its collections, so a payload from the network is either a
valid value or a ValidationError that names the field.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timezone, tzinfo
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic_core import TzInfo

from wire.topics import ID_PATTERN

WIRE_VERSION: Literal[1] = 1
MAX_BATCH_EVENTS = 1000
"""Upper bound of events in one EventBatch; the edge sends at most this many per message."""
MAX_PAYLOAD_BYTES = 1_048_576
"""Largest MQTT payload either side accepts; a full batch of LLRP passes is about 500 kB."""
MAX_ACK_BATCHES = 256
MAX_ANTENNAS = 32
MAX_READERS = 64
MAX_TEXT = 256
MAX_EPC_URI = 200
MAX_COUNT_LINES = 1000
"""Most lines (distinct item, lot, serial, expiry) one cycle count event lists."""
COUNT_STEP = "cycle_counting"

Action = Literal["OBSERVE", "ADD", "DELETE"]
Direction = Literal["in", "out"]
Source = Literal["llrp", "serial"]
GatewayState = Literal["online", "offline"]
Severity = Literal["info", "warning", "critical"]
AlertChange = Literal["opened", "updated", "cleared", "acknowledged"]
AlertState = Literal["open", "acknowledged", "closed"]


_FIXED_OFFSETS = (timezone, TzInfo)
"""The tzinfo classes of a fixed offset (pydantic's for parsed times): one found to be UTC
is UTC for every time."""
_known_utc: list[tzinfo] = [UTC]
"""The last fixed-offset tzinfo found to be UTC. Pydantic gives every time it parses with
"Z" one and the same, so the offset of most times need not be asked (a fifth of ``_utc``,
three times an event)."""


def _utc(value: datetime) -> datetime:
    zone = value.tzinfo
    if zone is not _known_utc[0]:
        offset = value.utcoffset()
        if offset is None:
            raise ValueError("timestamp must carry a UTC offset")
        # A time given in UTC ("Z", as the edge writes it) is kept as parsed (its tzinfo is
        # pydantic's UTC, equal in every use): converting it anyway took a fifth of
        # validating a benchmark batch (7.7 against 6.3 µs an event), three times an event.
        if offset:
            try:
                value = value.astimezone(UTC)
            except OverflowError as err:
                raise ValueError("timestamp is outside the range a UTC time can hold") from err
        elif isinstance(zone, _FIXED_OFFSETS):
            _known_utc[0] = zone
    # The contract carries milliseconds; drop anything finer so both sides agree.
    # (replace() is the dear part of this validator; most values need none.)
    finer = value.microsecond % 1000
    return value.replace(microsecond=value.microsecond - finer) if finer else value


UtcMillis = Annotated[datetime, AfterValidator(_utc)]
Id = Annotated[str, Field(pattern=ID_PATTERN)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


def now_utc() -> datetime:
    """The current time, UTC, at millisecond precision."""
    return _utc(datetime.now(UTC))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Reason = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
OffsetMs = Annotated[int, Field(ge=-3_600_000, le=3_600_000)]
"""Milliseconds from the pass's ``first_seen`` (a reader's jitter can make it negative)."""
PortalSide = Literal["outside", "inside"]


class SideEvidence(_Model):
    """What one side of a portal (its outside or inside antennas) saw of one tag's pass.

    Times are ``OffsetMs`` from the pass's ``first_seen``. "Strong" reads are those whose
    smoothed RSSI came within the portal's strong margin of the pass's strongest: the
    moments the tag was near this side's antennas.
    """

    count: int = Field(ge=0)
    first_ms: OffsetMs
    last_ms: OffsetMs
    centroid_ms: OffsetMs
    """Read-count weighted mean time of the reads."""
    rssi_centroid_ms: OffsetMs | None = None
    """Mean time weighted by received power (a weak stray read weighs almost nothing)."""
    peak_rssi: float | None = Field(default=None, ge=-200, le=50)
    peak_ms: OffsetMs | None = None
    """When the smoothed RSSI peaked (the tag was nearest this side)."""
    trend_db_per_s: float | None = Field(default=None, ge=-1000, le=1000)
    """Least-squares slope of RSSI over the pass: rising (> 0) or falling."""
    first_strong_ms: OffsetMs | None = None
    last_strong_ms: OffsetMs | None = None


class ReadEvidence(_Model):
    """What the reader saw of one tag during one pass or dwell."""

    count: int = Field(ge=1)
    antennas: list[Annotated[int, Field(ge=0, le=65535)]] = Field(
        min_length=1, max_length=MAX_ANTENNAS
    )
    peak_rssi: float | None = Field(default=None, ge=-200, le=50)
    first_seen: UtcMillis
    last_seen: UtcMillis
    outside_count: int | None = Field(default=None, ge=0)
    """Portal passes: reads on the antennas facing out (the direction's evidence)."""
    inside_count: int | None = Field(default=None, ge=0)
    """Portal passes: reads on the antennas facing in."""
    reason: Reason | None = None
    """Why a portal pass has no direction. The tag did not cross: ``one_side`` (only one
    side read it: staged beside the door, cross traffic) or ``returned`` (it came and left
    on the same side: entered part way and backed out). Unknown whether or which way it
    crossed: ``too_few_reads``, ``no_separation`` (the sides' evidence does not tell
    which came first), ``conflict`` (the evidence contradicts itself), ``group_conflict``
    (its own weak evidence contradicts its confident group) or ``parked`` (read on both
    sides for longer than the door's ``max_dwell_s``)."""
    outside: SideEvidence | None = None
    """Portal passes: the outside antennas' view of the pass (None: they never read it)."""
    inside: SideEvidence | None = None
    last_strong: list[PortalSide] | None = Field(default=None, max_length=2)
    """Portal passes: the sides in the order they last saw the tag with strong signal
    (the last one is where the tag went)."""
    decided_by: Literal["tag", "group"] | None = None
    """Portal passes with a direction: from the tag's own reads, or from its group's
    (the tag's own evidence was too weak, and did not contradict the group)."""
    group_size: int | None = Field(default=None, ge=1, le=100_000)
    """Portal passes in a group: how many tags crossed together."""

    @model_validator(mode="after")
    def _ordered(self) -> ReadEvidence:
        if self.last_seen < self.first_seen:
            raise ValueError("last_seen is before first_seen")
        return self


class Quantity(_Model):
    """A class-level identity with a count, from a barcode scan."""

    gtin: Annotated[str, Field(pattern=r"^\d{14}$")]
    lot: Text | None = None
    serial: Text | None = None
    qty: int = Field(default=1, ge=1, le=1_000_000)
    expiry: date | None = None
    """GS1 AI 17 (use by / expiry date), when the barcode carries one."""


class Event(_Model):
    """One business event (an EPCIS ObjectEvent).

    It identifies what it is about in exactly one way: one tagged unit (``epc``), one
    barcode ``quantity``, or, for a cycle count (``biz_step`` ``cycle_counting``, action
    ``OBSERVE``), ``quantities``: everything counted at ``biz_location``, one line per
    item, lot, serial and expiry; an empty list says the location was counted empty.
    """

    event_id: Annotated[str, Field(min_length=3, max_length=MAX_TEXT)]
    event_time: UtcMillis
    type: Literal["ObjectEvent"] = "ObjectEvent"
    action: Action = "OBSERVE"
    biz_step: Text
    read_point: Text
    biz_location: Text | None = None
    """Where the goods are after the event (EPCIS ``bizLocation``)."""
    source_location: Text | None = None
    """Where the goods were before it: EPCIS ``sourceList`` entry of type ``location`` (a
    move from one location to another; see ``edge.scanning``)."""
    epc: (
        Annotated[str, Field(min_length=9, max_length=MAX_EPC_URI, pattern=r"^urn:epc:")] | None
    ) = None
    quantity: Quantity | None = None
    quantities: list[Quantity] | None = Field(default=None, max_length=MAX_COUNT_LINES)
    direction: Direction | None = None
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)
    reads: ReadEvidence | None = None
    source: Source
    group: Text | None = None
    """Portal passes: the id of the group (a pallet or a cart) of tags that crossed the same
    read point together; every event of one group carries the same id, unique per gateway."""

    @model_validator(mode="after")
    def _one_identity(self) -> Event:
        # (Counted without a generator: this runs for every event the server takes in.)
        given = (self.epc is not None) + (self.quantity is not None) + (self.quantities is not None)
        if given != 1:
            raise ValueError(
                "an event carries exactly one of epc and quantity (or quantities, for a count)"
            )
        if self.quantities is not None and (
            self.biz_step != COUNT_STEP or self.action != "OBSERVE" or self.direction is not None
        ):
            raise ValueError(
                f"quantities belong to a count: biz_step {COUNT_STEP!r}, action 'OBSERVE', "
                "no direction"
            )
        if self.quantities is not None and self.biz_location is None:
            raise ValueError("a count names the location it counted (biz_location)")
        return self


Epoch = Annotated[str, Field(pattern=r"^[0-9a-f]{8,32}$")]
BatchId = Annotated[str, Field(min_length=3, max_length=MAX_TEXT)]


class BatchHeader(_Model):
    """Who sent a batch and which range of its outbox sequence it covers."""

    version: Literal[1] = 1
    batch_id: BatchId
    site: Id
    gateway: Id
    epoch: Epoch
    seq_first: int = Field(ge=1)
    seq_last: int = Field(ge=1)
    sent_at: UtcMillis

    @model_validator(mode="after")
    def _range(self) -> BatchHeader:
        if self.seq_last < self.seq_first:
            raise ValueError("seq_last is below seq_first")
        return self


class EventBatch(BatchHeader):
    """Events from one gateway, covering a contiguous range of its outbox sequence."""

    events: list[Event] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class BatchEnvelope(BatchHeader):
    """An EventBatch with its events left unvalidated.

    The server validates each event on its own, so one invalid event goes to the
    dead-letter table without rejecting its neighbours.
    """

    events: list[dict[str, object]] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class AckedBatch(_Model):
    batch_id: BatchId
    epoch: Epoch
    seq_first: int = Field(ge=1)
    seq_last: int = Field(ge=1)


MAX_ACK_REFUSED = 100
"""Refused events one Ack lists at most (the rest are counted in ``refused_more``)."""


class RefusedEvent(_Model):
    """An event of an acknowledged batch that the server refused to apply (kept as a dead
    letter): the edge shows ``reason`` on the scanner or reader it came from."""

    event_id: Annotated[str, Field(min_length=3, max_length=MAX_TEXT)]
    read_point: Text
    reason: Annotated[str, Field(min_length=1, max_length=1000)]


class Ack(_Model):
    """The batches the server has committed; the edge may now delete them."""

    version: Literal[1] = 1
    gateway: Id
    batches: list[AckedBatch] = Field(min_length=1, max_length=MAX_ACK_BATCHES)
    refused: list[RefusedEvent] = Field(default_factory=list, max_length=MAX_ACK_REFUSED)
    """Events of these batches the server refused (negative stock where a site refuses it)."""
    refused_more: int = Field(default=0, ge=0)
    """Refused events beyond those listed."""


class ReaderStatus(_Model):
    name: Text
    kind: Literal["llrp", "serial"]
    state: Literal["connecting", "connected", "disconnected", "error"]
    last_error: Annotated[str, Field(max_length=1000)] | None = None
    reads_per_s: float = Field(default=0.0, ge=0)
    antenna_reads_per_s: dict[str, float] = Field(default_factory=dict)
    antennas_disconnected: list[Annotated[int, Field(ge=0, le=65535)]] = Field(
        default_factory=list, max_length=MAX_ANTENNAS
    )
    """Antennas the reader last reported as disconnected (AntennaEvent)."""
    exceptions: int = Field(default=0, ge=0)
    """Reader exception events (ReaderExceptionEvent, report buffer warnings) since start."""
    antennas: list[Annotated[int, Field(ge=0, le=65535)]] = Field(
        default_factory=list, max_length=MAX_ANTENNAS
    )
    """The antennas the gateway's config uses on this reader (empty: all it has, or none
    named, e.g. a scanner)."""


MAX_ISSUES = 128


class HealthIssue(_Model):
    """A condition on a gateway that deserves an alert, listed while it lasts.

    The gateway cannot publish on the alerts topic (server to all), so it lists its
    problems in its retained status; the server opens an alert per ``(kind, subject)``
    that appears and closes it when a later status no longer lists it.
    """

    kind: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    """e.g. ``reader_down``, ``antenna_disconnected``, ``reader_exception``,
    ``outbox_filling``, ``outbox_full``, ``outbox_backlog_old``, ``unread_window``."""
    subject: Text
    """What it is about: a reader name, ``reader/antenna N``, a read point, ``outbox``."""
    severity: Severity
    message: Annotated[str, Field(max_length=1000)]
    since: UtcMillis
    count: int = Field(default=1, ge=1)
    """How often it happened while listed (repeating events such as unread windows)."""


class Status(_Model):
    """Retained gateway status; the last will publishes the same with state offline."""

    version: Literal[1] = 1
    gateway: Id
    site: Id
    state: GatewayState
    at: UtcMillis
    readers: list[ReaderStatus] = Field(default_factory=list, max_length=MAX_READERS)
    buffer_depth: int = Field(default=0, ge=0)
    buffer_full: bool = False
    """The outbox reached its bound and refuses new events (an alarm; see edge.buffer)."""
    events_refused: int = Field(default=0, ge=0)
    oldest_unacked_age_s: float | None = Field(default=None, ge=0)
    reads_per_s: float = Field(default=0.0, ge=0)
    buffer_age_alarm: bool = False
    """The oldest unacknowledged event is older than the edge's ``[buffer] max_age_s``."""
    unread_windows: int = Field(default=0, ge=0)
    """Photo-eye read windows that closed with no read (a pallet went through unread)."""
    issues: list[HealthIssue] = Field(default_factory=list, max_length=MAX_ISSUES)
    cpu_percent: float | None = Field(default=None, ge=0)
    """Process CPU use since the previous status, in percent of one core."""
    rss_bytes: int | None = Field(default=None, ge=0)
    """Resident memory of the process."""
    uptime_s: float | None = Field(default=None, ge=0)
    software_version: Annotated[str, Field(max_length=64)] | None = None
    """The gateway's stockgate release (``stockgate --version``); ``version`` above is the
    format of this message, not the software."""
    config_version: int | None = Field(default=None, ge=1)
    """The remote configuration version the gateway runs (``GatewayConfig``); None: only
    its local config file."""
    config_rejected: ConfigRejection | None = None
    """The last remote configuration the gateway refused, and why; None once a later one
    applied."""
    disk_free_bytes: int | None = Field(default=None, ge=0)
    """Free space on the file system of the outbox."""
    cpu_temp_c: float | None = Field(default=None, ge=-100, le=200)
    """CPU temperature where the board reports one (``/sys/class/thermal``)."""
    throttled: list[ThrottleFlag] | None = None
    """Raspberry Pi firmware conditions now (under-voltage, frequency capped, throttled,
    soft temperature limit); None where the board does not report them."""
    throttled_since_boot: list[ThrottleFlag] | None = None
    """The same conditions, as having happened at any time since boot."""


ThrottleFlag = Literal["under_voltage", "arm_freq_capped", "throttled", "soft_temp_limit"]


class ConfigRejection(_Model):
    """A remote configuration a gateway refused."""

    config_version: int | None = Field(default=None, ge=1)
    """Its version, when the message said one."""
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    at: UtcMillis


MAX_CONFIG_BYTES = 262_144
"""Largest remote configuration message either side accepts."""


class GatewayConfig(_Model):
    """Remote tuning of one gateway, on its ``config`` topic (retained, QoS 1).

    ``settings`` holds tables of the edge's own config models (read points' antennas and
    sides, filters, thresholds, dedupe and zone settings, reader tuning); the edge
    validates them against its settings models merged over its local file, which stays
    the source of identity, credentials and the broker address (``edge.remote_config``).
    The wire checks only the envelope: the edge is the judge of its own settings.
    """

    version: Literal[1] = 1
    gateway: Id
    site: Id
    config_version: int = Field(ge=1)
    """Increases by one with every change the server records for this gateway."""
    issued_at: UtcMillis
    issued_by: Annotated[str, Field(max_length=MAX_TEXT)] | None = None
    settings: dict[str, object] = Field(max_length=16)


class Alert(_Model):
    version: Literal[1] = 1
    id: int
    kind: Text
    severity: Severity
    subject: Text
    message: Annotated[str, Field(max_length=2000)]
    opened_at: UtcMillis
    site: Id | None = None
    evidence: dict[str, object] = Field(default_factory=dict)
    change: AlertChange | None = None
    """On the alerts topic: what happened to the alert in this message."""
    event_id: int | None = None
    """On the alerts topic: increases with every change the server records."""
    state: AlertState | None = None
    updated_at: UtcMillis | None = None
    closed_at: UtcMillis | None = None
    acknowledged_at: UtcMillis | None = None
    acknowledged_by: Annotated[str, Field(max_length=MAX_TEXT)] | None = None
    count: int = Field(default=1, ge=1)
    """How often the condition was seen while the alert was open."""
