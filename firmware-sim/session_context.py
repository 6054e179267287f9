"""What the parts of one simulated-reader session share.

A session is a connection (``session.Session``: the socket, framing, timers, faults on
the output), the LLRP state machine it feeds (``reader_protocol.ReaderProtocol``, with
``specs.Specs`` and ``inventory_host.InventoryHost``). They meet here:

* ``ReaderHost``: the simulator as its sessions see it (identity, tables, the field,
  its ports and counters);
* ``Link``: the connection as the state machine sees it (send, drain, ids, clock,
  tasks and timers it owns);
* ``ClientConfig`` and ``ReaderEvents``: what the client set on this connection that
  more than one part reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from firmware_sim.counters import ReaderCounters, Reads
from firmware_sim.llrp_encode import encode_response
from firmware_sim.llrp_requests import Request
from firmware_sim.llrp_types import SUCCESS, ReportSpec
from firmware_sim.portal import TagField
from firmware_sim.profile import ReaderProfile
from firmware_sim.replay import ReplayFrame

Output = Literal["response", "event", "keepalive", "report", "raw"]
"""What a message to the client is (faults treat reports apart)."""
EventBuilder = Callable[[int, int], bytes]
"""Builds a READER_EVENT_NOTIFICATION from its message id and UTC microseconds."""
DEFAULT_EVENTS: Final[Mapping[str, bool]] = {"AntennaEvent": True}


class ReaderHost(Protocol):
    """The simulator as its sessions see it (``reader.ReaderSimulator``)."""

    name: str
    seed: int | str | None
    antennas: int
    profile: ReaderProfile
    mac: bytes
    field: TagField
    round_s: float
    report_cycle_s: float
    strict: bool
    timestamp_jitter_s: float
    replay_frames: tuple[ReplayFrame, ...]
    replay_interval_s: float
    replay_loops: int
    counters: ReaderCounters

    def antenna_connected(self, antenna: int) -> bool: ...

    def gpi_level(self, port: int) -> bool: ...

    def gpo_level(self, port: int) -> bool: ...

    def write_gpo(self, port: int, high: bool) -> None:
        """A client set a GPO port (SET_READER_CONFIG)."""

    def set_inventorying(self, running: bool) -> None:
        """Inventory started or stopped on the session."""


class Link(Protocol):
    """The connection as the state machine sees it (``session.Session``)."""

    @property
    def closing(self) -> bool:
        """The connection is ending: nothing more goes out."""

    @property
    def live(self) -> bool:
        """The connection serves and is not closing: tasks may start on it."""

    def send(self, data: bytes, what: Output, reads: Reads | None = None) -> bool:
        """Hand one whole message to the client; True if it will go out."""

    def drain(self) -> Awaitable[None]:
        """Wait until what was sent has left (or the peer is gone)."""

    def next_id(self) -> int:
        """The message id of the next message the reader starts."""

    def utc_us(self, t: float) -> int:
        """UTC microseconds of monotonic time ``t`` (the session's one clock)."""

    def spawn(self, coro: Coroutine[object, object, None], name: str) -> asyncio.Task[None]:
        """A task of the connection, cancelled when it ends."""

    def repeat(
        self, first: float, period_s: float, fire: Callable[[], Awaitable[None]], name: str
    ) -> asyncio.Task[None]:
        """A timer of the connection: ``fire`` at monotonic time ``first``, then every
        ``period_s`` (0: once); periods missed while the loop was busy are skipped."""

    def set_keepalive(self, interval_ms: int) -> None:
        """Send KEEPALIVE every ``interval_ms`` from now (0: stop)."""

    def inventory_began(self) -> None:
        """Inventory is running: session faults held for this moment act now."""


@dataclass(slots=True)
class ClientConfig:
    """The reader configuration a client set on this connection that inventory reads."""

    default_report: ReportSpec = field(default_factory=ReportSpec)
    """The reader-level ROReportSpec, for ROSpecs without their own."""
    impinj: bool = False
    """The client enabled Impinj extensions on this connection."""


class ReaderEvents:
    """The reader events a client enabled on a connection, and sending them."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._enabled = dict(DEFAULT_EVENTS)

    def enable(self, changes: Mapping[str, bool]) -> None:
        """Turn events on or off by sllurp's event name (e.g. ``"GPIEvent"``)."""
        self._enabled.update(changes)

    def reset(self) -> None:
        """Back to the reader's defaults (only AntennaEvent)."""
        self._enabled = dict(DEFAULT_EVENTS)

    def send(self, name: str, build: EventBuilder) -> None:
        """Send the event ``build`` makes, now, if the client enabled ``name``."""
        if self._enabled.get(name, False):
            link = self._link
            link.send(build(link.next_id(), link.utc_us(time.monotonic())), "event")


def send_ok(link: Link, request: Request, extra: bytes = b"") -> bool:
    """Answer ``request`` with Success (and ``extra`` parameters); True: keep serving."""
    link.send(encode_response(request.msg_type, request.msg_id, SUCCESS, extra), "response")
    return True
