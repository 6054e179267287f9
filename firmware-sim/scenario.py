"""Declarative warehouse scenarios: TOML in, a timeline and a ground truth out.

A scenario names a site, its dock doors (a read point, the reader at it and which of its
antennas face where), the items (GTINs), the pallets (cases of items; each case gets an
SGTIN-96 tag), the passes through the doors (when, which pallet, in or out, how fast),
pallets staged beside a door, handheld counts and scans, and faults at given times.
``Scenario.ground_truth()`` says what a correct system must end up with (``truth``),
``Scenario.tag_passes()`` what a portal must make of every tag's time at a door;
``run_scenario`` plays the timeline into reader and scanner simulators.

Times are seconds from the scenario's start. ``run_scenario`` plays them in real time by
default; ``speed`` > 1 plays them faster (times divided, pallets driven faster), for
benchmarks whose edge timeouts are scaled to match.

Tables (every key is checked; unknown keys are errors that name the key):

* top level: ``name``, ``site``, ``read_point``, ``inbound_location`` (the first door),
  ``seed``, ``min_gap_s``, ``description``;
* ``[reader]`` and ``[portal]``: the first door's reader (``name``, ``antennas`` 1..8,
  ``outside_antennas``, ``inside_antennas``, ``photo_eye_gpi``) and its geometry/RF;
* ``[[doors]]``: more doors, each with ``read_point``, ``inbound_location``, a
  ``[doors.reader]`` and optionally a ``[doors.portal]``;
* ``[[items]]``: ``id``, ``name``, ``company_prefix``, ``item_reference``, ``known``
  (false: not in the server's item master, so moving it raises ``unknown_item``);
* ``[[pallets]]``: ``id``, ``cases = [{ item, count }]``, ``shielded`` (inner cases the
  load shields: each answers only ``leaks = [low, high]`` times per pass), ``sscc`` (the
  pallet's label: its cases are what the server is told it holds, ``aggregations()``);
* ``[[passes]]``: ``at_s``, ``pallet``, ``direction`` (in/out), ``speed_mps``, ``door``
  (a read point; the first door by default), ``lane_m`` (pallets in two lanes of a wide
  door may pass at once), ``stop_at_m`` and ``stop_s`` (the forklift waits on its way),
  ``turn_at_m`` (it turns back there: entered part way and backed out, nothing moves);
* ``[[staged]]``: ``pallet``, ``side``, ``from_s``, ``until_s``, ``read_probability``,
  ``door``;
* ``[[cross]]``: a pallet driven across a door's face on one ``side`` (never through):
  ``at_s``, ``pallet``, ``speed_mps``, ``offset_m``, ``reach_m``, ``door``;
* ``[[scanners]]``: ``name``, ``read_point`` (where it starts), ``prefix``, ``suffix``,
  ``terminator`` (cr, lf, crlf, tab), ``aim_ids``, ``char_rate``; a scenario with scans
  and no scanner gets ``handheld-1`` at the first door's inbound location;
* ``[[counts]]``: a shelf count with a handheld: ``at_s``, ``scanner``, ``location``,
  ``missing = [{ item, count }]`` (cases that went missing: the last ones by serial),
  ``extra = [{ gtin, count }]`` (cases found that the system does not hold), ``gap_s``
  between scans, ``datamatrix``. The handheld scans CMD:COUNT, the location, one
  GS1 label (GTIN + serial) per case on the shelf, the extras, CMD:END;
* ``[[scans]]``: any scan sequence: ``at_s``, ``scanner``, ``gap_s`` and ``codes``, each
  one of ``{ command }``, ``{ location }``, ``{ item, serial, lot, expiry, count,
  symbology }``, ``{ gtin, count, symbology }``, ``{ pallet }`` (its SSCC label) or
  ``{ raw }`` (text sent as is); ``link = true`` sends a GS1 item or pallet label as its
  GS1 Digital Link QR code instead;
* ``[[shelves]]``: a shelf with an RFID reader of its own that reads every case on it
  continuously: ``read_point`` (the edge's zone and the server's read point),
  ``location`` (the shelf), ``reader = { name, antennas }``, ``stock`` (pallets whose
  cases are on it from time 0), ``reads_per_s`` (per case), ``departure_timeout_s`` (the
  edge zone's) and ``missing_after_s`` (the server read point's);
* ``[[shelf_changes]]``: ``at_s``, ``shelf`` (its read point) and either ``put`` (a
  pallet: its cases are put on the shelf) or ``take = { item, count }`` (the last cases of
  the item on it by serial are taken off). A take with ``scanner`` is a pick: that
  handheld scans CMD:PICK, the shelf's location and each case's label (GTIN + serial),
  ``gap_s`` apart; without one the cases just go (shrinkage, unless ``back_at_s`` puts
  them back on the shelf in time);
* ``refuse_negative_stock``: sites whose server refuses negative stock (a pick or move of
  more than the books hold moves nothing there; ``GroundTruth.refused`` lists them);
* ``[[faults]]``: ``at_s``, ``kind`` and the fault's parameters; ``reader`` (a reader's
  name, the first door's by default) for reader faults (``faults.FAULTS``), or
  ``scanner`` for scanner faults (garbage, partial_line, long_line, unplug).

The bundled ``small.toml`` is a complete example; ``rough_day.toml`` uses every table.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from firmware_sim.barcode_symbols import ScannerStyle, Symbol, parse_terminator
from firmware_sim.errors import ScenarioError, SimConfigError, SimError
from firmware_sim.faults import Fault, make_fault
from firmware_sim.portal import ShelfPopulation, StagedPallet
from firmware_sim.portal_door import Direction, DockDoor, Side
from firmware_sim.portal_motion import CrossTraffic, PalletPass
from firmware_sim.portal_rf import RfModel
from firmware_sim.profile import R420
from firmware_sim.reader import ReaderSimulator
from firmware_sim.scanner import ScannerSimulator, check_scanner_fault
from firmware_sim.truth import (
    Book,
    BookError,
    CountTruth,
    ExpectedAlert,
    GroundTruth,
    UnitInfo,
)
from wire.barcodes import LOCATION_PATTERN, parse_barcode
from wire.gs1 import with_check_digit
from wire.identifiers import IdentifierError, sgtin96_hex
from wire.scans import BarcodeError, Command

logger = logging.getLogger(__name__)

__all__ = [
    "DOORWAY_SCENARIOS",
    "CountTruth",
    "ExpectedAlert",
    "GroundTruth",
    "PlannedScan",
    "Scenario",
    "ScenarioEvent",
    "ScenarioRun",
    "TagPass",
    "Unit",
    "bundled_scenario",
    "load_scenario",
    "parse_scenario",
    "run_scenario",
]

SCENARIO_DIR: Final = Path(__file__).resolve().parent / "scenarios"
MAX_FILE_BYTES: Final = 1024 * 1024
MAX_CASES: Final = 20_000
MAX_SCANS: Final = 20_000
CASE_FILTER_VALUE: Final = 2
"""SGTIN filter value 2: "full case for transport"."""
LEAD_S: Final = 0.05
"""Gap between ``run_scenario`` being called and the scenario's time 0."""
ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
DEFAULT_SCANNER: Final = "handheld-1"
MAX_SPEED: Final = 100.0
PARTIAL_LINE_TIMEOUT_S: Final = 2.0
"""The edge's default ``line_timeout_s``: unterminated fault bytes spoil the next scan of
their scanner if it comes within this; later, the edge has dropped them already."""
PICK_ZONE: Final = "staging"
"""Where a handheld's picks put the goods, under the site: the server's default
``[operations] pick_zone``."""
SITE_PATTERN: Final = r"^[A-Za-z0-9_-]{1,32}$"
SHELF_SETTLE_S: Final = 1.0
"""A scenario lasts this long past its last shelf change (or a taken case's due time), so
the shelf reader has read what changed."""
REPLUG_MARGIN_S: Final = 0.1
"""Scans this long after an unplug's delay still count as lost (the replug races them)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReaderSpec(_Model):
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


class PortalSpec(_Model):
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


class DoorSpec(_Model):
    """``[[doors]]``: another dock door with its own reader."""

    read_point: str = Field(min_length=1, max_length=128)
    inbound_location: str = Field(min_length=1, max_length=128)
    reader: ReaderSpec
    portal: PortalSpec | None = None
    """None: the first door's ``[portal]``."""


