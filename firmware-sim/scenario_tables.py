"""The tables of a scenario file, one pydantic model per entry (see ``scenario_model``
for the file as a whole).

Each model checks what it can see on its own: ranges, patterns, keys that go together.
Whether the names an entry uses exist (pallets, doors, scanners, shelves) is the
scenario's business, checked as it is planned (``scenario_plan``).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from firmware_sim.barcode_symbols import ScannerStyle, parse_terminator
from firmware_sim.portal_door import Direction, Side
from firmware_sim.profile import R420
from wire.barcodes import LOCATION_PATTERN
from wire.gs1 import with_check_digit

ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
DEFAULT_SCANNER: Final = "handheld-1"


class SpecModel(BaseModel):
    """A scenario table: unknown keys are errors, and nothing changes once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ReaderSpec(SpecModel):
    """``[reader]``: the simulated reader at the door and which antennas face where."""

    name: str = Field(default="dock1", pattern=ID_PATTERN)
    antennas: int = Field(default=2, ge=1, le=8)
    outside_antennas: tuple[int, ...] = Field(default=(1,), min_length=1, max_length=8)
    inside_antennas: tuple[int, ...] = Field(default=(2,), min_length=1, max_length=8)
    photo_eye_gpi: int | None = Field(default=None, ge=1, le=R420.gpis)
    """GPI port of a photo-eye across the door (high while a pallet is in the door)."""
    timestamp_jitter_ms: float = Field(default=0.0, ge=0, le=500)
    """Noise (standard deviation) on each read's timestamp, as a busy reader stamps them."""

    @model_validator(mode="after")
    def _antennas_fit(self) -> ReaderSpec:
        both = set(self.outside_antennas) & set(self.inside_antennas)
        if both:
            raise ValueError(f"antennas {sorted(both)} are on both sides of the door")
        beyond = sorted(
            a
            for a in (*self.outside_antennas, *self.inside_antennas)
            if not 1 <= a <= self.antennas
        )
        if beyond:
            raise ValueError(f"antennas {beyond} outside the reader's 1..{self.antennas}")
        return self


class PortalSpec(SpecModel):
    """``[portal]``: geometry and RF of the door (defaults suit a 3 m/s forklift)."""

    outside_x_m: float = Field(default=-0.5, ge=-10, lt=0)
    inside_x_m: float = Field(default=0.5, gt=0, le=10)
    approach_m: float = Field(default=2.5, gt=0, le=100)
    p0: float = Field(default=0.98, gt=0, le=1)
    d0_m: float = Field(default=0.38, gt=0, le=10)
    min_probability: float = Field(default=0.01, gt=0, lt=1)
    spread_m: float = Field(default=0.3, ge=0, le=2)
    lateral_m: float = Field(default=0.2, ge=0.05, le=3)
    rssi_near_dbm: float = Field(default=-40.0, ge=-100, le=0)
    rssi_far_dbm: float = Field(default=-75.0, ge=-120, le=0)
    far_m: float = Field(default=2.0, gt=0, le=100)
    rssi_noise_db: float = Field(default=1.5, ge=0, le=20)
    stray_probability: float = Field(default=0.0, ge=0, le=0.5)
    """Multipath: chance per antenna and round of a weak read of a tag it cannot see."""
    stray_rssi_dbm: float = Field(default=-72.0, ge=-120, le=0)
    stray_range_m: float = Field(default=1.5, gt=0, le=20)
    outside_y_m: tuple[float, ...] = Field(default=(), max_length=8)
    """Lateral position of each outside antenna (a wide door has them apart)."""
    inside_y_m: tuple[float, ...] = Field(default=(), max_length=8)
    shield_db: float = Field(default=12.0, ge=0, le=60)
    """How much weaker a shielded case answers."""


class DoorSpec(SpecModel):
    """``[[doors]]``: another dock door with its own reader."""

    read_point: str = Field(min_length=1, max_length=128)
    inbound_location: str = Field(min_length=1, max_length=128)
    reader: ReaderSpec
    portal: PortalSpec | None = None
    """None: the first door's ``[portal]``."""


class ItemSpec(SpecModel):
    """``[[items]]``: a trade item; its GTIN comes from company prefix + item reference."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    company_prefix: str = Field(pattern=r"^\d{6,12}$")
    item_reference: str = Field(pattern=r"^\d{1,7}$")
    """Indicator digit first, then the item reference proper (13 digits with the prefix)."""
    known: bool = True
    """False: the server's item master lacks it (its movements raise ``unknown_item``)."""

    @model_validator(mode="after")
    def _thirteen_digits(self) -> ItemSpec:
        total = len(self.company_prefix) + len(self.item_reference)
        if total != 13:
            raise ValueError(
                f"company_prefix and item_reference must have 13 digits together, not {total}"
            )
        return self

    @property
    def gtin(self) -> str:
        """The GTIN-14: indicator, company prefix, item reference, check digit."""
        body = self.item_reference[0] + self.company_prefix + self.item_reference[1:]
        return with_check_digit(body)


