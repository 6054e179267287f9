"""Smoke test of the replenishment backtest on a few items."""

from __future__ import annotations

from bench import replenishment


def test_backtest_reports_both_figures_and_is_deterministic() -> None:
    first = replenishment.backtest(items=6, seed=7)
    again = replenishment.backtest(items=6, seed=7)
    assert [f.key for f in first] == ["replenishment.fill_rate", "replenishment.avg_stock_ratio"]
    assert [f.value for f in first] == [f.value for f in again]
    fill, ratio = first
    assert 0 < fill.value <= 1
    assert ratio.value > 0
    kinds = fill.detail["by_kind"]
    assert isinstance(kinds, dict)
    assert set(kinds) == {"seasonal", "intermittent"}
    assert sum(int(kind["items"]) for kind in kinds.values()) == 6


def test_generated_items_mix_seasonal_and_intermittent_demand() -> None:
    cases = replenishment.generate(items=10, seed=3)
    intermittent = [case for case in cases if case.kind == "intermittent"]
    seasonal = [case for case in cases if case.kind == "seasonal"]
    assert intermittent
    assert seasonal
    for case in intermittent:
        zero_days = sum(1 for value in case.demand if value == 0)
        assert zero_days > len(case.demand) / 2
    for case in seasonal:
        days = len(case.demand)
        quarter = days // 4
        means = [sum(case.demand[q * quarter : (q + 1) * quarter]) / quarter for q in range(4)]
        assert max(means) > min(means)
    assert all(lead >= 1 for case in cases for lead in case.lead_times)
    assert any(len(set(case.lead_times)) > 1 for case in cases)
