"""What one tag's reads at a portal say: per-side evidence and the tag's own verdict.

A side (the outside or the inside antennas) sees a passing tag's RSSI rise as it comes
near and fall as it goes away. Overlapping fields let the far side read the tag through
most of its pass, and reflections give it stray reads, but always weaker than the near
side: so the verdict rests on each side's *strong* reads, those whose smoothed RSSI comes
within ``STRONG_DB`` of that side's own peak (when that peak is within ``NEAR_DB`` of the
other side's: a side that only ever read the tag weakly never had it near). A tag that
crosses inwards is strong outside first and strong inside last; one that entered part way
and backed out is strong on the same side first and last (``returned``: it did not cross).

From the samples of one side (read time, RSSI, read count; one per TagReportData) come
``SideView``: read count, first and last read, the read-count centroid, the RSSI-weighted
centroid (weighted by received power, so a read 10 dB weaker weighs a tenth), the time of
the smoothed RSSI peak (a running mean over ``SMOOTH_US`` either side), the RSSI trend
(least-squares slope, dB/s) and the first and last strong read.

The verdict (``judge_tag``):

1. fewer than ``min_reads`` reads: no direction, ``too_few_reads``;
2. one side only: ``one_side`` (staged beside the door, cross traffic);
3. the *entry* side is the one strong first, the *exit* side the one strong last, each
   only when the two sides differ by ``ORDER_MIN_US`` at least. Entry and exit on the same
   side: ``returned``. A side that was never strong while the other was strong before and
   after it was read: ``returned`` too;
4. entry outside and exit inside: ``in`` (and the reverse ``out``), unless the peak order
   or the power-weighted centroid order says the opposite (``conflict``); when the entry
   or exit gap is narrower than ``CLEAR_ORDER_US``, one of those orders must agree
   (``no_separation`` otherwise: flat RSSI, both sides alike);
5. only one of entry and exit known: the direction it gives, when the peak order and the
   power-weighted centroid order both agree; else ``no_separation``.

Confidence (0..1) is the product of a support term, ``1 - 0.5 ** min(outside, inside
reads)``, and an order term: the smaller of the entry and exit gaps over
``FULL_ORDER_US`` (halved when only one is known).

Without RSSI (a reader that does not report it, or reports one value whatever the
distance: less than ``RSSI_SHAPE_DB`` of variation) there are no strong reads; the verdict
falls back to the read-count centroids, as the edge has always done (``MIN_SEPARATION``
of the pass length apart).

Pure: numbers in, numbers out; the pass tracker calls it when a pass ends.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Final, Literal

from wire.models import Direction

SMOOTH_US: Final = 250_000
"""Half-width of the running mean that smooths a side's RSSI."""
STRONG_DB: Final = 6.0
"""A smoothed RSSI this close to its side's peak is a strong read."""
PEAK_BAND_DB: Final = 1.0
"""The smoothed peak's time is the mean time of the samples this close to it."""
NEAR_DB: Final = 10.0
"""A side whose smoothed peak stays this far below the other side's never had the tag near."""
ORDER_MIN_US: Final = 100_000
"""Two sides' strong reads must start (or end) this far apart to tell which was first."""
CLEAR_ORDER_US: Final = 200_000
"""Entry and exit gaps this wide stand on their own; narrower ones need the peaks' or the
power-weighted centroids' order to agree."""
FULL_ORDER_US: Final = 400_000
"""Entry and exit gaps at which the order term of the confidence reaches 1."""
RSSI_SHAPE_DB: Final = 3.0
"""RSSI that varies less than this over a pass carries no shape: judge by read counts."""
MIN_SEPARATION: Final = 0.15
"""Without RSSI: centroid gap, as a fraction of the pass length, below which no direction."""
FULL_SEPARATION: Final = 0.35
"""Without RSSI: centroid gap at which the separation term of the confidence reaches 1."""

Reason = Literal["too_few_reads", "one_side", "returned", "no_separation", "conflict", "parked"]
Sample = tuple[int, float | None, int, int]
"""(read time µs, RSSI dBm or None, read count, antenna) of one TagReportData."""


@dataclass(frozen=True, slots=True)
class SideView:
    """One side's evidence of one pass (times in µs since the epoch)."""

    count: int
    first_us: int
    last_us: int
    centroid_us: float
    rssi_centroid_us: float | None
    peak_rssi: float | None
    peak_us: int | None
    """Time of the smoothed RSSI peak."""
    peak_smoothed: float | None
    trend_db_per_s: float | None
    smoothed: tuple[tuple[int, float], ...]
    """(time, smoothed RSSI) of every sample with RSSI, in time order."""
    first_strong_us: int | None = None
    last_strong_us: int | None = None


