"""The tagged cases of a scenario: every case on every pallet gets an SGTIN-96 tag,
serials counted per item in the order the file lists the pallets."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from firmware_sim.scenario_model import ScenarioSpec
from firmware_sim.scenario_tables import ItemSpec
from wire.identifiers import IdentifierError, sgtin96_hex

MAX_CASES: Final = 20_000
CASE_FILTER_VALUE: Final = 2
"""SGTIN filter value 2: "full case for transport"."""


@dataclass(frozen=True, slots=True)
class Unit:
    """One tagged case."""

    urn: str
    epc_hex: str
    gtin: str
    item: str
    pallet: str
    serial: int


PalletUnits = Mapping[str, tuple[Unit, ...]]
"""The cases on each pallet, by pallet id."""


def make_units(scenario: ScenarioSpec) -> dict[str, tuple[Unit, ...]]:
    """The cases on each pallet, by pallet id; checks items and pallets are unique."""
    items: dict[str, ItemSpec] = {}
    gtins: dict[str, str] = {}
    for i, item in enumerate(scenario.items):
        if item.id in items:
            raise ValueError(f"items[{i}].id: duplicate item id {item.id!r}")
        if item.gtin in gtins:
            raise ValueError(f"items[{i}]: GTIN {item.gtin} is also item {gtins[item.gtin]!r}")
        items[item.id] = item
        gtins[item.gtin] = item.id
    serials: Counter[str] = Counter()
    units: dict[str, tuple[Unit, ...]] = {}
    total = 0
    for i, pallet in enumerate(scenario.pallets):
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


def all_units(scenario: ScenarioSpec, units: PalletUnits) -> tuple[Unit, ...]:
    """Every tagged case, pallet by pallet."""
    return tuple(u for pallet in scenario.pallets for u in units[pallet.id])


def pallet_contents(scenario: ScenarioSpec, units: PalletUnits) -> dict[str, tuple[str, ...]]:
    """SSCC -> EPC URNs of the cases on it, for every pallet with an ``sscc``."""
    return {
        pallet.sscc: tuple(u.urn for u in units[pallet.id])
        for pallet in scenario.pallets
        if pallet.sscc is not None
    }
