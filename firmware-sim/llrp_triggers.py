"""ROSpec and AISpec triggers read straight from the bytes of an ADD_ROSPEC (sans-I/O).

sllurp 3.0.5 gives ``GPITriggerValue`` the parameter type 180, which LLRP 1.0.1 assigns
to ``PeriodicTriggerValue`` (§16.2.4.1.1.1.1); the right number is 181
(§16.2.4.1.1.1.2). Decoded by sllurp, a correct GPI trigger is an unknown parameter and
a periodic one is read with the GPI layout. So the boundary and stop triggers are read
here from the TLVs themselves:

* type 181 is a GPITriggerValue, as the standard says;
* type 180 is a PeriodicTriggerValue inside a ROSpecStartTrigger of type Periodic;
  anywhere else (a GPI start trigger, a stop trigger) it can only be sllurp's misnumbered
  GPITriggerValue, and its 7-byte body is read as one, so sllurp-built ROSpecs work too.

Nothing here touches sllurp; the values leave as frozen dataclasses.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, TypeVar

from firmware_sim.errors import SimError
from firmware_sim.llrp_types import Status, StatusCode

ROSPEC: Final = 177
RO_BOUNDARY_SPEC: Final = 178
ROSPEC_START_TRIGGER: Final = 179
PERIODIC_TRIGGER_VALUE: Final = 180
GPI_TRIGGER_VALUE: Final = 181
ROSPEC_STOP_TRIGGER: Final = 182
AISPEC: Final = 183
AISPEC_STOP_TRIGGER: Final = 184
TAG_OBSERVATION_TRIGGER: Final = 185
INVENTORY_PARAMETER_SPEC: Final = 186
UTC_TIMESTAMP: Final = 128
MAX_AISPECS: Final = 32
MAX_ANTENNA_IDS: Final = 64

_TLV = struct.Struct("!HH")
_GPI = struct.Struct("!HBI")
_PERIODIC = struct.Struct("!II")
_OBSERVATION = struct.Struct("!BBHHHI")
_E = TypeVar("_E", bound=IntEnum)


class TriggerError(SimError):
    """A ROSpec's triggers are malformed; ``status`` is the LLRPStatus to answer with."""

    def __init__(self, status: Status) -> None:
        super().__init__(status.description or status.code.name)
        self.status = status


def _field(text: str) -> TriggerError:
    return TriggerError(Status(StatusCode.FIELD_ERROR, text, field_num=0))


def _missing(text: str) -> TriggerError:
    return TriggerError(Status(StatusCode.MISSING_PARAMETER, text))


def _param(text: str) -> TriggerError:
    return TriggerError(Status(StatusCode.PARAMETER_ERROR, text))


class StartTrigger(IntEnum):
    """ROSpecStartTriggerType."""

    NULL = 0
    IMMEDIATE = 1
    PERIODIC = 2
    GPI = 3


class RoSpecStop(IntEnum):
    """ROSpecStopTriggerType."""

    NULL = 0
    DURATION = 1
    GPI_WITH_TIMEOUT = 2


class AiSpecStop(IntEnum):
    """AISpecStopTriggerType."""

    NULL = 0
    DURATION = 1
    GPI_WITH_TIMEOUT = 2
    TAG_OBSERVATION = 3


class ObservationKind(IntEnum):
    """TagObservationTrigger TriggerType (LLRP 1.0.1 §16.2.4.2.1.1)."""

    N_OBSERVATIONS = 0
    """Upon seeing N tag observations, or timeout."""
    NO_NEW_OBSERVATIONS = 1
    """Upon seeing no more new tag observations for T ms, or timeout."""
    N_ATTEMPTS = 2
    """N attempts to see all tags in the field of view, or timeout."""
    N_UNIQUE = 3
    """Upon seeing N unique tags, or timeout."""
    NO_NEW_UNIQUE = 4
    """Upon seeing no more new unique tags for T ms, or timeout."""


@dataclass(frozen=True, slots=True)
class Periodic:
    """PeriodicTriggerValue: first start ``offset_ms`` after enabling (or after
    ``utc_start_us``), then every ``period_ms`` (0: only once)."""

    offset_ms: int
    period_ms: int
    utc_start_us: int | None = None


@dataclass(frozen=True, slots=True)
class GpiTrigger:
    """GPITriggerValue: port ``port`` going to level ``event`` (True = high).

    ``timeout_ms`` bounds a stop trigger's wait (0: no timeout); a start trigger ignores it.
    """

    port: int
    event: bool
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class StartSpec:
    kind: StartTrigger
    periodic: Periodic | None = None
    gpi: GpiTrigger | None = None


@dataclass(frozen=True, slots=True)
class StopSpec:
    kind: RoSpecStop
    duration_ms: int = 0
    gpi: GpiTrigger | None = None


