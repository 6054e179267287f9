"""What ``stockgate sim ...`` runs: a shelf reader, a scenario, or a barcode scanner.

Each entry point is a coroutine returning the process exit status (the command line
runs it with ``asyncio.run``); bad input is reported on stderr with status 2. Each says
on stdout what it is doing.

Faults on the command line are ``KIND[,NAME=VALUE...][@SECONDS]`` (``faults``): without
``@`` they act at once (a connection fault then waits for the next connections, a
session fault for the next client's inventory); with it, that many seconds after the
simulator started serving (``sim reader``) or after the scenario's time 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from firmware_sim.barcode_symbols import ScannerStyle, Symbol, demo_symbols, parse_terminator
from firmware_sim.errors import ScenarioError, SimConfigError, SimError
from firmware_sim.faults import FAULTS, ScheduledFault, parse_fault_arg
from firmware_sim.portal import ShelfPopulation, TagField
from firmware_sim.reader import ReaderSimulator
from firmware_sim.replay import load_reports
from firmware_sim.scanner import ScannerFault, ScannerSimulator, check_scanner_fault
from firmware_sim.scenario import Scenario, load_scenario
from firmware_sim.scenario_plan import ScenarioEvent
from firmware_sim.scenario_run import run_scenario
from wire.barcodes import COMMAND_PREFIX, LOCATION_PREFIX
from wire.gs1 import GS
from wire.identifiers import sgtin96_hex

SHELF_COMPANY_PREFIX: Final = "0614141"
SHELF_ITEM_REFERENCE: Final = "100099"
EXIT_USAGE: Final = 2
DEMO_GTINS: Final = ("09506000134352", "00614141000012", "10614141000118")
MAX_SCAN_FILE_BYTES: Final = 1024 * 1024
_HRI = re.compile(r"\((\d{2,4})\)([^()]*)")
_FIXED_AIS: Final = frozenset({"00", "01", "02", "11", "12", "13", "15", "16", "17"})
"""AIs of fixed length: no GS after them (GS1 General Specifications, figure 5.10.1-2)."""


def shelf_epcs(population: int) -> list[str]:
    """SGTIN-96 EPCs of a shelf population (one item, serials 1..population)."""
    prefix = f"urn:epc:id:sgtin:{SHELF_COMPANY_PREFIX}.{SHELF_ITEM_REFERENCE}"
    return [sgtin96_hex(f"{prefix}.{serial}") for serial in range(1, population + 1)]


def _say(text: str) -> None:
    print(text, flush=True)


def _error(text: str) -> int:
    print(f"error: {text}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def _faults(texts: Sequence[str]) -> list[ScheduledFault]:
    return [parse_fault_arg(text) for text in texts]


async def _inject_later(sim: ReaderSimulator, scheduled: ScheduledFault, t0: float) -> None:
    await asyncio.sleep(max(0.0, t0 + (scheduled.at_s or 0.0) - sim.now()))
    fault = scheduled.fault
    _say(f"fault on reader {sim.name!r}: {fault.describe()}")
    sim.inject(fault.kind, **{k: v for k, v in fault.params.items() if v is not None})


async def serve_shelf_reader(
    *,
    port: int,
    antennas: int,
    population: int,
    rate: float,
    faults: Sequence[str] = (),
    replay: Path | None = None,
) -> int:
    """Serve one simulated reader seeing a static population until cancelled.

    Args:
        port: TCP port on 127.0.0.1 (0 picks a free one).
        antennas: antenna ports of the reader (1..8).
        population: tags on the shelf (0 leaves the field empty).
        rate: tag reads per second over all antennas.
        faults: ``--fault`` arguments.
        replay: a captures file whose RO_ACCESS_REPORTs are replayed after each
            handshake, in a loop, besides the shelf's reads.
    """
    try:
        field = TagField()
        if population:
            field.add(ShelfPopulation(shelf_epcs(population), reads_per_s=rate))
        sim = ReaderSimulator(antennas=antennas, name="shelf", port=port, field=field)
        scheduled = _faults(faults)
        frames = load_reports(replay) if replay is not None else []
    except SimConfigError as err:
        return _error(str(err))
    async with sim, asyncio.TaskGroup() as tasks:
        _say(
            f"LLRP reader {sim.name!r} on {sim.host}:{sim.port}: {antennas} antennas,"
            f" {population} tags, {rate:g} reads/s"
        )
        if frames:
            sim.replay(frames, loops=0)
            _say(f"replaying {len(frames)} recorded reports from {replay} after each handshake")
        t0 = sim.now()
        for item in scheduled:
            when = "now" if item.at_s is None else f"at {item.at_s:g} s"
            _say(f"fault {item.fault.describe()} {when}")
            tasks.create_task(_inject_later(sim, item, t0))
        await asyncio.Event().wait()
    return 0


def _print_event(event: ScenarioEvent) -> None:
    detail = event.direction or event.side or event.detail
    subject = event.pallet or event.target
    _say(f"t={event.at_s:6.2f}s  {event.kind:<12} {subject} {detail}".rstrip())


def truth_summary(scenario: Scenario) -> dict[str, object]:
    """The scenario's ground truth as plain JSON values."""
    truth = scenario.ground_truth()
    return {
        "scenario": scenario.name,
        "read_point": scenario.read_point,
        "duration_s": round(scenario.duration_s, 2),
        "stock": [
            {"gtin": gtin, "location": location, "on_hand": n}
            for (gtin, location), n in sorted(truth.stock.items())
        ],
        "received": sorted(truth.received),
        "shipped": sorted(truth.shipped),
        "staged": sorted(truth.staged),
        "missing": sorted(truth.missing),
        "units_shipped": truth.units_shipped,
        "alerts": [{"kind": a.kind, "subject": a.subject} for a in truth.alerts],
        "counts": [
            {
                "location": c.location,
                "scanner": c.scanner,
                "expected": c.expected,
                "counted": c.counted,
            }
            for c in truth.counts
        ],
        "shrinkage": [
            {"read_point": point, "location": location, "gtin": gtin, "missing": n}
            for (point, location, gtin), n in sorted(truth.shrinkage.items())
        ],
        "pallets": {sscc: list(epcs) for sscc, epcs in scenario.aggregations().items()},
    }


