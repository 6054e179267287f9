"""Faults waiting to act on a simulated reader, and what a connection's faults change.

``faults`` says what each kind does; this is where injected faults wait until they act:
connection faults armed for the next ``count`` connections (``count = 0``: every one,
until cleared), session faults injected while no session could take them, held for the
next session to run inventory. ``ConnectionFaults`` is what the connection faults taken by
one connection amount to, read by its session from the first byte.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_sim.faults import HANDSHAKE_REQUEST_TYPES, REFUSAL_STATUS, Fault, FaultKind
from firmware_sim.llrp_types import ConnectionAttempt


@dataclass(frozen=True, slots=True)
class ConnectionFaults:
    """Faults that shape one connection from its first byte."""

    no_rf_mode_table: bool = False
    advertised_antennas: int | None = None
    error_on: int | None = None
    """Message type answered with ERROR_MESSAGE instead of its response."""
    empty_report: bool = False

    @classmethod
    def of(cls, faults: list[Fault], antennas: int) -> ConnectionFaults:
        """The connection faults in ``faults``, for a reader with ``antennas`` ports."""
        no_rf_mode_table = False
        advertised: int | None = None
        error_on: int | None = None
        empty_report = False
        for fault in faults:
            if fault.kind is FaultKind.NO_RF_MODE_TABLE:
                no_rf_mode_table = True
            elif fault.kind is FaultKind.FEWER_ANTENNAS:
                wanted = fault.params["antennas"]
                count = wanted if isinstance(wanted, int) else antennas - 1
                advertised = max(1, min(antennas, count))
            elif fault.kind is FaultKind.ERROR_IN_HANDSHAKE:
                error_on = HANDSHAKE_REQUEST_TYPES[fault.str_("request")]
            elif fault.kind is FaultKind.EMPTY_REPORT:
                empty_report = True
        return cls(no_rf_mode_table, advertised, error_on, empty_report)


@dataclass(slots=True)
class _Armed:
    """A connection fault waiting for connections (``remaining`` None: every one)."""

    fault: Fault
    remaining: int | None


class ArmedFaults:
    """The connection faults armed and the session faults held, in injection order."""

    def __init__(self) -> None:
        self._armed: list[_Armed] = []
        self._held: list[Fault] = []

    def arm(self, fault: Fault) -> None:
        """Arm a connection fault for its ``count`` connections (0: all from now on)."""
        count = fault.int_("count")
        self._armed.append(_Armed(fault, count or None))

    def hold(self, fault: Fault) -> None:
        """Keep a session fault for the next session that runs inventory."""
        self._held.append(fault)

    def clear(self) -> None:
        """Forget connection faults still armed and session faults still held."""
        self._armed.clear()
        self._held.clear()

    def take_refusal(self) -> ConnectionAttempt | None:
        """The status to refuse this connection with, if a refusal is armed (used up)."""
        for armed in self._armed:
            if armed.fault.kind is FaultKind.REFUSE_CONNECTION:
                self._use(armed)
                return REFUSAL_STATUS[armed.fault.str_("status")]
        return None

    def take_connection_faults(self, antennas: int) -> ConnectionFaults:
        """What the armed faults other than refusals do to this connection (used up)."""
        taken = []
        for armed in list(self._armed):
            if armed.fault.kind is FaultKind.REFUSE_CONNECTION:
                continue
            taken.append(armed.fault)
            self._use(armed)
        return ConnectionFaults.of(taken, antennas)

    def take_held(self) -> list[Fault]:
        """The session faults held so far (they are no longer held)."""
        held, self._held = self._held, []
        return held

    def _use(self, armed: _Armed) -> None:
        if armed.remaining is not None:
            armed.remaining -= 1
            if armed.remaining <= 0:
                self._armed.remove(armed)
