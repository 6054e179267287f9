"""The requests the LLRP client sends, as data: the handshake messages and the ROSpec.

The ROSpec comes from sllurp's builder (``LLRPROSpec``) with three changes:

* **Tag report content.** sllurp's default selector turns AntennaID, PeakRSSI and
  FirstSeenTimestamp off; a portal needs them, so the selector asks for AntennaID,
  PeakRSSI, FirstSeen and LastSeen timestamps and TagSeenCount (and nothing else).
* **When reports come.** sllurp's ``report_every_n_tags`` does not touch the report
  trigger: it makes the AISpec stop after N tags (a TagObservationTrigger some readers
  reject), and with its defaults a conformant reader reports only when an AISpec ends,
  which under continuous inventory is never. LLRP 1.0.1 has no time-based report
  trigger, so the time bound comes from the AISpec instead: its stop trigger is a
  *Duration* of ``report_timeout_ms`` and the report trigger is
  ``Upon_N_Tags_Or_End_Of_AISpec`` with N = ``report_every_n_tags``. The ROSpec has an
  Immediate start and a Null stop trigger, so the reader loops over the AISpec forever
  and sends a report at least every ``report_timeout_ms`` (or every N tags, if sooner).
  Duration triggers and this report trigger are basic LLRP every reader supports. With
  both settings 0 the reader would never report, so N becomes 1 (a report per tag).
* **RF settings: the reader's own unless the config sets them** (``rf_plan``). With
  ``tx_power_dbm`` set, each antenna's RFTransmitter carries the index of the reader's
  power table entry nearest to it (and the reader's first hop table, channel 1; sllurp's
  builder would send power index 0); ``rx_sensitivity_db`` becomes an RFReceiver with the
  index of that sensitivity table entry; ``rf_mode`` a C1G2RFControl with the
  ModeIdentifier as ModeIndex (what Impinj readers expect, see sllurp issue 63) and Tari
  0 (the mode's own); ``session`` and ``tag_population`` the C1G2SingulationControl
  (defaults 1 and 32: a tag is re-read moments after each read, so a portal sees it on
  both sides). Every value is checked against GET_READER_CAPABILITIES first, so a value
  the reader cannot take fails the handshake with an error before anything is changed.
* **Impinj extensions.** On an Impinj reader (manufacturer 25882, unless
  ``impinj_extensions`` is off) the client sends IMPINJ_ENABLE_EXTENSIONS and the ROSpec
  asks, in an ImpinjTagReportContentSelector, for the peak RSSI in centi-dBm and the RF
  phase angle of every read; ``search_mode`` becomes an ImpinjInventorySearchMode (dual
  target for portals). Other readers get standard parameters only.
* **Reader-side EPC mask.** With ``epc_mask`` set, every antenna's C1G2InventoryCommand
  carries one C1G2Filter whose C1G2TagInventoryMask selects the EPC bank (MB 1) at bit
  ``epc_mask_pointer`` (32 by default: the first EPC bit, after CRC-16 and PC). No filter
  action parameter is sent, so the reader applies the LLRP default for a state-unaware
  filter: tags that match are inventoried, the others are not singulated at all. This
  takes tags of other companies off the air (less RF time, fewer reports); the software
  prefix filters (``[llrp.filter]``) remain for what the reader cannot express.

GPIO. Photo-eyes on GPI ports are switched on in SET_READER_CONFIG (GPIPortCurrentState
with GPIConfig set, one per port, and the GPIEvent notification on), so the reader sends
a READER_EVENT_NOTIFICATION with a GPIEvent on every level change. Lights on GPO ports are
set with SET_READER_CONFIG carrying GPOWriteData; sllurp 3.0.5 has no encoder for that
parameter (it silently leaves it out), so ``gpo_write`` builds those bytes itself from the
LLRP 1.0.1 layout (TLV 219: u16 port, then a byte whose top bit is the level).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sllurp.llrp_proto import LLRPROSpec

from edge.config import LlrpSettings, SearchMode
from edge.readers.llrp_codec import HEADER, HEADER_LEN, encode
from edge.readers.llrp_reports import LlrpError, ReaderCapabilities

ROSPEC_ID = 1
ALL = 0
"""Spec id 0 in DELETE_ROSPEC/DELETE_ACCESSSPEC means every spec on the reader."""
REQUEST_ALL = 0
"""RequestedData 0 in GET_READER_CAPABILITIES/GET_READER_CONFIG asks for everything."""
KEEPALIVE_PERIODIC = 1
IMPINJ = 25882
"""IANA private enterprise number of Impinj (GeneralDeviceCapabilities.DeviceManufacturerName)."""
SEARCH_MODES: Mapping[SearchMode, int] = {
    "reader_default": 0,
    "single_target": 1,
    "dual_target": 2,
    "single_target_suppressed": 3,
}
"""ImpinjInventorySearchMode values."""
POWER_SLACK_CENTI_DBM = 50
"""A requested power this far beyond the ends of the reader's table still takes the end."""
LLRP_VERSION = 1
SET_READER_CONFIG_TYPE = 3
GPO_WRITE_DATA_TYPE = 219
EPC_BANK = 1
MAX_GPO_WRITES = 64