@dataclass(frozen=True, slots=True)
class TagObservation:
    """TagObservationTrigger: when an AISpec has seen enough."""

    kind: ObservationKind
    n_tags: int
    n_attempts: int
    t_ms: int
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class AiStopSpec:
    kind: AiSpecStop
    duration_ms: int = 0
    gpi: GpiTrigger | None = None
    observation: TagObservation | None = None


@dataclass(frozen=True, slots=True)
class AiSpec:
    """One AISpec: which antennas, until when, and its InventoryParameterSpecID."""

    antennas: tuple[int, ...]
    """Antenna ids; (0,) means every antenna."""
    stop: AiStopSpec
    inventory_parameter_spec_id: int


@dataclass(frozen=True, slots=True)
class RoSpecTriggers:
    start: StartSpec
    stop: StopSpec
    aispecs: tuple[AiSpec, ...]


def children(body: bytes, what: str) -> Iterator[tuple[int, bytes]]:
    """The TLV parameters in ``body`` as (type, body) pairs.

    Raises:
        TriggerError: a TV parameter or a length that does not fit.
    """
    offset = 0
    while offset < len(body):
        if body[offset] & 0x80:
            raise _param(f"{what}: unexpected TV parameter {body[offset] & 0x7F}")
        if len(body) - offset < _TLV.size:
            raise _param(f"{what}: truncated parameter header")
        kind, length = _TLV.unpack_from(body, offset)
        if length < _TLV.size or offset + length > len(body):
            raise _param(f"{what}: parameter {kind & 0x3FF} length {length} does not fit")
        yield kind & 0x3FF, body[offset + _TLV.size : offset + length]
        offset += length


def _gpi(body: bytes, what: str) -> GpiTrigger:
    if len(body) < _GPI.size:
        raise _param(f"{what}: GPITriggerValue is {len(body)} bytes, needs {_GPI.size}")
    port, flags, timeout = _GPI.unpack_from(body)
    if port < 1:
        raise _field(f"{what}: GPIPortNum 0 (ports count from 1)")
    return GpiTrigger(port, bool(flags & 0x80), timeout)


def _periodic(body: bytes) -> Periodic:
    if len(body) < _PERIODIC.size:
        raise _param(f"PeriodicTriggerValue is {len(body)} bytes, needs {_PERIODIC.size}")
    offset, period = _PERIODIC.unpack_from(body)
    utc: int | None = None
    for kind, sub in children(body[_PERIODIC.size :], "PeriodicTriggerValue"):
        if kind == UTC_TIMESTAMP and len(sub) >= 8:
            (utc,) = struct.unpack_from("!Q", sub)
    return Periodic(offset, period, utc)


def _enum(enum: type[_E], value: int, what: str) -> _E:
    try:
        return enum(value)
    except ValueError as err:
        raise _field(f"{what} {value} unknown") from err


def _start(body: bytes) -> StartSpec:
    if not body:
        raise _param("ROSpecStartTrigger is empty")
    kind = _enum(StartTrigger, body[0], "ROSpecStartTriggerType")
    periodic: Periodic | None = None
    gpi: GpiTrigger | None = None
    for sub_kind, sub in children(body[1:], "ROSpecStartTrigger"):
        if sub_kind == GPI_TRIGGER_VALUE or (
            sub_kind == PERIODIC_TRIGGER_VALUE and kind is StartTrigger.GPI
        ):
            gpi = _gpi(sub, "ROSpecStartTrigger")
        elif sub_kind == PERIODIC_TRIGGER_VALUE:
            periodic = _periodic(sub)
    if kind is StartTrigger.PERIODIC and periodic is None:
        raise _missing("a Periodic start trigger needs a PeriodicTriggerValue")
    if kind is StartTrigger.GPI and gpi is None:
        raise _missing("a GPI start trigger needs a GPITriggerValue")
    return StartSpec(kind, periodic, gpi)


def _stop_gpi(body: bytes, what: str) -> GpiTrigger | None:
    gpi: GpiTrigger | None = None
    for sub_kind, sub in children(body, what):
        # 180 here can only be sllurp's misnumbered GPITriggerValue.
        if sub_kind in (GPI_TRIGGER_VALUE, PERIODIC_TRIGGER_VALUE):
            gpi = _gpi(sub, what)
    return gpi


def _stop(body: bytes) -> StopSpec:
    if len(body) < 5:
        raise _param("ROSpecStopTrigger is shorter than 5 bytes")
    kind = _enum(RoSpecStop, body[0], "ROSpecStopTriggerType")
    (duration,) = struct.unpack_from("!I", body, 1)
    gpi = _stop_gpi(body[5:], "ROSpecStopTrigger")
    if kind is RoSpecStop.GPI_WITH_TIMEOUT and gpi is None:
        raise _missing("a GPI-with-timeout ROSpec stop trigger needs a GPITriggerValue")
    return StopSpec(kind, duration, gpi)


