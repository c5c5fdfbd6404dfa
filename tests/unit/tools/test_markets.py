"""The demand families and their oracles, the family market and the per-family backtest."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from repricer.models.guardrails import GuardrailConfig
from repricer.streams.settings import Settings
from repricer.streams.tools.markets import backtest_markets
from repricer.streams.tools.price_audit import PriceAudit
from repricer.streams.tools.simulator.families import (
    FAMILIES,
    FamilyTruth,
    draw_truths,
    expected_objective,
    fluid_profit,
    oracle_at,
    promo_on,
    units_per_min,
)
from repricer.streams.tools.simulator.family_market import FamilyMarket

T0 = 1_767_225_600_000
DAY = 86_400_000
H = 4 * DAY


def _truths(market: str, n: int = 28, seed: int = 1) -> dict[str, FamilyTruth]:
    rng = np.random.default_rng(seed)
    return draw_truths(rng, n, market=market, markup=2.0, start_ms=T0, horizon_ms=H)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_oracle_beats_a_fine_price_grid(family: str) -> None:
    for t in _truths(family, n=6).values():
        grid = np.linspace(t.min_price, t.max_price, 50_001)
        for at in (T0, T0 + H // 3, T0 + H // 2, T0 + H - 1):
            best = oracle_at(t, at)
            assert t.min_price <= best <= t.max_price
            if t.stock is None:
                got = float(expected_objective(t, best, at, "profit"))
                grid_best = float(np.max(expected_objective(t, grid, at, "profit")))
            else:  # a fixed price for the run, sales capped by the stock
                got = fluid_profit(t, best)
                grid_best = max(fluid_profit(t, float(p)) for p in grid[::50])
            assert got >= grid_best * (1 - 1e-9), (family, t.sku, at, best)


def test_regime_oracle_changes_when_the_elasticity_does() -> None:
    for t in _truths("regime", n=6).values():
        assert T0 < t.switch_ms < T0 + H and t.elasticity_after != t.elasticity
        before, after = oracle_at(t, t.switch_ms - 1), oracle_at(t, t.switch_ms)
        assert before == oracle_at(t, T0)
        # a more elastic market is priced lower (unless both sit on the same bound)
        if (t.elasticity_after < t.elasticity) and before > t.min_price:
            assert after < before
        elif t.elasticity_after > t.elasticity and before < t.max_price:
            assert after > before


def test_logit_oracle_follows_the_competitor_promotion() -> None:
    seen = 0
    for t in _truths("logit", n=8).values():
        times = range(T0, T0 + H, 3_600_000)
        on = [x for x in times if promo_on(t, x)]
        off = [x for x in times if not promo_on(t, x)]
        assert on and off  # every few days, for some hours
        p_on, p_off = {oracle_at(t, x) for x in on}, {oracle_at(t, x) for x in off}
        assert len(p_on) == 1 and len(p_off) == 1
        if t.min_price < min(p_on | p_off):
            assert p_on.pop() < p_off.pop()  # a cheaper rival: a lower best price
            seen += 1
    assert seen > 0


def test_long_tail_sells_between_a_tenth_and_twenty_units_a_day() -> None:
    day = [T0 + m * 60_000 for m in range(1440)]
    for t in _truths("longtail", n=200).values():
        per_day = sum(units_per_min(t, t.base_price, x) for x in day)
        assert 0.1 * 0.99 <= per_day <= 20.0 * 1.01, (t.sku, per_day)


def test_stock_family_has_finite_stock_and_the_others_not() -> None:
    for t in _truths("mix", n=70).values():
        assert (t.stock is not None) == (t.family == "stock")
        assert t.family != "weekly" or t.weekly_amp > 0


def test_family_market_is_deterministic_per_seed() -> None:
    def run(seed: int) -> list[dict[str, tuple[int, int, float, int, int, int]]]:
        m = FamilyMarket(market="mix", n_skus=14, seed=seed, start_ms=T0, horizon_ms=DAY)
        return [m.step_counts(T0 + k * 60_000, T0 + (k + 1) * 60_000) for k in range(30)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_mix_backtest_covers_every_family_and_is_deterministic() -> None:
    s = Settings(lstm=False)
    a = backtest_markets(market="mix", skus=7, days=0.03, seeds=2, seed=5, settings=s)
    b = backtest_markets(market="mix", skus=7, days=0.03, seeds=2, seed=5, settings=s)
    assert list(a["families"]) == list(FAMILIES)
    assert a["seeds"] == [5, 6]
    for name, fam in a["families"].items():
        for key in ("profit_vs_oracle", "profit_vs_oracle_last_day", "profit_vs_static"):
            if fam[key]["median"] is None:  # no sale at all in the denominator (long tail)
                assert name == "longtail" and fam[key]["min"] is None
                continue
            assert fam[key]["min"] <= fam[key]["median"] <= fam[key]["max"]
        # in expectation nothing beats the dynamic oracle, which charges the best price of
        # every window (with finite stock it is the best fixed price for the run instead)
        best = fam["expected_vs_oracle_last_day"]["max"]
        assert name == "stock" or best is None or best <= 1.0 + 1e-9, (name, best)
    assert a["guardrail_violations"] == 0
    assert sum(r["price_changes"] for r in a["per_seed"]) > 0
    a.pop("seconds")
    b.pop("seconds")
    for r in a["per_seed"] + b["per_seed"]:
        r.pop("seconds")
    assert json.dumps(a) == json.dumps(b)


def test_dynamic_oracle_earns_at_least_static_in_expectation() -> None:
    # the oracle's price maximises expected profit at every instant: not below static's
    for t in _truths("mix", n=28).values():
        if t.stock is None:
            for at in (T0, T0 + H // 2, T0 + H - 1):
                best = float(expected_objective(t, oracle_at(t, at), at, "profit"))
                static = float(expected_objective(t, t.base_price, at, "profit"))
                assert best >= static * (1 - 1e-12)


def test_price_audit_flags_what_the_rules_forbid() -> None:
    cfg = GuardrailConfig(min_margin=0.05, max_step=0.05, min_change=0.005, cooldown_ms=120_000)
    audit = PriceAudit(cfg, {"A": (10.0, 11.0, 30.0)})
    assert audit.check("A", 20.0, 20.5, 0) == []
    assert audit.check("A", 20.5, 21.0, 60_000) == ["inside_cooldown"]
    assert audit.check("A", 21.0, 23.0, 600_000) == ["over_max_step"]
    assert audit.check("A", 11.2, 10.9, 900_000) == ["below_floor"]
    assert audit.check("A", 20.0, 20.01, 2_000_000) == ["under_min_change"]
    assert audit.check("A", 20.0, 20.555, 3_000_000) == ["off_cent_grid"]


def test_family_truth_keeps_the_simulator_fields() -> None:
    t = next(iter(_truths("constant", n=1).values()))
    assert replace(t, elasticity=-2.0).family == "constant"
    assert t.min_price <= t.base_price <= t.max_price


def test_cli_backtest_market_prints_per_family_json(capsys: pytest.CaptureFixture[str]) -> None:
    from repricer.streams.cli import main

    argv = ["backtest", "--market", "regime", "--skus", "3", "--days", "0.02", "--seeds", "2"]
    assert main([*argv, "--no-lstm", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["families"]) == ["regime"] and out["seeds"] == [7, 8]
    assert set(out["families"]["regime"]) >= {
        "profit_vs_oracle",
        "profit_vs_oracle_last_day",
        "profit_vs_static",
    }
    assert main([*argv, "--no-lstm"]) == 0
    assert "regime" in capsys.readouterr().out.splitlines()[1]


def test_forecast_bench_per_family_reports_the_attainable_bound() -> None:
    from repricer.streams.tools.bench.forecast_markets import forecast_markets

    r = forecast_markets("mix", skus=7, days=0.08, eval_days=0.04, settings=Settings(lstm=False))
    assert list(r["families"]) == list(FAMILIES)
    for fam, got in r["families"].items():
        if got.get("no_sales"):  # a long-tail SKU may sell nothing in so short a run
            assert fam == "longtail" and got["wape_ratio_oracle"] is None
            continue
        assert "wape_ensemble" in got and "wape_moving_average" in got, fam
        assert got["wape_ratio_oracle"] == r["wape_ratio_oracle"][fam]


def test_family_market_prices_see_common_random_numbers() -> None:
    # the same seed at two price paths: the same views in every SKU-window, and a SKU priced
    # lower sells at least as many orders and units from them (coupled exactly, whatever the
    # prices did before: a shared stream drifts once prices differ)
    rng = np.random.default_rng(0)
    high = FamilyMarket(market="mix", n_skus=21, seed=3, start_ms=T0, horizon_ms=DAY)
    low = FamilyMarket(market="mix", n_skus=21, seed=3, start_ms=T0, horizon_ms=DAY)
    stock = {s for s, t in high.truths.items() if t.stock is not None}
    for k in range(120):
        t0 = T0 + k * 60_000
        for s, t in high.truths.items():
            p = float(rng.uniform(t.min_price, t.max_price))
            high.apply_price(s, p, t0)
            low.apply_price(s, round(p * float(rng.uniform(0.7, 1.0)), 2), t0)
        a, b = high.step_counts(t0, t0 + 60_000), low.step_counts(t0, t0 + 60_000)
        for s in a:
            assert a[s][3] == b[s][3], (k, s)  # views
            if s not in stock:
                assert b[s][0] >= a[s][0] and b[s][1] >= a[s][1], (k, s, a[s], b[s])
                assert b[s][4] >= a[s][4], (k, s)  # carts
    assert sum(r["units"] for r in low.realised().values()) > sum(
        r["units"] for r in high.realised().values()
    )