TAG_REPORT_CONTENT: Mapping[str, bool] = {
    "EnableROSpecID": False,
    "EnableSpecIndex": False,
    "EnableInventoryParameterSpecID": False,
    "EnableAntennaID": True,
    "EnableChannelIndex": False,
    "EnablePeakRSSI": True,
    "EnableFirstSeenTimestamp": True,
    "EnableLastSeenTimestamp": True,
    "EnableTagSeenCount": True,
    "EnableAccessSpecID": False,
}

EVENT_NOTIFICATIONS: Mapping[str, bool] = {
    "HoppingEvent": False,
    "GPIEvent": False,
    "ROSpecEvent": False,
    # A reader about to drop reports because nobody reads them is worth an event too.
    "ReportBufferFillWarning": True,
    "ReaderExceptionEvent": True,
    "RFSurveyEvent": False,
    "AISpecEvent": False,
    "AISpecEventWithSingulation": False,
    "AntennaEvent": True,
}


@dataclass(frozen=True, slots=True)
class Request:
    """One message to the reader: sllurp's name for it, its fields, and its answer."""

    name: str
    body: Mapping[str, Any] = field(default_factory=dict)
    expects_response: bool = True
    raw: tuple[int, bytes] | None = None
    """``(message type, body bytes)`` of a message sllurp cannot encode; ``body`` unused."""

    @property
    def response(self) -> str:
        """Name of the response message that answers this request."""
        return f"{self.name}_RESPONSE"

    def message(self, msg_id: int) -> dict[str, Any]:
        """The dict ``llrp_codec.encode`` takes, with a message id."""
        return {self.name: {**self.body, "ID": msg_id}}

    def encode(self, msg_id: int) -> bytes:
        """The whole LLRP message with ``msg_id``."""
        if self.raw is None:
            return encode(self.message(msg_id))
        msg_type, body = self.raw
        return HEADER.pack((LLRP_VERSION << 10) | msg_type, HEADER_LEN + len(body), msg_id) + body


GET_READER_CAPABILITIES = Request("GET_READER_CAPABILITIES", {"RequestedData": REQUEST_ALL})
GET_READER_CONFIG = Request("GET_READER_CONFIG", {"RequestedData": REQUEST_ALL})
# The reader never answers this one; waiting for an answer would hang the handshake.
ENABLE_EVENTS_AND_REPORTS = Request("ENABLE_EVENTS_AND_REPORTS", expects_response=False)
DELETE_ALL_ACCESSSPECS = Request("DELETE_ACCESSSPEC", {"AccessSpecID": ALL})
DELETE_ALL_ROSPECS = Request("DELETE_ROSPEC", {"ROSpecID": ALL})
ENABLE_OUR_ROSPEC = Request("ENABLE_ROSPEC", {"ROSpecID": ROSPEC_ID})
KEEPALIVE_ACK = Request("KEEPALIVE_ACK", expects_response=False)
IMPINJ_ENABLE_EXTENSIONS = Request("IMPINJ_ENABLE_EXTENSIONS", {"reserved": 0})


