"""Per-SKU Poisson elasticity with a pooled prior, and the decider that prices from it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from repricer.models.base import SkuView
from repricer.models.decider import ModelDecider
from repricer.models.elasticity import Elasticity, PooledPrior
from repricer.models.guardrails import Bounds
from repricer.models.pricing import objective_ratio, optimal_price
from repricer.models.river_model import RiverDemand

QTY = np.array([1, 2, 3])
QTY_P = np.array([0.85, 0.10, 0.05])  # several units per order: over-dispersed counts


def _view(sku: str, views_ewma: float = 20.0, price: float = 20.0) -> SkuView:
    return SkuView(
        sku=sku, price=price, ref_price=20.0, cost=10.0, next_window_start=0, views_ewma=views_ewma
    )


def _simulate(
    el: Elasticity, truth: list[tuple[float, float]], windows: int, seed: int = 0
) -> list[SkuView]:
    """Windows of over-dispersed Poisson sales at prices wandering ±5% around a slow drift."""
    rng = np.random.default_rng(seed)
    views = [_view(f"S{i}") for i in range(len(truth))]
    a = np.array([t[0] for t in truth])
    e = np.array([t[1] for t in truth])
    for w in range(windows):
        prices = 20.0 * np.exp(rng.normal(0.0, 0.05, len(truth)) + 0.2 * math.sin(w / 300))
        lam = 20.0 * np.exp(a + e * np.log(prices / 20.0))
        orders = rng.poisson(lam / (QTY * QTY_P).sum())
        units = np.array([rng.choice(QTY, size=o, p=QTY_P).sum() for o in orders], dtype=float)
        el.learn_pooled(views, prices, units)
        for v, p, u in zip(views, prices, units, strict=True):
            el.learn_local(v, float(p), float(u))
    return views


def test_elasticity_converges_to_the_truth_on_poisson_counts() -> None:
    truth = [(-3.0, -3.2), (-2.5, -1.4), (-3.4, -2.2), (-2.8, -1.8)]
    el = Elasticity()
    views = _simulate(el, truth, windows=3000)
    mean, sd = el.elasticity(views)
    true_e = np.array([t[1] for t in truth])
    assert np.all(np.abs(mean - true_e) < 0.2), (mean, true_e)
    assert np.all(np.abs(mean - true_e) < 4 * sd), (mean, sd)  # the posterior is honest
    assert np.all(sd < 0.2)  # and it narrowed from the prior's 0.75
    assert 1.2 < el.prior.dispersion < 1.7  # 1.7/1.2 ≈ 1.42 for 1-3 units per order


def test_posterior_narrows_with_data_and_is_the_prior_without() -> None:
    el = Elasticity(prior=PooledPrior(mean_e=-2.5, sd_e=0.5))
    fresh = _view("new")
    m, sd = el.elasticity([fresh])
    assert m[0] == pytest.approx(-2.5) and sd[0] == pytest.approx(0.5)
    views = _simulate(el, [(-3.0, -1.5)], windows=1500)
    m2, sd2 = el.elasticity(views)
    assert sd2[0] < 0.5 * sd[0]
    assert abs(m2[0] + 1.5) < abs(-2.5 + 1.5)  # moved from the prior toward the truth


def test_pooled_prior_follows_the_population_and_new_skus_start_there() -> None:
    el = Elasticity()
    _simulate(el, [(-3.0, -2.8), (-2.5, -3.0), (-3.2, -2.6)], windows=1500)
    assert el.prior.mean_e < -2.3  # from the keystone prior -2.0 toward the SKUs' ≈ -2.8
    m, _ = el.elasticity([_view("brand-new")])
    assert m[0] == pytest.approx(el.prior.mean_e)


def test_state_is_five_floats_and_the_pool_round_trips() -> None:
    el = Elasticity()
    views = _simulate(el, [(-3.0, -2.0)], windows=50)
    st = views[0].state["el"]
    assert len(st) == 5 and all(isinstance(x, float) for x in st)
    assert len(json.dumps(views[0].state)) < 200
    el2 = Elasticity()
    el2.restore(el.snapshot())
    assert el2.prior == el.prior
    assert np.array_equal(el2.elasticity(views)[0], el.elasticity(views)[0])


def test_bad_labels_are_ignored() -> None:
    el = Elasticity()
    v = _view("A")
    for price, units in ((math.nan, 1.0), (20.0, math.inf), (-1.0, 2.0), (20.0, -3.0)):
        el.learn_local(v, price, units)
    assert "el" not in v.state
    el.learn_pooled([v, v], np.array([math.nan, 20.0]), np.array([1.0, math.nan]))
    assert el.prior == PooledPrior()


def test_optimal_price_is_the_markup_rule_inside_the_bounds() -> None:
    e = np.array([-2.0, -3.0, -1.5, -0.8, -1.2])
    cost = np.full(5, 10.0)
    lo, hi = np.full(5, 11.0), np.full(5, 40.0)
    p = optimal_price(e, cost, lo, hi, "profit")
    assert p[:3] == pytest.approx([20.0, 15.0, 30.0])
    assert p[3] == 40.0  # inelastic: the ceiling
    assert p[4] == 40.0  # optimum 60 is above the ceiling
    grid = np.linspace(11.0, 40.0, 2901)
    for i in range(5):
        best = grid[np.argmax((grid - 10.0) * grid ** e[i])]
        assert p[i] == pytest.approx(best, abs=0.02)
    assert np.all(
        optimal_price(np.array([-2.0, -0.5]), cost[:2], lo[:2], hi[:2], "revenue")
        == np.array([11.0, 40.0])
    )
    r = objective_ratio(np.array([20.0]), np.array([15.0]), np.array([-2.0]), cost[:1], "profit")
    assert r[0] == pytest.approx((10 / 400) / (5 / 225))


def _decider() -> ModelDecider:
    return ModelDecider(members=[RiverDemand()])


def test_decider_moves_toward_the_optimum_within_max_step_and_replays_identically() -> None:
    d = _decider()
    d.elasticity.prior = PooledPrior(mean_e=-3.0, sd_e=0.01)  # confident: optimum 15 (cost 10)
    views = [_view(f"S{i}", price=20.0) for i in range(20)]
    bounds = [Bounds(cost=10.0, min_price=10.5, max_price=40.0)] * 20
    a = d.propose(views, bounds, 0.05)
    b = d.propose(views, bounds, 0.05)
    assert [p.price for p in a] == [p.price for p in b]
    for p in a:
        assert p.price == pytest.approx(19.0)  # one max step (5%) down toward 15
        assert "profit_opt" in p.reasons and p.elasticity == pytest.approx(-3.0, abs=0.01)
    close = [_view(f"S{i}", price=15.6) for i in range(20)]
    assert all(p.price == pytest.approx(15.0, abs=0.1) for p in d.propose(close, bounds, 0.05))
    near = [_view(f"S{i}", price=15.1) for i in range(20)]  # a 0.7% move gains < min_gain
    assert all(p.price == 15.1 and "hold" in p.reasons for p in d.propose(near, bounds, 0.05))


def test_uncertain_elasticity_explores_by_thompson_sampling() -> None:
    d = _decider()
    d.elasticity.prior = PooledPrior(mean_e=-2.0, sd_e=0.75)  # optimum 20 = current, uncertain
    views = [_view(f"S{i}", price=20.0) for i in range(200)]
    bounds = [Bounds(cost=10.0, min_price=10.5, max_price=40.0)] * 200
    prices = np.array([p.price for p in d.propose(views, bounds, 0.05)])
    assert (prices > 20.0).sum() > 50 and (prices < 20.0).sum() > 50
    assert np.all(np.abs(prices / 20.0 - 1.0) <= 0.05 + 1e-9)
    d.thompson = 0.0  # certainty equivalence: at the optimum of the mean, nothing to learn
    assert all(p.price == 20.0 for p in d.propose(views, bounds, 0.05))


def test_unusable_level_forecast_falls_back() -> None:
    d = ModelDecider(members=[_NanModel()])
    (p,) = d.propose([_view("A")], [Bounds(cost=10.0, min_price=10.5, max_price=40.0)], 0.05)
    assert math.isnan(p.price) and p.reasons == ("model_unavailable",)


class _NanModel:
    name = "nan"
    version = "nan-1"

    def forecast(self, views: list[SkuView], prices: np.ndarray) -> np.ndarray:
        return np.full(np.shape(prices), np.nan)

    def learn(self, views: list[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        pass


def _stock_views(stock: float | None, n: int = 10) -> list[SkuView]:
    views = []
    for i in range(n):
        v = _view(f"S{i}", price=20.0)
        v.units_ewma, v.windows_seen, v.stock = 2.0, 100, stock
        v.state["err"] = {"river": 0.1}
        views.append(v)
    return views


def test_inventory_raises_prices_before_a_sell_out_and_clears_overstock() -> None:
    bounds = [Bounds(cost=10.0, min_price=10.5, max_price=40.0)] * 10
    d = _decider()
    d.elasticity.prior = PooledPrior(mean_e=-2.0, sd_e=0.01)  # optimum 20 = current price
    d.thompson = 0.0
    d.level = lambda views: np.full(len(views), 2.0)  # type: ignore[method-assign]
    assert all(p.price == 20.0 for p in d.propose(_stock_views(5.0), bounds, 0.05))  # stock off
    d.restock_windows = 100.0  # demand over the horizon at 20: 200 units
    low = d.propose(_stock_views(50.0), bounds, 0.05)
    assert all(p.price == pytest.approx(21.0) and "low_stock" in p.reasons for p in low)
    short = d.propose(_stock_views(150.0), bounds, 0.05)  # 150 < 200: still short
    assert all(p.price == pytest.approx(21.0) for p in short)
    enough = d.propose(_stock_views(400.0), bounds, 0.05)
    assert all(p.price == 20.0 and "hold" in p.reasons for p in enough)  # stock keeps its value
    d.salvage = 0.5  # left-over units are worth half their cost: clear them
    over = d.propose(_stock_views(400.0), bounds, 0.05)
    assert all(p.price == pytest.approx(19.0) and "overstock" in p.reasons for p in over)
    assert all(p.price == 20.0 for p in d.propose(_stock_views(None), bounds, 0.05))


def test_sold_out_windows_do_not_teach_elasticity() -> None:
    el = Elasticity()
    v = _view("A")
    v.stock = 2.0
    el.learn_local(v, 20.0, 2.0)  # sold what was left: demand may have been higher
    assert "el" not in v.state
    el.learn_local(v, 20.0, 1.0)
    assert "el" in v.state
