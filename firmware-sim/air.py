"""The RF settings a ROSpec asks for, checked against the reader's tables and applied.

A client may send, per antenna, a transmit power (an index into the power table; index 0,
which sllurp's ROSpec builder sends by default, is taken as full power), a
receive sensitivity (an index into the sensitivity table), an RF mode (a ModeIdentifier),
the Gen2 session and tag population and, with Impinj extensions enabled on the
connection, an inventory search mode. ``air_settings`` checks each against the reader's
``ReaderProfile`` (a value the reader does not have is refused with a field error naming
it, as a real reader refuses the ADD_ROSPEC) and turns them into what the physics needs:

* power: each antenna's ``loss_db`` below the table's maximum (``portal.Drive``; the
  field model shortens the read zone and weakens the answers);
* sensitivity: the weakest RSSI the reader reports on an antenna, its best sensitivity
  (``ReaderProfile.best_sensitivity_dbm``) plus the table value in dB; weaker reads are
  not reported (multipath strays are weak, so this is the tool against them);
* search mode: with *single target* in session 1, a tag read flips to B and is not
  read again for ``S1_PERSISTENCE_S`` (then it returns to A); in session 2 or 3 it stays
  B while it is powered and only returns ``S23_PERSISTENCE_S`` after it left the field.
  *Dual target* and the reader's default read every tag every round, as the field model
  says; a portal needs that (a tag read once on the outside and never again has no
  direction).

The RF mode and the tag population are checked, not modelled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from firmware_sim.llrp_params import RequestError
from firmware_sim.llrp_rospec import AntennaRf
from firmware_sim.llrp_types import Status, StatusCode
from firmware_sim.portal_rf import Drive, Observation
from firmware_sim.profile import ReaderProfile

SINGLE_TARGET: Final = 1
SINGLE_TARGET_SUPPRESSED: Final = 3
S1_PERSISTENCE_S: Final = 2.0
"""Session 1 flag persistence (Gen2 allows 0.5..5 s)."""
S23_PERSISTENCE_S: Final = 2.0
"""Session 2/3 flag persistence after the tag loses power (Gen2: more than 2 s)."""
MAX_FLAGGED: Final = 100_000


def _refuse(what: str, detail: str) -> RequestError:
    return RequestError(
        Status(StatusCode.FIELD_ERROR, f"{what}: {detail}", 0, StatusCode.A_OUT_OF_RANGE)
    )


@dataclass(frozen=True, slots=True)
class AirSettings:
    """A ROSpec's RF settings, ready for the physics."""

    loss_db: Mapping[int, float]
    """Antenna -> dB below the power table's maximum; antenna 0 (LLRP's "every antenna")
    stands for the antennas not listed; none: full power."""
    floor_dbm: Mapping[int, float]
    """Antenna -> weakest RSSI reported (0 for the others, as above; none: everything)."""
    single_target_session: int | None = None
    """The session of a single-target inventory (None: tags are read every round)."""

    def drive(self, antennas: Sequence[int]) -> Drive:
        """The ``portal.Drive`` for one round on ``antennas``."""
        loss = self.loss_db
        every = loss.get(0, 0.0)
        return Drive({a: loss.get(a, every) for a in antennas})


FULL_POWER: Final = AirSettings({}, {})