class LlrpConfigError(LlrpError):
    """A configured RF value the reader cannot take (named, with what the reader offers)."""


@dataclass(frozen=True, slots=True)
class AntennaRf:
    """What one antenna is sent: table indexes (None: the reader's own setting)."""

    antenna: int
    power_index: int | None = None
    power_dbm: float | None = None
    """The power of that table entry (the nearest to the configured one)."""
    sensitivity_index: int | None = None


@dataclass(frozen=True, slots=True)
class RfPlan:
    """The RF settings of a ROSpec, checked against the reader's capabilities."""

    antennas: tuple[AntennaRf, ...]
    mode_id: int | None
    impinj: bool
    """Impinj extensions on: enable them, ask for peak RSSI and phase, search mode."""
    search_mode: int | None
    hop_table_id: int

    def describe(self) -> str:
        """One line for the log: what was asked of the reader."""
        powers = sorted({a.power_dbm for a in self.antennas if a.power_dbm is not None})
        parts = [f"power {'/'.join(f'{p:g}' for p in powers)} dBm"] if powers else []
        if self.mode_id is not None:
            parts.append(f"RF mode {self.mode_id}")
        if self.impinj:
            parts.append("Impinj extensions")
        return ", ".join(parts) or "the reader's own RF settings"


def _span(values: Sequence[int]) -> str:
    """``0, 10..50``: a sorted list of ints with runs folded (for error messages)."""
    runs: list[list[int]] = []
    for v in sorted(set(values)):
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    return ", ".join(f"{r[0]}..{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def _power_index(name: str, dbm: float, table: Sequence[tuple[int, int]]) -> tuple[int, float]:
    if not table:
        raise LlrpConfigError(f"reader {name}: tx_power_dbm is set but it reports no power table")
    centi = round(dbm * 100)
    low, high = min(v for _, v in table), max(v for _, v in table)
    if not low - POWER_SLACK_CENTI_DBM <= centi <= high + POWER_SLACK_CENTI_DBM:
        raise LlrpConfigError(
            f"reader {name}: tx_power_dbm {dbm:g} is outside its power table "
            f"{low / 100:g}..{high / 100:g} dBm"
        )
    index, value = min(table, key=lambda entry: (abs(entry[1] - centi), -entry[1]))
    return index, value / 100


def _sensitivity_index(name: str, db: int, table: Sequence[tuple[int, int]]) -> int:
    for index, value in table:
        if value == db:
            return index
    offered = _span([v for _, v in table]) if table else "none"
    raise LlrpConfigError(
        f"reader {name}: rx_sensitivity_db {db} is not in its sensitivity table (offered: "
        f"{offered} dB)"
    )


def rf_plan(settings: LlrpSettings, caps: ReaderCapabilities, antennas: Sequence[int]) -> RfPlan:
    """The RF part of the ROSpec for ``antennas``, checked against ``caps``.

    Raises:
        LlrpConfigError: a value the reader does not offer (named, with what it offers).
    """
    name = settings.name
    impinj = settings.impinj_extensions and caps.manufacturer == IMPINJ
    if settings.search_mode != "reader_default" and not impinj:
        why = (
            "impinj_extensions is off"
            if caps.manufacturer == IMPINJ
            else f"the reader's manufacturer is {caps.manufacturer}, not Impinj ({IMPINJ})"
        )
        raise LlrpConfigError(
            f"reader {name}: search_mode {settings.search_mode!r} needs Impinj extensions; {why}"
        )
    if settings.rf_mode is not None and settings.rf_mode not in caps.rf_mode_ids:
        offered = _span(caps.rf_mode_ids) if caps.rf_mode_ids else "none"
        raise LlrpConfigError(
            f"reader {name}: rf_mode {settings.rf_mode} is not in its RF mode table "
            f"(offered: {offered})"
        )
    own = {a.antenna: a for a in settings.antenna_rf}
    missing = sorted(set(own) - set(antennas))
    if missing:
        raise LlrpConfigError(
            f"reader {name}: antenna_rf names antennas {missing}, beyond its "
            f"{caps.max_antennas} antennas"
        )
    plans = []
    for antenna in antennas:
        mine = own.get(antenna)
        dbm = mine.tx_power_dbm if mine and mine.tx_power_dbm is not None else None
        dbm = settings.tx_power_dbm if dbm is None else dbm
        db = mine.rx_sensitivity_db if mine and mine.rx_sensitivity_db is not None else None
        db = settings.rx_sensitivity_db if db is None else db
        power = _power_index(name, dbm, caps.power_table) if dbm is not None else None
        plans.append(
            AntennaRf(
                antenna,
                power[0] if power else None,
                power[1] if power else None,
                _sensitivity_index(name, db, caps.sensitivity_table) if db is not None else None,
            )
        )
    search = SEARCH_MODES[settings.search_mode]
    return RfPlan(
        antennas=tuple(plans),
        mode_id=settings.rf_mode,
        impinj=impinj,
        search_mode=search if impinj and search else None,
        hop_table_id=caps.hop_table_id if caps.hop_table_id is not None else 1,
    )


def set_reader_config(keepalive_s: float, gpi_ports: Iterable[int] = ()) -> Request:
    """SET_READER_CONFIG: periodic KEEPALIVE, the reader events we pass on, GPI inputs.

    Args:
        keepalive_s: KEEPALIVE interval asked of the reader.
        gpi_ports: GPI inputs to switch on; with any, GPIEvent notifications are on too.
    """
    ports = sorted(set(gpi_ports))
    events = dict(EVENT_NOTIFICATIONS)
    body: dict[str, Any] = {
        "ResetToFactoryDefaults": False,
        "KeepaliveSpec": {
            "KeepaliveTriggerType": KEEPALIVE_PERIODIC,
            "TimeInterval": max(1, round(keepalive_s * 1000)),
        },
    }
    if ports:
        events["GPIEvent"] = True
        body["GPIPortCurrentState"] = [
            {"GPIPortNum": port, "GPIConfig": True, "GPIState": 0} for port in ports
        ]
    body["ReaderEventNotificationSpec"] = {"EventNotificationState": events}
    return Request("SET_READER_CONFIG", body)


def _tlv(param_type: int, value: bytes) -> bytes:
    return struct.pack("!HH", param_type, 4 + len(value)) + value


def gpo_write(writes: Sequence[tuple[int, bool]]) -> Request:
    """SET_READER_CONFIG setting GPO outputs: ``(port, high)`` pairs, applied in order.

    Raises:
        ValueError: no write, too many, or a port outside 1..65535.
    """
    if not 1 <= len(writes) <= MAX_GPO_WRITES:
        raise ValueError(f"a GPO write sets 1..{MAX_GPO_WRITES} ports, got {len(writes)}")
    params = []
    for port, high in writes:
        if not 1 <= port <= 0xFFFF:
            raise ValueError(f"GPO port {port} outside 1..65535")
        params.append(_tlv(GPO_WRITE_DATA_TYPE, struct.pack("!HB", port, 0x80 if high else 0)))
    # The fixed field: ResetToFactoryDefaults (top bit) off.
    return Request("SET_READER_CONFIG", raw=(SET_READER_CONFIG_TYPE, b"\x00" + b"".join(params)))


def epc_filter(mask_hex: str, pointer: int) -> dict[str, Any]:
    """The C1G2Filter selecting tags whose EPC bank holds ``mask_hex`` at bit ``pointer``."""
    return {
        "T": 0,
        "C1G2TagInventoryMask": {"MB": EPC_BANK, "Pointer": pointer, "TagMask": mask_hex.lower()},
    }


def inventory_antennas(configured: Sequence[int], max_antennas: int) -> list[int]:
    """The antennas to inventory: the configured ones, or all the reader has.

    Raises:
        LlrpError: a configured antenna is beyond what the reader supports.
    """
    if max_antennas < 1:
        raise LlrpError(f"reader reports MaxNumberOfAntennaSupported {max_antennas}")
    if not configured:
        return list(range(1, max_antennas + 1))
    beyond = sorted({a for a in configured if a > max_antennas})
    if beyond:
        raise LlrpError(
            f"configured antennas {beyond} are beyond the reader's {max_antennas} antennas"
        )
    return sorted(set(configured))


def report_triggers(every_n_tags: int, timeout_ms: int) -> tuple[dict[str, Any], int]:
    """The AISpec stop trigger and the report trigger's N (see the module docstring)."""
    if timeout_ms > 0:
        stop = {"AISpecStopTriggerType": "Duration", "DurationTriggerValue": timeout_ms}
    else:
        stop = {"AISpecStopTriggerType": "Null", "DurationTriggerValue": 0}
    n = every_n_tags if (every_n_tags or timeout_ms) else 1
    return stop, n


def rospec(settings: LlrpSettings, caps: ReaderCapabilities) -> dict[str, Any]:
    """The ROSpec for continuous inventory on this reader (see the module docstring).

    Raises:
        LlrpError: a configured antenna is beyond what the reader supports.
        LlrpConfigError: an RF value the reader does not offer.
    """
    antennas = inventory_antennas(settings.antennas, caps.max_antennas)
    plan = rf_plan(settings, caps, antennas)
    spec: dict[str, Any] = LLRPROSpec(
        None,
        ROSPEC_ID,
        antennas=antennas,
        session=settings.session,
        tag_population=settings.tag_population,
        tag_content_selector=dict(TAG_REPORT_CONTENT),
    )
    configs = spec["AISpec"][0]["InventoryParameterSpec"][0]["AntennaConfiguration"]
    for config, rf in zip(configs, plan.antennas, strict=True):
        command = config["C1G2InventoryCommand"][0]
        if rf.power_index is None:
            del config["RFTransmitter"]
        else:
            config["RFTransmitter"] = {
                "HopTableId": plan.hop_table_id,
                "ChannelIndex": 1,
                "TransmitPower": rf.power_index,
            }
        if rf.sensitivity_index is not None:
            config["RFReceiver"] = {"ReceiverSensitivity": rf.sensitivity_index}
        if plan.mode_id is not None:
            command["C1G2RFControl"] = {"ModeIndex": plan.mode_id, "Tari": 0}
        if plan.search_mode is not None:
            command["ImpinjInventorySearchMode"] = {"InventorySearchMode": plan.search_mode}
        if settings.epc_mask:
            command["C1G2Filter"] = [epc_filter(settings.epc_mask, settings.epc_mask_pointer)]
    stop, n = report_triggers(settings.report_every_n_tags, settings.report_timeout_ms)
    spec["AISpec"][0]["AISpecStopTrigger"] = stop
    spec["ROReportSpec"]["ROReportTrigger"] = "Upon_N_Tags_Or_End_Of_AISpec"
    spec["ROReportSpec"]["N"] = n
    if plan.impinj:
        spec["ROReportSpec"]["ImpinjTagReportContentSelector"] = {
            "ImpinjEnableRFPhaseAngle": {"RFPhaseAngleMode": 1},
            "ImpinjEnablePeakRSSI": {"PeakRSSIMode": 1},
        }
    return spec


def add_rospec(settings: LlrpSettings, caps: ReaderCapabilities) -> Request:
    """ADD_ROSPEC carrying ``rospec(settings, caps)``."""
    return Request("ADD_ROSPEC", {"ROSpec": rospec(settings, caps)})
