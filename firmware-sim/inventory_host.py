"""Inventory on one connection: the ROSpec that runs, its report window and air settings.

``InventoryHost.start`` makes a ROSpec Active: it plans its reports (``inventory``), sets
up the report encoder and the air settings the ROSpec asked for, sends ROSpecEvent Start
and runs ``inventory.RoSpecRun`` as a task of the connection, for which it is the
``RunHost``: each round asks the field what the driven antennas read, puts the reads
into the window and sends the window as an RO_ACCESS_REPORT when the plan says. ``stop``
(or the run's own stop trigger) makes it Inactive again, with ROSpecEvent End. Recorded
reports, if the simulator replays any, go out beside the field's.

Tag reads count as emitted only when their report has been handed to the socket.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable
from dataclasses import dataclass, field

from firmware_sim.air import FULL_POWER, Flags, air_settings, heard
from firmware_sim.errors import EncodeError
from firmware_sim.inventory import ReportPlan, RoSpecRun, report_plan
from firmware_sim.llrp_encode import encode_aispec_event, encode_rospec_event, message
from firmware_sim.llrp_rospec import ALL_ANTENNAS, RoSpec, RoSpecState
from firmware_sim.llrp_triggers import AiSpec, GpiTrigger
from firmware_sim.llrp_types import MsgType, ReportTrigger, RoSpecEventType
from firmware_sim.report_encoder import ReportEncoder
from firmware_sim.reports import ReadWindow
from firmware_sim.session_context import ClientConfig, Link, ReaderEvents, ReaderHost

logger = logging.getLogger("firmware_sim.reader")


@dataclass(slots=True)
class HeldRoSpec:
    """A ROSpec a client added, in its current state."""

    spec: RoSpec
    state: RoSpecState
    armed: asyncio.Task[None] | None = field(default=None, repr=False)
    """The Periodic start trigger's timer while the ROSpec is enabled."""

    def param(self) -> bytes:
        """The ROSpec parameter as added, with its current state (for GET_ROSPECS)."""
        # CurrentState is the byte after ROSpecID (u32) and Priority (u8) in the TLV body.
        raw = self.spec.raw
        return raw[:9] + bytes([self.state]) + raw[10:]

    def disarm(self) -> None:
        if self.armed is not None:
            self.armed.cancel()
            self.armed = None


