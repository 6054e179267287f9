"""Declarative dock-door scenarios: TOML in, a timeline of pallets and a ground truth out.

A scenario names a site, a read point (one dock door) and its reader's antennas, the
items (GTINs), the pallets (cases of items; each case gets an SGTIN-96 tag), the passes
through the door (when, which pallet, in or out, how fast) and pallets staged beside
the door. ``Scenario.ground_truth()`` says what a correct system must end up with;
``run_scenario`` plays the timeline into a ``ReaderSimulator``'s field in real time.

Times in a scenario are seconds from its start. Real seconds are used throughout (no
acceleration): the edge's departure timeouts and the reports' UTC timestamps have to
agree with the wall clock.

Example (the bundled ``small.toml`` is a complete one)::

    name = "small"
    site = "wh1"
    read_point = "wh1.dock.1"
    inbound_location = "wh1.receiving"

    [reader]
    outside_antennas = [1]
    inside_antennas = [2]

    [[items]]
    id = "soap"
    name = "Soap 500 ml"
    company_prefix = "0614141"
    item_reference = "812345"

    [[pallets]]
    id = "P1"
    cases = [{ item = "soap", count = 4 }]

    [[passes]]
    at_s = 0.0
    pallet = "P1"
    direction = "in"
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from firmware_sim.errors import ScenarioError, SimConfigError
from firmware_sim.portal import Direction, DockDoor, PalletPass, RfModel, Side, StagedPallet
from firmware_sim.reader import ReaderSimulator
from wire.identifiers import IdentifierError, sgtin96_hex

logger = logging.getLogger(__name__)

SCENARIO_DIR: Final = Path(__file__).resolve().parent / "scenarios"
MAX_FILE_BYTES: Final = 1024 * 1024
MAX_CASES: Final = 20_000
CASE_FILTER_VALUE: Final = 2
"""SGTIN filter value 2: "full case for transport"."""
LEAD_S: Final = 0.05
"""Gap between ``run_scenario`` being called and the scenario's time 0."""
ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReaderSpec(_Model):
    """``[reader]``: the simulated reader at the door and which antennas face where."""

    name: str = Field(default="dock1", pattern=ID_PATTERN)
    antennas: int = Field(default=2, ge=1, le=8)
    outside_antennas: tuple[int, ...] = Field(default=(1,), min_length=1, max_length=8)
    inside_antennas: tuple[int, ...] = Field(default=(2,), min_length=1, max_length=8)

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


class ItemSpec(_Model):
    """``[[items]]``: a trade item; its GTIN comes from company prefix + item reference."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    company_prefix: str = Field(pattern=r"^\d{6,12}$")
    item_reference: str = Field(pattern=r"^\d{1,7}$")
    """Indicator digit first, then the item reference proper (13 digits with the prefix)."""

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
        return body + gs1_check_digit(body)


class CaseSpec(_Model):
    item: str
    count: int = Field(ge=1, le=1000)


class PalletSpec(_Model):
    """``[[pallets]]``: cases of items; every case carries its own SGTIN tag."""

    id: str = Field(pattern=ID_PATTERN)
    cases: tuple[CaseSpec, ...] = Field(min_length=1, max_length=100)


class PassSpec(_Model):
    """``[[passes]]``: a pallet driven through the door."""

    at_s: float = Field(ge=0, le=86_400)
    """When the pallet starts moving, ``portal.approach_m`` from the door."""
    pallet: str
    direction: Direction
    speed_mps: float = Field(default=3.0, ge=0.2, le=10)


class StagedSpec(_Model):
    """``[[staged]]``: a pallet parked beside the door, read now and then by one side."""

    pallet: str
    side: Side
    from_s: float = Field(default=0.0, ge=0, le=86_400)
    until_s: float | None = Field(default=None, ge=0, le=86_400)
    """When it goes away; None means the end of the scenario's passes."""
    read_probability: float = Field(default=0.02, gt=0, le=1)


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
class GroundTruth:
    """What a correct system knows after the scenario.

    Attributes:
        stock: units on hand by (GTIN-14, location); locations with none are left out.
        received: EPC URNs of every unit that passed "in".
        shipped: EPC URNs of every unit that passed "out".
        staged: EPC URNs of units on staged pallets (they move nothing).
    """

    stock: dict[tuple[str, str], int]
    received: set[str]
    shipped: set[str]
    staged: set[str]


