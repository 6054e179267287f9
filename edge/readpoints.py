"""Read points: where each tag read goes, from its reader to the trackers that use it.

Per reader, a read first meets the reader's software filter (``[llrp.filter]``), then
every read point on that reader in config order: portals (``edge.pipeline``), zones
(``edge.zones``) and cooldown de-duplication (``edge.dedupe``). A portal with a
photo-eye window (``edge.windows``) takes a read on its antennas only while its window
is open. Each read point decides on its own whether the read's antenna is one of its
own, so one reader can serve a door and a shelf at once.

``tick`` collects what the read points finished (passes, arrivals and departures,
sightings), closes photo-eye windows whose tail ran out (an unread one is logged,
counted, listed as a health issue and lights "unexpected"), and signals each finished
pass on its portal's light stack. Nothing here does I/O; light stacks do theirs in
their own task.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from edge.config import EdgeSettings, PortalSettings
from edge.dedupe import CooldownDeduper
from edge.filters import ReadFilter, read_filter
from edge.health import IssueBoard
from edge.lights import GpoWriter, LightStack
from edge.passes import Pass
from edge.pipeline import PassTracker
from edge.readers.types import GpiChanged, ReaderEvent, StateChanged, TagRead
from edge.windows import ReadWindow
from edge.zones import ZoneTracker
from wire.models import Event

log = logging.getLogger(__name__)

UNREAD_WINDOW: Final = "unread_window"
PHOTO_EYE_BLOCKED: Final = "photo_eye_blocked"


class Finished(Protocol):
    """Something a read point finished that becomes one event."""

    @property
    def read_point(self) -> str: ...

    @property
    def epc_hex(self) -> str: ...

    def to_event(self, event_id: str) -> Event: ...


class Tracker(Protocol):
    """A read point: takes reads, hands out what it finished."""

    @property
    def read_point(self) -> str: ...

    @property
    def reader(self) -> str: ...

    def observe(self, read: TagRead, now: float) -> bool: ...

    def tick(self, now: float) -> Sequence[Finished]: ...

    def drain(self) -> Sequence[Finished]: ...

    def __len__(self) -> int: ...


def event_label(finished: Finished) -> str:
    """What kind of event it is, for metrics: in/out/none, arrive/depart, sighting."""
    if isinstance(finished, Pass):
        return finished.direction or "none"
    kind = getattr(finished, "kind", None)
    return kind if isinstance(kind, str) else "sighting"


@dataclass(slots=True)
class _Point:
    tracker: Tracker
    window: ReadWindow | None
    antennas: frozenset[int]
    """The portal's antennas, for the window check (empty when there is no window)."""


@dataclass(slots=True)
class _Chain:
    """Everything one reader's reads go through."""

    filter: ReadFilter | None
    points: list[_Point]


def _wiring(portal: PortalSettings) -> tuple[object, ...]:
    """What a photo-eye window is made of; a window survives a retune when this holds."""
    return (portal.reader, portal.gpi_port, portal.gpi_tail_s, portal.gpi_max_window_s)


def gpi_ports(settings: EdgeSettings) -> dict[str, list[int]]:
    """GPI inputs to switch on, per reader: every portal's ``gpi_port``."""
    ports: dict[str, set[int]] = {}
    for portal in settings.portals:
        if portal.gpi_port is not None:
            ports.setdefault(portal.reader, set()).add(portal.gpi_port)
    return {reader: sorted(found) for reader, found in ports.items()}