class InventoryHost:
    """The inventory of one connection (at most one ROSpec runs at a time).

    Args:
        host: the simulator.
        link: the connection.
        config: what the client configured (default report spec, Impinj extensions).
        events: the reader events the client enabled.
        rng: the session's randomness (reads, timestamp noise).
        antennas: the antennas this connection was told about.
        empty_report: send an empty report before the first inventory (a fault).
    """

    def __init__(
        self,
        host: ReaderHost,
        link: Link,
        config: ClientConfig,
        events: ReaderEvents,
        rng: random.Random,
        antennas: int,
        *,
        empty_report: bool,
    ) -> None:
        self._host = host
        self._link = link
        self._config = config
        self._events = events
        self._rng = rng
        self._antennas = antennas
        self._empty_report_due = empty_report
        self._window = ReadWindow()
        self._encoder: ReportEncoder | None = None
        self._plan: ReportPlan | None = None
        self._air = FULL_POWER
        self._flags: Flags | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: HeldRoSpec | None = None
        self._replay: asyncio.Task[None] | None = None
        self._gpi_edges: dict[tuple[int, bool], float] = {}

    # --- the RunHost of inventory.RoSpecRun -----------------------------------------------

    @property
    def closing(self) -> bool:
        return self._link.closing

    def driven_antennas(self, aispec: AiSpec) -> list[int]:
        antennas = self._antennas
        wanted = range(1, antennas + 1) if ALL_ANTENNAS in aispec.antennas else aispec.antennas
        return [a for a in wanted if a <= antennas and self._host.antenna_connected(a)]

    def round(
        self, t: float, dt: float, antennas: list[int], channel: int, n_tags: int
    ) -> list[str]:
        host = self._host
        air = self._air
        observations = host.field.observe(
            t, dt, air.drive(antennas) if air.loss_db else antennas, self._rng
        )
        if observations and air.floor_dbm:
            observations = heard(observations, air.floor_dbm)
        if observations and self._flags is not None:
            observations = self._flags.admit(observations, t)
        if not observations:
            return []
        utc = self._link.utc_us(t)
        window = self._window
        jitter = host.timestamp_jitter_s
        rng = self._rng
        for epc, antenna, rssi in observations:
            stamp = utc + round(rng.gauss(0.0, jitter) * 1_000_000) if jitter else utc
            window.add(epc, antenna, rssi, stamp, channel)
            if n_tags and len(window) >= n_tags:
                self.flush()
                window = self._window
        return [o.epc_hex for o in observations]

    def flush(self) -> None:
        """Send the window as one RO_ACCESS_REPORT (nothing when it is empty)."""
        encoder = self._encoder
        if encoder is None or not len(self._window):
            return
        entries = self._window.drain()
        if self._link.closing:
            return
        try:
            data = encoder.encode(self._link.next_id(), entries)
        except EncodeError:
            logger.exception("reader %s: cannot encode a report; reads dropped", self._host.name)
            return
        self._link.send(data, "report", [(e.epc_hex, e.antenna, e.seen_count) for e in entries])

    def drain(self) -> Awaitable[None]:
        return self._link.drain()

    def aispec_ended(self, spec_index: int) -> None:
        spec = self._running
        if spec is not None:
            rospec_id = spec.spec.rospec_id
            self._events.send(
                "AISpecEvent", lambda i, utc: encode_aispec_event(i, utc, rospec_id, spec_index)
            )

    def gpi_since(self, trigger: GpiTrigger, since: float) -> bool:
        when = self._gpi_edges.get((trigger.port, trigger.event))
        return when is not None and when > since

    # --- running ---------------------------------------------------------------------------

    def note_gpi(self, port: int, high: bool, t: float) -> None:
        """A GPI port the client has on went to ``high`` at monotonic time ``t``."""
        self._gpi_edges[(port, high)] = t

    async def start(self, spec: HeldRoSpec) -> None:
        """Run ``spec`` if it is Inactive (another one running is stopped first)."""
        await self.stop(flush=True)
        if spec.state is not RoSpecState.INACTIVE or not self._link.live:
            return
        host, link, config = self._host, self._link, self._config
        spec.state = RoSpecState.ACTIVE
        plan = report_plan(
            spec.spec, config.default_report, host.report_cycle_s, strict=host.strict
        )
        self._plan = plan
        impinj = spec.spec.impinj_report if config.impinj else None
        self._encoder = ReportEncoder(
            plan.spec.selector,
            rospec_id=spec.spec.rospec_id,
            inventory_parameter_spec_id=spec.spec.inventory_parameter_spec_id,
            impinj_peak_rssi=bool(impinj and impinj[0]),
            impinj_phase=bool(impinj and impinj[1]),
        )
        air = air_settings(spec.spec.antenna_rf, host.profile, impinj=config.impinj)
        self._air = air
        single = air.single_target_session
        self._flags = Flags(single) if single is not None else None
        self._window = ReadWindow()
        self._running = spec
        if self._empty_report_due:
            # A Zebra FX9600 sends an empty report before its first inventory.
            self._empty_report_due = False
            if link.send(message(MsgType.RO_ACCESS_REPORT, link.next_id()), "report"):
                host.counters.count("empty_reports")
        self._rospec_event(spec, RoSpecEventType.START)
        run = RoSpecRun(
            self,
            spec.spec,
            plan,
            round_s=host.round_s,
            hops=len(host.profile.hop_table_khz),
        )
        self._task = link.spawn(self._run(spec, run), "inventory")
        if host.replay_frames:
            self._replay = link.spawn(self._replay_loop(), "replay")
        host.set_inventorying(True)
        link.inventory_began()

    async def stop(self, *, flush: bool) -> None:
        """End the ROSpec running, if any (``flush``: its last report goes out if due)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        spec = self._running
        if spec is not None:
            self._finish(spec, flush=flush)

    async def _run(self, spec: HeldRoSpec, run: RoSpecRun) -> None:
        ended = await run.run()
        if ended and self._task is asyncio.current_task():
            # The stop trigger fired: the ROSpec goes back to Inactive by itself.
            self._task = None
            self._finish(spec, flush=True)

    def _finish(self, spec: HeldRoSpec, *, flush: bool) -> None:
        if self._replay is not None:
            self._replay.cancel()
            self._replay = None
        plan = self._plan
        if flush and plan is not None and plan.at_rospec_end:
            self.flush()
        if spec.state is RoSpecState.ACTIVE:
            spec.state = RoSpecState.INACTIVE
        self._rospec_event(spec, RoSpecEventType.END)
        self._running = None
        if plan is None or plan.spec.trigger is not ReportTrigger.NONE:
            self._window = ReadWindow()
        self._host.set_inventorying(False)

    def _rospec_event(self, spec: HeldRoSpec, kind: RoSpecEventType) -> None:
        rospec_id = spec.spec.rospec_id
        self._events.send(
            "ROSpecEvent", lambda i, utc: encode_rospec_event(i, utc, kind, rospec_id)
        )

    async def _replay_loop(self) -> None:
        host, link = self._host, self._link
        loops = host.replay_loops
        done = 0
        while loops == 0 or done < loops:
            for frame in host.replay_frames:
                link.send(frame.with_id(link.next_id()), "report", list(frame.reads))
                await link.drain()
                await asyncio.sleep(host.replay_interval_s)
            done += 1