EventKind = Literal["pass_start", "pass_end", "staged_start", "staged_end", "done"]


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
    """Position in ``passes`` or ``staged``."""


@dataclass(frozen=True, slots=True)
class ScenarioRun:
    """How a run went: when time 0 was (UTC µs and the simulator's clock) and its events."""

    started_utc_us: int
    started_monotonic: float
    events: tuple[ScenarioEvent, ...]


def gs1_check_digit(digits: str) -> str:
    """The GS1 mod-10 check digit of ``digits`` (weights 3,1,3,... from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str((10 - total % 10) % 10)


class Scenario(_Model):
    """A validated scenario (see the module docstring for the file format)."""

    name: str = Field(pattern=ID_PATTERN)
    description: str = Field(default="", max_length=2000)
    site: str = Field(pattern=ID_PATTERN)
    read_point: str = Field(min_length=1, max_length=128)
    inbound_location: str = Field(min_length=1, max_length=128)
    """Where an "in" pass puts the cases (the read point's inbound location)."""
    seed: int = Field(default=1, ge=0, le=2**63)
    min_gap_s: float = Field(default=2.5, ge=0, le=600)
    """Least time between one pallet leaving the read zone and the next entering it."""
    reader: ReaderSpec = ReaderSpec()
    portal: PortalSpec = PortalSpec()
    items: tuple[ItemSpec, ...] = Field(min_length=1, max_length=1000)
    pallets: tuple[PalletSpec, ...] = Field(min_length=1, max_length=1000)
    passes: tuple[PassSpec, ...] = Field(default=(), max_length=1000)
    staged: tuple[StagedSpec, ...] = Field(default=(), max_length=100)

    _units: dict[str, tuple[Unit, ...]] = PrivateAttr(default_factory=dict)
    _door: DockDoor = PrivateAttr(default_factory=DockDoor)
    _windows: tuple[tuple[float, float], ...] = PrivateAttr(default=())
    _duration_s: float = PrivateAttr(default=0.0)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        self._door = self._make_door()
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
            if staged.until_s is None and not self.passes:
                raise ValueError(f"staged[{i}].until_s: required when there are no passes")
            until = staged.until_s if staged.until_s is not None else end
            if until < staged.from_s:
                raise ValueError(f"staged[{i}].until_s: before from_s")
            end = max(end, until)
        self._duration_s = end
        return self

    def _make_door(self) -> DockDoor:
        p = self.portal
        try:
            rf = RfModel(
                p0=p.p0,
                d0_m=p.d0_m,
                min_probability=p.min_probability,
                rssi_near_dbm=p.rssi_near_dbm,
                rssi_far_dbm=p.rssi_far_dbm,
                far_m=p.far_m,
                rssi_noise_db=p.rssi_noise_db,
            )
            door = DockDoor(
                outside_antennas=self.reader.outside_antennas,
                inside_antennas=self.reader.inside_antennas,
                outside_x_m=p.outside_x_m,
                inside_x_m=p.inside_x_m,
                approach_m=p.approach_m,
                rf=rf,
            )
        except SimConfigError as err:
            raise ValueError(f"portal: {err}") from err
        low, high = door.read_zone_m()
        if p.approach_m < max(-low, high) + p.spread_m:
            raise ValueError(
                f"portal.approach_m: {p.approach_m} m starts pallets inside the read zone"
                f" ({low:.2f}..{high:.2f} m); make it at least {max(-low, high) + p.spread_m:.2f}"
            )
        return door

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
        order = sorted(range(len(self.passes)), key=lambda k: self._windows[k][0])
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
                    f"passes[{after}].at_s: pallet {self.passes[after].pallet!r} enters the read"
                    f" zone {when}; min_gap_s is {self.min_gap_s}"
                )

    def _pass(self, index: int, t0: float = 0.0) -> PalletPass:
        p = self.passes[index]
        return PalletPass(
            self._door,
            [u.epc_hex for u in self._units[p.pallet]],
            start=t0 + p.at_s,
            direction=p.direction,
            speed_mps=p.speed_mps,
            layout_seed=f"{self.seed}:{index}",
            spread_m=self.portal.spread_m,
            lateral_m=self.portal.lateral_m,
        )

    # --- public view -----------------------------------------------------------------------

    @property
    def door(self) -> DockDoor:
        """The dock door model of this scenario."""
        return self._door

    @property
    def duration_s(self) -> float:
        """Wall time the scenario needs: until the last pallet has left the read zone."""
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

    def pass_window(self, index: int) -> tuple[float, float]:
        """Scenario times (from, to) outside which pass ``index`` cannot be read."""
        return self._windows[index]

    def ground_truth(self) -> GroundTruth:
        """Stock by (GTIN, location) and the units received, shipped and staged."""
        stock: Counter[tuple[str, str]] = Counter()
        received: set[str] = set()
        shipped: set[str] = set()
        for p in sorted(self.passes, key=lambda p: p.at_s):
            for unit in self._units[p.pallet]:
                key = (unit.gtin, self.inbound_location)
                if p.direction is Direction.IN:
                    stock[key] += 1
                    received.add(unit.urn)
                else:
                    stock[key] -= 1
                    shipped.add(unit.urn)
        staged = {u.urn for s in self.staged for u in self._units[s.pallet]}
        return GroundTruth(
            stock={key: n for key, n in stock.items() if n},
            received=received,
            shipped=shipped,
            staged=staged,
        )

    def timeline(self) -> list[ScenarioEvent]:
        """The scenario's events in time order."""
        events: list[ScenarioEvent] = []
        for i, p in enumerate(self.passes):
            events.append(ScenarioEvent(p.at_s, "pass_start", p.pallet, p.direction, None, i))
            end = self._windows[i][1]
            events.append(ScenarioEvent(end, "pass_end", p.pallet, p.direction, None, i))
        for i, s in enumerate(self.staged):
            until = s.until_s if s.until_s is not None else self._duration_s
            events.append(ScenarioEvent(s.from_s, "staged_start", s.pallet, None, s.side, i))
            events.append(ScenarioEvent(until, "staged_end", s.pallet, None, s.side, i))
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


