"""Edge agent settings: the stable keys of edge.toml (docs/architecture.md §6) plus bounded
tuning knobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from plumbing.settings import FileSettings, MqttSettings, Section
from wire.barcodes import COMMAND_PREFIX, LOCATION_PATTERN, LOCATION_PREFIX, MAX_LINE, MAX_LOCATION
from wire.scans import Mode
from wire.topics import ID_PATTERN

Antenna = Annotated[int, Field(ge=1, le=32)]
HexPrefix = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{1,124}$")]
"""Leading hex digits of an EPC (any case; compared in lower case)."""
GpioPort = Annotated[int, Field(ge=1, le=64)]
BizStep = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class GatewaySettings(Section):
    id: str = Field(pattern=ID_PATTERN)
    """This gateway's id: part of every topic and event id; unique across all sites."""
    site: str = Field(pattern=ID_PATTERN)
    """The site (warehouse) the gateway belongs to."""
    wait_for_time_sync_s: float = Field(default=0.0, ge=0, le=86_400)
    """Before stamping any event, wait up to this long for the kernel to report the clock
    synchronised by NTP (``edge.clock_sync``); then start anyway with the critical issue
    ``clock_unsynchronised``. 0: do not check (a box whose clock is right by other means)."""


class BufferSettings(Section):
    """``[buffer]``: the durable outbox."""

    path: Path = Path("edge-outbox.db")
    """SQLite file of the outbox; keep it on storage that survives a reboot."""
    commit_interval_ms: int = Field(default=200, ge=10, le=1000)
    """Longest time a read waits before its event is committed to disk."""
    max_events: int = Field(default=5_000_000, ge=1000)
    """Bound of the outbox; when reached, new events are refused with an alarm (the oldest,
    already-physical movements are kept)."""
    max_uncommitted: int = Field(default=20_000, ge=100, le=1_000_000)
    """Events held in memory while commits fail (a full disk), before new ones are refused
    (the ``outbox_unwritable`` issue says so); bounds what a crash then could lose."""
    max_file_mb: int | None = Field(default=None, ge=1, le=1_000_000)
    """Largest outbox file; past it commits fail as on a full disk. None: the disk only."""
    batch_size: int = Field(default=500, ge=1, le=1000)
    """Events per MQTT message."""
    resend_after_s: float = Field(default=10.0, gt=0, le=3600)
    """A batch with no Ack after this long is sent again (same batch id); each further
    re-send of it waits twice as long, up to ``resend_max_s`` (with jitter)."""
    resend_max_s: float = Field(default=300.0, gt=0, le=86_400)
    """Longest wait between two re-sends of one unacknowledged batch."""
    max_in_flight: int = Field(default=8, ge=1, le=256)
    """Batches published and waiting for their Ack at once."""
    alarm_ratio: float = Field(default=0.8, gt=0, le=1)
    """Share of ``max_events`` at which the "outbox filling" alarm goes off, before any
    event is refused."""
    max_age_s: float = Field(default=86_400.0, gt=0, le=90 * 86_400)
    """Age of the oldest unacknowledged event that raises the backlog alarm (status flag,
    health issue, error log). Old events are never deleted for their age: each one is a
    movement that happened."""
    drain_rate_per_s: float = Field(default=2_000.0, ge=0, le=1_000_000)
    """Most events per second handed to the broker (re-sends and backlog drains included),
    so a gateway coming back from an outage does not flood broker and server; 0: no limit."""


class ReadFilterSettings(Section):
    """``[llrp.filter]``: reads the agent drops in software before any read point sees them."""

    include: list[HexPrefix] = Field(default_factory=list, max_length=64)
    """EPC hex prefixes to keep; empty keeps every EPC not excluded."""
    exclude: list[HexPrefix] = Field(default_factory=list, max_length=64)
    """EPC hex prefixes to drop (wins over ``include``)."""
    min_rssi: float | None = Field(default=None, ge=-200, le=50)
    """Weakest peak RSSI (dBm) kept on any antenna without its own threshold."""
    min_rssi_by_antenna: dict[Antenna, float] = Field(default_factory=dict, max_length=32)
    """Per-antenna thresholds, e.g. ``{ 2 = -65.0 }``."""

    @property
    def active(self) -> bool:
        """Whether any filter is set (an inactive one costs nothing on the hot path)."""
        return bool(
            self.include or self.exclude or self.min_rssi is not None or self.min_rssi_by_antenna
        )


