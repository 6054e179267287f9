"""Running one active ROSpec: inventory rounds, AISpec and ROSpec stop triggers, reports.

``RoSpecRun.run()`` loops over the ROSpec's AISpecs, each for as long as its stop trigger
allows, until the ROSpec's own stop trigger fires; a ``STOP_ROSPEC`` (or a deletion)
cancels the task instead. The connection around it is a ``RunHost``: it samples the
field, keeps the report window, sends reports and events and knows the GPI history.

Report triggers (ROReportSpec) as the simulator honours them:

* ``None``: no report of its own; reads wait for GET_REPORT.
* ``Upon_N_Tags_Or_End_Of_AISpec``: at N TagReportData entries (N > 0), at the end of
  every AISpec, and when the ROSpec ends.
* ``Upon_N_Tags_Or_End_Of_ROSpec``: at N entries and when the ROSpec ends.
* ``Upon_N_(Milli)Seconds[_Or_End_Of_ROSpec]``: every N s (ms), and when the ROSpec ends.

An AISpec with a Null stop trigger never ends on its own, so under sllurp's defaults
(Null AISpec stop, N = 0) a conformant reader would never report. Unless the simulator
is ``strict``, such an AISpec is reported on every ``report_cycle_s`` as if it cycled
(what clients expect of real readers); no AISpecEvent is sent for those cycles.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol

from firmware_sim.llrp_rospec import RoSpec
from firmware_sim.llrp_triggers import (
    AiSpec,
    AiSpecStop,
    GpiTrigger,
    ObservationKind,
    RoSpecStop,
)
from firmware_sim.llrp_types import ReportSpec, ReportTrigger

MIN_CYCLE_S: Final = 0.01
MAX_CYCLE_S: Final = 60.0
MAX_CATCH_UP_S: Final = 5.0
"""After a slow wake-up the rounds missed are run late, at their scheduled times, up to
this much of them; beyond that they are skipped. A real reader does not slow down when the
host that simulates it is loaded, so a simulator starved for a few seconds by a busy test
machine must not thin its reads (a staged case not read again for seconds looks like one
that left with a passing pallet)."""

_AFTER_AISPEC = (ReportTrigger.N_TAGS_OR_END_OF_AISPEC,)
_EVERY_S = (ReportTrigger.N_SECONDS, ReportTrigger.N_SECONDS_OR_END_OF_ROSPEC)
_EVERY_MS = (ReportTrigger.N_MILLISECONDS, ReportTrigger.N_MILLISECONDS_OR_END_OF_ROSPEC)


def _clamp(seconds: float) -> float:
    return min(MAX_CYCLE_S, max(MIN_CYCLE_S, seconds))


@dataclass(frozen=True, slots=True)
class ReportPlan:
    """When the reads of one ROSpec run are reported."""

    spec: ReportSpec
    n_tags: int
    """Report at this many TagReportData entries (0: never for that reason)."""
    every_s: float | None
    """Report on this period (time-based triggers)."""
    at_aispec_end: bool
    at_rospec_end: bool
    lenient_cycle_s: float | None
    """Report period of an AISpec that never ends (None: strict, no such reports)."""


def report_plan(spec: RoSpec, default: ReportSpec, cycle_s: float, *, strict: bool) -> ReportPlan:
    """The report plan of ``spec``; its own ROReportSpec, else the reader's ``default``."""
    report = spec.report or default
    trigger = report.trigger
    every: float | None = None
    if trigger in _EVERY_S:
        every = _clamp(float(report.n) if report.n else cycle_s)
    elif trigger in _EVERY_MS:
        every = _clamp(report.n / 1000 if report.n else cycle_s)
    counts_tags = trigger in (
        ReportTrigger.N_TAGS_OR_END_OF_AISPEC,
        ReportTrigger.N_TAGS_OR_END_OF_ROSPEC,
    )
    at_aispec_end = trigger in _AFTER_AISPEC
    return ReportPlan(
        spec=report,
        n_tags=report.n if counts_tags else 0,
        every_s=every,
        at_aispec_end=at_aispec_end,
        at_rospec_end=trigger is not ReportTrigger.NONE,
        lenient_cycle_s=None if strict or not at_aispec_end else _clamp(cycle_s),
    )