class ReadPoints:
    """Every read point of a gateway, with the filters and windows in front of them.

    Args:
        settings: the edge config.
        issues: where unread windows and blocked photo-eyes are listed.
    """

    def __init__(self, settings: EdgeSettings, issues: IssueBoard | None = None) -> None:
        self.issues = issues if issues is not None else IssueBoard()
        self.trackers: list[Tracker] = []
        self.windows: dict[str, ReadWindow] = {}
        """Photo-eye windows by portal read point."""
        self.lights: dict[str, LightStack] = {}
        """Light stacks by portal read point (after ``attach_lights``)."""
        self._portals: dict[str, PortalSettings] = {}
        self._gpi: dict[tuple[str, int], list[ReadWindow]] = {}
        self._chains: dict[str, _Chain] = {}
        self.filtered: Counter[str] = Counter()
        """Reads dropped by a reader's software filter, by reader."""
        self.outside_window: Counter[str] = Counter()
        """Reads at a portal's antennas while its window was closed, by read point."""
        self.unread_windows: Counter[str] = Counter()
        """Photo-eye windows that closed with no read, by read point."""
        self.events: Counter[tuple[str, str]] = Counter()
        """Events finished, by (read point, ``event_label``)."""
        self._build(settings)

    def _build(self, settings: EdgeSettings) -> None:
        """Build every read point of ``settings``; one that existed takes over its state.

        A tracker that existed under the same read point hands its open passes (stays,
        cooldowns) to its successor (``adopt``), and a photo-eye window whose wiring and
        timing are unchanged is kept as it is, so a retune loses nothing in flight.
        """
        old_trackers = {tracker.read_point: tracker for tracker in self.trackers}
        old_windows, old_portals = self.windows, self._portals
        self.trackers = []
        self.windows = {}
        self._portals = {}
        self._gpi = {}
        self._chains = {
            reader.name: _Chain(read_filter(reader.filter), []) for reader in settings.llrp
        }
        for portal in settings.portals:
            window = None
            if portal.gpi_window and portal.gpi_port is not None:
                before = old_portals.get(portal.read_point)
                window = old_windows.get(portal.read_point)
                if window is None or before is None or _wiring(before) != _wiring(portal):
                    window = ReadWindow(
                        portal.read_point, portal.gpi_tail_s, portal.gpi_max_window_s
                    )
                self.windows[portal.read_point] = window
                self._gpi.setdefault((portal.reader, portal.gpi_port), []).append(window)
            self._portals[portal.read_point] = portal
            antennas = frozenset((*portal.outside_antennas, *portal.inside_antennas))
            tracker = PassTracker(portal)
            previous = old_trackers.get(portal.read_point)
            if isinstance(previous, PassTracker):
                tracker.adopt(previous)
            self._add(tracker, window, antennas if window else frozenset())
        for zone in settings.zones:
            zone_tracker = ZoneTracker(zone)
            previous = old_trackers.get(zone.read_point)
            if isinstance(previous, ZoneTracker):
                zone_tracker.adopt(previous)
            self._add(zone_tracker, None, frozenset())
        for dedupe in settings.dedupe:
            deduper = CooldownDeduper(dedupe)
            previous = old_trackers.get(dedupe.read_point)
            if isinstance(previous, CooldownDeduper):
                deduper.adopt(previous)
            self._add(deduper, None, frozenset())

    def retune(self, settings: EdgeSettings) -> None:
        """Take new settings for readers' filters and read points without losing state.

        Light stacks stay as they are: a door's lights and photo-eye port are set in the
        local file only (``edge.remote_config``).
        """
        self._build(settings)

    def _add(self, tracker: Tracker, window: ReadWindow | None, antennas: frozenset[int]) -> None:
        self.trackers.append(tracker)
        chain = self._chains.setdefault(tracker.reader, _Chain(None, []))
        chain.points.append(_Point(tracker, window, antennas))

    def attach_lights(self, readers: Mapping[str, object], online: Callable[[], bool]) -> None:
        """Build a light stack for every portal with ``[portals.lights]``.

        Args:
            readers: the running readers by name; a portal's reader must be able to
                write GPO outputs (``write_gpo``) or the portal gets no lights.
            online: whether the broker link is up (drives the offline light).
        """
        self.lights = {}
        for read_point, portal in self._portals.items():
            if portal.lights is None:
                continue
            writer = readers.get(portal.reader)
            if not isinstance(writer, GpoWriter):
                log.warning(
                    "portal %s: reader %s cannot drive GPO outputs; no lights",
                    read_point,
                    portal.reader,
                )
                continue
            self.lights[read_point] = LightStack(read_point, portal.lights, writer, online)

    # -- the hot path -----------------------------------------------------------------

    def read(self, reader: str, read: TagRead, now: float) -> bool:
        """Route one read; False when no read point on ``reader`` takes its antenna.

        A read the reader's filter drops counts in ``filtered`` and returns True.
        """
        chain = self._chains.get(reader)
        if chain is None:
            return False
        check = chain.filter
        if check is not None and not check.admits(read):
            self.filtered[reader] += 1
            return True
        seen = False
        for point in chain.points:
            window = point.window
            if window is not None:
                if read.antenna not in point.antennas:
                    continue
                seen = True
                if not window.admit(now):
                    self.outside_window[point.tracker.read_point] += 1
                    continue
            if point.tracker.observe(read, now):
                seen = True
        return seen

    # -- reader events ----------------------------------------------------------------

    def reader_event(self, event: ReaderEvent, now: float) -> None:
        """GPI changes open and close windows; reconnects reset them and the lights."""
        if isinstance(event, GpiChanged):
            for window in self._gpi.get((event.reader, event.port), ()):
                was_open = window.is_open
                window.gpi(event.high, now)
                if window.is_open and not was_open:
                    log.info("portal %s: photo-eye blocked, read window open", window.read_point)
        elif isinstance(event, StateChanged):
            if event.state == "connected":
                for read_point, stack in self.lights.items():
                    if self._portals[read_point].reader == event.reader:
                        stack.reassert()
            elif event.state in ("disconnected", "error"):
                for (reader, _), windows in self._gpi.items():
                    if reader == event.reader:
                        for window in windows:
                            window.reset(now)

    # -- time -------------------------------------------------------------------------

    def tick(self, now: float) -> list[Finished]:
        """What every read point finished by ``now``; also closes photo-eye windows."""
        finished: list[Finished] = []
        for tracker in self.trackers:
            ended = tracker.tick(now)
            if ended:
                self._signal(tracker.read_point, ended)
                finished.extend(ended)
        for read_point, window in self.windows.items():
            closed = window.tick(now)
            if closed is not None and closed.unread:
                self._unread(read_point, closed.length_s, now)
            stuck = window.stuck(now)
            if stuck is not None:
                if self.issues.set(
                    PHOTO_EYE_BLOCKED,
                    read_point,
                    "warning",
                    f"photo-eye at {read_point} blocked for {stuck:.0f} s",
                ):
                    log.warning(
                        "portal %s: photo-eye blocked for %.0f s (dirty lens? parked pallet?)",
                        read_point,
                        stuck,
                    )
            elif (PHOTO_EYE_BLOCKED, read_point) in self.issues:
                self.issues.clear(PHOTO_EYE_BLOCKED, read_point)
                log.info("portal %s: photo-eye clear again", read_point)
        return finished

    def drain(self) -> list[Finished]:
        """End what can be ended now (shutdown); see each tracker's ``drain``."""
        finished: list[Finished] = []
        for tracker in self.trackers:
            finished.extend(tracker.drain())
        return finished

    def _signal(self, read_point: str, ended: Sequence[Finished]) -> None:
        events = self.events
        for item in ended:
            events[(read_point, event_label(item))] += 1
        stack = self.lights.get(read_point)
        if stack is None:
            return
        windowed = read_point in self.windows
        for item in ended:
            if not isinstance(item, Pass):
                continue
            # Without a window, goods standing beside the door (one side only) are not
            # something that passed: no light for them.
            if not windowed and item.reason == "one_side":
                continue
            stack.signal_pass(item.direction, item.confidence)

    def _unread(self, read_point: str, length_s: float, now: float) -> None:
        self.unread_windows[read_point] += 1
        log.warning(
            "portal %s: a pallet went through unread (photo-eye window of %.1f s, no read)",
            read_point,
            length_s,
        )
        self.issues.note(
            UNREAD_WINDOW,
            read_point,
            "warning",
            f"a pallet went through {read_point} unread (photo-eye window with no read)",
            now,
        )
        stack = self.lights.get(read_point)
        if stack is not None:
            stack.unexpected()