class ItemSpec(_Model):
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


class CaseSpec(_Model):
    item: str
    count: int = Field(ge=1, le=1000)


class PalletSpec(_Model):
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


class PassSpec(_Model):
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


class CrossSpec(_Model):
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


class StagedSpec(_Model):
    """``[[staged]]``: a pallet parked beside a door, read now and then by one side."""

    pallet: str
    side: Side
    from_s: float = Field(default=0.0, ge=0, le=86_400)
    until_s: float | None = Field(default=None, ge=0, le=86_400)
    """When it goes away; None means the end of the scenario's passes."""
    read_probability: float = Field(default=0.02, gt=0, le=1)
    door: str | None = None


class ScannerSpec(_Model):
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


class ItemCount(_Model):
    item: str
    count: int = Field(ge=1, le=10_000)


class GtinCount(_Model):
    gtin: str = Field(pattern=r"^(\d{8}|\d{12,14})$")
    count: int = Field(ge=1, le=10_000)


class CountSpec(_Model):
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


class ShelfReaderSpec(_Model):
    """The reader of a ``[[shelves]]`` entry."""

    name: str = Field(pattern=ID_PATTERN)
    antennas: int = Field(default=1, ge=1, le=8)


class LocationSpec(_Model):
    """``[[locations]]``: a location's name, for the people reading the demo and console
    (locations work without one: the server creates them as goods arrive)."""

    id: str = Field(pattern=LOCATION_PATTERN, max_length=128)
    name: str = Field(min_length=1, max_length=200)


class ShelfSpec(_Model):
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


class ShelfChangeSpec(_Model):
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


@dataclass(frozen=True, slots=True)
class Presence:
    """A case on a shelf from ``start`` until ``end`` (None: the end of the scenario)."""

    unit: Unit
    shelf: str
    start: float
    end: float | None


Symbology = Literal["gs1-128", "datamatrix", "ean13", "upca"]


class CodeSpec(_Model):
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


class ScanSpec(_Model):
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


@dataclass(frozen=True, slots=True)
class Unit:
    """One tagged case."""

    urn: str
    epc_hex: str
    gtin: str
    item: str
    pallet: str
    serial: int


@dataclass(frozen=True, slots=True)
class Door:
    """A dock door of the scenario, resolved."""

    read_point: str
    inbound_location: str
    reader: ReaderSpec
    model: DockDoor
    portal: PortalSpec


@dataclass(frozen=True, slots=True)
class TagPass:
    """One tag's time at a door in the ground truth: what a portal must make of it.

    ``expected`` is the direction it crossed in, or None when it did not cross (staged
    beside the door, driven across the door's face, entered and backed out): then any
    direction the system gives it is wrong.
    """

    epc_hex: str
    urn: str
    read_point: str
    start_s: float
    end_s: float
    """Scenario times outside which the tag cannot be read during this pass."""
    expected: Literal["in", "out"] | None
    kind: Literal["pass", "stop", "back_out", "staged", "cross"]
    source: str
    """Which table entry it comes from (``passes[3]``)."""


@dataclass(frozen=True, slots=True)
class PlannedScan:
    """One scan the scenario makes: when, by which scanner, of what."""

    at_s: float
    scanner: str
    symbol: Symbol
    source: str
    """Which table entry it comes from (``counts[0]``, ``scans[2]``)."""
    fate: Literal["ok", "spoiled", "lost"] = "ok"
    """``spoiled``: sent, but glued to a fault's unterminated bytes (a malformed line);
    ``lost``: not sent, the scanner is unplugged. Neither moves stock."""


EventKind = Literal[
    "pass_start",
    "pass_end",
    "staged_start",
    "staged_end",
    "cross_start",
    "cross_end",
    "scan",
    "shelf",
    "fault",
    "done",
]


@dataclass(frozen=True, slots=True)
class ScenarioEvent:
    """A point on a scenario's timeline, as ``run_scenario`` reports it.

    ``pass_end`` comes when the pallet has left the read zone (no read can follow).
    """

    at_s: float
    kind: EventKind
    pallet: str = ""
    direction: Direction | None = None
    side: Side | None = None
    index: int = -1
    """Position in ``passes``, ``staged``, ``faults`` or the scan plan."""
    target: str = ""
    """The door's read point, the scanner or the reader the event concerns."""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ScenarioRun:
    """How a run went: when time 0 was (UTC µs and the simulator's clock) and its events."""

    started_utc_us: int
    started_monotonic: float
    events: tuple[ScenarioEvent, ...]
    speed: float = 1.0


def _rf(portal: PortalSpec) -> RfModel:
    return RfModel(
        p0=portal.p0,
        d0_m=portal.d0_m,
        min_probability=portal.min_probability,
        rssi_near_dbm=portal.rssi_near_dbm,
        rssi_far_dbm=portal.rssi_far_dbm,
        far_m=portal.far_m,
        rssi_noise_db=portal.rssi_noise_db,
        stray_probability=portal.stray_probability,
        stray_rssi_dbm=portal.stray_rssi_dbm,
        stray_range_m=portal.stray_range_m,
    )


def _dock_door(reader: ReaderSpec, portal: PortalSpec, where: str) -> DockDoor:
    try:
        door = DockDoor(
            outside_antennas=reader.outside_antennas,
            inside_antennas=reader.inside_antennas,
            outside_x_m=portal.outside_x_m,
            inside_x_m=portal.inside_x_m,
            approach_m=portal.approach_m,
            rf=_rf(portal),
            photo_eye_gpi=reader.photo_eye_gpi,
            outside_y_m=portal.outside_y_m,
            inside_y_m=portal.inside_y_m,
        )
    except SimConfigError as err:
        raise ValueError(f"{where}: {err}") from err
    low, high = door.read_zone_m()
    if portal.stray_probability:
        low, high = min(low, -portal.stray_range_m), max(high, portal.stray_range_m)
    if portal.approach_m < max(-low, high) + portal.spread_m:
        raise ValueError(
            f"{where}.approach_m: {portal.approach_m} m starts pallets inside the read zone"
            f" ({low:.2f}..{high:.2f} m); make it at least {max(-low, high) + portal.spread_m:.2f}"
        )
    return door