class RunHost(Protocol):
    """What a ROSpec run needs from the connection it runs on."""

    @property
    def closing(self) -> bool: ...

    def driven_antennas(self, aispec: AiSpec) -> list[int]:
        """Antennas of ``aispec`` that exist and are connected."""

    def round(
        self, t: float, dt: float, antennas: list[int], channel: int, n_tags: int
    ) -> list[str]:
        """Run one inventory round into the window, reporting at every ``n_tags``
        entries (0: never); the EPCs read (one per read)."""

    def flush(self) -> None:
        """Send the window as a report (nothing when empty)."""

    def aispec_ended(self, spec_index: int) -> None:
        """An AISpec ended on its stop trigger (for AISpecEvent)."""

    def gpi_since(self, trigger: GpiTrigger, since: float) -> bool:
        """True when ``trigger``'s port went to its level after ``since``."""

    def drain(self) -> Awaitable[None]: ...


@dataclass(slots=True)
class _AiState:
    """What an AISpec's TagObservationTrigger counts since the AISpec started."""

    started: float
    observations: int = 0
    attempts: int = 0
    unique: set[str] | None = None
    last_observation: float = 0.0
    last_new_unique: float = 0.0


def _deadline(start: float, ms: int) -> float:
    return start + ms / 1000 if ms > 0 else math.inf


