"""The faults a simulated reader can show, as data: what each does, its parameters, limits.

A fault is asked for by kind with optional parameters, from Python
(``ReaderSimulator.inject(kind, **params)``), from a scenario (``[[faults]]`` with
``at_s`` and ``kind``) or from the command line (``--fault KIND[,NAME=VALUE...][@SECONDS]``).
``make_fault`` checks the kind and every parameter against ``FAULTS`` and gives a frozen
``Fault``; nothing else reads parameters, so a bad value is refused before anything runs.

Scopes say when a fault acts:

* ``session``: on the connection a client holds now. Injected while no client holds one,
  it waits and acts once the next client has inventory running.
* ``connection``: on the next ``count`` connection attempts (``count = 0``: every one
  from now on, until ``clear_faults()``).
* ``reader``: on the reader as a whole, at once.

Kinds (scope; what the reader does):

* ``drop_mid_message`` (session): sends the first half of its next message, then drops
  the socket.
* ``stop_keepalives`` (session): goes silent with TCP open: no KEEPALIVE, no report, no
  answer (``reports=true``: reports go on).
* ``garbage`` (session): writes ``size`` bytes of noise into the stream
  (``framed=true``: one well-framed message with an undecodable body).
* ``slow`` (session): for ``duration_s``, stops reading the client's bytes and sends at
  most ``rate_bps`` bytes/s (TCP back-pressure).
* ``refuse_connection`` (connection): greets with ConnectionAttemptEvent ``status`` (not
  Success) and hangs up.
* ``no_rf_mode_table`` (connection): leaves UHFC1G2RFModeTable out of its capabilities.
* ``fewer_antennas`` (connection): advertises ``antennas`` (default: one fewer than it has).
* ``error_in_handshake`` (connection): answers ``request`` with an ERROR_MESSAGE instead
  of its response.
* ``empty_report`` (connection): sends an empty RO_ACCESS_REPORT before inventory starts
  (as a Zebra FX9600 does).
* ``reboot`` (reader): drops the connection, refuses TCP connections for ``delay_s``, then
  serves again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from firmware_sim.errors import SimConfigError
from firmware_sim.llrp_types import ConnectionAttempt, MsgType

MAX_FAULT_AT_S: Final = 86_400.0
MAX_GARBAGE_BYTES: Final = 64 * 1024


class FaultKind(StrEnum):
    DROP_MID_MESSAGE = "drop_mid_message"
    STOP_KEEPALIVES = "stop_keepalives"
    GARBAGE = "garbage"
    SLOW = "slow"
    REFUSE_CONNECTION = "refuse_connection"
    NO_RF_MODE_TABLE = "no_rf_mode_table"
    FEWER_ANTENNAS = "fewer_antennas"
    ERROR_IN_HANDSHAKE = "error_in_handshake"
    EMPTY_REPORT = "empty_report"
    REBOOT = "reboot"


class Scope(StrEnum):
    SESSION = "session"
    CONNECTION = "connection"
    READER = "reader"


ParamValue = bool | int | float | str


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a fault: its type, default and bounds (numbers) or choices (text)."""

    kind: type[bool] | type[int] | type[float] | type[str]
    default: ParamValue | None
    """None: the simulator picks (e.g. ``fewer_antennas``' count)."""
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FaultSpec:
    kind: FaultKind
    scope: Scope
    params: Mapping[str, Param] = field(default_factory=dict)
    summary: str = ""


_COUNT = Param(int, 1, 0, 1000)
_HANDSHAKE_REQUESTS: Final = (
    "GET_READER_CAPABILITIES",
    "GET_READER_CONFIG",
    "SET_READER_CONFIG",
    "DELETE_ACCESSSPEC",
    "DELETE_ROSPEC",
    "ADD_ROSPEC",
    "ENABLE_ROSPEC",
)
_REFUSALS: Final = ("other_failure", "client_initiated_exists", "reader_initiated_exists")

REFUSAL_STATUS: Final[Mapping[str, ConnectionAttempt]] = MappingProxyType(
    {
        "other_failure": ConnectionAttempt.OTHER_FAILURE,
        "client_initiated_exists": ConnectionAttempt.CLIENT_INITIATED_EXISTS,
        "reader_initiated_exists": ConnectionAttempt.READER_INITIATED_EXISTS,
    }
)
HANDSHAKE_REQUEST_TYPES: Final[Mapping[str, int]] = MappingProxyType(
    {name: MsgType[name] for name in _HANDSHAKE_REQUESTS}
)