class Scenario(_Model):
    """A validated scenario (see the module docstring for the file format)."""

    name: str = Field(pattern=ID_PATTERN)
    description: str = Field(default="", max_length=2000)
    site: str = Field(pattern=ID_PATTERN)
    read_point: str = Field(min_length=1, max_length=128)
    inbound_location: str = Field(min_length=1, max_length=128)
    """Where an "in" pass through the first door puts the cases."""
    seed: int = Field(default=1, ge=0, le=2**63)
    min_gap_s: float = Field(default=2.5, ge=0, le=600)
    """Least time between one pallet leaving a door's read zone and the next entering it."""
    reader: ReaderSpec = ReaderSpec()
    portal: PortalSpec = PortalSpec()
    doors: tuple[DoorSpec, ...] = Field(default=(), max_length=63)
    items: tuple[ItemSpec, ...] = Field(min_length=1, max_length=1000)
    pallets: tuple[PalletSpec, ...] = Field(min_length=1, max_length=2000)
    passes: tuple[PassSpec, ...] = Field(default=(), max_length=5000)
    staged: tuple[StagedSpec, ...] = Field(default=(), max_length=100)
    cross: tuple[CrossSpec, ...] = Field(default=(), max_length=1000)
    scanners: tuple[ScannerSpec, ...] = Field(default=(), max_length=64)
    counts: tuple[CountSpec, ...] = Field(default=(), max_length=100)
    scans: tuple[ScanSpec, ...] = Field(default=(), max_length=1000)
    faults: tuple[FaultAt, ...] = Field(default=(), max_length=1000)
    shelves: tuple[ShelfSpec, ...] = Field(default=(), max_length=64)
    shelf_changes: tuple[ShelfChangeSpec, ...] = Field(default=(), max_length=1000)
    locations: tuple[LocationSpec, ...] = Field(default=(), max_length=1000)
    refuse_negative_stock: tuple[Annotated[str, Field(pattern=SITE_PATTERN)], ...] = Field(
        default=(), max_length=100
    )
    """Sites whose server refuses negative stock (``[operations.negative_stock_sites]``);
    a handheld pick or move there that takes more than the books hold moves nothing."""

    _units: dict[str, tuple[Unit, ...]] = PrivateAttr(default_factory=dict)
    _doors: dict[str, Door] = PrivateAttr(default_factory=dict)
    _windows: tuple[tuple[float, float], ...] = PrivateAttr(default=())
    _duration_s: float = PrivateAttr(default=0.0)
    _scanners: dict[str, ScannerSpec] = PrivateAttr(default_factory=dict)
    _faults: tuple[Fault | None, ...] = PrivateAttr(default=())
    """The checked reader fault of each ``faults`` entry (None for scanner faults)."""
    _truth: GroundTruth | None = PrivateAttr(default=None)
    _plan: tuple[PlannedScan, ...] = PrivateAttr(default=())
    _presence: tuple[Presence, ...] = PrivateAttr(default=())
    _shelf_plan: tuple[tuple[float, str, str, tuple[Unit, ...]], ...] = PrivateAttr(default=())
    """(time, kind, shelf, units): ``put``, ``take`` (gone, not scanned), ``pick``
    (taken with a scan), ``back`` (put back), in time order."""

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        self._doors = self._make_doors()
        self._units = self._make_units()
        self._check_passes()
        self._windows = tuple(self._pass(i).read_window() for i in range(len(self.passes)))
        self._check_gaps()
        end = max((w[1] for w in self._windows), default=0.0)
        for i, staged in enumerate(self.staged):
            if staged.pallet not in self._units:
                raise ValueError(f"staged[{i}].pallet: unknown pallet {staged.pallet!r}")
            if any(p.pallet == staged.pallet for p in self.passes):
                raise ValueError(f"staged[{i}].pallet: {staged.pallet!r} also passes the door")
            self._door_of(staged.door, f"staged[{i}].door")
            if staged.until_s is None and not self.passes:
                raise ValueError(f"staged[{i}].until_s: required when there are no passes")
            until = staged.until_s if staged.until_s is not None else end
            if until < staged.from_s:
                raise ValueError(f"staged[{i}].until_s: before from_s")
            end = max(end, until)
        for i, cross in enumerate(self.cross):
            if cross.pallet not in self._units:
                raise ValueError(f"cross[{i}].pallet: unknown pallet {cross.pallet!r}")
            self._door_of(cross.door, f"cross[{i}].door")
            end = max(end, self._cross(i).end)
        self._scanners = self._make_scanners()
        self._faults = self._make_faults()
        self._make_shelves()
        self._truth, self._plan = self._play()
        for when, kind, shelf, _ in self._shelf_plan:
            due = self._shelf(shelf).missing_after_s if kind == "take" else 0.0
            end = max(end, when + due + SHELF_SETTLE_S)
        if self._plan:
            end = max(end, self._plan[-1].at_s)
        if self.faults:
            end = max(end, max(f.at_s for f in self.faults))
        self._duration_s = end
        return self

    # --- validation ------------------------------------------------------------------------

    def _make_doors(self) -> dict[str, Door]:
        doors: dict[str, Door] = {}
        readers: set[str] = set()
        specs = [(self.read_point, self.inbound_location, self.reader, self.portal, "portal")]
        for i, extra in enumerate(self.doors):
            specs.append(
                (
                    extra.read_point,
                    extra.inbound_location,
                    extra.reader,
                    extra.portal or self.portal,
                    f"doors[{i}].portal",
                )
            )
        for i, (read_point, inbound, reader, portal, where) in enumerate(specs):
            key = "read_point" if i == 0 else f"doors[{i - 1}].read_point"
            if read_point in doors:
                raise ValueError(f"{key}: door {read_point!r} is defined twice")
            if reader.name in readers:
                raise ValueError(f"{key}: reader {reader.name!r} serves two doors")
            readers.add(reader.name)
            doors[read_point] = Door(
                read_point, inbound, reader, _dock_door(reader, portal, where), portal
            )
        return doors

    def _door_of(self, read_point: str | None, where: str) -> Door:
        if read_point is None:
            return self._doors[self.read_point]
        try:
            return self._doors[read_point]
        except KeyError:
            raise ValueError(
                f"{where}: no door {read_point!r}; doors are {sorted(self._doors)}"
            ) from None

    def _make_units(self) -> dict[str, tuple[Unit, ...]]:
        items: dict[str, ItemSpec] = {}
        gtins: dict[str, str] = {}
        for i, item in enumerate(self.items):
            if item.id in items:
                raise ValueError(f"items[{i}].id: duplicate item id {item.id!r}")
            if item.gtin in gtins:
                raise ValueError(f"items[{i}]: GTIN {item.gtin} is also item {gtins[item.gtin]!r}")
            items[item.id] = item
            gtins[item.gtin] = item.id
        serials: Counter[str] = Counter()
        units: dict[str, tuple[Unit, ...]] = {}
        total = 0
        for i, pallet in enumerate(self.pallets):
            if pallet.id in units:
                raise ValueError(f"pallets[{i}].id: duplicate pallet id {pallet.id!r}")
            cases: list[Unit] = []
            for j, case in enumerate(pallet.cases):
                if case.item not in items:
                    raise ValueError(f"pallets[{i}].cases[{j}].item: unknown item {case.item!r}")
                item = items[case.item]
                total += case.count
                if total > MAX_CASES:
                    raise ValueError(f"pallets[{i}]: more than {MAX_CASES} cases in the scenario")
                for _ in range(case.count):
                    serials[item.id] += 1
                    serial = serials[item.id]
                    urn = f"urn:epc:id:sgtin:{item.company_prefix}.{item.item_reference}.{serial}"
                    try:
                        epc_hex = sgtin96_hex(urn, CASE_FILTER_VALUE)
                    except IdentifierError as err:
                        raise ValueError(f"pallets[{i}].cases[{j}]: {err}") from err
                    cases.append(Unit(urn, epc_hex, item.gtin, item.id, pallet.id, serial))
            units[pallet.id] = tuple(cases)
        return units

    def _check_passes(self) -> None:
        inside: dict[str, int] = {}
        for i in sorted(range(len(self.passes)), key=lambda k: self.passes[k].at_s):
            p = self.passes[i]
            if p.pallet not in self._units:
                raise ValueError(f"passes[{i}].pallet: unknown pallet {p.pallet!r}")
            door = self._door_of(p.door, f"passes[{i}].door")
            for name in ("stop_at_m", "turn_at_m"):
                where = getattr(p, name)
                if (
                    where is not None
                    and not -door.portal.approach_m < where < door.portal.approach_m
                ):
                    raise ValueError(
                        f"passes[{i}].{name}: {where} m lies beyond the approach"
                        f" (±{door.portal.approach_m} m)"
                    )
            if p.turn_at_m is not None:
                if p.stop_at_m is not None and p.stop_at_m > p.turn_at_m:
                    raise ValueError(f"passes[{i}]: a pallet that turns back stops before it turns")
                held = p.pallet in inside
                if held != (p.direction is Direction.OUT):
                    where = "inside" if held else "outside"
                    raise ValueError(
                        f"passes[{i}]: pallet {p.pallet!r} is {where}; it cannot start"
                        f" {p.direction} from there"
                    )
                continue
            if p.direction is Direction.IN:
                if p.pallet in inside:
                    raise ValueError(
                        f"passes[{i}]: pallet {p.pallet!r} is already inside"
                        f" (passes[{inside[p.pallet]}] brought it in)"
                    )
                inside[p.pallet] = i
            else:
                if p.pallet not in inside:
                    raise ValueError(
                        f"passes[{i}]: pallet {p.pallet!r} ships without having been received"
                    )
                del inside[p.pallet]

    def _check_gaps(self) -> None:
        by_door: dict[tuple[str, float], list[int]] = {}
        for i, p in enumerate(self.passes):
            # Lanes of a wide door are apart: pallets in two lanes may pass at once.
            by_door.setdefault((p.door or self.read_point, p.lane_m), []).append(i)
        for indexes in by_door.values():
            order = sorted(indexes, key=lambda k: self._windows[k][0])
            for before, after in itertools.pairwise(order):
                gap = self._windows[after][0] - self._windows[before][1]
                if gap < self.min_gap_s:
                    earlier = f"pallet {self.passes[before].pallet!r} (passes[{before}])"
                    when = (
                        f"while {earlier} is still in it"
                        if gap < 0
                        else f"only {gap:.2f} s after {earlier} left it"
                    )
                    raise ValueError(
                        f"passes[{after}].at_s: pallet {self.passes[after].pallet!r} enters the"
                        f" read zone {when}; min_gap_s is {self.min_gap_s}"
                    )

    def _shelf(self, read_point: str) -> ShelfSpec:
        for shelf in self.shelves:
            if shelf.read_point == read_point:
                return shelf
        raise ValueError(
            f"no shelf {read_point!r}; shelves are {[s.read_point for s in self.shelves]}"
        )

    def _make_shelves(self) -> None:
        """Which case is on which shelf when (``_presence``) and the shelf plan."""
        readers = {door.reader.name for door in self._doors.values()}
        points = {door.read_point for door in self._doors.values()}
        on: dict[str, dict[str, tuple[Unit, float]]] = {}
        placed: set[str] = set()
        presence: list[Presence] = []
        plan: list[tuple[float, str, str, tuple[Unit, ...]]] = []
        for i, shelf in enumerate(self.shelves):
            if shelf.reader.name in readers or shelf.read_point in points:
                raise ValueError(f"shelves[{i}]: reader or read point used twice")
            readers.add(shelf.reader.name)
            points.add(shelf.read_point)
            on[shelf.read_point] = {}
            initial: list[Unit] = []
            for pallet in shelf.stock:
                if pallet not in self._units:
                    raise ValueError(f"shelves[{i}].stock: unknown pallet {pallet!r}")
                initial.extend(self._units[pallet])
            plan.append((0.0, "put", shelf.read_point, tuple(initial)))

        def put(shelf: str, units: tuple[Unit, ...], at: float, where: str) -> None:
            for unit in units:
                if any(unit.urn in cases for cases in on.values()):
                    raise ValueError(f"{where}: case {unit.urn} is on a shelf already")
                on[shelf][unit.urn] = (unit, at)
                placed.add(unit.urn)

        def take(shelf: str, units: tuple[Unit, ...], at: float) -> None:
            for unit in units:
                _, since = on[shelf].pop(unit.urn)
                presence.append(Presence(unit, shelf, since, at))

        events: list[tuple[float, int, int, Any]] = []
        for when, kind, shelf_id, cases in plan:
            events.append((when, 0, len(events), (kind, shelf_id, cases, "shelves")))
        for i, change in enumerate(self.shelf_changes):
            where = f"shelf_changes[{i}]"
            try:
                self._shelf(change.shelf)
            except ValueError as err:
                raise ValueError(f"{where}.shelf: {err}") from None
            if change.scanner is not None and change.scanner not in self._scanners:
                raise ValueError(f"{where}.scanner: no scanner {change.scanner!r}")
            events.append((change.at_s, 1, len(events), (i, change.shelf, (), where)))
        events.sort(key=lambda e: e[:3])
        items = {item.id: item for item in self.items}
        shelf_plan: list[tuple[float, str, str, tuple[Unit, ...]]] = []
        pending: list[tuple[float, str, tuple[Unit, ...]]] = []
        for when, _, _, (what, shelf_id, cases, where) in events:
            for back in [p for p in pending if p[0] <= when]:
                pending.remove(back)
                put(back[1], back[2], back[0], where)
                shelf_plan.append((back[0], "back", back[1], back[2]))
            if isinstance(what, str):
                put(shelf_id, cases, when, where)
                shelf_plan.append((when, what, shelf_id, cases))
                continue
            change = self.shelf_changes[what]
            if change.put is not None:
                if change.put not in self._units:
                    raise ValueError(f"{where}.put: unknown pallet {change.put!r}")
                moved = self._units[change.put]
                put(shelf_id, moved, when, where)
                shelf_plan.append((when, "put", shelf_id, moved))
                continue
            assert change.take is not None
            if change.take.item not in items:
                raise ValueError(f"{where}.take: unknown item {change.take.item!r}")
            gtin = items[change.take.item].gtin
            mine = sorted(
                (u for u, _ in on[shelf_id].values() if u.gtin == gtin), key=lambda u: u.serial
            )
            if len(mine) < change.take.count:
                raise ValueError(
                    f"{where}.take: {change.take.count} cases of {change.take.item!r} taken, "
                    f"but {len(mine)} are on {shelf_id} at {when:g} s"
                )
            gone = tuple(mine[len(mine) - change.take.count :])
            take(shelf_id, gone, when)
            shelf_plan.append((when, "pick" if change.scanner else "take", shelf_id, gone))
            if change.back_at_s is not None:
                pending.append((change.back_at_s, shelf_id, gone))
        for back in sorted(pending, key=lambda p: p[0]):
            put(back[1], back[2], back[0], "shelf_changes")
            shelf_plan.append((back[0], "back", back[1], back[2]))
        for shelf_id, still in on.items():
            for unit, since in still.values():
                presence.append(Presence(unit, shelf_id, since, None))
        self._presence = tuple(sorted(presence, key=lambda p: (p.start, p.unit.urn)))
        self._shelf_plan = tuple(sorted(shelf_plan, key=lambda p: p[0]))

    def _make_scanners(self) -> dict[str, ScannerSpec]:
        scanners: dict[str, ScannerSpec] = {}
        for i, spec in enumerate(self.scanners):
            if spec.name in scanners:
                raise ValueError(f"scanners[{i}].name: scanner {spec.name!r} is defined twice")
            try:
                spec.style()
            except SimConfigError as err:
                raise ValueError(f"scanners[{i}]: {err}") from err
            scanners[spec.name] = spec
        if not scanners and (self.counts or self.scans):
            default = ScannerSpec(name=DEFAULT_SCANNER, read_point=self.inbound_location)
            scanners[default.name] = default
        return scanners

    def _make_faults(self) -> tuple[Fault | None, ...]:
        faults: list[Fault | None] = []
        readers = {door.reader.name for door in self._doors.values()}
        for i, spec in enumerate(self.faults):
            where = f"faults[{i}]"
            if spec.scanner is not None:
                if spec.reader is not None:
                    raise ValueError(f"{where}: a fault is for a reader or a scanner, not both")
                if spec.scanner not in self._scanners:
                    raise ValueError(f"{where}.scanner: no scanner {spec.scanner!r}")
                try:
                    check_scanner_fault(spec.kind, **spec.params)
                except SimConfigError as err:
                    raise ValueError(f"{where}: {err}") from err
                faults.append(None)
                continue
            if spec.reader is not None and spec.reader not in readers:
                raise ValueError(f"{where}.reader: no reader {spec.reader!r} in {sorted(readers)}")
            try:
                faults.append(make_fault(spec.kind, **spec.params))
            except SimConfigError as err:
                raise ValueError(f"{where}: {err}") from err
        return tuple(faults)

    def _codes(self, index: int, spec: ScanSpec) -> list[Symbol]:
        items = {item.id: item for item in self.items}
        symbols = []
        for j, code in enumerate(spec.codes):
            where = f"scans[{index}].codes[{j}]"
            try:
                symbol = self._symbol(code, items)
                symbols.append(Symbol.link(symbol) if code.link else symbol)
            except (SimConfigError, BarcodeError, KeyError) as err:
                raise ValueError(f"{where}: {err}") from err
        return symbols

    def _symbol(self, code: CodeSpec, items: Mapping[str, ItemSpec]) -> Symbol:
        if code.pallet is not None:
            pallet = self._pallet_specs().get(code.pallet)
            if pallet is None or pallet.sscc is None:
                raise SimConfigError(f"no pallet {code.pallet!r} with an sscc")
            return Symbol.pallet(pallet.sscc)
        if code.link and (code.command or code.location or code.raw or code.symbology):
            raise SimConfigError("link = true is for GS1 item and pallet labels")
        if code.command is not None:
            return Symbol.command(code.command)
        if code.location is not None:
            return Symbol.location(code.location)
        if code.raw is not None:
            return Symbol(code.raw)
        if code.item is not None:
            if code.item not in items:
                raise SimConfigError(f"unknown item {code.item!r}")
            gtin = items[code.item].gtin
        else:
            assert code.gtin is not None
            gtin = code.gtin
        if code.symbology in ("ean13", "upca"):
            if code.serial is not None or code.lot or code.expiry or code.count:
                raise SimConfigError(f"a {code.symbology} carries only a GTIN")
            return Symbol.ean13(gtin) if code.symbology == "ean13" else Symbol.upca(gtin)
        return Symbol.gs1(
            gtin,
            lot=code.lot,
            expiry=code.expiry,
            serial=None if code.serial is None else str(code.serial),
            count=code.count,
            datamatrix=code.symbology == "datamatrix",
        )

    def _count_symbols(self, index: int, spec: CountSpec, book: Book) -> list[Symbol]:
        where = f"counts[{index}]"
        items = {item.id: item for item in self.items}
        present = book.units_at(spec.location)
        for missing in spec.missing:
            if missing.item not in items:
                raise ValueError(f"{where}.missing: unknown item {missing.item!r}")
            gtin = items[missing.item].gtin
            mine = [u for u in present if u.gtin == gtin]
            if len(mine) < missing.count:
                raise ValueError(
                    f"{where}.missing: {missing.count} cases of {missing.item!r} missing, but"
                    f" only {len(mine)} are at {spec.location} at {spec.at_s:g} s"
                )
            gone = {u.urn for u in mine[len(mine) - missing.count :]}
            present = [u for u in present if u.urn not in gone]
        symbols = [Symbol.command(Command.COUNT), Symbol.location(spec.location)]
        try:
            for unit in present:
                symbols.append(
                    Symbol.gs1(unit.gtin, serial=str(unit.serial), datamatrix=spec.datamatrix)
                )
            for extra in spec.extra:
                symbols.append(
                    Symbol.gs1(extra.gtin, count=extra.count, datamatrix=spec.datamatrix)
                )
        except SimConfigError as err:
            raise ValueError(f"{where}.extra: {err}") from err
        symbols.append(Symbol.command(Command.END))
        return symbols

    def _play(self) -> tuple[GroundTruth, tuple[PlannedScan, ...]]:
        """Replay the timeline through a ``Book``; the truth and every scan to make."""
        known = {item.gtin for item in self.items if item.known}
        units = [UnitInfo(u.urn, u.gtin, u.serial) for u in self.units]
        book = Book(
            known,
            units,
            pick_zone=PICK_ZONE,
            refuse_negative=self.refuse_negative_stock,
            pallets=self.aggregations(),
        )
        for spec in self._scanners.values():
            book.handheld(spec.name, spec.read_point)
        # (time, order, seq, what): passes before scans at the same instant.
        queue: list[tuple[float, int, int, tuple[Any, ...]]] = []
        seq = itertools.count()
        for i, p in enumerate(self.passes):
            heapq.heappush(queue, (p.at_s, 0, next(seq), ("pass", i)))
        for i, count in enumerate(self.counts):
            if count.scanner not in self._scanners:
                raise ValueError(f"counts[{i}].scanner: no scanner {count.scanner!r}")
            heapq.heappush(queue, (count.at_s, 1, next(seq), ("count", i)))
        for i, scans in enumerate(self.scans):
            if scans.scanner not in self._scanners:
                raise ValueError(f"scans[{i}].scanner: no scanner {scans.scanner!r}")
            for j, symbol in enumerate(self._codes(i, scans)):
                at = scans.at_s + j * scans.gap_s
                heapq.heappush(
                    queue, (at, 1, next(seq), ("scan", scans.scanner, symbol, f"scans[{i}]"))
                )
        for i, fault in enumerate(self.faults):
            if fault.scanner is not None:
                heapq.heappush(queue, (fault.at_s, 1, next(seq), ("scanner_fault", i)))
        gone_at: dict[str, float] = {}
        """Cases off their shelf unscanned, by URN: when they went."""
        picks = iter([c for c in self.shelf_changes if c.take is not None and c.scanner])
        for when, kind, shelf_id, cases in self._shelf_plan:
            heapq.heappush(queue, (when, 0, next(seq), ("shelf", kind, shelf_id, cases)))
            if kind == "pick":
                change = next(picks)
                assert change.scanner is not None
                place = self._shelf(shelf_id).location
                symbols = [Symbol.command(Command.PICK), Symbol.location(place)]
                symbols += [Symbol.gs1(case.gtin, serial=str(case.serial)) for case in cases]
                for j, symbol in enumerate(symbols, 1):
                    scan_item = ("scan", change.scanner, symbol, "shelf_changes")
                    heapq.heappush(queue, (when + j * change.gap_s, 1, next(seq), scan_item))
            elif kind == "take":
                due = when + self._shelf(shelf_id).missing_after_s
                for case in cases:
                    due_item = ("shelf_due", shelf_id, case.urn, when)
                    heapq.heappush(queue, (due, 1, next(seq), due_item))
        plan: list[PlannedScan] = []
        spoil_until: dict[str, float] = {}
        unplugged_until: dict[str, float] = {}
        while queue:
            at, _, _, what = heapq.heappop(queue)
            try:
                if what[0] == "pass":
                    p = self.passes[what[1]]
                    door = self._door_of(p.door, "")
                    if p.turn_at_m is not None:
                        continue  # entered part way and backed out: nothing moved
                    for unit in self._units[p.pallet]:
                        if p.direction is Direction.IN:
                            book.receive(unit.urn, door.inbound_location)
                        else:
                            book.ship(unit.urn)
                elif what[0] == "shelf":
                    _, kind, shelf_id, cases = what
                    place = self._shelf(shelf_id).location
                    for case in cases:
                        if kind in ("put", "back"):
                            gone_at.pop(case.urn, None)
                            book.shelf_arrive(case.urn, place)
                        elif kind == "take":
                            gone_at[case.urn] = at
                elif what[0] == "shelf_due":
                    _, shelf_id, urn, went = what
                    if gone_at.get(urn) == went:
                        book.shelf_missing(urn, shelf_id, self._shelf(shelf_id).location)
                elif what[0] == "count":
                    spec = self.counts[what[1]]
                    for j, symbol in enumerate(self._count_symbols(what[1], spec, book)):
                        item = ("scan", spec.scanner, symbol, f"counts[{what[1]}]")
                        heapq.heappush(queue, (at + j * spec.gap_s, 1, next(seq), item))
                elif what[0] == "scanner_fault":
                    fault = self.faults[what[1]]
                    name = fault.scanner
                    assert name is not None
                    if fault.kind in ("garbage", "partial_line"):
                        spoil_until[name] = at + PARTIAL_LINE_TIMEOUT_S
                    elif fault.kind == "unplug":
                        delay = float(fault.params.get("delay_s", 0.5))
                        unplugged_until[name] = at + delay + REPLUG_MARGIN_S
                else:
                    _, scanner, symbol, source = what
                    if len(plan) >= MAX_SCANS:
                        raise ValueError(f"more than {MAX_SCANS} scans in the scenario")
                    if at <= unplugged_until.get(scanner, -1.0):
                        plan.append(PlannedScan(at, scanner, symbol, source, "lost"))
                        continue
                    if at <= spoil_until.pop(scanner, -1.0):
                        plan.append(PlannedScan(at, scanner, symbol, source, "spoiled"))
                        continue
                    plan.append(PlannedScan(at, scanner, symbol, source))
                    try:
                        scan = parse_barcode(f"{symbol.symbology or ''}{symbol.content}")
                    except BarcodeError:
                        continue  # a malformed scan moves nothing
                    book.scan(scanner, scan, at)
            except BookError as err:
                source = f"passes[{what[1]}]" if what[0] == "pass" else str(what[-1])
                if what[0] == "count":
                    source = f"counts[{what[1]}]"
                raise ValueError(f"{source} at {at:g} s: {err}") from err
        staged = {u.urn for s in self.staged for u in self._units[s.pallet]}
        return book.truth(staged), tuple(plan)

    def _pass(self, index: int, t0: float = 0.0, speed: float = 1.0) -> PalletPass:
        p = self.passes[index]
        door = self._door_of(p.door, f"passes[{index}].door")
        pallet = self._pallet_specs()[p.pallet]
        try:
            return PalletPass(
                door.model,
                [u.epc_hex for u in self._units[p.pallet]],
                start=t0 + p.at_s / speed,
                direction=p.direction,
                speed_mps=min(20.0, p.speed_mps * speed),
                layout_seed=f"{self.seed}:{index}",
                spread_m=door.portal.spread_m,
                lateral_m=door.portal.lateral_m,
                lane_m=p.lane_m,
                stop_at_m=p.stop_at_m,
                stop_s=p.stop_s / speed,
                turn_at_m=p.turn_at_m,
                shielded=pallet.shielded,
                leaks=pallet.leaks,
                shield_db=door.portal.shield_db,
            )
        except SimConfigError as err:
            raise ValueError(f"passes[{index}]: {err}") from err

    def _pallet_specs(self) -> dict[str, PalletSpec]:
        return {pallet.id: pallet for pallet in self.pallets}

    def _cross(self, index: int, t0: float = 0.0, speed: float = 1.0) -> CrossTraffic:
        c = self.cross[index]
        door = self._door_of(c.door, f"cross[{index}].door")
        try:
            return CrossTraffic(
                door.model,
                [u.epc_hex for u in self._units[c.pallet]],
                side=c.side,
                start=t0 + c.at_s / speed,
                speed_mps=min(20.0, c.speed_mps * speed),
                offset_m=c.offset_m,
                reach_m=c.reach_m,
                layout_seed=f"{self.seed}:cross:{index}",
                spread_m=door.portal.spread_m,
            )
        except SimConfigError as err:
            raise ValueError(f"cross[{index}]: {err}") from err

    def things(
        self, t0: float = 0.0, speed: float = 1.0
    ) -> list[tuple[str, PalletPass | StagedPallet | CrossTraffic | ShelfPopulation]]:
        """Everything the scenario puts in front of its readers, by reader name, with
        scenario time 0 at ``t0`` (the readers' clock)."""
        placed: list[tuple[str, PalletPass | StagedPallet | CrossTraffic | ShelfPopulation]] = []
        for i, p in enumerate(self.passes):
            door = self._door_of(p.door, "")
            placed.append((door.reader.name, self._pass(i, t0, speed)))
        for staged in self.staged:
            door = self._door_of(staged.door, "")
            until = staged.until_s if staged.until_s is not None else self.duration_s
            thing = StagedPallet(
                door.model,
                [u.epc_hex for u in self.pallet_units(staged.pallet)],
                side=staged.side,
                start=t0 + staged.from_s / speed,
                end=t0 + until / speed,
                read_probability=staged.read_probability,
            )
            placed.append((door.reader.name, thing))
        for i, c in enumerate(self.cross):
            door = self._door_of(c.door, "")
            placed.append((door.reader.name, self._cross(i, t0, speed)))
        for presence in self._presence:
            shelf = self._shelf(presence.shelf)
            end = math.inf if presence.end is None else t0 + presence.end / speed
            population = ShelfPopulation(
                [presence.unit.epc_hex],
                reads_per_s=shelf.reads_per_s * speed,
                start=t0 + presence.start / speed,
                end=end,
            )
            placed.append((shelf.reader.name, population))
        return placed

    def tag_passes(self) -> list[TagPass]:
        """Every tag's time at a door and what a portal must make of it (see ``TagPass``)."""
        found: list[TagPass] = []
        for i, p in enumerate(self.passes):
            read_point = p.door or self.read_point
            start, end = self._windows[i]
            kind: Literal["pass", "stop", "back_out"] = (
                "back_out" if p.turn_at_m is not None else "stop" if p.stop_s else "pass"
            )
            expected: Literal["in", "out"] | None = (
                None
                if p.turn_at_m is not None
                else ("in" if p.direction is Direction.IN else "out")
            )
            for unit in self._units[p.pallet]:
                found.append(
                    TagPass(
                        unit.epc_hex,
                        unit.urn,
                        read_point,
                        start,
                        end,
                        expected,
                        kind,
                        f"passes[{i}]",
                    )
                )
        for i, staged in enumerate(self.staged):
            until = staged.until_s if staged.until_s is not None else self._duration_s
            for unit in self._units[staged.pallet]:
                found.append(
                    TagPass(
                        unit.epc_hex,
                        unit.urn,
                        staged.door or self.read_point,
                        staged.from_s,
                        until,
                        None,
                        "staged",
                        f"staged[{i}]",
                    )
                )
        for i, c in enumerate(self.cross):
            thing = self._cross(i)
            for unit in self._units[c.pallet]:
                found.append(
                    TagPass(
                        unit.epc_hex,
                        unit.urn,
                        c.door or self.read_point,
                        c.at_s,
                        thing.end,
                        None,
                        "cross",
                        f"cross[{i}]",
                    )
                )
        return found

    # --- public view -----------------------------------------------------------------------

    @property
    def door(self) -> DockDoor:
        """The dock door model of the first door."""
        return self._doors[self.read_point].model

    @property
    def all_doors(self) -> tuple[Door, ...]:
        """Every door, the first one first."""
        return tuple(self._doors.values())

    @property
    def scanner_specs(self) -> tuple[ScannerSpec, ...]:
        """Every scanner the scenario uses (with the default one if it made one)."""
        return tuple(self._scanners.values())

    @property
    def duration_s(self) -> float:
        """Wall time the scenario needs: until the last pallet has left the read zone,
        the last scan and the last fault."""
        return self._duration_s

    @property
    def units(self) -> tuple[Unit, ...]:
        """Every tagged case, pallet by pallet."""
        return tuple(u for pallet in self.pallets for u in self._units[pallet.id])

    def pallet_units(self, pallet: str) -> tuple[Unit, ...]:
        """The cases on one pallet.

        Raises:
            ScenarioError: no such pallet.
        """
        try:
            return self._units[pallet]
        except KeyError:
            raise ScenarioError(f"no pallet {pallet!r} in scenario {self.name!r}") from None

    def shelf_readers(self) -> tuple[ShelfReaderSpec, ...]:
        """The readers of the scenario's shelves."""
        return tuple(shelf.reader for shelf in self.shelves)

    def shelf_plan(self) -> tuple[tuple[float, str, str, tuple[Unit, ...]], ...]:
        """(time, kind, shelf read point, cases) of every shelf change: ``put``, ``take``
        (gone unscanned), ``pick`` (taken with a scan), ``back`` (put back)."""
        return self._shelf_plan

    def aggregations(self) -> dict[str, tuple[str, ...]]:
        """SSCC -> EPC URNs of the cases on it, for every pallet with an ``sscc`` (what a
        test or the demo records with ``POST /api/v1/aggregations``)."""
        return {
            pallet.sscc: tuple(u.urn for u in self._units[pallet.id])
            for pallet in self.pallets
            if pallet.sscc is not None
        }

    def pass_window(self, index: int) -> tuple[float, float]:
        """Scenario times (from, to) outside which pass ``index`` cannot be read."""
        return self._windows[index]

    def scan_plan(self) -> tuple[PlannedScan, ...]:
        """Every scan the scenario makes, in time order."""
        return self._plan

    def ground_truth(self) -> GroundTruth:
        """Stock by (GTIN, location), units received, shipped, staged and missing, the
        alerts that must fire and every count (see ``truth``)."""
        assert self._truth is not None
        return self._truth

    def timeline(self) -> list[ScenarioEvent]:
        """The scenario's events in time order."""
        events: list[ScenarioEvent] = []
        for i, p in enumerate(self.passes):
            door = p.door or self.read_point
            events.append(ScenarioEvent(p.at_s, "pass_start", p.pallet, p.direction, None, i, door))
            end = self._windows[i][1]
            events.append(ScenarioEvent(end, "pass_end", p.pallet, p.direction, None, i, door))
        for i, s in enumerate(self.staged):
            until = s.until_s if s.until_s is not None else self._duration_s
            door = s.door or self.read_point
            events.append(ScenarioEvent(s.from_s, "staged_start", s.pallet, None, s.side, i, door))
            events.append(ScenarioEvent(until, "staged_end", s.pallet, None, s.side, i, door))
        for i, c in enumerate(self.cross):
            door = c.door or self.read_point
            end = self._cross(i).end
            events.append(ScenarioEvent(c.at_s, "cross_start", c.pallet, None, c.side, i, door))
            events.append(ScenarioEvent(end, "cross_end", c.pallet, None, c.side, i, door))
        for i, (when, kind, shelf, units) in enumerate(self._shelf_plan):
            if kind == "put" and when == 0.0:
                continue  # the shelf's stock, there from the start
            names = ", ".join(f"{u.item} #{u.serial}" for u in units)
            events.append(
                ScenarioEvent(when, "shelf", index=i, target=shelf, detail=f"{kind}: {names}")
            )
        for i, planned in enumerate(self._plan):
            text = f"{planned.symbol.symbology or ''}{planned.symbol.content}"
            if planned.fate != "ok":
                text += f" ({planned.fate})"
            events.append(
                ScenarioEvent(planned.at_s, "scan", index=i, target=planned.scanner, detail=text)
            )
        for i, fault in enumerate(self.faults):
            target = fault.scanner or fault.reader or self.reader.name
            checked = self._faults[i]
            detail = checked.describe() if checked is not None else fault.kind
            events.append(ScenarioEvent(fault.at_s, "fault", index=i, target=target, detail=detail))
        events.sort(key=lambda e: e.at_s)
        events.append(ScenarioEvent(self._duration_s, "done"))
        return events