async def run_scenario_file(
    file: Path,
    *,
    port: int,
    wait_s: float | None = None,
    faults: Sequence[str] = (),
    scanner_dir: Path = Path("tmp"),
    speed: float = 1.0,
) -> int:
    """Serve a scenario's readers (and scanners), wait for inventory, play the scenario.

    Prints the ground truth first (JSON), where each reader and scanner is, then each
    event as it happens. The first door's reader listens on ``port``, the others on the
    ports after it (or free ones when ``port`` is 0). Scanners appear as pty links in
    ``scanner_dir`` (``scanner_dir/<name>``); shelf readers take the ports after the
    doors'.

    Args:
        file: the scenario TOML.
        port: TCP port on 127.0.0.1 of the first door's reader.
        wait_s: how long to wait for every reader's client to start inventory (None:
            forever).
        faults: ``--fault`` arguments for the first door's reader, times relative to the
            scenario's time 0.
        scanner_dir: where scanner links go.
        speed: 1 plays in real time; more plays faster.
    """
    try:
        scenario = load_scenario(file)
        scheduled = _faults(faults)
        sims = {
            door.reader.name: ReaderSimulator(
                antennas=door.reader.antennas,
                name=door.reader.name,
                seed=scenario.seed,
                port=port + index if port else 0,
            )
            for index, door in enumerate(scenario.all_doors)
        }
        for index, reader in enumerate(scenario.shelf_readers(), len(sims)):
            sims[reader.name] = ReaderSimulator(
                antennas=reader.antennas,
                name=reader.name,
                seed=scenario.seed,
                port=port + index if port else 0,
            )
        scanners = {
            spec.name: ScannerSimulator(scanner_dir / spec.name, name=spec.name, style=spec.style())
            for spec in scenario.scanner_specs
        }
    except (ScenarioError, SimConfigError) as err:
        return _error(str(err))
    _say(json.dumps(truth_summary(scenario), indent=2))
    async with contextlib.AsyncExitStack() as stack:
        try:
            for sim in sims.values():
                await stack.enter_async_context(sim)
            for scanner in scanners.values():
                await stack.enter_async_context(scanner)
        except (OSError, SimError) as err:
            return _error(str(err))
        for door in scenario.all_doors:
            sim = sims[door.reader.name]
            _say(f"LLRP reader {sim.name!r} for {door.read_point} on {sim.host}:{sim.port}")
        for shelf in scenario.shelves:
            sim = sims[shelf.reader.name]
            _say(f"LLRP reader {sim.name!r} for shelf {shelf.read_point} on {sim.host}:{sim.port}")
        for scanner in scanners.values():
            _say(f"scanner {scanner.name!r} at {scanner.port} -> {scanner.path}")
        _say("waiting for inventory")
        try:
            await asyncio.gather(*(sim.wait_inventory(wait_s) for sim in sims.values()))
        except TimeoutError:
            return _error_status(f"no client started inventory within {wait_s} s", 1)
        first = sims[scenario.reader.name]
        async with asyncio.TaskGroup() as tasks:
            t0 = first.now()
            pending = [tasks.create_task(_inject_later(first, item, t0)) for item in scheduled]
            await run_scenario(
                scenario, sims, progress=_print_event, scanners=scanners, speed=speed
            )
            for task in pending:  # faults timed after the scenario's end do not happen
                task.cancel()
    return 0


