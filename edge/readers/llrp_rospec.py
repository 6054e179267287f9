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
* **RF settings stay the reader's.** No RFTransmitter parameter is sent (sllurp's would
  set power index 0 and a fixed hop table/channel), so the transmit power and frequency
  plan configured on the reader stay in force; the edge config has no keys for them.
  Singulation is session 1 (tags are re-read after their session-1 persistence, so a
  portal sees a tag on both sides of the door) with a tag population estimate of 32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sllurp.llrp_proto import LLRPROSpec

from edge.config import LlrpSettings
from edge.readers.llrp_reports import LlrpError

ROSPEC_ID = 1
ALL = 0
"""Spec id 0 in DELETE_ROSPEC/DELETE_ACCESSSPEC means every spec on the reader."""
REQUEST_ALL = 0
"""RequestedData 0 in GET_READER_CAPABILITIES/GET_READER_CONFIG asks for everything."""
KEEPALIVE_PERIODIC = 1
SESSION = 1
TAG_POPULATION = 32

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

    @property
    def response(self) -> str:
        """Name of the response message that answers this request."""
        return f"{self.name}_RESPONSE"

    def message(self, msg_id: int) -> dict[str, Any]:
        """The dict ``llrp_codec.encode`` takes, with a message id."""
        return {self.name: {**self.body, "ID": msg_id}}


GET_READER_CAPABILITIES = Request("GET_READER_CAPABILITIES", {"RequestedData": REQUEST_ALL})
GET_READER_CONFIG = Request("GET_READER_CONFIG", {"RequestedData": REQUEST_ALL})
# The reader never answers this one; waiting for an answer would hang the handshake.
ENABLE_EVENTS_AND_REPORTS = Request("ENABLE_EVENTS_AND_REPORTS", expects_response=False)
DELETE_ALL_ACCESSSPECS = Request("DELETE_ACCESSSPEC", {"AccessSpecID": ALL})
DELETE_ALL_ROSPECS = Request("DELETE_ROSPEC", {"ROSpecID": ALL})
ENABLE_OUR_ROSPEC = Request("ENABLE_ROSPEC", {"ROSpecID": ROSPEC_ID})
KEEPALIVE_ACK = Request("KEEPALIVE_ACK", expects_response=False)


def set_reader_config(keepalive_s: float) -> Request:
    """SET_READER_CONFIG: periodic KEEPALIVE and the reader events we pass on."""
    return Request(
        "SET_READER_CONFIG",
        {
            "ResetToFactoryDefaults": False,
            "ReaderEventNotificationSpec": {"EventNotificationState": dict(EVENT_NOTIFICATIONS)},
            "KeepaliveSpec": {
                "KeepaliveTriggerType": KEEPALIVE_PERIODIC,
                "TimeInterval": max(1, round(keepalive_s * 1000)),
            },
        },
    )


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


def rospec(settings: LlrpSettings, max_antennas: int) -> dict[str, Any]:
    """The ROSpec for continuous inventory on this reader (see the module docstring).

    Raises:
        LlrpError: a configured antenna is beyond what the reader supports.
    """
    antennas = inventory_antennas(settings.antennas, max_antennas)
    spec: dict[str, Any] = LLRPROSpec(
        None,
        ROSPEC_ID,
        antennas=antennas,
        session=SESSION,
        tag_population=TAG_POPULATION,
        tag_content_selector=dict(TAG_REPORT_CONTENT),
    )
    for config in spec["AISpec"][0]["InventoryParameterSpec"][0]["AntennaConfiguration"]:
        del config["RFTransmitter"]
    stop, n = report_triggers(settings.report_every_n_tags, settings.report_timeout_ms)
    spec["AISpec"][0]["AISpecStopTrigger"] = stop
    spec["ROReportSpec"]["ROReportTrigger"] = "Upon_N_Tags_Or_End_Of_AISpec"
    spec["ROReportSpec"]["N"] = n
    return spec


def add_rospec(settings: LlrpSettings, max_antennas: int) -> Request:
    """ADD_ROSPEC carrying ``rospec(settings, max_antennas)``."""
    return Request("ADD_ROSPEC", {"ROSpec": rospec(settings, max_antennas)})
