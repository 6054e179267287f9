"""Reading a request's parameters with sllurp's decoders, and the error a refused one raises.

sllurp decodes an LLRP parameter tree into nested dicts of names; the small readers here
take values out of them checked (type, range, enumeration names), so the request
parsers (``llrp_requests``, ``llrp_rospec``) never hand a library dict on. Whatever does
not fit becomes a ``RequestError`` carrying the LLRPStatus the reader answers with.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from sllurp.llrp_errors import LLRPError
from sllurp.llrp_proto import decode_all_parameters

from firmware_sim.errors import SimError
from firmware_sim.llrp_types import ContentSelector, ReportSpec, ReportTrigger, Status, StatusCode


class RequestError(SimError):
    """A request the reader refuses; ``status`` is what goes back in the response."""

    def __init__(self, status: Status) -> None:
        super().__init__(status.description or status.code.name)
        self.status = status


def field_error(description: str, field_num: int = 0) -> RequestError:
    """A FieldError refusal of field ``field_num``."""
    return RequestError(Status(StatusCode.FIELD_ERROR, description, field_num=field_num))


def parameter_error(description: str) -> RequestError:
    """A ParameterError refusal."""
    return RequestError(Status(StatusCode.PARAMETER_ERROR, description))


def decode_params(body: bytes, what: str) -> dict[str, Any]:
    """The parameters in ``body``, decoded by sllurp.

    Raises:
        RequestError: sllurp cannot decode them.
    """
    try:
        decoded, _ = decode_all_parameters(body)
    except (LLRPError, ValueError, KeyError, IndexError, struct.error, TypeError) as err:
        raise parameter_error(f"{what}: cannot decode parameters: {err}") from err
    return dict(decoded)


def int_field(value: object, what: str, low: int = 0, high: int = 0xFFFFFFFF) -> int:
    """``value`` as an int within ``low..high``.

    Raises:
        RequestError: not an int, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise field_error(f"{what} is {value!r}, expected {low}..{high}")
    return value


def enum_field(value: object, names: Mapping[str, int], what: str) -> int:
    """An enumeration's number, from its number or its sllurp name.

    Raises:
        RequestError: an unknown name, or not a byte.
    """
    # sllurp decodes some enumerations to names and others to plain numbers.
    if isinstance(value, str):
        try:
            return names[value]
        except KeyError as err:
            raise field_error(f"{what} {value!r} unknown") from err
    return int_field(value, what, 0, 0xFF)


def mapping_field(value: object, what: str) -> Mapping[str, Any]:
    """A decoded parameter (a dict).

    Raises:
        RequestError: absent or not a parameter.
    """
    if not isinstance(value, Mapping):
        raise parameter_error(f"{what} missing or malformed")
    return value


_REPORT_TRIGGER_NAMES = {
    "None": 0,
    "Upon_N_Tags_Or_End_Of_AISpec": 1,
    "Upon_N_Tags_Or_End_Of_ROSpec": 2,
    "Upon_N_Seconds": 3,
    "Upon_N_Seconds_Or_End_Of_ROSpec": 4,
    "Upon_N_Milliseconds": 5,
    "Upon_N_Milliseconds_Or_End_Of_ROSpec": 6,
}
_SELECTOR_KEYS = (
    "EnableROSpecID",
    "EnableSpecIndex",
    "EnableInventoryParameterSpecID",
    "EnableAntennaID",
    "EnableChannelIndex",
    "EnablePeakRSSI",
    "EnableFirstSeenTimestamp",
    "EnableLastSeenTimestamp",
    "EnableTagSeenCount",
    "EnableAccessSpecID",
)


def report_spec(value: object) -> ReportSpec:
    """An ROReportSpec as sllurp decoded it.

    Raises:
        RequestError: malformed, or a trigger LLRP does not know.
    """
    spec = mapping_field(value, "ROReportSpec")
    trigger_value = enum_field(spec.get("ROReportTrigger", 0), _REPORT_TRIGGER_NAMES, "trigger")
    try:
        trigger = ReportTrigger(trigger_value)
    except ValueError as err:
        raise field_error(f"ROReportTrigger {trigger_value} unknown") from err
    n = int_field(spec.get("N", 0), "ROReportSpec N", 0, 0xFFFF)
    content = spec.get("TagReportContentSelector")
    if content is None:
        selector = ContentSelector()
    else:
        flags = mapping_field(content, "TagReportContentSelector")
        selector = ContentSelector(*(bool(flags.get(key, False)) for key in _SELECTOR_KEYS))
    return ReportSpec(trigger=trigger, n=n, selector=selector)
