"""Batches are bounded in bytes as well as in events."""

from __future__ import annotations

from edge.publisher import HEADER_ALLOWANCE, fit_batch
from wire.models import MAX_PAYLOAD_BYTES


def rows(count: int, size: int) -> list[tuple[int, str]]:
    return [(seq, "x" * size) for seq in range(1, count + 1)]


def test_small_rows_all_fit() -> None:
    assert fit_batch(rows(1000, 500)) == rows(1000, 500)


def test_large_rows_are_cut_to_the_payload_limit() -> None:
    fitted = fit_batch(rows(1000, 1500))
    assert 0 < len(fitted) < 1000
    assert fitted == rows(len(fitted), 1500)
    size = sum(len(body) + 1 for _, body in fitted)
    assert size <= MAX_PAYLOAD_BYTES - HEADER_ALLOWANCE
    assert size + 1501 > MAX_PAYLOAD_BYTES - HEADER_ALLOWANCE  # one more would not fit


def test_one_row_always_goes() -> None:
    assert fit_batch(rows(3, MAX_PAYLOAD_BYTES)) == rows(1, MAX_PAYLOAD_BYTES)
