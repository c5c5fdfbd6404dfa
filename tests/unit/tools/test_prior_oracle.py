"""The prior oracle: the best price knowing a family's distribution of truths, not the SKU's."""

from __future__ import annotations

import numpy as np
import pytest

from repricer.streams.settings import Settings
from repricer.streams.tools.backtest import run_market
from repricer.streams.tools.simulator.families import (
    FamilyTruth,
    draw_truths,
    expected_objective,
    fluid_profit,
    oracle_at,
    season_at,
)
from repricer.streams.tools.simulator.prior_oracle import PriorOracle
from repricer.streams.tools.simulator.truth import MAX_CONVERSION, MEAN_QTY

T0 = 1_767_225_600_000
DAY = 86_400_000
H = 3 * DAY


def _fresh(family: str, n: int, seed: int) -> list[FamilyTruth]:
    rng = np.random.default_rng(seed)
    return list(draw_truths(rng, n, market=family, markup=2.0, start_ms=T0, horizon_ms=H).values())


def _profit_at_multiple(truths: list[FamilyTruth], m: float, at: int) -> float:
    """Expected profit per minute at ``m`` x cost, summed over ``truths`` (constant elasticity,
    written out: the brute force the prior oracle must agree with)."""
    total = 0.0
    for t in truths:
        p = min(max(m * t.cost, t.min_price), t.max_price)
        conv = min(MAX_CONVERSION, t.conversion_at_base * (p / t.base_price) ** t.elasticity)
        total += season_at(t, at) * t.views_per_min * MEAN_QTY * (p - t.cost) * conv
    return total


@pytest.mark.parametrize("family", ["constant", "longtail"])
def test_prior_multiple_matches_a_brute_force_grid_over_its_draws(family: str) -> None:
    prior = PriorOracle(family, markup=2.0, start_ms=T0, horizon_ms=H, draws=300, seed=11)
    # the draws spread over the whole elasticity range: the prior is not a single SKU's truth
    es = [t.elasticity for t in prior.truths]
    assert min(es) < -3.2 and max(es) > -1.6
    at = T0 + 5 * 3_600_000 + 1_800_000
    got = prior.multiple_at(at)
    fine = np.geomspace(1.05, 4.0, 4001)
    vals = [_profit_at_multiple(prior.truths, float(m), at) for m in fine]
    best = float(fine[int(np.argmax(vals))])
    assert got == pytest.approx(best, rel=3e-3)  # one step of the prior's coarser grid
    assert _profit_at_multiple(prior.truths, got, at) >= max(vals) * (1 - 1e-4)
    # and it is not the catalogue price: with this spread of elasticities, static leaves money
    assert abs(got - 2.0) > 0.1


def _total(truths: list[FamilyTruth], prices: list[float], at: int) -> float:
    """Expected profit per minute at ``at`` of ``truths`` at ``prices``."""
    return sum(
        season_at(t, at) * t.views_per_min * float(expected_objective(t, p, at, "profit"))
        for t, p in zip(truths, prices, strict=True)
    )


@pytest.mark.parametrize("family", ["constant", "longtail", "linear", "logit", "regime"])
def test_prior_oracle_beats_static_and_not_the_oracle_on_fresh_truths(family: str) -> None:
    prior = PriorOracle(family, markup=2.0, start_ms=T0, horizon_ms=H, draws=600, seed=11)
    fresh = _fresh(family, 1500, seed=12)  # truths the prior has not seen
    for at in (T0 + 1_800_000, T0 + H // 2, T0 + H - 1_800_000):
        prior_p = _total(fresh, [prior.price(t, at) for t in fresh], at)
        static = _total(fresh, [t.base_price for t in fresh], at)
        oracle = _total(fresh, [oracle_at(t, at) for t in fresh], at)
        assert static < prior_p <= oracle, (family, at, static, prior_p, oracle)


def test_stock_prior_is_one_price_for_the_run_that_beats_static() -> None:
    prior = PriorOracle("stock", markup=2.0, start_ms=T0, horizon_ms=H, draws=400, seed=11)
    assert prior.multiple_at(T0) == prior.multiple_at(T0 + H - 1)
    m = prior.multiple_at(T0)
    fresh = _fresh("stock", 1000, seed=12)
    got = sum(fluid_profit(t, min(max(m * t.cost, t.min_price), t.max_price)) for t in fresh)
    static = sum(fluid_profit(t, t.base_price) for t in fresh)
    assert got > static


def test_backtest_prior_oracle_prices_by_the_family_not_the_sku() -> None:
    s = Settings(lstm=False)
    kw = {"skus": 6, "days": 0.05, "seed": 3, "settings": s, "markup": 2.0}
    run = run_market("prior_oracle", market_name="constant", **kw)  # type: ignore[arg-type]
    static = run_market("static", market_name="constant", **kw)  # type: ignore[arg-type]
    oracle = run_market("oracle", market_name="constant", **kw)  # type: ignore[arg-type]
    assert run.profit_by_day and len(run.profit_by_day) == len(static.profit_by_day)
    for sku in oracle.sku_expected_profit_by_day[0]:
        got = sum(d[sku] for d in run.sku_expected_profit_by_day)
        # one multiple for the family: never above the SKU's own oracle, and not its static
        assert got <= sum(d[sku] for d in oracle.sku_expected_profit_by_day) * (1 + 1e-9)
        assert got != pytest.approx(sum(d[sku] for d in static.sku_expected_profit_by_day))
    with pytest.raises(ValueError, match="demand families"):
        run_market("prior_oracle", **kw)  # type: ignore[arg-type]
