"""The uplift estimate: difference in differences of treated SKUs against the holdout."""

from __future__ import annotations

import random

from repricer.streams.uplift import SkuTotals, estimate


def _shop(n: int, effect: float, seed: int, *, trend: float = 5.0) -> tuple[dict, set]:
    """``n`` SKUs of very different sizes; every SKU's sales move by ``trend`` units a day
    after the switch, the treated ones by ``effect`` more (2 days before, 3 after)."""
    rng = random.Random(seed)
    totals, treated = {}, set()
    for i in range(n):
        sku = f"s{i}"
        base = rng.lognormvariate(3, 1)
        is_t = rng.random() >= 0.2
        after = base + trend + (effect if is_t else 0.0)
        u = (2 * base + rng.gauss(0, 3), 3 * after + rng.gauss(0, 3))
        totals[sku] = SkuTotals(units=u, revenue=(10 * u[0], 10 * u[1]), cost=6.0)
        if is_t:
            treated.add(sku)
    return totals, treated


def test_the_interval_covers_a_known_effect_in_most_draws() -> None:
    hits = 0
    for seed in range(200):
        totals, treated = _shop(300, effect=4.0, seed=seed)
        est = estimate(totals, treated, days_before=2, days_after=3)
        assert est["enough_data"] and est["sku_days"] == 1500
        lo, hi = est["units"]["ci"]
        hits += lo <= 4.0 <= hi
    assert 0.9 <= hits / 200 <= 0.99  # a 95% interval


def test_profit_is_revenue_minus_cost_of_units() -> None:
    totals, treated = _shop(300, effect=4.0, seed=1)
    est = estimate(totals, treated, days_before=2, days_after=3)
    assert abs(est["profit"]["per_sku_day"] - 4 * est["units"]["per_sku_day"]) < 1e-4
    assert abs(est["revenue"]["per_sku_day"] - 10 * est["units"]["per_sku_day"]) < 1e-4


def test_it_says_when_there_is_not_enough_data() -> None:
    totals, treated = _shop(30, effect=4.0, seed=2)
    est = estimate(totals, treated, days_before=2, days_after=3)
    assert est["enough_data"] is False and "holdout SKUs (need 10" in est["why"]
    totals, treated = _shop(300, effect=4.0, seed=2)
    est = estimate(totals, treated, days_before=2, days_after=0.5)
    assert est["enough_data"] is False and "0.50 after" in est["why"]
    unknown = {s: SkuTotals(t.units, t.revenue, None) for s, t in totals.items()}
    est = estimate(unknown, treated, days_before=2, days_after=3)
    assert est["enough_data"] and est["profit"]["enough_data"] is False and est["units"]["ci"]
    assert est["profit"]["why"].startswith("not enough data: cost known for 0 treated")


def test_the_holdout_backtest_says_not_enough_data_on_a_short_small_run() -> None:
    from repricer.streams.settings import Settings
    from repricer.streams.tools.uplift_backtest import holdout_run

    s = Settings(lstm=False, holdout_fraction=0.2, window_s=1800)
    r = holdout_run(skus=20, days=1.0, before_days=0.5, seed=3, settings=s)
    est = r["estimate"]
    assert est["enough_data"] is False and "not enough data" in est["why"]
    assert est["treated_skus"] + est["holdout_skus"] == 20 and r["covered"] == {}
    assert r["price_changes"] > 0  # the treated SKUs were priced after the switch


def test_the_stratified_holdout_backtest_holds_out_each_stratum_of_the_shadow_sales() -> None:
    """``--stratified``: the holdout is drawn at the switch from the shadow period's sales by
    category (``streams.holdout_draw``), held SKUs publish no price, the treated are priced."""
    from repricer.streams.settings import Settings
    from repricer.streams.tools.uplift_backtest import holdout_run

    s = Settings(lstm=False, holdout_fraction=0.25, window_s=1800)
    r = holdout_run(skus=60, days=1.0, before_days=0.5, seed=3, settings=s, stratified=True)
    est = r["estimate"]
    assert (
        est["holdout_skus"] == r["holdout_skus"] and est["treated_skus"] + r["holdout_skus"] == 60
    )
    # round(0.25 n) of every stratum: about a quarter, off by at most half a SKU a stratum
    assert abs(r["holdout_skus"] - 15) <= 0.5 * r["strata"], r
    assert r["price_changes"] > 0
    again = holdout_run(skus=60, days=1.0, before_days=0.5, seed=3, settings=s, stratified=True)
    assert again["estimate"] == est  # deterministic