FAULTS: Final[Mapping[FaultKind, FaultSpec]] = MappingProxyType(
    {
        spec.kind: spec
        for spec in (
            FaultSpec(
                FaultKind.DROP_MID_MESSAGE,
                Scope.SESSION,
                summary="send half of the next message, then drop the socket",
            ),
            FaultSpec(
                FaultKind.STOP_KEEPALIVES,
                Scope.SESSION,
                {"reports": Param(bool, False)},
                "go silent with the socket open (reports=true: only keepalives stop)",
            ),
            FaultSpec(
                FaultKind.GARBAGE,
                Scope.SESSION,
                {"size": Param(int, 64, 1, MAX_GARBAGE_BYTES), "framed": Param(bool, False)},
                "write noise into the stream (framed=true: one undecodable message)",
            ),
            FaultSpec(
                FaultKind.SLOW,
                Scope.SESSION,
                {
                    "duration_s": Param(float, 2.0, 0.01, 3600),
                    "rate_bps": Param(int, 2000, 10, 100_000_000),
                },
                "stop reading the client and trickle bytes out for duration_s",
            ),
            FaultSpec(
                FaultKind.REFUSE_CONNECTION,
                Scope.CONNECTION,
                {"count": _COUNT, "status": Param(str, "other_failure", choices=_REFUSALS)},
                "greet with a failed ConnectionAttemptEvent and hang up",
            ),
            FaultSpec(
                FaultKind.NO_RF_MODE_TABLE,
                Scope.CONNECTION,
                {"count": _COUNT},
                "leave the RF mode table out of the capabilities",
            ),
            FaultSpec(
                FaultKind.FEWER_ANTENNAS,
                Scope.CONNECTION,
                {"count": _COUNT, "antennas": Param(int, None, 1, 8)},
                "advertise fewer antennas than the reader has",
            ),
            FaultSpec(
                FaultKind.ERROR_IN_HANDSHAKE,
                Scope.CONNECTION,
                {
                    "count": _COUNT,
                    "request": Param(str, "GET_READER_CONFIG", choices=_HANDSHAKE_REQUESTS),
                },
                "answer a handshake request with ERROR_MESSAGE",
            ),
            FaultSpec(
                FaultKind.EMPTY_REPORT,
                Scope.CONNECTION,
                {"count": _COUNT},
                "send an empty RO_ACCESS_REPORT before inventory",
            ),
            FaultSpec(
                FaultKind.REBOOT,
                Scope.READER,
                {"delay_s": Param(float, 2.0, 0.0, 600)},
                "drop the connection, refuse connections for delay_s, come back",
            ),
        )
    }
)
"""Every fault kind: scope, parameters and a one-line summary."""


@dataclass(frozen=True, slots=True)
class Fault:
    """A checked fault: its kind and every parameter (defaults filled in)."""

    kind: FaultKind
    params: Mapping[str, ParamValue | None]

    @property
    def scope(self) -> Scope:
        return FAULTS[self.kind].scope

    def int_(self, name: str) -> int:
        value = self.params[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"fault {self.kind}: {name} is {value!r}, not a whole number")
        return value

    def float_(self, name: str) -> float:
        value = self.params[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"fault {self.kind}: {name} is {value!r}, not a number")
        return float(value)

    def bool_(self, name: str) -> bool:
        return bool(self.params[name])

    def str_(self, name: str) -> str:
        return str(self.params[name])

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items() if v is not None)
        return f"{self.kind}({shown})" if shown else str(self.kind)


@dataclass(frozen=True, slots=True)
class ScheduledFault:
    """A fault and when it happens: seconds after a start the caller defines (None: now)."""

    fault: Fault
    at_s: float | None = None


def _coerce(kind_name: str, name: str, spec: Param, value: object) -> ParamValue:
    where = f"fault {kind_name}: {name}"
    if spec.kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise SimConfigError(f"{where} must be true or false, not {value!r}")
        return value
    if spec.kind is str:
        text = str(value)
        if spec.choices and text not in spec.choices:
            raise SimConfigError(f"{where} must be one of {', '.join(spec.choices)}; not {text!r}")
        return text
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SimConfigError(f"{where} must be a {spec.kind.__name__}, not {value!r}")
    try:
        if spec.kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("not a whole number")
            number: int | float = int(value)
        else:
            number = float(value)
    except ValueError as err:
        raise SimConfigError(f"{where} must be a {spec.kind.__name__}, not {value!r}") from err
    if (spec.low is not None and number < spec.low) or (
        spec.high is not None and number > spec.high
    ):
        raise SimConfigError(f"{where} = {number} outside {spec.low:g}..{spec.high:g}")
    return number


def make_fault(kind: str, **params: object) -> Fault:
    """Check a fault kind and its parameters.

    Raises:
        SimConfigError: unknown kind, unknown parameter or a value out of range; the
            message names it and what is allowed.
    """
    try:
        fault_kind = FaultKind(kind)
    except ValueError as err:
        known = ", ".join(k.value for k in FaultKind)
        raise SimConfigError(f"unknown fault {kind!r}; known faults: {known}") from err
    spec = FAULTS[fault_kind]
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        allowed = ", ".join(spec.params) or "none"
        raise SimConfigError(
            f"fault {kind}: unknown parameter {unknown[0]!r} (parameters: {allowed})"
        )
    values: dict[str, ParamValue | None] = {}
    for name, param in spec.params.items():
        values[name] = _coerce(kind, name, param, params[name]) if name in params else param.default
    return Fault(fault_kind, MappingProxyType(values))


def parse_fault_arg(text: str) -> ScheduledFault:
    """Read ``KIND[,NAME=VALUE...][@SECONDS]`` as the command line's ``--fault`` gives it.

    Raises:
        SimConfigError: the text is malformed or names a bad fault or value.
    """
    text = text.strip()
    at_s: float | None = None
    if "@" in text:
        text, _, when = text.rpartition("@")
        try:
            at_s = float(when)
        except ValueError as err:
            raise SimConfigError(f"--fault: {when!r} after '@' is not a number of seconds") from err
        if not 0 <= at_s <= MAX_FAULT_AT_S:
            raise SimConfigError(f"--fault: @{at_s:g} outside 0..{MAX_FAULT_AT_S:g} s")
    kind, *pairs = text.split(",")
    params: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise SimConfigError(f"--fault: {pair!r} is not NAME=VALUE")
        params[name.strip()] = value.strip()
    return ScheduledFault(make_fault(kind.strip(), **params), at_s)