def side_view(samples: list[Sample]) -> SideView | None:
    """The evidence of one side's samples (None when there are none).

    Counts and centroids take every antenna of the side; the RSSI curve (smoothed peak,
    strong reads, trend) is that of the side's antenna that saw the tag strongest, the one
    it passed nearest (on a wide door the side's other antennas read it from afar).
    Runs once per pass and side, in one loop over the samples where it can.
    """
    if not samples:
        return None
    samples.sort(key=_time)
    count = 0
    time_sum = 0
    peak_rssi: float | None = None
    by_antenna: dict[int, list[tuple[int, float]]] = {}
    weighed: list[tuple[int, float, int]] = []
    for t, r, n, a in samples:
        count += n
        time_sum += t * n
        if r is None:
            continue
        if peak_rssi is None or r > peak_rssi:
            peak_rssi = r
        weighed.append((t, r, n))
        points = by_antenna.get(a)
        if points is None:
            by_antenna[a] = [(t, r)]
        else:
            points.append((t, r))
    first, last = samples[0][0], samples[-1][0]
    centroid = time_sum / count
    if peak_rssi is None:
        return SideView(count, first, last, centroid, None, None, None, None, None, ())
    exp = math.exp
    total = moment = 0.0
    for t, r, n in weighed:
        weight = n * exp((r - peak_rssi) * _DB_TO_LN)
        total += weight
        moment += t * weight
    smoothed: list[tuple[int, float]] = []
    peak_smoothed = -math.inf
    for points in by_antenna.values():
        curve = _smooth(points)
        top = max(value for _, value in curve)
        if top > peak_smoothed:
            smoothed, peak_smoothed = curve, top
    # The mean time of the samples near the smoothed peak (a plateau has one middle).
    band = peak_smoothed - PEAK_BAND_DB
    at_peak = [t for t, value in smoothed if value >= band]
    return SideView(
        count=count,
        first_us=first,
        last_us=last,
        centroid_us=centroid,
        rssi_centroid_us=moment / total,
        peak_rssi=peak_rssi,
        peak_us=round(sum(at_peak) / len(at_peak)),
        peak_smoothed=peak_smoothed,
        trend_db_per_s=_trend(smoothed),
        smoothed=tuple(smoothed),
    )


def _time(sample: Sample) -> int:
    return sample[0]


_DB_TO_LN: Final = math.log(10) / 10
"""dB to natural-log units: received power is ``exp(dB * _DB_TO_LN)``."""


