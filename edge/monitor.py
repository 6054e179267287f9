"""Health evaluation: turns reader states, antenna reports and the outbox into issues.

Called with each status snapshot (every ``[status] interval_s``, broker or not) and,
for the outbox fill level, after every append round, so the "filling" alarm is raised
before the first event is ever refused. Each condition is logged once when it starts
and once when it ends (not on every evaluation), and listed in the status while it
lasts (see ``edge.health``).

Conditions:

* ``reader_down`` (critical): a reader not connected for ``READER_DOWN_GRACE_S``
  (a reconnect that works within the grace raises nothing);
* ``antenna_disconnected`` (warning): an antenna a read point uses (or the reader's
  ``antennas``) reported disconnected; unused ports are a reader's normal state;
* ``reader_exception`` (warning, an occurrence): ReaderExceptionEvent and report buffer
  warnings;
* ``outbox_filling`` (warning) at ``alarm_ratio`` of ``max_events``; ``outbox_full``
  (critical) once events are refused;
* ``outbox_unwritable`` (critical): commits fail (a full disk, an I/O error); the events
  wait in memory up to ``[buffer] max_uncommitted``, then new ones are refused;
* ``outbox_backlog_old`` (critical): the oldest unacknowledged event is older than
  ``max_age_s``. Nothing is deleted for its age (each event is a movement that
  happened); the alarm says the server has not taken this gateway's events for that long.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Final

from edge.config import EdgeSettings
from edge.health import IssueBoard
from edge.readers.types import ReaderEvent, ReaderFault, StateChanged
from wire.models import ReaderStatus

log = logging.getLogger(__name__)

READER_DOWN_GRACE_S: Final = 15.0
"""How long a reader may be away (reconnecting) before it is reported down."""
READER_DOWN: Final = "reader_down"
ANTENNA_DISCONNECTED: Final = "antenna_disconnected"
READER_EXCEPTION: Final = "reader_exception"
OUTBOX_FILLING: Final = "outbox_filling"
OUTBOX_FULL: Final = "outbox_full"
OUTBOX_OLD: Final = "outbox_backlog_old"
OUTBOX_UNWRITABLE: Final = "outbox_unwritable"
CLOCK_UNSYNCHRONISED: Final = "clock_unsynchronised"
OUTBOX: Final = "outbox"


def used_antennas(settings: EdgeSettings) -> dict[str, frozenset[int] | None]:
    """Antennas each reader's read points use; None means every antenna it has."""
    used: dict[str, set[int] | None] = {}
    for reader in settings.llrp:
        used[reader.name] = set(reader.antennas) if reader.antennas else set()
    for portal in settings.portals:
        found = used.setdefault(portal.reader, set())
        if found is not None:
            found.update(portal.outside_antennas, portal.inside_antennas)
    points = [(p.reader, p.antennas) for p in settings.zones]
    points += [(p.reader, p.antennas) for p in settings.dedupe]
    for name, antennas in points:
        if not antennas:
            used[name] = None
        else:
            found = used.setdefault(name, set())
            if found is not None:
                found.update(antennas)
    return {name: (frozenset(found) if found is not None else None) for name, found in used.items()}


