"""Recorded LLRP bytes for the edge benchmarks: a dock door with pallets passing through.

The stream is built once per benchmark size with the simulator's own encoder
(``firmware_sim.llrp_encode.ReportEncoder``), as a reader would send it: RO_ACCESS_REPORTs
of ``tags_per_report`` TagReportData each, 96-bit EPCs (SGTIN-96, so the edge decodes them
as GS1), AntennaID, PeakRSSI, first/last seen (µs) and a seen count.

Traffic model. The field holds ``field_tags`` tags at once, as pallets of
``tags_per_report`` tags on a ring of slots; each report reads the pallet of the next slot.
A pallet is read ``visits`` times, once per ``cycle_s`` of reader time, and is then replaced
by a new pallet with new tags. Pallets alternate between going in (read first on the outside
antenna, then inside) and going out (the reverse); within a pass the side a read comes from
drifts from one to the other with some stray reads, as on a real door, and each read's
RSSI falls with the pallet's distance from the antenna that read it. The recording
starts in steady state (pallets at staggered points of their pass). Reader time advances
``cycle_s / slots`` per report, so one pallet at a time (100 tags) gives about 1,000 reads/s
of reader time, a busy dock door. With 100 pallets (10,000 tags) in the field each tag is
still read every ``cycle_s``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from bench.edge_config import INSIDE_ANTENNA, OUTSIDE_ANTENNA
from firmware_sim.llrp_types import ContentSelector, TagReportEntry
from firmware_sim.report_encoder import ReportEncoder

COMPANY_PREFIX: Final = 614141
"""GS1 company prefix of the generated SGTINs (7 digits, SGTIN-96 partition 5)."""
ITEM_REFS: Final = 64
"""Distinct item references the pallets carry."""
BASE_TIME_US: Final = 1_732_521_600_000_000
"""Reader time of the first report: 2024-11-25T08:00:00Z."""
STRAY_READS: Final = 0.08
"""Share of reads that come from the other side of the door than the pallet's position."""
ANTENNA_X: Final = 0.5
"""Outside antenna 0.5 m before the door, inside antenna 0.5 m past it."""
RSSI_NEAR: Final = -38.0
RSSI_SLOPE: Final = 14.0
"""dB lost per metre from the antenna."""
RSSI_NOISE: Final = 2.0
WARMUP_CYCLES: Final = 21
"""Ring cycles of warm-up: the default departure timeout (2 s) over ``cycle_s``, plus one."""
SELECTOR: Final = ContentSelector(
    antenna_id=True, peak_rssi=True, first_seen=True, last_seen=True, tag_seen_count=True
)


def sgtin96_hex(item_ref: int, serial: int, filter_value: int = 1) -> str:
    """SGTIN-96 tag hex: header 0x30, filter, partition 5, company prefix, item ref, serial."""
    value = (
        (0x30 << 88)
        | (filter_value << 85)
        | (5 << 82)
        | (COMPANY_PREFIX << 58)
        | (item_ref << 38)
        | serial
    )
    return f"{value:024x}"


@dataclass(frozen=True, slots=True)
class Stream:
    """A recorded byte stream and what it holds."""

    warmup: bytes
    """The reports before the measured part, back to back (not timed; see ``build``)."""
    frames: tuple[bytes, ...]
    """The measured RO_ACCESS_REPORT messages, in order."""
    data: bytes
    """The measured messages back to back, as they come off the socket."""
    warmup_reads: int
    reads: int
    """TagReportData entries in the measured part."""
    field_tags: int
    pallets: int
    """Pallets that passed (each a pass of every one of its tags)."""
    expected_directions: dict[str, str]
    """Direction each tag's pallet moved in (``in``/``out``), by EPC hex."""
    span_s: float
    """Reader time the stream covers."""

    @property
    def distinct_tags(self) -> int:
        return len(self.expected_directions)


