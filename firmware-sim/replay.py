"""Recorded reader messages, replayed as a reader would send them.

The captures file (``tests/data/llrp-captures.json``, a copy of the shared
``llrp-captures/captures.json``) holds messages recorded from real Impinj and Zebra
readers. ``load_reports`` takes every RO_ACCESS_REPORT in it (a capture may hold a whole
TCP stream of them), decodes each once with the project's codec to know which tags it
carries, and keeps the bytes. A simulator in replay mode sends them after the handshake,
in file order, each with a fresh message id (the only bytes changed).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from edge.readers.llrp_codec import LlrpCodecError, LlrpFramer, decode
from firmware_sim.errors import SimConfigError
from firmware_sim.llrp_types import MsgType

MAX_CAPTURE_FILE_BYTES: Final = 16 * 1024 * 1024
MAX_REPLAY_FRAMES: Final = 100_000


@dataclass(frozen=True, slots=True)
class ReplayFrame:
    """One recorded RO_ACCESS_REPORT and the reads it carries."""

    source: str
    """The capture id it comes from."""
    raw: bytes
    reads: tuple[tuple[str, int, int], ...]
    """(EPC hex, antenna (0: not reported), TagSeenCount (1 if absent)) per entry."""

    def with_id(self, msg_id: int) -> bytes:
        """The message with ``msg_id`` in its header."""
        return self.raw[:6] + struct.pack("!I", msg_id & 0xFFFFFFFF) + self.raw[10:]


def _reads(body: Mapping[str, Any]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for tag in body.get("TagReportData") or ():
        epc = tag.get("EPC", tag.get("EPC-96"))
        if not isinstance(epc, bytes | bytearray) or not epc:
            continue
        antenna = tag.get("AntennaID")
        seen = tag.get("TagSeenCount")
        out.append(
            (
                bytes(epc).decode("ascii").lower(),
                antenna if isinstance(antenna, int) else 0,
                seen if isinstance(seen, int) and seen > 0 else 1,
            )
        )
    return tuple(out)


def report_frames(captures: Iterable[Mapping[str, Any]]) -> list[ReplayFrame]:
    """Every RO_ACCESS_REPORT in ``captures`` (entries with ``id`` and ``hex``).

    Raises:
        SimConfigError: an entry is malformed or its bytes cannot be framed.
    """
    frames: list[ReplayFrame] = []
    for index, capture in enumerate(captures):
        source = str(capture.get("id", f"#{index}"))
        try:
            raw = bytes.fromhex(str(capture["hex"]))
            framed = list(LlrpFramer().feed(raw))
        except (KeyError, ValueError, LlrpCodecError) as err:
            raise SimConfigError(f"capture {source}: {err}") from err
        for frame in framed:
            if frame.msg_type != MsgType.RO_ACCESS_REPORT:
                continue
            try:
                reads = _reads(decode(frame).body)
            except LlrpCodecError:
                reads = ()
            frames.append(ReplayFrame(source, frame.raw, reads))
            if len(frames) > MAX_REPLAY_FRAMES:
                raise SimConfigError(f"more than {MAX_REPLAY_FRAMES} reports to replay")
    return frames


def load_reports(path: str | Path, ids: Sequence[str] = ()) -> list[ReplayFrame]:
    """The RO_ACCESS_REPORTs of a captures file, optionally only those of ``ids``.

    Raises:
        SimConfigError: unreadable, too big, not a list of captures, or an unknown id.
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CAPTURE_FILE_BYTES:
            raise SimConfigError(f"{path}: larger than {MAX_CAPTURE_FILE_BYTES} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SimConfigError(f"{path}: cannot read captures: {err}") from err
    if not isinstance(data, list) or not all(isinstance(c, dict) for c in data):
        raise SimConfigError(f"{path}: expected a JSON list of captures")
    if ids:
        known = {str(c.get("id")) for c in data}
        missing = sorted(set(ids) - known)
        if missing:
            raise SimConfigError(f"{path}: no capture {missing[0]!r}")
        data = [c for c in data if str(c.get("id")) in set(ids)]
    frames = report_frames(data)
    if not frames:
        raise SimConfigError(f"{path}: no RO_ACCESS_REPORT to replay")
    return frames
