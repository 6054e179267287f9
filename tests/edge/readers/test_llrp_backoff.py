"""The reconnect backoff policy and the read-rate meter, as pure values."""

from __future__ import annotations

import itertools

import pytest

from edge.rates import ReadRates
from edge.readers.types import TagRead
from plumbing.backoff import Backoff


def test_backoff_grows_exponentially_and_is_capped() -> None:
    backoff = Backoff(0.5, 4.0, rand=lambda: 0.0)
    assert [backoff.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_backoff_jitter_stays_within_its_share_and_below_the_cap() -> None:
    draws = itertools.cycle([0.0, 0.25, 0.5, 0.999])
    backoff = Backoff(0.5, 30.0, jitter=0.5, rand=lambda: next(draws))
    bases = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    delays = [backoff.next_delay() for _ in bases]
    for delay, base in zip(delays, bases, strict=True):
        assert base / 2 <= delay <= base
    assert delays[1] == pytest.approx(0.875)  # 1.0 * (1 - 0.5 * 0.25)
    assert len(set(delays[6:])) > 1  # at the cap, the jitter still spreads readers apart


def test_backoff_reset_starts_again_from_initial() -> None:
    backoff = Backoff(0.5, 30.0, rand=lambda: 0.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5
    assert backoff.next_delay() == 1.0


def test_backoff_cap_below_initial_caps_at_initial() -> None:
    backoff = Backoff(2.0, 1.0, rand=lambda: 0.0)
    assert [backoff.next_delay() for _ in range(3)] == [2.0, 2.0, 2.0]


@pytest.mark.parametrize(
    ("initial", "factor", "jitter"), [(0.0, 2.0, 0.5), (1.0, 0.5, 0.5), (1.0, 2.0, 1.5)]
)
def test_backoff_rejects_bad_parameters(initial: float, factor: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(initial, 10.0, factor=factor, jitter=jitter)


def read(antenna: int) -> TagRead:
    return TagRead("dock1", "3000", antenna, None, 1, 1)


def test_read_rates_per_antenna_over_the_last_window() -> None:
    rates = ReadRates(window_s=5.0, now=100.0)
    rates.add([read(1)] * 10 + [read(2)] * 5, now=101.0)
    assert rates.per_antenna(now=104.0) == {}  # the first window is not complete yet
    rates.add([read(1)] * 10, now=104.5)
    assert rates.per_antenna(now=105.0) == {1: 4.0, 2: 1.0}
    assert rates.per_antenna(now=109.0) == {1: 4.0, 2: 1.0}
    assert rates.per_antenna(now=111.0) == {}  # nothing read in the window since