def _error_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _format_errors(err: ValidationError) -> str:
    lines = []
    for error in err.errors():
        text = str(error["msg"]).removeprefix("Value error, ")
        path = _error_path(tuple(error["loc"]))
        lines.append(f"{path}: {text}" if path else text)
    return "; ".join(lines)


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Validate a scenario given as TOML text.

    Raises:
        ScenarioError: bad TOML or invalid content; the message names the key.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{source}: not valid TOML: {err}") from err
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(f"{source}: {_format_errors(err)}") from err


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file.

    Raises:
        ScenarioError: unreadable, too big, bad TOML or invalid content.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ScenarioError(f"{path}: {size} bytes; scenarios are at most {MAX_FILE_BYTES}")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ScenarioError(f"{path}: cannot read: {err}") from err
    return parse_scenario(text, str(path))


DOORWAY_SCENARIOS: Final = (
    "overlap",
    "multipath",
    "shielded",
    "doorway_stop",
    "back_out",
    "wide_door",
    "cross_traffic",
    "jitter",
)
"""The bundled hard-doorway scenarios, each with per-tag-pass ground truth: overlapping
fields, multipath, a shielded pallet, a stop in the door, a pallet backing out, two
pallets crossing a wide door, cross traffic, timestamp jitter."""


def bundled_scenario(name: str) -> Path:
    """Path of a scenario shipped with the package (``"demo"``, ``"small"``, ...).

    Raises:
        ScenarioError: no such bundled scenario.
    """
    path = SCENARIO_DIR / f"{name}.toml"
    if not name.isidentifier() or not path.is_file():
        known = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
        raise ScenarioError(f"no bundled scenario {name!r}; there are {known}")
    return path


