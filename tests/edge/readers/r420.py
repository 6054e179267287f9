"""What the simulator's default reader (an Impinj R420 profile) says of itself, as the
edge reads it: for tests that build requests without a live reader."""

from __future__ import annotations

from edge.readers.llrp_codec import LlrpFramer, decode
from edge.readers.llrp_reports import ReaderCapabilities, capabilities
from firmware_sim.llrp_encode import encode_capabilities_response
from firmware_sim.profile import R420, ReaderProfile


def r420_capabilities(antennas: int, profile: ReaderProfile = R420) -> ReaderCapabilities:
    """GET_READER_CAPABILITIES_RESPONSE of a simulated reader with ``antennas``, decoded."""
    (frame,) = LlrpFramer().feed(encode_capabilities_response(1, profile, antennas))
    return capabilities(decode(frame).body)