def _error_status(text: str, status: int) -> int:
    print(f"error: {text}", file=sys.stderr, flush=True)
    return status


def symbol_from_text(text: str) -> Symbol:
    """A barcode from one line of a scans file.

    ``LOC:...`` and ``CMD:...`` as they are; ``(01)09506000134352(21)123``: a GS1-128
    label in human-readable form; 13 digits: an EAN-13; 12 digits: a UPC-A; anything
    else is sent as is (a leading AIM identifier like ``]C1`` kept).

    Raises:
        SimConfigError: a human-readable GS1 string that is not valid.
    """
    text = text.strip()
    if text.startswith((LOCATION_PREFIX, COMMAND_PREFIX)):
        return Symbol(text, "]C0")
    if text.startswith("("):
        fields = _HRI.findall(text)
        if not fields or "".join(f"({a}){v}" for a, v in fields) != text:
            raise SimConfigError(f"{text!r} is not a GS1 string like (01)...(21)...")
        content = ""
        for index, (ai, value) in enumerate(fields):
            content += ai + value
            if ai not in _FIXED_AIS and index < len(fields) - 1:
                content += GS
        return Symbol(content, "]C1")
    if text.isdigit() and len(text) == 13:
        return Symbol.ean13(text)
    if text.isdigit() and len(text) == 12:
        return Symbol.upca(text)
    return Symbol(text)


def read_scans_file(path: Path) -> list[Symbol]:
    """The barcodes of a scans file: one per line; blank lines and ``#`` comments skipped.

    Raises:
        SimConfigError: unreadable, too big, or a bad line (named by its number).
    """
    try:
        if path.stat().st_size > MAX_SCAN_FILE_BYTES:
            raise SimConfigError(f"{path}: larger than {MAX_SCAN_FILE_BYTES} bytes")
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SimConfigError(f"{path}: cannot read: {err}") from err
    symbols = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            symbols.append(symbol_from_text(line))
        except SimConfigError as err:
            raise SimConfigError(f"{path}:{number}: {err}") from err
    return symbols


