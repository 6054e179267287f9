"""A ROSpec as a simulated reader keeps it, read from the ADD_ROSPEC's parameter (sans-I/O).

The triggers are read from the bytes (``llrp_triggers``, since sllurp misnumbers one of
them); ids, state, the ROReportSpec, the RF settings of each antenna and the Impinj
report extensions with sllurp's parameter decoders (``llrp_params``). The parameter's
bytes are kept as sent, to answer GET_ROSPECS.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final

from firmware_sim.llrp_params import (
    RequestError,
    decode_params,
    int_field,
    mapping_field,
    parameter_error,
    report_spec,
)
from firmware_sim.llrp_triggers import (
    AiSpec,
    AiSpecStop,
    RoSpecStop,
    StartSpec,
    StartTrigger,
    StopSpec,
    TriggerError,
    parse_triggers,
)
from firmware_sim.llrp_types import ParamType, ReportSpec

ALL_ANTENNAS: Final = 0
"""An antenna id that stands for every antenna."""


class RoSpecState(IntEnum):
    """ROSpec CurrentState."""

    DISABLED = 0
    INACTIVE = 1
    ACTIVE = 2


@dataclass(frozen=True, slots=True)
class AntennaRf:
    """One AntennaConfiguration of a ROSpec's InventoryParameterSpec (None: not sent)."""

    antenna: int
    power_index: int | None = None
    """RFTransmitter TransmitPower: an index into the reader's power table."""
    sensitivity_index: int | None = None
    """RFReceiver ReceiverSensitivity: an index into the sensitivity table."""
    mode_id: int | None = None
    """C1G2RFControl ModeIndex (a ModeIdentifier, as Impinj readers read it)."""
    session: int | None = None
    tag_population: int | None = None
    search_mode: int | None = None
    """ImpinjInventorySearchMode (an Impinj extension)."""


@dataclass(frozen=True, slots=True)
class RoSpec:
    """What the simulator needs from an ADD_ROSPEC, plus the parameter as sent."""

    rospec_id: int
    priority: int
    current_state: RoSpecState
    start: StartSpec
    stop: StopSpec
    aispecs: tuple[AiSpec, ...]
    inventory_parameter_spec_id: int
    """The first AISpec's InventoryParameterSpecID."""
    report: ReportSpec | None
    """The ROSpec's own ROReportSpec; None means the reader's default applies."""
    raw: bytes = field(repr=False)
    """The ROSpec parameter bytes, kept to answer GET_ROSPECS."""
    antenna_rf: tuple[AntennaRf, ...] = ()
    """The first InventoryParameterSpec's AntennaConfigurations."""
    impinj_report: tuple[bool, bool] | None = None
    """ImpinjTagReportContentSelector: (peak RSSI, RF phase angle) asked for; None: absent."""

    @property
    def start_trigger(self) -> StartTrigger:
        return self.start.kind

    @property
    def stop_duration_ms(self) -> int | None:
        """ROSpecStopTrigger Duration; None when the ROSpec has no duration."""
        return self.stop.duration_ms if self.stop.kind is RoSpecStop.DURATION else None

    @property
    def antennas(self) -> tuple[int, ...]:
        """Antenna ids of all AISpecs; (0,) means every antenna."""
        ids = tuple(dict.fromkeys(a for spec in self.aispecs for a in spec.antennas))
        return (ALL_ANTENNAS,) if ALL_ANTENNAS in ids else ids

    @property
    def aispec_stop(self) -> AiSpecStop:
        return self.aispecs[0].stop.kind

    @property
    def aispec_duration_ms(self) -> int:
        """The first AISpec's Duration, or its TagObservationTrigger timeout (0: none)."""
        stop = self.aispecs[0].stop
        if stop.observation is not None and stop.kind is AiSpecStop.TAG_OBSERVATION:
            return stop.observation.timeout_ms
        return stop.duration_ms

    @property
    def aispec_tag_count(self) -> int:
        """The first AISpec's TagObservationTrigger NumberOfTags (0: none)."""
        observation = self.aispecs[0].stop.observation
        return observation.n_tags if observation is not None else 0


def _optional(parent: Mapping[str, Any], name: str, key: str, high: int) -> int | None:
    value = parent.get(name)
    if value is None:
        return None
    return int_field(mapping_field(value, name).get(key), f"{name} {key}", 0, high)