def air_settings(
    configs: Sequence[AntennaRf], profile: ReaderProfile, *, impinj: bool
) -> AirSettings:
    """Check a ROSpec's AntennaConfigurations against ``profile``; what they ask for.

    Args:
        configs: the ROSpec's AntennaConfigurations (antenna 0 means every antenna).
        profile: the reader's tables.
        impinj: whether the client enabled Impinj extensions on this connection.

    Raises:
        RequestError: a table index, RF mode, session or search mode the reader lacks.
    """
    powers = profile.tx_power_centi_dbm
    sensitivities = profile.receive_sensitivity_db
    modes = {m.mode_id for m in profile.rf_modes}
    top = max(powers) if powers else 0
    loss: dict[int, float] = {}
    floor: dict[int, float] = {}
    single: int | None = None
    for rf in configs:
        if rf.power_index:  # index 0 (sllurp's default) is taken as full power, leniently
            if not 1 <= rf.power_index <= len(powers):
                raise _refuse(
                    "RFTransmitter TransmitPower", f"index {rf.power_index} not in 1..{len(powers)}"
                )
            loss[rf.antenna] = (top - powers[rf.power_index - 1]) / 100
        if rf.sensitivity_index is not None:
            if not 1 <= rf.sensitivity_index <= len(sensitivities):
                raise _refuse(
                    "RFReceiver ReceiverSensitivity",
                    f"index {rf.sensitivity_index} not in 1..{len(sensitivities)}",
                )
            db = sensitivities[rf.sensitivity_index - 1]
            floor[rf.antenna] = profile.best_sensitivity_dbm + db
        if rf.mode_id is not None and rf.mode_id not in modes:
            raise _refuse("C1G2RFControl ModeIndex", f"{rf.mode_id} is not in the RF mode table")
        if rf.tag_population is not None and rf.tag_population < 1:
            raise _refuse("C1G2SingulationControl TagPopulation", "must be at least 1")
        if rf.search_mode is not None:
            if not impinj:
                raise RequestError(
                    Status(
                        StatusCode.UNSUPPORTED_PARAMETER,
                        "ImpinjInventorySearchMode without IMPINJ_ENABLE_EXTENSIONS",
                    )
                )
            if rf.search_mode > SINGLE_TARGET_SUPPRESSED:
                raise _refuse("ImpinjInventorySearchMode", f"{rf.search_mode} unknown")
            if rf.search_mode in (SINGLE_TARGET, SINGLE_TARGET_SUPPRESSED) and rf.session:
                single = rf.session
    return AirSettings(loss, floor, single)


class Flags:
    """Gen2 inventoried flags of the tags in view, for a single-target inventory."""

    __slots__ = ("_powered", "_read", "_session")

    def __init__(self, session: int) -> None:
        self._session = session
        self._read: dict[str, float] = {}
        """EPC -> when it was last read (its flag flipped to B)."""
        self._powered: dict[str, float] = {}
        """EPC -> when it was last in the field (sessions 2 and 3 hold B while powered)."""

    def admit(self, observations: list[Observation], t: float) -> list[Observation]:
        """The reads a single-target round really makes: tags still in B stay silent."""
        read, powered = self._read, self._powered
        kept: list[Observation] = []
        flipped: set[str] = set()
        answered: set[tuple[str, int]] = set()
        for o in observations:
            epc = o.epc_hex
            last = read.get(epc)
            if last is not None and epc not in flipped:
                if self._session == 1:
                    quiet = t - last < S1_PERSISTENCE_S
                else:
                    quiet = t - powered.get(epc, last) < S23_PERSISTENCE_S
                if quiet:
                    powered[epc] = t
                    continue
            # It flips in this round: singulated once by each antenna that reached it.
            if (epc, o.antenna) in answered:
                continue
            answered.add((epc, o.antenna))
            flipped.add(epc)
            kept.append(o)
        for epc in flipped:
            read[epc] = powered[epc] = t
        if len(read) > MAX_FLAGGED:
            horizon = t - max(S1_PERSISTENCE_S, S23_PERSISTENCE_S)
            self._read = {e: at for e, at in read.items() if at >= horizon}
            self._powered = {e: at for e, at in powered.items() if at >= horizon}
        return kept


def heard(observations: list[Observation], floor_dbm: Mapping[int, float]) -> list[Observation]:
    """The reads strong enough for each antenna's receive sensitivity."""
    if not floor_dbm:
        return observations
    every = floor_dbm.get(0, -1000.0)
    return [o for o in observations if o.rssi >= floor_dbm.get(o.antenna, every)]