class HealthMonitor:
    """Raises and clears the gateway's health issues.

    Args:
        settings: the edge config (antennas in use, outbox bounds).
        issues: the board the status lists.
        grace_s: how long a reader may be away before it is down.
    """

    def __init__(
        self, settings: EdgeSettings, issues: IssueBoard, grace_s: float = READER_DOWN_GRACE_S
    ) -> None:
        self.issues = issues
        self._buffer = settings.buffer
        self._grace_s = grace_s
        self._used = used_antennas(settings)
        self._away_since: dict[str, float] = {}
        self.backlog_alarm = False
        """The oldest unacknowledged event is older than ``max_age_s``."""

    def retune(self, settings: EdgeSettings) -> None:
        """Watch the antennas ``settings`` use (a remote retune changed read points)."""
        self._used = used_antennas(settings)

    def start(self, readers: Iterable[str], now: float) -> None:
        """Readers start away until they connect."""
        self._away_since = dict.fromkeys(readers, now)

    def reader_event(self, event: ReaderEvent, now: float) -> None:
        if isinstance(event, StateChanged):
            if event.state == "connected":
                self._away_since.pop(event.reader, None)
            else:
                self._away_since.setdefault(event.reader, now)
        elif isinstance(event, ReaderFault):
            self.issues.note(
                READER_EXCEPTION,
                event.reader,
                "warning",
                f"reader {event.reader}: {event.detail}",
                now,
            )

    def evaluate_readers(self, statuses: Mapping[str, ReaderStatus], now: float) -> None:
        antennas_down: set[str] = set()
        for name, status in statuses.items():
            away = self._away_since.get(name)
            if away is not None and now - away >= self._grace_s:
                detail = f"reader {name} is {status.state} for {now - away:.0f} s"
                if status.last_error:
                    detail += f": {status.last_error}"
                if self.issues.set(READER_DOWN, name, "critical", detail):
                    log.error("ALARM %s", detail)
            elif self.issues.clear(READER_DOWN, name):
                log.warning("reader %s is back", name)
            used = self._used.get(name)
            for antenna in status.antennas_disconnected:
                if used is not None and antenna not in used:
                    continue
                subject = f"{name}/antenna {antenna}"
                antennas_down.add(subject)
                if self.issues.set(
                    ANTENNA_DISCONNECTED,
                    subject,
                    "warning",
                    f"reader {name}: antenna {antenna} is disconnected",
                ):
                    log.warning("reader %s: antenna %d is disconnected", name, antenna)
        self.issues.clear_kind(ANTENNA_DISCONNECTED, antennas_down)

    def evaluate_outbox(
        self,
        depth: int,
        full: bool,
        oldest_age_s: float | None,
        commit_error: str | None = None,
        uncommitted: int = 0,
    ) -> None:
        """Outbox fill, age and commit alarms (``oldest_age_s`` None: not known now)."""
        self.check_depth(depth, full)
        if commit_error is not None:
            message = (
                f"outbox cannot commit ({commit_error[:300]}): {uncommitted} events wait in "
                f"memory; new events are refused past {self._buffer.max_uncommitted}"
            )
            self.issues.set(OUTBOX_UNWRITABLE, OUTBOX, "critical", message)
        elif self.issues.clear(OUTBOX_UNWRITABLE, OUTBOX):
            log.warning("outbox commits again")
        if oldest_age_s is None:
            if depth == 0:
                self._age(False, 0.0)
            return
        self._age(oldest_age_s > self._buffer.max_age_s, oldest_age_s)

    def evaluate_clock(self, synced: bool) -> None:
        """``clock_unsynchronised`` while the kernel says NTP has not set the clock."""
        if not synced:
            self.issues.set(
                CLOCK_UNSYNCHRONISED,
                "clock",
                "critical",
                "the system clock is not synchronised (NTP): event times may be wrong",
            )
        elif self.issues.clear(CLOCK_UNSYNCHRONISED, "clock"):
            log.warning("the system clock is synchronised again")

    def check_depth(self, depth: int, full: bool) -> None:
        """The fill alarms; cheap enough to run after every round of appends."""
        buffer = self._buffer
        if depth >= buffer.alarm_ratio * buffer.max_events:
            message = (
                f"outbox holds {depth} of at most {buffer.max_events} events; at the bound "
                f"new events are refused (the oldest are kept)"
            )
            if self.issues.set(OUTBOX_FILLING, OUTBOX, "warning", message):
                log.error("ALARM %s", message)
        elif self.issues.clear(OUTBOX_FILLING, OUTBOX):
            log.warning("outbox below its alarm level again (%d events)", depth)
        if full:
            self.issues.set(
                OUTBOX_FULL, OUTBOX, "critical", f"outbox full ({depth} events): refusing events"
            )
        else:
            self.issues.clear(OUTBOX_FULL, OUTBOX)

    def _age(self, old: bool, age_s: float) -> None:
        if old:
            message = (
                f"oldest unacknowledged event is {age_s:.0f} s old "
                f"(alarm at {self._buffer.max_age_s:g} s); nothing is deleted"
            )
            self.issues.set(OUTBOX_OLD, OUTBOX, "critical", message)
            if not self.backlog_alarm:
                log.error("ALARM %s", message)
        elif self.backlog_alarm:
            self.issues.clear(OUTBOX_OLD, OUTBOX)
            log.warning("outbox backlog is younger than %g s again", self._buffer.max_age_s)
        self.backlog_alarm = old