def _antenna_rf(rospec: Mapping[str, Any]) -> tuple[AntennaRf, ...]:
    """The AntennaConfigurations of the first AISpec's first InventoryParameterSpec."""
    aispecs = rospec.get("AISpec")
    first = aispecs[0] if isinstance(aispecs, list) and aispecs else aispecs
    specs = first.get("InventoryParameterSpec") if isinstance(first, Mapping) else None
    spec = specs[0] if isinstance(specs, list) and specs else specs
    configs = spec.get("AntennaConfiguration") if isinstance(spec, Mapping) else None
    if isinstance(configs, Mapping):
        configs = [configs]
    found: list[AntennaRf] = []
    for config in configs if isinstance(configs, list) else ():
        config = mapping_field(config, "AntennaConfiguration")
        commands = config.get("C1G2InventoryCommand")
        command = commands[0] if isinstance(commands, list) and commands else commands
        command = command if isinstance(command, Mapping) else {}
        singulation = command.get("C1G2SingulationControl")
        singulation = singulation if isinstance(singulation, Mapping) else {}
        session = singulation.get("Session")
        population = singulation.get("TagPopulation")
        found.append(
            AntennaRf(
                antenna=int_field(
                    config.get("AntennaID"), "AntennaConfiguration AntennaID", 0, 0xFFFF
                ),
                power_index=_optional(config, "RFTransmitter", "TransmitPower", 0xFFFF),
                sensitivity_index=_optional(config, "RFReceiver", "ReceiverSensitivity", 0xFFFF),
                mode_id=_optional(command, "C1G2RFControl", "ModeIndex", 0xFFFF),
                session=None if session is None else int_field(session, "Session", 0, 3),
                tag_population=(
                    None
                    if population is None
                    else int_field(population, "TagPopulation", 0, 0xFFFF)
                ),
                search_mode=_optional(
                    command, "ImpinjInventorySearchMode", "InventorySearchMode", 0xFFFF
                ),
            )
        )
    return tuple(found)


def _impinj_report(spec: object) -> tuple[bool, bool] | None:
    if not isinstance(spec, Mapping):
        return None
    selector = spec.get("ImpinjTagReportContentSelector")
    if not isinstance(selector, Mapping):
        return None
    peak = selector.get("ImpinjEnablePeakRSSI")
    phase = selector.get("ImpinjEnableRFPhaseAngle")
    return (
        isinstance(peak, Mapping) and bool(peak.get("PeakRSSIMode")),
        isinstance(phase, Mapping) and bool(phase.get("RFPhaseAngleMode")),
    )


def parse_rospec(param: bytes) -> RoSpec:
    """Read one ROSpec parameter (TLV type 177, whole).

    Triggers are read from the bytes (``llrp_triggers``); the rest with sllurp.

    Raises:
        RequestError: the parameter is not a ROSpec or lacks what inventory needs.
    """
    if len(param) < 4 or (struct.unpack_from("!H", param)[0] & 0x3FF) != ParamType.ROSPEC:
        raise parameter_error("ADD_ROSPEC does not start with a ROSpec parameter")
    try:
        triggers = parse_triggers(param)
    except TriggerError as err:
        raise RequestError(err.status) from err
    decoded = decode_params(param, "ROSpec")
    rospec = mapping_field(decoded.get("ROSpec"), "ROSpec")
    rospec_id = int_field(rospec.get("ROSpecID"), "ROSpecID")
    priority = int_field(rospec.get("Priority", 0), "Priority", 0, 7)
    state_value = int_field(rospec.get("CurrentState", 0), "CurrentState", 0, 2)
    report = report_spec(rospec["ROReportSpec"]) if "ROReportSpec" in rospec else None
    return RoSpec(
        rospec_id=rospec_id,
        priority=priority,
        current_state=RoSpecState(state_value),
        start=triggers.start,
        stop=triggers.stop,
        aispecs=triggers.aispecs,
        inventory_parameter_spec_id=triggers.aispecs[0].inventory_parameter_spec_id,
        report=report,
        raw=param,
        antenna_rf=_antenna_rf(rospec),
        impinj_report=_impinj_report(rospec.get("ROReportSpec")),
    )