async def run_scanner(
    *,
    link: Path,
    scans: Path | None = None,
    demo: bool = False,
    loops: int = 1,
    prefix: str = "",
    suffix: str = "",
    terminator: str = "cr",
    aim_ids: bool = True,
    gap_s: tuple[float, float] = (0.5, 3.0),
    faults: Sequence[str] = (),
    start_delay_s: float = 0.0,
) -> int:
    """Open a scanner pty behind ``link``, print its path, then scan.

    With ``scans`` it scans that file's barcodes; with ``demo`` a short receive-and-count
    session; ``loops`` times (0: until stopped). Without either it waits (faults given
    still happen). Faults are scanner faults: garbage, partial_line, long_line, unplug.

    Args:
        link: the stable path to create (its folder is made).
        scans: a scans file (see ``read_scans_file``).
        demo: scan a built-in demo session.
        loops: how often to scan the sequence; 0 repeats until stopped.
        prefix: characters before each scan.
        suffix: characters after each scan (before the terminator).
        terminator: cr, lf, crlf or tab.
        aim_ids: send AIM symbology identifiers.
        gap_s: (shortest, longest) pause between scans.
        faults: ``KIND[,NAME=VALUE...][@SECONDS]`` scanner faults.
        start_delay_s: pause before the first scan (time to open the port).
    """
    try:
        style = ScannerStyle(
            prefix=prefix, suffix=suffix, terminator=parse_terminator(terminator), aim_ids=aim_ids
        )
        symbols = read_scans_file(scans) if scans is not None else []
        if demo:
            symbols += demo_symbols(DEMO_GTINS)
        planned = [_scanner_fault(text) for text in faults]
        scanner = ScannerSimulator(link, style=style, gap_s=gap_s)
    except SimConfigError as err:
        return _error(str(err))
    try:
        async with scanner:
            _say(f"scanner {scanner.name!r} at {scanner.port} -> {scanner.path}")
            for kind, params, at_s in planned:
                scanner.schedule(at_s, kind, **params)
                _say(f"fault {kind} at {at_s:g} s")
            if not symbols:
                await asyncio.Event().wait()
            await asyncio.sleep(start_delay_s)
            done = 0
            while loops == 0 or done < loops:
                for line in await scanner.play(symbols):
                    _say(f"scanned {line!r}")
                done += 1
    except SimError as err:
        return _error(str(err))
    return 0


def _scanner_fault(text: str) -> tuple[str, dict[str, object], float]:
    body, _, when = text.strip().rpartition("@") if "@" in text else (text.strip(), "", "0")
    try:
        at_s = float(when)
    except ValueError as err:
        raise SimConfigError(f"--fault: {when!r} after '@' is not a number of seconds") from err
    kind, *pairs = body.split(",")
    params: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SimConfigError(f"--fault: {pair!r} is not NAME=VALUE")
        params[name.strip()] = value.strip()
    check_scanner_fault(kind.strip(), **params)
    return kind.strip(), params, at_s


def describe_faults() -> str:
    """A table of every fault kind, its parameters and what it does."""
    lines = ["reader faults (sim reader / sim scenario --fault, [[faults]] with reader=):"]
    for kind, spec in FAULTS.items():
        params = ", ".join(
            f"{name}={param.default}" if param.default is not None else name
            for name, param in spec.params.items()
        )
        lines.append(
            f"  {kind:<20} {spec.scope:<10} {spec.summary}" + (f" [{params}]" if params else "")
        )
    lines.append("scanner faults (sim scanner --fault, [[faults]] with scanner=):")
    summaries = {
        ScannerFault.GARBAGE: "noise bytes, no terminator [size=64]",
        ScannerFault.PARTIAL_LINE: "part of a scan, no terminator [fraction=0.5]",
        ScannerFault.LONG_LINE: "a line longer than any barcode [size=8192]",
        ScannerFault.UNPLUG: "close the pty, a new one at the link after delay_s [delay_s=0.5]",
    }
    for fault, text in summaries.items():
        lines.append(f"  {fault.value:<20} {text}")
    return "\n".join(lines)