# --- running ---------------------------------------------------------------------------------


def _readers(
    scenario: Scenario, sims: ReaderSimulator | Mapping[str, ReaderSimulator]
) -> dict[str, ReaderSimulator]:
    if isinstance(sims, ReaderSimulator):
        sims = {scenario.reader.name: sims}
    readers = dict(sims)
    for door in scenario.all_doors:
        sim = readers.get(door.reader.name)
        if sim is None:
            raise ScenarioError(
                f"scenario {scenario.name!r} needs reader {door.reader.name!r} (door"
                f" {door.read_point}); given {sorted(readers)}"
            )
        needed = max(door.model.antennas)
        if sim.antennas < needed:
            raise ScenarioError(
                f"scenario {scenario.name!r} needs {needed} antennas, {sim.name!r} has"
                f" {sim.antennas}"
            )
        gpi = door.reader.photo_eye_gpi
        if gpi is not None and gpi > sim.profile.gpis:
            raise ScenarioError(f"reader {sim.name!r} has no GPI {gpi} for the photo-eye")
    for shelf in scenario.shelves:
        if shelf.reader.name not in readers:
            raise ScenarioError(
                f"scenario {scenario.name!r} needs reader {shelf.reader.name!r} (shelf"
                f" {shelf.read_point}); given {sorted(readers)}"
            )
    return readers