class RoSpecRun:
    """One run of an active ROSpec (from its start to its stop trigger).

    Args:
        host: the connection's side (field, window, reports, events, GPI).
        spec: the ROSpec.
        plan: when to report.
        round_s: inventory round length.
        hops: channels in the hop table (ChannelIndex cycles through them).
        clock: monotonic seconds (the field's time base).
    """

    def __init__(
        self,
        host: RunHost,
        spec: RoSpec,
        plan: ReportPlan,
        *,
        round_s: float,
        hops: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._host = host
        self._spec = spec
        self._plan = plan
        self._round_s = round_s
        self._hops = max(1, hops)
        self._clock = clock
        self._round_no = 0

    def _rospec_deadline(self, start: float) -> float:
        stop = self._spec.stop
        if stop.kind is RoSpecStop.DURATION:
            return start + max(MIN_CYCLE_S, stop.duration_ms / 1000)
        if stop.kind is RoSpecStop.GPI_WITH_TIMEOUT and stop.gpi is not None:
            return _deadline(start, stop.gpi.timeout_ms)
        return math.inf

    def _rospec_gpi(self, start: float) -> bool:
        stop = self._spec.stop
        return (
            stop.kind is RoSpecStop.GPI_WITH_TIMEOUT
            and stop.gpi is not None
            and self._host.gpi_since(stop.gpi, start)
        )

    @staticmethod
    def _aispec_deadline(aispec: AiSpec, start: float) -> float:
        stop = aispec.stop
        if stop.kind is AiSpecStop.DURATION:
            return start + max(MIN_CYCLE_S, stop.duration_ms / 1000)
        if stop.kind is AiSpecStop.GPI_WITH_TIMEOUT and stop.gpi is not None:
            return _deadline(start, stop.gpi.timeout_ms)
        if stop.kind is AiSpecStop.TAG_OBSERVATION and stop.observation is not None:
            return _deadline(start, stop.observation.timeout_ms)
        return math.inf

    def _aispec_done(self, aispec: AiSpec, state: _AiState, now: float) -> bool:
        stop = aispec.stop
        if stop.kind is AiSpecStop.GPI_WITH_TIMEOUT and stop.gpi is not None:
            return self._host.gpi_since(stop.gpi, state.started)
        observation = stop.observation
        if stop.kind is not AiSpecStop.TAG_OBSERVATION or observation is None:
            return False
        kind = observation.kind
        if kind is ObservationKind.N_OBSERVATIONS:
            return observation.n_tags > 0 and state.observations >= observation.n_tags
        if kind is ObservationKind.N_UNIQUE:
            unique = len(state.unique or ())
            return observation.n_tags > 0 and unique >= observation.n_tags
        if kind is ObservationKind.N_ATTEMPTS:
            return observation.n_attempts > 0 and state.attempts >= observation.n_attempts
        silence = observation.t_ms / 1000
        if kind is ObservationKind.NO_NEW_OBSERVATIONS:
            return silence > 0 and now - state.last_observation >= silence
        return silence > 0 and now - state.last_new_unique >= silence

    def _one_round(self, aispec: AiSpec, state: _AiState, t: float, dt: float) -> None:
        channel = self._round_no % self._hops + 1
        self._round_no += 1
        antennas = self._host.driven_antennas(aispec)
        n_tags = self._plan.n_tags
        read = self._host.round(t, dt, antennas, channel, n_tags) if antennas else []
        state.attempts += 1
        if read:
            state.observations += len(read)
            state.last_observation = t
            if state.unique is not None:
                before = len(state.unique)
                state.unique.update(read)
                if len(state.unique) > before:
                    state.last_new_unique = t

    async def run(self) -> bool:
        """Inventory until the ROSpec's stop trigger fires (True) or the link closes (False)."""
        host = self._host
        plan = self._plan
        round_s = self._round_s
        catch_up = max(8, math.ceil(MAX_CATCH_UP_S / round_s))
        start = self._clock()
        rospec_deadline = self._rospec_deadline(start)
        next_round = start
        previous = start - round_s
        next_report = start + plan.every_s if plan.every_s else math.inf
        index = 0
        while True:
            aispec = self._spec.aispecs[index]
            ai_start = max(start, min(next_round, self._clock()))
            state = _AiState(ai_start, last_observation=ai_start, last_new_unique=ai_start)
            if aispec.stop.observation is not None and aispec.stop.observation.kind in (
                ObservationKind.N_UNIQUE,
                ObservationKind.NO_NEW_UNIQUE,
            ):
                state.unique = set()
            ai_deadline = self._aispec_deadline(aispec, ai_start)
            lenient = plan.lenient_cycle_s if aispec.stop.kind is AiSpecStop.NULL else None
            next_cycle = ai_start + lenient if lenient else math.inf
            while True:
                now = self._clock()
                limit = min(now, rospec_deadline, ai_deadline)
                ran = 0
                # Rounds run at their scheduled times, so a late wake-up does not thin reads.
                while next_round <= limit and ran < catch_up:
                    self._one_round(aispec, state, next_round, next_round - previous)
                    previous = next_round
                    next_round += round_s
                    ran += 1
                if next_round <= limit:
                    next_round = now + round_s
                if now >= rospec_deadline or self._rospec_gpi(start):
                    return True
                if now >= ai_deadline or self._aispec_done(aispec, state, now):
                    break
                if now >= next_report:
                    host.flush()
                    next_report = max(next_report + (plan.every_s or 0.0), now)
                if now >= next_cycle:
                    host.flush()
                    next_cycle = max(next_cycle + (lenient or 0.0), now)
                await host.drain()
                if host.closing:
                    return False
                wake = min(next_round, next_report, next_cycle, ai_deadline, rospec_deadline)
                await _sleep_until(wake, self._clock)
            host.aispec_ended(index + 1)
            if plan.at_aispec_end:
                host.flush()
            index = (index + 1) % len(self._spec.aispecs)


async def _sleep_until(when: float, clock: Callable[[], float]) -> None:
    await asyncio.sleep(max(0.0, when - clock()))