class CaseSpec(SpecModel):
    item: str
    count: int = Field(ge=1, le=1000)


class PalletSpec(SpecModel):
    """``[[pallets]]``: cases of items; every case carries its own SGTIN tag."""

    id: str = Field(pattern=ID_PATTERN)
    cases: tuple[CaseSpec, ...] = Field(min_length=1, max_length=100)
    shielded: int = Field(default=0, ge=0, le=1000)
    """Inner cases the load shields: each answers only ``leaks`` times per pass."""
    leaks: tuple[int, int] = (1, 3)
    """Fewest and most reads of a shielded case per pass."""
    sscc: str | None = Field(default=None, pattern=r"^\d{18}$")
    """The pallet's SSCC (its label); the server is told its cases are on it."""

    @model_validator(mode="after")
    def _shield_fits(self) -> PalletSpec:
        total = sum(case.count for case in self.cases)
        if self.shielded > total:
            raise ValueError(f"shielded {self.shielded} exceeds the pallet's {total} cases")
        if not 1 <= self.leaks[0] <= self.leaks[1] <= 100:
            raise ValueError(f"leaks {list(self.leaks)} must be [low, high], 1 <= low <= high")
        return self


class PassSpec(SpecModel):
    """``[[passes]]``: a pallet driven through a door."""

    at_s: float = Field(ge=0, le=86_400)
    """When the pallet starts moving, ``portal.approach_m`` from the door."""
    pallet: str
    direction: Direction
    speed_mps: float = Field(default=3.0, ge=0.2, le=10)
    door: str | None = None
    """The door's read point; None is the first door."""
    lane_m: float = Field(default=0.0, ge=-5, le=5)
    """Lateral position of the pallet's lane (two lanes pass a wide door side by side)."""
    stop_at_m: float | None = Field(default=None, ge=-50, le=50)
    """Where the forklift stops, along its way (0 = in the door, < 0 before it)."""
    stop_s: float = Field(default=0.0, ge=0, le=600)
    turn_at_m: float | None = Field(default=None, ge=-50, le=50)
    """Where it turns back (it entered part way and backed out: no movement)."""

    @model_validator(mode="after")
    def _stop_given(self) -> PassSpec:
        if (self.stop_at_m is None) != (self.stop_s == 0):
            raise ValueError("stop_at_m and stop_s go together")
        return self


class CrossSpec(SpecModel):
    """``[[cross]]``: a pallet driven across the door's face on one side (not through)."""

    at_s: float = Field(ge=0, le=86_400)
    pallet: str
    side: Side
    speed_mps: float = Field(default=2.0, ge=0.2, le=10)
    offset_m: float = Field(default=0.6, ge=0, le=10)
    """How far beyond the side's antennas (away from the door) its path runs."""
    reach_m: float = Field(default=3.0, ge=0.5, le=20)
    """Its path runs laterally from -reach_m to +reach_m."""
    door: str | None = None


class StagedSpec(SpecModel):
    """``[[staged]]``: a pallet parked beside a door, read now and then by one side."""

    pallet: str
    side: Side
    from_s: float = Field(default=0.0, ge=0, le=86_400)
    until_s: float | None = Field(default=None, ge=0, le=86_400)
    """When it goes away; None means the end of the scenario's passes."""
    read_probability: float = Field(default=0.02, gt=0, le=1)
    door: str | None = None


class ScannerSpec(SpecModel):
    """``[[scanners]]``: a handheld barcode scanner and how it frames its lines."""

    name: str = Field(default=DEFAULT_SCANNER, pattern=ID_PATTERN)
    read_point: str = Field(pattern=LOCATION_PATTERN, max_length=128)
    """Where the scanner works until a location label is scanned."""
    prefix: str = Field(default="", max_length=16)
    suffix: str = Field(default="", max_length=16)
    terminator: Literal["cr", "lf", "crlf", "tab"] = "cr"
    aim_ids: bool = True
    char_rate: float = Field(default=960.0, ge=0, le=1_000_000)

    def style(self) -> ScannerStyle:
        return ScannerStyle(
            prefix=self.prefix,
            suffix=self.suffix,
            terminator=parse_terminator(self.terminator),
            aim_ids=self.aim_ids,
            char_rate=self.char_rate,
        )


class ItemCount(SpecModel):
    item: str
    count: int = Field(ge=1, le=10_000)


class GtinCount(SpecModel):
    gtin: str = Field(pattern=r"^(\d{8}|\d{12,14})$")
    count: int = Field(ge=1, le=10_000)