def build(
    reads: int,
    *,
    field_tags: int = 100,
    tags_per_report: int = 100,
    visits: int = 30,
    cycle_s: float = 0.1,
    warmup_cycles: int = WARMUP_CYCLES,
    seed: int = 4,
) -> Stream:
    """Build a stream of about ``reads`` measured tag reads, after a warm-up.

    The warm-up is ``warmup_cycles`` reads of every pallet on the ring. It brings the
    edge's pass tracker to its steady state before timing starts: by then the tags of
    pallets that left ``departure_timeout_s`` ago are departing as new ones arrive, so the
    tracker holds the field plus the departing tags, as it does on a live door.

    Args:
        reads: measured tag reads wanted (rounded up to whole reports).
        field_tags: tags in the field at once (a multiple of ``tags_per_report``).
        tags_per_report: TagReportData per RO_ACCESS_REPORT (one pallet).
        visits: reports of each pallet before it has passed.
        cycle_s: reader time between two reads of one pallet.
        warmup_cycles: ring cycles before the measured part.
        seed: the random generator's seed (the stream is deterministic).
    """
    if field_tags < tags_per_report or field_tags % tags_per_report:
        raise ValueError("field_tags must be a positive multiple of tags_per_report")
    if reads < 1 or visits < 2 or cycle_s <= 0:
        raise ValueError("reads must be >= 1, visits >= 2 and cycle_s > 0")
    rng = random.Random(seed)
    encoder = ReportEncoder(SELECTOR)
    slots = field_tags // tags_per_report
    step_us = round(cycle_s * 1_000_000 / slots)
    warmup_reports = warmup_cycles * slots
    reports = warmup_reports + -(-reads // tags_per_report)
    serial = 0
    pallets = 0
    directions: dict[str, str] = {}
    # Per slot: the pallet's EPCs, its direction and how many reports it has had.
    ring: list[tuple[list[str], str, int] | None] = []
    frames: list[bytes] = []
    now_us = BASE_TIME_US

    def new_pallet(seen: int = 0) -> tuple[list[str], str, int]:
        nonlocal serial, pallets
        direction = "in" if pallets % 2 == 0 else "out"
        item_ref = 100_000 + pallets % ITEM_REFS
        epcs = []
        for _ in range(tags_per_report):
            serial += 1
            epc = sgtin96_hex(item_ref, serial)
            epcs.append(epc)
            directions[epc] = direction
        pallets += 1
        return epcs, direction, seen

    # The field has been busy for a while when the recording starts: the pallets on the
    # ring are at staggered points of their pass, so pallets finish at the steady rate of
    # one per ``visits`` reports from the first report on, whatever the field size.
    for slot in range(slots):
        ring.append(new_pallet(slot * visits // slots))
    for number in range(reports):
        slot = number % slots
        # A pallet that has passed is replaced when its slot is read next, so every tag
        # in the stream is read at least once.
        epcs, direction, seen = ring[slot] or new_pallet()
        progress = (seen + 0.5) / visits
        outside_first = direction == "in"
        entries = []
        # Where the pallet is: from 1 m before the door to 1 m past it.
        position = -1.0 + 2.0 * progress if outside_first else 1.0 - 2.0 * progress
        for epc in epcs:
            # Early in the pass the pallet is on its starting side; late, on the other.
            on_start_side = rng.random() >= progress
            if rng.random() < STRAY_READS:
                on_start_side = not on_start_side
            outside = on_start_side == outside_first
            first = now_us - rng.randrange(0, step_us)
            # RSSI falls with the distance to the antenna that read it (stray reads from
            # the far side come out weak, as on a real door).
            distance = abs(position - (ANTENNA_X if not outside else -ANTENNA_X))
            rssi = RSSI_NEAR - RSSI_SLOPE * distance + rng.gauss(0.0, RSSI_NOISE)
            entries.append(
                TagReportEntry(
                    epc_hex=epc,
                    antenna=OUTSIDE_ANTENNA if outside else INSIDE_ANTENNA,
                    peak_rssi=max(-90, min(-30, round(rssi))),
                    first_seen_us=first,
                    last_seen_us=max(first, now_us - rng.randrange(0, step_us // 4 + 1)),
                    seen_count=rng.randrange(1, 5),
                )
            )
        frames.append(encoder.encode(number + 1, entries))
        ring[slot] = (epcs, direction, seen + 1) if seen + 1 < visits else None
        now_us += step_us
    measured = tuple(frames[warmup_reports:])
    return Stream(
        warmup=b"".join(frames[:warmup_reports]),
        frames=measured,
        data=b"".join(measured),
        warmup_reads=warmup_reports * tags_per_report,
        reads=len(measured) * tags_per_report,
        field_tags=field_tags,
        pallets=pallets,
        expected_directions=directions,
        span_s=(now_us - BASE_TIME_US) / 1_000_000,
    )
