"""Edge agent settings: the keys of DESIGN.md section 6 plus bounded tuning knobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from stockgate.settings import FileSettings, MqttSettings, Section
from wire.topics import ID_PATTERN

Antenna = Annotated[int, Field(ge=1, le=32)]


class GatewaySettings(Section):
    id: str = Field(pattern=ID_PATTERN)
    site: str = Field(pattern=ID_PATTERN)


class BufferSettings(Section):
    """``[buffer]``: the durable outbox."""

    path: Path = Path("edge-outbox.db")
    commit_interval_ms: int = Field(default=200, ge=10, le=1000)
    max_events: int = Field(default=5_000_000, ge=1000)
    batch_size: int = Field(default=500, ge=1, le=1000)
    resend_after_s: float = Field(default=10.0, gt=0, le=3600)
    max_in_flight: int = Field(default=8, ge=1, le=256)


class LlrpSettings(Section):
    """``[[llrp]]``: one RFID reader."""

    name: str = Field(pattern=ID_PATTERN)
    host: str
    port: int = Field(default=5084, ge=1, le=65535)
    keepalive_s: float = Field(default=10.0, ge=0.5, le=300)
    """Interval the reader is asked to send KEEPALIVE at; three missed ones end the link."""
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    backoff_initial_s: float = Field(default=0.5, gt=0, le=60)
    backoff_max_s: float = Field(default=30.0, gt=0, le=3600)
    antennas: list[Antenna] = Field(default_factory=list, max_length=32)
    """Antennas to inventory; empty means all the reader has."""
    report_every_n_tags: int = Field(default=0, ge=0, le=10_000)
    report_timeout_ms: int = Field(default=200, ge=0, le=60_000)


class PortalSettings(Section):
    """``[[portals]]``: a dock door, with the antennas that face each side."""

    read_point: str = Field(min_length=1, max_length=128)
    reader: str
    outside_antennas: list[Antenna] = Field(min_length=1, max_length=16)
    inside_antennas: list[Antenna] = Field(min_length=1, max_length=16)
    departure_timeout_s: float = Field(default=2.0, gt=0, le=600)
    min_reads: int = Field(default=2, ge=1, le=1000)

    @model_validator(mode="after")
    def _sides_apart(self) -> PortalSettings:
        both = set(self.outside_antennas) & set(self.inside_antennas)
        if both:
            raise ValueError(f"antennas {sorted(both)} are on both sides of the door")
        return self


class ScannerSettings(Section):
    """``[[scanners]]``: a serial barcode scanner."""

    name: str = Field(pattern=ID_PATTERN)
    port: str
    baudrate: int = Field(default=9600, ge=300, le=4_000_000)
    read_point: str = Field(min_length=1, max_length=128)


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