def _scanners(
    scenario: Scenario, scanners: ScannerSimulator | Mapping[str, ScannerSimulator] | None
) -> dict[str, ScannerSimulator]:
    if isinstance(scanners, ScannerSimulator):
        scanners = {scanners.name: scanners}
    given = dict(scanners or {})
    needed = {p.scanner for p in scenario.scan_plan()} | {
        f.scanner for f in scenario.faults if f.scanner
    }
    missing = sorted(needed - set(given))
    if missing:
        raise ScenarioError(
            f"scenario {scenario.name!r} scans with {missing}; pass a ScannerSimulator for each"
        )
    return given


async def run_scenario(
    scenario: Scenario,
    sim: ReaderSimulator | Mapping[str, ReaderSimulator],
    progress: Callable[[ScenarioEvent], None] | None = None,
    *,
    scanners: ScannerSimulator | Mapping[str, ScannerSimulator] | None = None,
    speed: float = 1.0,
    keep_shelves: bool = False,
) -> ScenarioRun:
    """Play a scenario into simulators' fields, scanners and fault injectors.

    Time 0 is now (plus ``LEAD_S``). Returns at ``scenario.duration_s`` (divided by
    ``speed``); what it put into the fields is taken out again, also when cancelled.
    Inventory is the client's business: reads happen only while a client has inventory
    running (see ``ReaderSimulator.wait_inventory``).

    Args:
        scenario: the scenario.
        sim: the reader of the first door, or every door's reader by reader name.
        progress: called with each event as it happens.
        scanners: the scanners the scenario scans with, by name (or the only one).
        speed: 1 is real time; 2 plays twice as fast (pallets move twice as fast too).
        keep_shelves: leave the cases still on shelves in their readers' fields when the
            run ends (the caller clears them): a case left on a shelf does not depart just
            because the run is over.

    Raises:
        ScenarioError: a reader or scanner is missing or lacks what the scenario needs.
    """
    if not 0.01 <= speed <= MAX_SPEED:
        raise ScenarioError(f"speed {speed} outside 0.01..{MAX_SPEED}")
    readers = _readers(scenario, sim)
    hands = _scanners(scenario, scanners)
    first = readers[scenario.reader.name]
    t0 = first.now() + LEAD_S
    started_utc_us = time.time_ns() // 1000 + round((t0 - first.now()) * 1_000_000)
    placed = [(readers[name], thing) for name, thing in scenario.things(t0, speed)]
    events = scenario.timeline()
    plan = scenario.scan_plan()
    jitters = {door.reader.name: door.reader.timestamp_jitter_ms for door in scenario.all_doors}
    before = {name: readers[name].timestamp_jitter_s for name in jitters}
    for name, jitter_ms in jitters.items():
        if jitter_ms:
            readers[name].timestamp_jitter_s = jitter_ms / 1000
    for reader, thing in placed:
        reader.field.add(thing)
    try:
        async with asyncio.TaskGroup() as tasks:
            for event in events:
                await asyncio.sleep(max(0.0, t0 + event.at_s / speed - first.now()))
                logger.info(
                    "scenario %s t=%.2f %s %s %s",
                    scenario.name,
                    event.at_s,
                    event.kind,
                    event.pallet or event.target,
                    event.direction or event.side or event.detail,
                )
                if event.kind == "scan":
                    planned = plan[event.index]
                    if planned.fate == "lost":
                        logger.info("scan lost: %s is unplugged", planned.scanner)
                    else:
                        await hands[planned.scanner].scan(planned.symbol)
                elif event.kind == "fault":
                    _inject(scenario, event.index, readers, hands, tasks)
                if progress is not None:
                    progress(event)
    except* SimError as group:
        raise ScenarioError(f"scenario {scenario.name!r}: {group.exceptions[0]}") from group
    finally:
        for reader, thing in placed:
            if not (keep_shelves and isinstance(thing, ShelfPopulation)):
                reader.field.discard(thing)
        for name, jitter in before.items():
            readers[name].timestamp_jitter_s = jitter
    return ScenarioRun(started_utc_us, t0, tuple(events), speed)


def _inject(
    scenario: Scenario,
    index: int,
    readers: Mapping[str, ReaderSimulator],
    hands: Mapping[str, ScannerSimulator],
    tasks: asyncio.TaskGroup,
) -> None:
    spec = scenario.faults[index]
    if spec.scanner is not None:
        # A replug waits out its delay; the timeline goes on meanwhile.
        tasks.create_task(hands[spec.scanner].inject(spec.kind, **spec.params))
        return
    fault = scenario._faults[index]
    assert fault is not None
    reader = readers[spec.reader or scenario.reader.name]
    reader.inject(fault.kind, **{k: v for k, v in fault.params.items() if v is not None})