SearchMode = Literal["reader_default", "single_target", "dual_target", "single_target_suppressed"]
"""Impinj inventory search mode (``ImpinjInventorySearchMode``): ``dual_target`` reads
every tag again and again (portals); ``single_target`` reads each tag once per session
persistence (counting a crowd); ``single_target_suppressed`` is Impinj's TagFocus."""


class AntennaRfSettings(Section):
    """``[[llrp.antenna_rf]]``: the RF settings of one antenna, over the reader's own."""

    antenna: Antenna
    tx_power_dbm: float | None = Field(default=None, ge=0, le=40)
    """Transmit power of this antenna (dBm), instead of the reader's ``tx_power_dbm``."""
    rx_sensitivity_db: int | None = Field(default=None, ge=0, le=128)
    """Receive sensitivity of this antenna, instead of the reader's ``rx_sensitivity_db``."""


class LlrpSettings(Section):
    """``[[llrp]]``: one RFID reader.

    The RF keys (``tx_power_dbm`` … ``impinj_extensions``, ``[[llrp.antenna_rf]]``) are
    checked against what the reader says of itself (GET_READER_CAPABILITIES) before
    anything is changed on it; a value the reader cannot take ends the handshake with an
    error naming the key and what the reader offers (the reader's state is ``error``).
    Unset, a key leaves the reader's own setting in force.
    """

    name: str = Field(pattern=ID_PATTERN)
    """The reader's name, used by portals and in every log line."""
    host: str
    """Reader address."""
    port: int = Field(default=5084, ge=1, le=65535)
    """LLRP port (5084 unencrypted)."""
    keepalive_s: float = Field(default=10.0, ge=0.5, le=300)
    """Interval the reader is asked to send KEEPALIVE at; three missed ones end the link."""
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    backoff_initial_s: float = Field(default=0.5, gt=0, le=60)
    backoff_max_s: float = Field(default=30.0, gt=0, le=3600)
    antennas: list[Antenna] = Field(default_factory=list, max_length=32)
    """Antennas to inventory; empty means all the reader has."""
    report_every_n_tags: int = Field(default=0, ge=0, le=10_000)
    report_timeout_ms: int = Field(default=200, ge=0, le=60_000)
    epc_mask: HexPrefix | None = None
    """Reader-side filter: only tags whose EPC bank holds these hex digits at
    ``epc_mask_pointer`` are inventoried (a C1G2Filter in the ROSpec)."""
    epc_mask_pointer: int = Field(default=32, ge=0, le=528)
    """Bit address in the EPC bank where the mask starts; 32 is the first EPC bit (after
    the CRC and the PC word)."""
    filter: ReadFilterSettings = ReadFilterSettings()
    tx_power_dbm: float | None = Field(default=None, ge=0, le=40)
    """Transmit power of every antenna (dBm): the reader's power table entry nearest to it
    is sent (the table's range is checked; it is usually 10..30 dBm in 0.25 dB steps).
    Lower power shortens the read zone: the tool against reads from the next door."""
    rx_sensitivity_db: int | None = Field(default=None, ge=0, le=128)
    """Receive sensitivity, in dB below the reader's best (0: most sensitive), one of the
    values of the reader's ReceiveSensitivityTable: tags answering weaker than that are
    not reported (stray reads from reflections are weak)."""
    rf_mode: int | None = Field(default=None, ge=0, le=0xFFFF)
    """RF mode: a ModeIdentifier of the reader's UHFC1G2RFModeTable (Impinj: 1002
    AutoSet Dense Reader, 2 Miller-4 ...)."""
    session: int = Field(default=1, ge=0, le=3)
    """Gen2 session of the inventory (1: a tag is read again a moment after each read,
    so a portal sees it on both sides)."""
    search_mode: SearchMode = "reader_default"
    """Gen2 search target; set only on readers with Impinj extensions (another reader
    refuses anything but ``reader_default`` at handshake). Portals: ``dual_target``."""
    tag_population: int = Field(default=32, ge=1, le=65_535)
    """Estimated number of tags in view at once (the reader's starting Q)."""
    impinj_extensions: bool = True
    """On an Impinj reader (manufacturer 25882), enable its LLRP extensions and ask for
    peak RSSI in centi-dBm and the RF phase angle of every read; other readers work with
    standard fields only, whatever this says."""
    antenna_rf: list[AntennaRfSettings] = Field(default_factory=list, max_length=32)
    """Per-antenna power and sensitivity, over the reader-wide values."""

    @model_validator(mode="after")
    def _antenna_rf(self) -> LlrpSettings:
        ids = [a.antenna for a in self.antenna_rf]
        if len(set(ids)) != len(ids):
            raise ValueError(f"llrp {self.name}: antenna_rf names an antenna twice: {ids}")
        stray = sorted(set(ids) - set(self.antennas)) if self.antennas else []
        if stray:
            raise ValueError(
                f"llrp {self.name}: antenna_rf names antennas {stray} that are not in "
                f"antennas {sorted(self.antennas)}"
            )
        return self