def _smooth(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Running mean of RSSI over ``SMOOTH_US`` either side of each point (two pointers)."""
    out: list[tuple[int, float]] = []
    low = high = 0
    total = 0.0
    size = len(points)
    for t, _ in points:
        while high < size and points[high][0] <= t + SMOOTH_US:
            total += points[high][1]
            high += 1
        while points[low][0] < t - SMOOTH_US:
            total -= points[low][1]
            low += 1
        out.append((t, total / (high - low)))
    return out


def _trend(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of RSSI against time, dB/s (None for fewer than two times)."""
    size = len(points)
    if size < 2:
        return None
    t0 = points[0][0]
    sx = sy = sxx = sxy = 0.0
    for t, y in points:
        x = (t - t0) / 1_000_000
        sx += x
        sy += y
        sxx += x * x
        sxy += x * y
    spread = sxx - sx * sx / size
    if spread <= 1e-12:
        return None
    slope = (sxy - sx * sy / size) / spread
    return max(-1000.0, min(1000.0, slope))


def with_strong(
    outside: SideView | None, inside: SideView | None
) -> tuple[SideView | None, SideView | None]:
    """Both sides with their first and last strong read set.

    A side's strong reads are those within ``STRONG_DB`` of its own smoothed peak: the
    time the tag was nearest that side. A side whose peak stayed more than ``NEAR_DB``
    below the other's never had the tag near it (only stray or far reads): no strong reads.
    """
    peaks = [v.peak_smoothed for v in (outside, inside) if v and v.peak_smoothed is not None]
    if not peaks:
        return outside, inside
    near = max(peaks) - NEAR_DB
    return _strong(outside, near), _strong(inside, near)


def _strong(view: SideView | None, near: float) -> SideView | None:
    if view is None or view.peak_smoothed is None or view.peak_smoothed < near:
        return view
    threshold = view.peak_smoothed - STRONG_DB
    first = last = None
    for t, value in view.smoothed:
        if value >= threshold:
            if first is None:
                first = t
            last = t
    return dataclasses.replace(view, first_strong_us=first, last_strong_us=last)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A tag's own verdict on its pass."""

    direction: Direction | None
    confidence: float
    reason: Reason | None
    strong: bool = False
    """The evidence is clear-cut (entry and exit both known): the tag may stand against
    its group."""
    signs: tuple[int, ...] = ()
    """What each clue said (+1 in, -1 out, 0 nothing): entry, exit, peaks, power centroids."""


def _sign(gap: float | None) -> int:
    """+1 when ``gap`` says inside came later (in), -1 the reverse, 0 when too close."""
    if gap is None or abs(gap) < ORDER_MIN_US:
        return 0
    return 1 if gap > 0 else -1


def _sign_beyond(gap: float | None, least: float) -> int:
    if gap is None or abs(gap) < least:
        return 0
    return 1 if gap > 0 else -1


def judge_tag(
    outside: SideView | None,
    inside: SideView | None,
    *,
    min_reads: int,
) -> Verdict:
    """The tag's own verdict (see the module docstring)."""
    reads = (outside.count if outside else 0) + (inside.count if inside else 0)
    if reads < min_reads:
        return Verdict(None, 0.0, "too_few_reads")
    if outside is None or inside is None:
        return Verdict(None, 0.0, "one_side")
    support = 1.0 - 0.5 ** min(outside.count, inside.count)
    if not _rssi_tells(outside, inside):
        return _by_centroids(outside, inside, support)
    if (
        outside.first_strong_us is None
        or inside.first_strong_us is None
        or outside.last_strong_us is None
        or inside.last_strong_us is None
    ):
        # One side was never strong: did the strong side see the tag before and after?
        strong, weak = (
            (outside, inside)
            if outside.first_strong_us is not None
            else (
                inside,
                outside,
            )
        )
        if (
            strong.first_strong_us is not None
            and strong.last_strong_us is not None
            and strong.first_strong_us < weak.first_us - ORDER_MIN_US
            and strong.last_strong_us > weak.last_us + ORDER_MIN_US
        ):
            return Verdict(None, 0.0, "returned", strong=True)
        return Verdict(None, 0.0, "no_separation")
    entry_gap = inside.first_strong_us - outside.first_strong_us
    exit_gap = inside.last_strong_us - outside.last_strong_us
    entry, exit_ = _sign(entry_gap), _sign(exit_gap)
    # Entry +1: outside strong first. Exit +1: inside strong last. The peaks' and the
    # power-weighted centroids' gaps count only as a share of the pass (on flat RSSI they
    # move with every read).
    span = max(outside.last_us, inside.last_us) - min(outside.first_us, inside.first_us)
    least = max(ORDER_MIN_US, MIN_SEPARATION * span)
    peak = _sign_beyond(
        None
        if inside.peak_us is None or outside.peak_us is None
        else inside.peak_us - outside.peak_us,
        least,
    )
    power = _sign_beyond(
        None
        if inside.rssi_centroid_us is None or outside.rssi_centroid_us is None
        else inside.rssi_centroid_us - outside.rssi_centroid_us,
        least,
    )
    signs = (entry, exit_, peak, power)
    if entry and exit_ and entry != exit_:
        return Verdict(None, 0.0, "returned", strong=True, signs=signs)
    if entry and exit_:
        clear = min(abs(entry_gap), abs(exit_gap)) >= CLEAR_ORDER_US
        if -entry in (peak, power) or (not clear and peak != entry and power != entry):
            # Neither the RSSI peaks nor the power-weighted centroids back the order of
            # the strong reads (flat or contradicting RSSI): not enough to move stock.
            reason: Reason = "conflict" if -entry in (peak, power) else "no_separation"
            return Verdict(None, 0.0, reason, signs=signs)
        order = min(1.0, min(abs(entry_gap), abs(exit_gap)) / FULL_ORDER_US)
        return Verdict(_direction(entry), round(support * order, 3), None, strong=True, signs=signs)
    known = entry or exit_
    if known and peak == power == known:
        gap = abs(entry_gap if entry else exit_gap)
        order = 0.5 * min(1.0, gap / FULL_ORDER_US)
        return Verdict(_direction(known), round(support * order, 3), None, signs=signs)
    return Verdict(None, 0.0, "no_separation", signs=signs)


def _rssi_tells(outside: SideView, inside: SideView) -> bool:
    """Whether RSSI can tell anything: both sides report it and it varies by
    ``RSSI_SHAPE_DB`` at least (a reader that reports one fixed value reports none)."""
    if outside.peak_rssi is None or inside.peak_rssi is None:
        return False
    values = [value for view in (outside, inside) for _, value in view.smoothed]
    return max(values) - min(values) >= RSSI_SHAPE_DB


def _direction(sign: int) -> Direction:
    return "in" if sign > 0 else "out"


def _by_centroids(outside: SideView, inside: SideView, support: float) -> Verdict:
    """No RSSI: the read-count centroids' order, as a share of the pass length."""
    span = max(outside.last_us, inside.last_us) - min(outside.first_us, inside.first_us)
    if span <= 0:
        return Verdict(None, 0.0, "no_separation")
    gap = (inside.centroid_us - outside.centroid_us) / span
    if abs(gap) < MIN_SEPARATION or math.isnan(gap):
        return Verdict(None, 0.0, "no_separation")
    separation = min(1.0, abs(gap) / FULL_SEPARATION)
    return Verdict(_direction(1 if gap > 0 else -1), round(support * separation, 3), None)