def bundled_scenario(name: str) -> Path:
    """Path of a scenario shipped with the package (``"demo"``, ``"small"``).

    Raises:
        ScenarioError: no such bundled scenario.
    """
    path = SCENARIO_DIR / f"{name}.toml"
    if not name.isidentifier() or not path.is_file():
        known = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
        raise ScenarioError(f"no bundled scenario {name!r}; there are {known}")
    return path


async def run_scenario(
    scenario: Scenario,
    sim: ReaderSimulator,
    progress: Callable[[ScenarioEvent], None] | None = None,
) -> ScenarioRun:
    """Play a scenario into a simulator's field in real time.

    Time 0 is now (plus ``LEAD_S``). Returns when the last pallet has left the read zone
    (``scenario.duration_s``); what it put into the field is taken out again, also when
    cancelled. Inventory is the client's business: reads happen only while a client
    has inventory running (see ``ReaderSimulator.wait_inventory``).

    Raises:
        ScenarioError: the simulator lacks antennas the scenario's door uses.
    """
    needed = max(scenario.door.antennas)
    if sim.antennas < needed:
        raise ScenarioError(
            f"scenario {scenario.name!r} needs {needed} antennas, {sim.name!r} has {sim.antennas}"
        )
    t0 = sim.now() + LEAD_S
    started_utc_us = time.time_ns() // 1000 + round((t0 - sim.now()) * 1_000_000)
    things: list[PalletPass | StagedPallet] = [
        scenario._pass(i, t0) for i in range(len(scenario.passes))
    ]
    for i, staged in enumerate(scenario.staged):
        until = staged.until_s if staged.until_s is not None else scenario.duration_s
        things.append(
            StagedPallet(
                scenario.door,
                [u.epc_hex for u in scenario.pallet_units(staged.pallet)],
                side=staged.side,
                start=t0 + staged.from_s,
                end=t0 + until,
                read_probability=staged.read_probability,
            )
        )
        logger.debug("staged[%d] %s on the %s side", i, staged.pallet, staged.side)
    events = scenario.timeline()
    for thing in things:
        sim.field.add(thing)
    try:
        for event in events:
            await asyncio.sleep(max(0.0, t0 + event.at_s - sim.now()))
            logger.info(
                "scenario %s t=%.2f %s %s %s",
                scenario.name,
                event.at_s,
                event.kind,
                event.pallet,
                event.direction or event.side or "",
            )
            if progress is not None:
                progress(event)
    finally:
        for thing in things:
            sim.field.discard(thing)
    return ScenarioRun(started_utc_us, t0, tuple(events))