class CountSpec(SpecModel):
    """``[[counts]]``: a handheld count of one location."""

    at_s: float = Field(ge=0, le=86_400)
    location: str = Field(pattern=LOCATION_PATTERN, max_length=128)
    scanner: str = DEFAULT_SCANNER
    missing: tuple[ItemCount, ...] = Field(default=(), max_length=100)
    """Cases of these items that are not on the shelf (the last ones by serial)."""
    extra: tuple[GtinCount, ...] = Field(default=(), max_length=100)
    """Cases found on the shelf that the system does not hold there."""
    gap_s: float = Field(default=1.0, ge=0.05, le=30)
    datamatrix: bool = False


class ShelfReaderSpec(SpecModel):
    """The reader of a ``[[shelves]]`` entry."""

    name: str = Field(pattern=ID_PATTERN)
    antennas: int = Field(default=1, ge=1, le=8)


class LocationSpec(SpecModel):
    """``[[locations]]``: a location's name, for the people reading the demo and console
    (locations work without one: the server creates them as goods arrive)."""

    id: str = Field(pattern=LOCATION_PATTERN, max_length=128)
    name: str = Field(min_length=1, max_length=200)


class ShelfSpec(SpecModel):
    """``[[shelves]]``: a shelf whose own reader reads every case on it, all the time."""

    read_point: str = Field(pattern=LOCATION_PATTERN, max_length=128)
    location: str = Field(pattern=LOCATION_PATTERN, max_length=128)
    reader: ShelfReaderSpec
    stock: tuple[str, ...] = Field(default=(), max_length=100)
    """Pallets whose cases are on the shelf from time 0."""
    reads_per_s: float = Field(default=4.0, gt=0, le=100)
    """Reads of each case per second while it is on the shelf."""
    departure_timeout_s: float = Field(default=2.0, gt=0, le=600)
    """The edge zone's: a case not read for this long has left."""
    missing_after_s: float = Field(default=10.0, gt=0, le=86_400)
    """The server read point's: a case gone and read nowhere this long is missing."""


class ShelfChangeSpec(SpecModel):
    """``[[shelf_changes]]``: cases put on a shelf, or taken off it."""

    at_s: float = Field(ge=0, le=86_400)
    shelf: str
    put: str | None = None
    """A pallet: its cases are put on the shelf."""
    take: ItemCount | None = None
    """Cases taken off: the last ones of the item on the shelf, by serial."""
    scanner: str | None = None
    """A take picked with this handheld (scanned); none: they just go."""
    back_at_s: float | None = Field(default=None, ge=0, le=86_400)
    """A take put back on the same shelf at this time."""
    gap_s: float = Field(default=0.3, ge=0.05, le=30)

    @model_validator(mode="after")
    def _one_change(self) -> ShelfChangeSpec:
        if (self.put is None) == (self.take is None):
            raise ValueError("a shelf change is exactly one of put and take")
        if self.put is not None and (self.scanner or self.back_at_s is not None):
            raise ValueError("scanner and back_at_s belong to a take")
        if self.back_at_s is not None and (self.scanner or self.back_at_s <= self.at_s):
            raise ValueError("back_at_s comes after at_s, and not with a scanner (a pick)")
        return self


Symbology = Literal["gs1-128", "datamatrix", "ean13", "upca"]


class CodeSpec(SpecModel):
    """One barcode in ``[[scans]]``: exactly one of command, location, item, gtin, raw."""

    command: str | None = None
    location: str | None = None
    item: str | None = None
    gtin: str | None = None
    raw: str | None = Field(default=None, min_length=1, max_length=512)
    serial: int | str | None = None
    lot: str | None = Field(default=None, max_length=20)
    expiry: date | None = None
    count: int | None = Field(default=None, ge=1, le=1_000_000)
    symbology: Symbology | None = None
    pallet: str | None = None
    """A pallet's id: its SSCC label."""
    link: bool = False
    """Send the GS1 label as its GS1 Digital Link QR code."""

    @model_validator(mode="after")
    def _one_kind(self) -> CodeSpec:
        kinds = ("command", "location", "item", "gtin", "pallet", "raw")
        given = [k for k in kinds if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                f"a code needs exactly one of command, location, item, gtin, pallet, raw; "
                f"got {given}"
            )
        return self


class ScanSpec(SpecModel):
    """``[[scans]]``: a sequence of scans, one every ``gap_s``."""

    at_s: float = Field(ge=0, le=86_400)
    scanner: str = DEFAULT_SCANNER
    gap_s: float = Field(default=1.0, ge=0.05, le=30)
    codes: tuple[CodeSpec, ...] = Field(min_length=1, max_length=1000)


class FaultAt(BaseModel):
    """``[[faults]]``: a fault at a time; other keys are the fault's parameters."""

    model_config = ConfigDict(extra="allow", frozen=True)

    at_s: float = Field(ge=0, le=86_400)
    kind: str = Field(min_length=1, max_length=64)
    reader: str | None = None
    scanner: str | None = None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