class LightSettings(Section):
    """``[portals.lights]``: a light stack on the reader's GPO ports."""

    accepted: GpioPort | None = None
    """Pulsed for a pass with a direction and enough confidence."""
    unexpected: GpioPort | None = None
    """Pulsed for a pass without direction or with low confidence, and for a photo-eye
    window that closed with no read."""
    offline: GpioPort | None = None
    """On while the gateway has no broker connection."""
    pulse_s: float = Field(default=2.0, gt=0, le=60)
    """How long ``accepted`` and ``unexpected`` stay on per signal."""
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    """Passes below this confidence light "unexpected" instead of "accepted"."""

    @model_validator(mode="after")
    def _ports(self) -> LightSettings:
        ports = [p for p in (self.accepted, self.unexpected, self.offline) if p is not None]
        if not ports:
            raise ValueError("lights: set at least one of accepted, unexpected, offline")
        if len(set(ports)) != len(ports):
            raise ValueError("lights: accepted, unexpected and offline need their own ports")
        return self


class PortalSettings(Section):
    """``[[portals]]``: a dock door, with the antennas that face each side."""

    read_point: str = Field(min_length=1, max_length=128)
    """Read point id (the server's `[[read_points]]` say what a pass here means)."""
    reader: str
    """Name of the `[[llrp]]` reader whose antennas cover the door."""
    outside_antennas: list[Antenna] = Field(min_length=1, max_length=16)
    """Antennas facing the yard: read first on the way in."""
    inside_antennas: list[Antenna] = Field(min_length=1, max_length=16)
    """Antennas facing the warehouse: read first on the way out."""
    departure_timeout_s: float = Field(default=2.0, gt=0, le=600)
    """A pass ends when its tag has not been read for this long."""
    min_reads: int = Field(default=2, ge=1, le=1000)
    """Fewer reads in a pass give no direction (no stock effect)."""
    max_dwell_s: float = Field(default=30.0, gt=0, le=3600)
    """A tag read on both sides for longer than this is parked in the doorway: no direction."""
    group_hold_s: float = Field(default=1.0, ge=0, le=60)
    """A finished pass waits until no pass of this door has ended for this long, so the
    tags that crossed together are judged as one group (pallet-level direction); 0 judges
    every tag alone."""
    group_confirm_s: float = Field(default=10.0, ge=0, le=600)
    """A tag read on one side only that takes its group's direction is published this much
    later, and keeps its own verdict (none) if the door reads it again meanwhile: goods
    standing beside the door are read again and again, a case that rode the pallet is not.
    Counted in the reader's time (its read timestamps), so a loaded gateway that takes the
    reads in late still sees the re-read."""
    gpi_port: GpioPort | None = None
    """The reader's GPI input wired to this door's photo-eye."""
    gpi_window: bool = False
    """Count reads only while the photo-eye is blocked (plus ``gpi_tail_s``)."""
    gpi_tail_s: float = Field(default=1.0, ge=0, le=60)
    """How long a window stays open after the photo-eye clears."""
    gpi_max_window_s: float = Field(default=300.0, gt=0, le=86_400)
    """A photo-eye blocked for longer is reported (dirty lens, parked pallet)."""
    lights: LightSettings | None = None

    @model_validator(mode="after")
    def _sides_apart(self) -> PortalSettings:
        both = set(self.outside_antennas) & set(self.inside_antennas)
        if both:
            raise ValueError(f"antennas {sorted(both)} are on both sides of the door")
        if self.gpi_window and self.gpi_port is None:
            raise ValueError(f"portal {self.read_point}: gpi_window needs gpi_port")
        return self


