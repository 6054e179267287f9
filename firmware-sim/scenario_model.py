"""What a scenario file says: the TOML schema of a declarative warehouse scenario.

A scenario names a site, its dock doors (a read point, the reader at it and which of its
antennas face where), the items (GTINs), the pallets (cases of items; each case gets an
SGTIN-96 tag), the passes through the doors (when, which pallet, in or out, how fast),
pallets staged beside a door, handheld counts and scans, and faults at given times.
Times are seconds from the scenario's start. ``ScenarioSpec`` is the file as read;
``scenario.Scenario`` is the same file validated and planned.


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

from typing import Annotated, Final

from pydantic import Field

from firmware_sim.scenario_tables import (
    ID_PATTERN,
    CountSpec,
    CrossSpec,
    DoorSpec,
    FaultAt,
    ItemSpec,
    LocationSpec,
    PalletSpec,
    PassSpec,
    PortalSpec,
    ReaderSpec,
    ScannerSpec,
    ScanSpec,
    ShelfChangeSpec,
    ShelfSpec,
    SpecModel,
    StagedSpec,
)

SITE_PATTERN: Final = r"^[A-Za-z0-9_-]{1,32}$"


class ScenarioSpec(SpecModel):
    """A scenario file's content, each table checked on its own (see the module
    docstring); ``scenario.Scenario`` checks the whole and plans it."""

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
