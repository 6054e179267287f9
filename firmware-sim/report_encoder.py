"""RO_ACCESS_REPORT encoding, the hot path of a simulated reader (sans-I/O).

``ReportEncoder`` precomputes the layout of a TagReportData for one content selector, so
that each tag costs a single ``struct.pack`` (EPC-96) or three (other EPCs). Layouts
follow LLRP 1.0.1 §16.2.7.3; every report decodes with sllurp 3.0.5 to the values put
in (the tests check that).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from functools import lru_cache
from typing import Final

from firmware_sim.errors import EncodeError
from firmware_sim.llrp_encode import message, tlv
from firmware_sim.llrp_types import (
    IMPINJ_PEAK_RSSI,
    IMPINJ_RF_PHASE_ANGLE,
    IMPINJ_VENDOR_ID,
    ContentSelector,
    MsgType,
    ParamType,
    TagReportEntry,
    TvType,
)

EPC_CACHE_SIZE: Final = 65_536

_TLV = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_IMPINJ_PARAM = struct.Struct("!HHIIh")
"""A 2-byte Impinj custom parameter: TLV 1023, length 14, vendor, subtype, value."""
_IMPINJ_HEAD: Final = (1023, 14, IMPINJ_VENDOR_ID)


@lru_cache(maxsize=EPC_CACHE_SIZE)
def epc_bytes(epc_hex: str) -> bytes:
    """The EPC bank bytes of a hex EPC (cached: a tag is reported many times).

    Raises:
        EncodeError: not an even number of hex digits, empty, or longer than 496 bits.
    """
    if not epc_hex or len(epc_hex) % 4 or len(epc_hex) > 124:
        raise EncodeError(f"EPC must be 4..124 hex digits in whole words, got {epc_hex[:40]!r}")
    try:
        return bytes.fromhex(epc_hex)
    except ValueError as err:
        raise EncodeError(f"EPC is not hex: {epc_hex[:40]!r}") from err


class ReportEncoder:
    """RO_ACCESS_REPORT encoding for one ROSpec and content selector.

    The selected optional fields are fixed for the life of a ROSpec, so their layout is
    computed once; each TagReportData is then one ``struct.pack`` (EPC-96) or three
    (EPCData). TV fields follow LLRP 1.0.1 §16.2.7.3: EPC, ROSpecID, SpecIndex,
    InventoryParameterSpecID, AntennaID, PeakRSSI, ChannelIndex, FirstSeenTimestampUTC,
    LastSeenTimestampUTC, TagSeenCount, AccessSpecID. With Impinj extensions asked for,
    custom parameters follow: ImpinjPeakRSSI (centi-dBm; the model's RSSI is whole dB)
    and ImpinjRFPhaseAngle (0..4095). The field model has no phase: the angle reported
    is a hash of tag, antenna and time, shaped right but carrying no information.
    """

    def __init__(
        self,
        selector: ContentSelector,
        *,
        rospec_id: int = 0,
        spec_index: int = 1,
        inventory_parameter_spec_id: int = 1,
        impinj_peak_rssi: bool = False,
        impinj_phase: bool = False,
    ) -> None:
        self.selector = selector
        self._impinj_peak = impinj_peak_rssi
        self._impinj_phase = impinj_phase
        self._custom_len = _IMPINJ_PARAM.size * (impinj_peak_rssi + impinj_phase)
        # Each optional field: (TV type, struct code, entry attribute or constant).
        fields: list[tuple[TvType, str, str | int]] = []
        if selector.rospec_id:
            fields.append((TvType.ROSPEC_ID, "I", rospec_id))
        if selector.spec_index:
            fields.append((TvType.SPEC_INDEX, "H", spec_index))
        if selector.inventory_parameter_spec_id:
            fields.append((TvType.INVENTORY_PARAMETER_SPEC_ID, "H", inventory_parameter_spec_id))
        if selector.antenna_id:
            fields.append((TvType.ANTENNA_ID, "H", "antenna"))
        if selector.peak_rssi:
            fields.append((TvType.PEAK_RSSI, "b", "peak_rssi"))
        if selector.channel_index:
            fields.append((TvType.CHANNEL_INDEX, "H", "channel_index"))
        if selector.first_seen:
            fields.append((TvType.FIRST_SEEN_UTC, "Q", "first_seen_us"))
        if selector.last_seen:
            fields.append((TvType.LAST_SEEN_UTC, "Q", "last_seen_us"))
        if selector.tag_seen_count:
            fields.append((TvType.TAG_SEEN_COUNT, "H", "seen_count"))
        if selector.access_spec_id:
            fields.append((TvType.ACCESS_SPEC_ID, "I", 0))
        tail_format = "!" + "".join("B" + code for _, code, _ in fields)
        self._tail = struct.Struct(tail_format)
        # Per field: its TV type byte, and either the entry index to read or a constant.
        self._plan: tuple[tuple[int, int, int], ...] = tuple(
            (
                0x80 | tv,
                TagReportEntry._fields.index(src) if isinstance(src, str) else -1,
                src if isinstance(src, int) else 0,
            )
            for tv, _, src in fields
        )
        self._epc96 = struct.Struct("!HHB12s" + tail_format[1:])
        self._epc96_len = self._epc96.size

    def _values(self, entry: TagReportEntry) -> list[object]:
        values: list[object] = []
        append = values.append
        for tv, index, constant in self._plan:
            append(tv)
            append(entry[index] if index >= 0 else constant)
        return values

    def tag_report_data(self, entry: TagReportEntry) -> bytes:
        """One TagReportData parameter.

        Raises:
            EncodeError: the EPC is not hex or the antenna/count is out of range.
        """
        if not 1 <= entry.antenna <= 0xFFFF:
            raise EncodeError(f"antenna id {entry.antenna} outside 1..65535")
        # Counts saturate and RSSI clamps to the field's range, as readers do.
        if entry.seen_count > 0xFFFF or not -128 <= entry.peak_rssi <= 127:
            entry = entry._replace(
                seen_count=min(entry.seen_count, 0xFFFF),
                peak_rssi=max(-128, min(127, entry.peak_rssi)),
            )
        epc = epc_bytes(entry.epc_hex)
        values = self._values(entry)
        custom = self._custom(entry) if self._custom_len else b""
        if len(epc) == 12:
            return (
                self._epc96.pack(
                    ParamType.TAG_REPORT_DATA,
                    self._epc96_len + len(custom),
                    0x80 | TvType.EPC_96,
                    epc,
                    *values,
                )
                + custom
            )
        epc_param = tlv(ParamType.EPC_DATA, _U16.pack(len(epc) * 8) + epc)
        tail = self._tail.pack(*values)
        length = 4 + len(epc_param) + len(tail) + len(custom)
        return _TLV.pack(ParamType.TAG_REPORT_DATA, length) + epc_param + tail + custom

    def _custom(self, entry: TagReportEntry) -> bytes:
        """The Impinj custom parameters of one TagReportData."""
        parts = []
        if self._impinj_phase:
            key = f"{entry.epc_hex}:{entry.antenna}:{entry.last_seen_us}".encode()
            angle = zlib.crc32(key) % 4096
            parts.append(_IMPINJ_PARAM.pack(*_IMPINJ_HEAD, IMPINJ_RF_PHASE_ANGLE, angle))
        if self._impinj_peak:
            parts.append(_IMPINJ_PARAM.pack(*_IMPINJ_HEAD, IMPINJ_PEAK_RSSI, entry.peak_rssi * 100))
        return b"".join(parts)

    def encode(self, msg_id: int, entries: Iterable[TagReportEntry]) -> bytes:
        """An RO_ACCESS_REPORT holding one TagReportData per entry."""
        body = b"".join([self.tag_report_data(entry) for entry in entries])
        return message(MsgType.RO_ACCESS_REPORT, msg_id, body)