class ZoneSettings(Section):
    """``[[zones]]``: a shelf or area reader; a tag arrives when read, departs when gone."""

    read_point: str = Field(min_length=1, max_length=128)
    """Read point id of the zone's reader."""
    reader: str
    """Name of the ``[[llrp]]`` reader whose antennas cover the zone."""
    location: str | None = Field(default=None, min_length=1, max_length=128)
    """Where tags that arrive are (``biz_location`` of arrivals, e.g. ``wh1.aisle.3.bin.2``);
    unset, the server takes the read point's ``inbound_location``."""
    antennas: list[Antenna] = Field(default_factory=list, max_length=32)
    """The antennas covering the zone; empty means every antenna of the reader."""
    departure_timeout_s: float = Field(default=30.0, gt=0, le=86_400)
    """A tag not read for this long has left the zone."""
    min_reads: int = Field(default=1, ge=1, le=1000)
    """Reads before a tag counts as arrived (a stray read from the next shelf is not)."""
    arrive_biz_step: BizStep = "arriving"
    """CBV business step of an arrival event."""
    depart_biz_step: BizStep = "departing"
    """CBV business step of a departure event."""


class DedupeSettings(Section):
    """``[[dedupe]]``: one event per tag (or tag and antenna) per cooldown."""

    read_point: str = Field(min_length=1, max_length=128)
    """Read point id of the events."""
    reader: str
    """Name of the ``[[llrp]]`` reader."""
    antennas: list[Antenna] = Field(default_factory=list, max_length=32)
    """The antennas of this read point; empty means every antenna of the reader."""
    cooldown_s: float = Field(default=10.0, gt=0, le=86_400)
    """After an event for a key, reads of that key make no event for this long."""
    per: Literal["epc", "epc_antenna"] = "epc"
    """The key of a cooldown: ``epc``, or ``epc_antenna`` (antennas watching separate lanes)."""
    biz_step: BizStep = "other"
    """CBV business step of the events."""


class MetricsSettings(Section):
    """``[metrics]``: Prometheus text on ``http://HOST:PORT/metrics``."""

    port: int | None = Field(default=None, ge=0, le=65535)
    """None (the default) serves no metrics; 9108 is the customary port; 0 picks a free one."""
    host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    """Address to listen on; the endpoint has no auth, so keep it local or firewalled."""


MAX_SCANNER_LINE = 4096
"""Upper bound of ``[[scanners]] max_line``."""


class ScannerSettings(Section):
    """``[[scanners]]``: a serial barcode scanner (``wire.barcodes`` says what it sends)."""

    name: str = Field(pattern=ID_PATTERN)
    port: str = Field(min_length=1, max_length=256)
    """The tty, e.g. ``/dev/ttyACM0``; better a stable ``/dev/serial/by-id/...`` link."""
    baudrate: int = Field(default=9600, ge=300, le=4_000_000)
    read_point: str = Field(min_length=1, max_length=128)
    """Where the scanner works; its location until a location label is scanned."""
    bytesize: int = Field(default=8, ge=7, le=8)
    parity: str = Field(default="N", pattern="^[NEO]$")
    stopbits: int = Field(default=1, ge=1, le=2)
    terminator: str | None = Field(default=None, min_length=1, max_length=4)
    """What ends each scan; unset accepts CR, LF or CRLF."""
    prefix: str = Field(default="", max_length=16)
    """Characters the scanner puts before each scan; removed, and a scan without them is
    malformed. Control characters in it (e.g. STX) are stripped like those of the scan."""
    suffix: str = Field(default="", max_length=16)
    """As ``prefix``, after each scan (before the terminator)."""
    symbology_ids: bool = True
    """The scanner sends AIM symbology identifiers (``]C1``...) before the data."""
    location_prefix: str = Field(default=LOCATION_PREFIX, min_length=1, max_length=16)
    command_prefix: str = Field(default=COMMAND_PREFIX, min_length=1, max_length=16)
    default_mode: Mode = "receive"
    """The mode at start (a replugged scanner keeps its mode): receive, pick, move or count."""
    location: str | None = Field(default=None, pattern=LOCATION_PATTERN, max_length=MAX_LOCATION)
    """Where the scanner works until a location label is scanned (a fixed station). Unset,
    its events name no location until one is scanned, and the server takes its read point's
    ``inbound_location``; a count needs a location, scanned or configured."""
    move_from: str | None = Field(default=None, pattern=LOCATION_PATTERN, max_length=MAX_LOCATION)
    """Where moves come from (put-away from a receiving area): each location scanned in move
    mode is then a destination and each item scanned after it moves at once. Unset, a move
    is source label, items, destination label (``edge.scanning``)."""
    max_line: int = Field(default=MAX_LINE, ge=16, le=MAX_SCANNER_LINE)
    """Longest scan in bytes; a longer line is reported as malformed and skipped."""
    line_timeout_s: float = Field(default=2.0, gt=0, le=60)
    """A partial line quiet for this long is reported as cut off and dropped. It is never
    taken as a scan: a cut-off EAN-13 can still read as a valid UPC-A of another item."""
    backoff_initial_s: float = Field(default=0.5, gt=0, le=60)
    backoff_max_s: float = Field(default=10.0, gt=0, le=3600)
    """Reopen delays while the scanner is unplugged or cannot be opened."""

    @model_validator(mode="after")
    def _framing(self) -> ScannerSettings:
        texts = {
            "terminator": self.terminator or "",
            "prefix": self.prefix,
            "suffix": self.suffix,
            "location_prefix": self.location_prefix,
            "command_prefix": self.command_prefix,
        }
        for key, text in texts.items():
            if not text.isascii():
                raise ValueError(f"scanner {self.name}: {key} must be ASCII")
        # Control characters never belong to a scan, so a line may end at one safely.
        if self.terminator is not None and any(
            (ord(c) >= 0x20 and c != "\x7f") or c == "\x1d" for c in self.terminator
        ):
            raise ValueError(
                f"scanner {self.name}: terminator must be control characters other than GS"
            )
        labels = (self.location_prefix, self.command_prefix)
        if labels[0].startswith(labels[1]) or labels[1].startswith(labels[0]):
            raise ValueError(f"scanner {self.name}: location_prefix and command_prefix must differ")
        return self


