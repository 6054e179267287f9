"""Declarative warehouse scenarios: TOML in, a timeline and a ground truth out.

A ``Scenario`` is a scenario file (``scenario_model.ScenarioSpec``, its tables in
``scenario_tables``) validated as a whole and planned (``scenario_plan``).
``Scenario.ground_truth()`` says what a correct system must end up with (``truth``),
``Scenario.tag_passes()`` what a portal must make of every tag's time at a door;
``scenario_run.run_scenario`` plays the timeline into reader and scanner simulators.

The bundled ``small.toml`` is a complete example; ``rough_day.toml`` uses every table.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Final

from pydantic import PrivateAttr, ValidationError, model_validator

from firmware_sim.errors import ScenarioError
from firmware_sim.faults import Fault
from firmware_sim.portal import ShelfPopulation, StagedPallet
from firmware_sim.portal_door import DockDoor
from firmware_sim.portal_motion import CrossTraffic, PalletPass
from firmware_sim.scenario_book import PlannedScan
from firmware_sim.scenario_doorways import Door, TagPass, expected_tag_passes
from firmware_sim.scenario_model import ScenarioSpec
from firmware_sim.scenario_plan import (
    ScenarioEvent,
    ScenarioPlan,
    placed_things,
    plan_scenario,
    timeline_events,
)
from firmware_sim.scenario_shelves import ShelfStep
from firmware_sim.scenario_tables import ScannerSpec, ShelfReaderSpec
from firmware_sim.scenario_units import Unit, all_units, pallet_contents
from firmware_sim.truth import GroundTruth

SCENARIO_DIR: Final = Path(__file__).resolve().parent / "scenarios"
MAX_FILE_BYTES: Final = 1024 * 1024


class Scenario(ScenarioSpec):
    """A validated scenario: what its file says (``ScenarioSpec``, see ``scenario_model``
    for the format), checked as a whole and planned."""

    _plan: ScenarioPlan | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _planned(self) -> Scenario:
        self._plan = plan_scenario(self)
        return self

    @property
    def plan(self) -> ScenarioPlan:
        """The scenario resolved and planned."""
        assert self._plan is not None
        return self._plan

    def things(
        self, t0: float = 0.0, speed: float = 1.0
    ) -> list[tuple[str, PalletPass | StagedPallet | CrossTraffic | ShelfPopulation]]:
        """Everything the scenario puts in front of its readers, by reader name, with
        scenario time 0 at ``t0`` (the readers' clock)."""
        return placed_things(self, self.plan, t0, speed)

    def tag_passes(self) -> list[TagPass]:
        """Every tag's time at a door and what a portal must make of it (see ``TagPass``)."""
        plan = self.plan
        return expected_tag_passes(self, plan.doors, plan.units, plan.windows, plan.duration_s)

    @property
    def door(self) -> DockDoor:
        """The dock door model of the first door."""
        return self.plan.doors[self.read_point].model

    @property
    def all_doors(self) -> tuple[Door, ...]:
        """Every door, the first one first."""
        return tuple(self.plan.doors.values())

    @property
    def scanner_specs(self) -> tuple[ScannerSpec, ...]:
        """Every scanner the scenario uses (with the default one if it made one)."""
        return tuple(self.plan.scanners.values())

    @property
    def duration_s(self) -> float:
        """Wall time the scenario needs: until the last pallet has left the read zone,
        the last scan and the last fault."""
        return self.plan.duration_s

    @property
    def units(self) -> tuple[Unit, ...]:
        """Every tagged case, pallet by pallet."""
        return all_units(self, self.plan.units)

    def pallet_units(self, pallet: str) -> tuple[Unit, ...]:
        """The cases on one pallet.

        Raises:
            ScenarioError: no such pallet.
        """
        try:
            return self.plan.units[pallet]
        except KeyError:
            raise ScenarioError(f"no pallet {pallet!r} in scenario {self.name!r}") from None

    def shelf_readers(self) -> tuple[ShelfReaderSpec, ...]:
        """The readers of the scenario's shelves."""
        return tuple(shelf.reader for shelf in self.shelves)

    def shelf_plan(self) -> tuple[ShelfStep, ...]:
        """(time, kind, shelf read point, cases) of every shelf change: ``put``, ``take``
        (gone unscanned), ``pick`` (taken with a scan), ``back`` (put back)."""
        return self.plan.shelf_plan

    def aggregations(self) -> dict[str, tuple[str, ...]]:
        """SSCC -> EPC URNs of the cases on it, for every pallet with an ``sscc`` (what a
        test or the demo records with ``POST /api/v1/aggregations``)."""
        return pallet_contents(self, self.plan.units)

    def pass_window(self, index: int) -> tuple[float, float]:
        """Scenario times (from, to) outside which pass ``index`` cannot be read."""
        return self.plan.windows[index]

    def scan_plan(self) -> tuple[PlannedScan, ...]:
        """Every scan the scenario makes, in time order."""
        return self.plan.scans

    def ground_truth(self) -> GroundTruth:
        """Stock by (GTIN, location), units received, shipped, staged and missing, the
        alerts that must fire and every count (see ``truth``)."""
        return self.plan.truth

    def reader_fault(self, index: int) -> Fault | None:
        """The checked reader fault of ``faults[index]`` (None: a scanner fault)."""
        return self.plan.faults[index]

    def timeline(self) -> list[ScenarioEvent]:
        """The scenario's events in time order."""
        return timeline_events(self, self.plan)


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