def _observation(body: bytes) -> TagObservation:
    if len(body) < _OBSERVATION.size:
        raise _param(f"TagObservationTrigger is {len(body)} bytes, needs {_OBSERVATION.size}")
    kind, _, n_tags, n_attempts, t_ms, timeout = _OBSERVATION.unpack_from(body)
    return TagObservation(
        _enum(ObservationKind, kind, "TagObservationTrigger TriggerType"),
        n_tags,
        n_attempts,
        t_ms,
        timeout,
    )


def _aispec_stop(body: bytes) -> AiStopSpec:
    if len(body) < 5:
        raise _param("AISpecStopTrigger is shorter than 5 bytes")
    kind = _enum(AiSpecStop, body[0], "AISpecStopTriggerType")
    (duration,) = struct.unpack_from("!I", body, 1)
    gpi: GpiTrigger | None = None
    observation: TagObservation | None = None
    for sub_kind, sub in children(body[5:], "AISpecStopTrigger"):
        if sub_kind in (GPI_TRIGGER_VALUE, PERIODIC_TRIGGER_VALUE):
            gpi = _gpi(sub, "AISpecStopTrigger")
        elif sub_kind == TAG_OBSERVATION_TRIGGER:
            observation = _observation(sub)
    if kind is AiSpecStop.GPI_WITH_TIMEOUT and gpi is None:
        raise _missing("a GPI-with-timeout AISpec stop trigger needs a GPITriggerValue")
    if kind is AiSpecStop.TAG_OBSERVATION and observation is None:
        raise _missing("a Tag observation AISpec stop trigger needs a TagObservationTrigger")
    return AiStopSpec(kind, duration, gpi, observation)


def _aispec(body: bytes) -> AiSpec:
    if len(body) < 2:
        raise _param("AISpec is empty")
    (count,) = struct.unpack_from("!H", body)
    if not 1 <= count <= MAX_ANTENNA_IDS or len(body) < 2 + 2 * count:
        raise _field(f"AISpec AntennaCount {count} (1..{MAX_ANTENNA_IDS}, all present)")
    antennas = struct.unpack_from(f"!{count}H", body, 2)
    stop: AiStopSpec | None = None
    ips_id: int | None = None
    for kind, sub in children(body[2 + 2 * count :], "AISpec"):
        if kind == AISPEC_STOP_TRIGGER:
            stop = _aispec_stop(sub)
        elif kind == INVENTORY_PARAMETER_SPEC and ips_id is None and len(sub) >= 2:
            (ips_id,) = struct.unpack_from("!H", sub)
    if stop is None:
        raise _missing("AISpec has no AISpecStopTrigger")
    unique = tuple(dict.fromkeys(antennas))
    if 0 in unique:
        unique = (0,)
    return AiSpec(unique, stop, 1 if ips_id is None else ips_id)


def parse_triggers(rospec: bytes) -> RoSpecTriggers:
    """The boundary spec and the AISpecs of one whole ROSpec parameter (TLV 177).

    Raises:
        TriggerError: not a ROSpec, or a trigger is missing or malformed.
    """
    if len(rospec) < 10 or _TLV.unpack_from(rospec)[0] & 0x3FF != ROSPEC:
        raise _param("not a ROSpec parameter")
    (length,) = struct.unpack_from("!H", rospec, 2)
    if length > len(rospec):
        raise _param(f"ROSpec length {length} beyond the {len(rospec)} bytes sent")
    start: StartSpec | None = None
    stop: StopSpec | None = None
    aispecs: list[AiSpec] = []
    # ROSpecID (u32), Priority (u8), CurrentState (u8), then the parameters.
    for kind, body in children(rospec[10:length], "ROSpec"):
        if kind == RO_BOUNDARY_SPEC:
            for sub_kind, sub in children(body, "ROBoundarySpec"):
                if sub_kind == ROSPEC_START_TRIGGER:
                    start = _start(sub)
                elif sub_kind == ROSPEC_STOP_TRIGGER:
                    stop = _stop(sub)
        elif kind == AISPEC:
            if len(aispecs) >= MAX_AISPECS:
                raise TriggerError(
                    Status(StatusCode.OVERFLOW_PARAMETER, f"more than {MAX_AISPECS} AISpecs")
                )
            aispecs.append(_aispec(body))
    if start is None or stop is None:
        raise _missing("ROBoundarySpec needs a ROSpecStartTrigger and a ROSpecStopTrigger")
    if not aispecs:
        raise _missing("ROSpec has no AISpec")
    return RoSpecTriggers(start, stop, tuple(aispecs))