class RemoteConfigSettings(Section):
    """``[remote_config]``: tuning from the server over the ``config`` topic
    (``edge.remote_config``: readers' and read points' settings, never identity,
    credentials or the broker address)."""

    enabled: bool = True
    """Take the server's configurations; false runs this file alone."""
    path: Path | None = None
    """Where the last configuration that applied is kept, to start with it after a
    restart; unset: beside the outbox, its name plus ``.remote-config.json``."""


class StatusSettings(Section):
    interval_s: float = Field(default=10.0, ge=0.5, le=3600)


class EdgeSettings(FileSettings):
    """The whole edge config file."""

    gateway: GatewaySettings
    mqtt: MqttSettings = MqttSettings()
    buffer: BufferSettings = BufferSettings()
    llrp: list[LlrpSettings] = Field(default_factory=list, max_length=64)
    portals: list[PortalSettings] = Field(default_factory=list, max_length=64)
    scanners: list[ScannerSettings] = Field(default_factory=list, max_length=64)
    status: StatusSettings = StatusSettings()
    zones: list[ZoneSettings] = Field(default_factory=list, max_length=64)
    dedupe: list[DedupeSettings] = Field(default_factory=list, max_length=64)
    metrics: MetricsSettings = MetricsSettings()
    remote_config: RemoteConfigSettings = RemoteConfigSettings()

    @property
    def remote_config_path(self) -> Path | None:
        """The file of the last good remote configuration; None when remote config is off."""
        remote = self.remote_config
        if not remote.enabled:
            return None
        if remote.path is not None:
            return remote.path
        outbox = self.buffer.path
        return outbox.with_name(f"{outbox.name}.remote-config.json")

    @model_validator(mode="after")
    def _read_points(self) -> EdgeSettings:
        names = {reader.name for reader in self.llrp}
        points: list[str] = []
        for table, entries in (
            ("portals", self.portals),
            ("zones", self.zones),
            ("dedupe", self.dedupe),
        ):
            for entry in entries:
                points.append(entry.read_point)
                if entry.reader not in names:
                    raise ValueError(
                        f"[[{table}]] {entry.read_point!r} names reader {entry.reader!r}, "
                        f"which no [[llrp]] defines"
                    )
        twice = sorted({p for p in points if points.count(p) > 1})
        if twice:
            raise ValueError(f"read points {twice} are defined more than once")
        return self

    @model_validator(mode="after")
    def _scanner_names(self) -> EdgeSettings:
        names = [scanner.name for scanner in self.scanners]
        taken = set(names) & {reader.name for reader in self.llrp}
        if len(set(names)) != len(names) or taken:
            raise ValueError("every [[scanners]] name must differ from the others and from readers")
        return self

    @model_validator(mode="after")
    def _references(self) -> EdgeSettings:
        names = [reader.name for reader in self.llrp]
        if len(set(names)) != len(names):
            raise ValueError("two [[llrp]] readers share a name")
        for portal in self.portals:
            if portal.reader not in names:
                raise ValueError(
                    f"portal {portal.read_point!r} names reader {portal.reader!r}, "
                    f"which no [[llrp]] defines"
                )
        return self
