"""A simulated LLRP 1.0.1 RFID reader on TCP: an Impinj R420 look-alike.

``ReaderSimulator`` listens on a TCP port; each client connection gets a
``session.Session`` that speaks first (ConnectionAttemptEvent) and whose state machine
(``reader_protocol``) answers every request with exactly one response carrying an
LLRPStatus, keeps ROSpecs and AccessSpecs, runs inventory while a ROSpec is active and
sends RO_ACCESS_REPORTs of what its ``TagField`` lets the antennas read. The simulator
is the sessions' ``session_context.ReaderHost``: identity, tables, the field, its antenna
and GPIO ports, and the counters they count into. Several simulators can run in one
event loop (one per reader).

Behaviour worth knowing:

* One client at a time, as on real readers: a second connection gets a
  ConnectionAttemptEvent "Failed (a Client initiated connection already exists)" and is
  closed.
* ROSpecs and AccessSpecs live with the connection (a new connection starts empty), so a
  client that adds without deleting first still gets Success after a reconnect.
* Start triggers Null (START_ROSPEC), Immediate, Periodic and GPI; ROSpec stop triggers
  Null, Duration and GPI-with-timeout; AISpec stop triggers Null, Duration,
  GPI-with-timeout and TagObservation (all five kinds); report triggers as
  ``inventory`` describes. GPI triggers are read with LLRP's parameter number 181 (and
  sllurp's misnumbered 180 where it cannot mean anything else).
* Inventory runs in rounds (``round_s``); each round asks the field which tags each
  driven antenna read. Rounds run at their scheduled times even when the event loop
  wakes late (bounded catch-up), so the physical model does not depend on scheduling.
* GPI inputs: the field's photo-eyes (``TagField.gpi_high``) and ``set_gpi`` overrides,
  sampled every ``GPI_POLL_S``; each change is recorded (``gpi_changes``), sent as a
  GPIEvent when the client enabled them, and drives GPI triggers. GPO writes from
  SET_READER_CONFIG are recorded (``gpo_writes``).
* Replay: ``replay(frames)`` makes inventory send recorded RO_ACCESS_REPORTs (with fresh
  message ids) besides what the field yields.
* Faults (``inject``): see ``faults`` for the kinds and what each does, and
  ``armed_faults`` for where they wait until they act.
* Timestamps are UTC microseconds derived from one monotonic clock reading per session,
  so they are real wall-clock time and never go backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import Counter, deque
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import Final, Self

from firmware_sim.armed_faults import ArmedFaults
from firmware_sim.counters import ReaderCounters, SimStats
from firmware_sim.errors import SimConfigError
from firmware_sim.faults import Fault, Scope, make_fault
from firmware_sim.llrp_encode import encode_connection_attempt
from firmware_sim.llrp_types import ConnectionAttempt
from firmware_sim.portal import TagField
from firmware_sim.profile import R420, ReaderProfile
from firmware_sim.replay import ReplayFrame
from firmware_sim.session import CLOSE_TIMEOUT_S, Session
from plumbing.streams import close_writer, listen

logger = logging.getLogger(__name__)

DEFAULT_PORT: Final = 5084
MAX_ANTENNAS: Final = 8
ROUND_S: Final = 0.025
"""Default inventory round: each antenna gets one chance at each tag per round."""
REPORT_CYCLE_S: Final = 0.075
"""Default report window when the ROSpec does not bound its AISpec."""
MIN_REPORT_CYCLE_S: Final = 0.01
MAX_REPORT_CYCLE_S: Final = 60.0
GPI_POLL_S: Final = 0.01
"""How often GPI inputs are sampled (a photo-eye edge is seen within this)."""
MAX_RECORDED: Final = 100_000
"""GPI changes and GPO writes kept (oldest dropped first)."""
REPLAY_INTERVAL_S: Final = 0.05
"""Default pause between recorded reports replayed."""


def _mac(name: str) -> bytes:
    digest = bytearray(hashlib.sha256(name.encode("utf-8")).digest()[:6])
    digest[0] = (digest[0] & 0xFE) | 0x02  # unicast, locally administered
    return bytes(digest)


class ReaderSimulator:
    """A simulated LLRP reader serving on TCP; an async context manager.

    Args:
        antennas: antenna ports the reader has (1..8); reported as
            MaxNumberOfAntennaSupported.
        name: the reader's name (logs, its MAC address, random seeds).
        seed: seed for the reads' randomness; None for a fresh random seed.
        host: address to listen on.
        port: TCP port; 0 picks a free one (see ``port`` once entered).
        field: what the antennas can see; a new empty ``TagField`` by default.
        profile: identity and capability tables (an Impinj R420 by default).
        round_s: inventory round length in seconds.
        report_cycle_s: report window of an AISpec that never ends (unless ``strict``).
        strict: report exactly as LLRP says, even when that means never (see
            ``inventory``).

    Raises:
        SimConfigError: a value is out of range.
    """

    def __init__(
        self,
        *,
        antennas: int = 4,
        name: str = "sim",
        seed: int | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        field: TagField | None = None,
        profile: ReaderProfile = R420,
        round_s: float = ROUND_S,
        report_cycle_s: float = REPORT_CYCLE_S,
        strict: bool = False,
    ) -> None:
        if not 1 <= antennas <= MAX_ANTENNAS:
            raise SimConfigError(f"antennas {antennas} outside 1..{MAX_ANTENNAS}")
        if not 0 <= port <= 65535:
            raise SimConfigError(f"port {port} outside 0..65535")
        if not 0.005 <= round_s <= 1.0:
            raise SimConfigError(f"round_s {round_s} outside 0.005..1")
        if not MIN_REPORT_CYCLE_S <= report_cycle_s <= MAX_REPORT_CYCLE_S:
            raise SimConfigError(f"report_cycle_s {report_cycle_s} out of range")
        if not name or len(name) > 64:
            raise SimConfigError("name must be 1..64 characters")
        self.antennas = antennas
        self.name = name
        self.seed = seed
        self.host = host
        self.field = field if field is not None else TagField()
        self.profile = profile
        self.round_s = round_s
        self.report_cycle_s = report_cycle_s
        self.strict = strict
        self.mac = _mac(name)
        self.timestamp_jitter_s = 0.0
        """Standard deviation of the noise on each read's timestamp (a reader whose clock
        stamps reads late or early by a few ms, as real ones do under load)."""
        self.replay_frames: tuple[ReplayFrame, ...] = ()
        self.replay_interval_s = REPLAY_INTERVAL_S
        self.replay_loops = 1
        self._requested_port = port
        self._port: int | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._control: set[asyncio.Task[None]] = set()
        self._session: Session | None = None
        self._sessions_started = 0
        self._disconnected: set[int] = set()
        self.counters = ReaderCounters()
        """What the simulator has done, over all its sessions (they count into it)."""
        self._connected = asyncio.Event()
        self._inventorying = asyncio.Event()
        self._faults = ArmedFaults()
        self._rebooting = False
        self._gpi_forced: dict[int, bool] = {}
        self._gpi_levels: dict[int, bool] = dict.fromkeys(range(1, profile.gpis + 1), False)
        self._gpo_levels: dict[int, bool] = dict.fromkeys(range(1, profile.gpos + 1), False)
        self._gpi_changes: deque[tuple[float, int, bool]] = deque(maxlen=MAX_RECORDED)
        self._gpo_writes: deque[tuple[float, int, bool]] = deque(maxlen=MAX_RECORDED)
        self.faults_injected: list[tuple[float, Fault]] = []
        """Every fault injected, with the simulator's time."""

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._listen(self._requested_port)
        if self.profile.gpis:
            self._spawn_control(self._gpi_loop(), "gpi")
        return self

    async def _listen(self, port: int) -> None:
        self._server, self._port = await listen(self._on_client, self.host, port)
        logger.info("reader %s listening on %s:%d", self.name, self.host, self._port)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop listening and end every session (idempotent)."""
        control = list(self._control)
        for task in control:
            task.cancel()
        if control:
            await asyncio.wait(control, timeout=CLOSE_TIMEOUT_S)
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._session is not None:
            # Hanging up ends the session the normal way (end of file). Cancelling the
            # connection task instead makes Python 3.11's streams log a spurious error.
            self._session.hang_up()
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=CLOSE_TIMEOUT_S)
        if server is not None:
            await server.wait_closed()

    def _spawn_control(self, coro: Coroutine[object, object, None], name: str) -> None:
        """A task of the simulator itself (GPI sampling, a reboot), cancelled on close."""
        task = asyncio.create_task(coro, name=f"{self.name}-{name}")
        self._control.add(task)
        task.add_done_callback(self._control.discard)

    @property
    def port(self) -> int:
        """The TCP port the simulator listens on.

        Raises:
            SimConfigError: the simulator has not been entered yet.
        """
        if self._port is None:
            raise SimConfigError("the simulator is not serving yet (use `async with`)")
        return self._port

    # --- observation -----------------------------------------------------------------------

    def now(self) -> float:
        """The simulator's clock (monotonic seconds): the time base of its ``field``."""
        return time.monotonic()

    @property
    def connected(self) -> bool:
        return self._session is not None

    @property
    def inventorying(self) -> bool:
        return self._inventorying.is_set()

    @property
    def emitted(self) -> Counter[tuple[str, int]]:
        """Tag reads sent in reports so far, by (EPC hex, antenna) (sum of seen counts)."""
        return self.counters.emitted

    @property
    def requests(self) -> Counter[int]:
        """Client messages received so far, by LLRP message type."""
        return self.counters.requests

    @property
    def gpi_changes(self) -> list[tuple[float, int, bool]]:
        """Every GPI level change: (simulator time, port, high)."""
        return list(self._gpi_changes)

    @property
    def gpo_writes(self) -> list[tuple[float, int, bool]]:
        """Every GPO write a client made: (simulator time, port, high), in order."""
        return list(self._gpo_writes)

    def stats(self) -> SimStats:
        return self.counters.stats(faults=len(self.faults_injected))

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until a client holds a session.

        Raises:
            TimeoutError: none did within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def wait_inventory(self, timeout: float | None = None) -> None:
        """Wait until a client has inventory running.

        Raises:
            TimeoutError: inventory did not start within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            await self._inventorying.wait()

    # --- control -----------------------------------------------------------------------------

    def set_antenna_connected(self, antenna: int, connected: bool) -> None:
        """Plug or unplug an antenna; a session with AntennaEvent on is told at once.

        Raises:
            SimConfigError: no such antenna port.
        """
        if not 1 <= antenna <= self.antennas:
            raise SimConfigError(f"antenna {antenna} outside 1..{self.antennas}")
        was = antenna not in self._disconnected
        if connected:
            self._disconnected.discard(antenna)
        else:
            self._disconnected.add(antenna)
        if was != connected and self._session is not None:
            self._session.protocol.antenna_changed(antenna, connected)

    def antenna_connected(self, antenna: int) -> bool:
        return 1 <= antenna <= self.antennas and antenna not in self._disconnected

    def replay(
        self,
        frames: Sequence[ReplayFrame],
        *,
        interval_s: float = REPLAY_INTERVAL_S,
        loops: int = 1,
    ) -> None:
        """Send these recorded reports (in order, ``loops`` times; 0: forever) whenever
        inventory starts; an empty sequence turns replay off.

        Raises:
            SimConfigError: ``interval_s`` or ``loops`` out of range.
        """
        if not 0 <= interval_s <= 60:
            raise SimConfigError(f"replay interval {interval_s} s outside 0..60")
        if not 0 <= loops <= 1_000_000:
            raise SimConfigError(f"replay loops {loops} outside 0..1000000")
        self.replay_frames = tuple(frames)
        self.replay_interval_s = interval_s
        self.replay_loops = loops

    # --- GPI / GPO ---------------------------------------------------------------------------

    def set_gpi(self, port: int, high: bool | None) -> None:
        """Force a GPI input high or low; None hands it back to the field's photo-eyes.

        Raises:
            SimConfigError: no such GPI port.
        """
        if not 1 <= port <= self.profile.gpis:
            raise SimConfigError(f"GPI port {port} outside 1..{self.profile.gpis}")
        if high is None:
            self._gpi_forced.pop(port, None)
        else:
            self._gpi_forced[port] = high
        self._poll_gpi()

    def gpi_level(self, port: int) -> bool:
        """The level of a GPI input as last sampled."""
        return self._gpi_levels.get(port, False)

    def gpo_level(self, port: int) -> bool:
        """The level a client last wrote to a GPO port (low until written)."""
        return self._gpo_levels.get(port, False)

    def _poll_gpi(self) -> None:
        t = self.now()
        from_field = self.field.gpi_high(t)
        for port in self._gpi_levels:
            level = self._gpi_forced.get(port, port in from_field)
            if level != self._gpi_levels[port]:
                self._gpi_levels[port] = level
                self._gpi_changes.append((t, port, level))
                logger.debug("reader %s: GPI %d %s", self.name, port, "high" if level else "low")
                if self._session is not None:
                    self._session.protocol.gpi_changed(port, level, t)

    async def _gpi_loop(self) -> None:
        while True:
            self._poll_gpi()
            await asyncio.sleep(GPI_POLL_S)

    def write_gpo(self, port: int, high: bool) -> None:
        """A client set a GPO port (SET_READER_CONFIG): recorded in ``gpo_writes``."""
        self._gpo_levels[port] = high
        self._gpo_writes.append((self.now(), port, high))
        logger.info("reader %s: GPO %d set %s", self.name, port, "high" if high else "low")

    # --- faults ------------------------------------------------------------------------------

    def inject(self, kind: str, **params: object) -> Fault:
        """Make the reader misbehave (see ``faults`` for kinds and parameters).

        Session faults act on the connection a client holds now, or wait for the next
        one to run inventory; connection faults shape the next ``count`` connections;
        ``reboot`` acts at once.

        Raises:
            SimConfigError: unknown kind or bad parameter.
        """
        fault = make_fault(kind, **params)
        self.faults_injected.append((self.now(), fault))
        if fault.scope is Scope.CONNECTION:
            self._faults.arm(fault)
            logger.warning("reader %s: fault armed: %s", self.name, fault.describe())
        elif fault.scope is Scope.READER:
            self._spawn_control(self._reboot(fault.float_("delay_s")), "reboot")
        else:
            session = self._session
            if session is not None and session.inventory_started and not session.closing:
                session.apply(fault)
            else:
                self._faults.hold(fault)
                logger.warning(
                    "reader %s: fault waits for a session: %s", self.name, fault.describe()
                )
        return fault

    def clear_faults(self) -> None:
        """Forget connection faults still armed and session faults still waiting."""
        self._faults.clear()

    async def _reboot(self, delay_s: float) -> None:
        """Drop the connection, refuse connections for ``delay_s``, then serve again."""
        logger.warning("reader %s: rebooting for %.2f s", self.name, delay_s)
        self._rebooting = True
        try:
            server, self._server = self._server, None
            if server is not None:
                server.close()
            if self._session is not None:
                self._session.hang_up()
            if server is not None:
                await server.wait_closed()
            await asyncio.sleep(delay_s)
            await self._listen(self.port)
            logger.warning("reader %s: back after reboot", self.name)
        finally:
            self._rebooting = False

    # --- sessions --------------------------------------------------------------------------

    def set_inventorying(self, running: bool) -> None:
        """A session started or stopped inventory (``inventorying``, ``wait_inventory``)."""
        if running:
            self._inventorying.set()
        else:
            self._inventorying.clear()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self._session is not None or self._server is None:
                await self._refuse(writer, ConnectionAttempt.CLIENT_INITIATED_EXISTS)
                return
            refusal = self._faults.take_refusal()
            if refusal is not None:
                logger.warning(
                    "reader %s: fault: refusing a connection (%s)", self.name, refusal.name
                )
                await self._refuse(writer, refusal)
                return
            self._sessions_started += 1
            self.counters.count("connections")
            faults = self._faults.take_connection_faults(self.antennas)
            session = Session(self, reader, writer, self._sessions_started, faults)
            self._session = session
            self._connected.set()
            try:
                await session.run(self._faults.take_held)
            finally:
                self._session = None
                self._connected.clear()
                self.set_inventorying(False)
        finally:
            self._tasks.discard(task)

    async def _refuse(self, writer: asyncio.StreamWriter, status: ConnectionAttempt) -> None:
        self.counters.count("refused")
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(encode_connection_attempt(0, time.time_ns() // 1000, status))
            await writer.drain()
        await close_writer(writer, CLOSE_TIMEOUT_S)
