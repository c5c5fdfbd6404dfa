"""Finite stock: the policy prices so the stock on hand lasts the stated horizon counted from
when it arrived (a countdown, restarted by a restock), not a horizon that recedes forever."""

from __future__ import annotations

import math

import numpy as np

from repricer.models import stock
from repricer.models.base import SkuView
from repricer.models.baselines import MovingAverage
from repricer.models.decider import ModelDecider
from repricer.models.guardrails import Bounds

WINDOW_MS = 60_000


def _view(t_w: int, left: float | None, state: dict | None = None) -> SkuView:
    return SkuView(
        sku="A",
        price=20.0,
        ref_price=20.0,
        cost=10.0,
        next_window_start=t_w * WINDOW_MS,
        units_ewma=1.0,
        views_ewma=20.0,
        windows_seen=10,
        stock=left,
        state={} if state is None else state,
    )


def test_the_clock_counts_down_from_arrival_and_restarts_on_a_restock() -> None:
    state: dict = {}
    assert stock.windows_left([_view(0, 100.0, state)], 1000.0, WINDOW_MS)[0] == 1000.0
    stock.mark(_view(5, 100.0, state), 20.0, 1.0)  # first label with known stock: the clock starts
    for w, left in ((6, 90.0), (300, 40.0)):
        stock.mark(_view(w, left, state), 20.0, 1.0)
    got = stock.windows_left([_view(405, 40.0, state)], 1000.0, WINDOW_MS)[0]
    assert got == 600.0  # 400 windows since the stock arrived at window 5
    # past the horizon the clock keeps one window: never zero or negative
    assert stock.windows_left([_view(5000, 40.0, state)], 1000.0, WINDOW_MS)[0] == 1.0
    stock.mark(_view(5001, 140.0, state), 20.0, 1.0)  # stock went up: a restock restarts the clock
    assert stock.windows_left([_view(5011, 140.0, state)], 1000.0, WINDOW_MS)[0] == 990.0
    stock.mark(_view(5012, None, state), 20.0, 1.0)  # stock no longer tracked: no clock
    assert stock.KEY not in state


def _decider(horizon: float) -> ModelDecider:
    # the level is the SKU's moving average of units (1 a window): what the stock must cover
    return ModelDecider(
        members=[MovingAverage()], baselines=[], restock_windows=horizon, thompson=0.0
    )


def _bounds() -> list[Bounds]:
    return [Bounds(cost=10.0, min_price=5.0, max_price=80.0)]


def _target(d: ModelDecider, view: SkuView) -> float:
    """The price the stock rule aims at (before the step limit): ``d.max_step`` set wide."""
    d.max_step = 10.0
    return d.propose([view], _bounds(), 0.0)[0].price


def test_scarce_stock_is_priced_to_last_until_its_horizon_ends() -> None:
    d = _decider(1440.0)
    state: dict = {}
    stock.mark(_view(0, 300.0, state), 20.0, 1.0)
    # 300 units, 1 a window at the price in force (20), elasticity -2 (the prior): covering
    # 1430 windows needs 20·(300/1430)^(-1/2), covering the 440 left at window 1000 less
    early = _target(d, _view(10, 300.0, state))
    late = _target(d, _view(1000, 300.0, state))
    unlimited = _target(d, _view(1000, None, {}))
    assert np.isclose(early, 20.0 * (300.0 / 1430.0) ** -0.5)
    assert np.isclose(late, 20.0 * (300.0 / 440.0) ** -0.5)
    assert unlimited == 20.0 < late < early  # the profit optimum c·e/(e+1) without stock


def test_the_price_after_the_horizon_is_the_profit_optimum_not_a_fire_sale() -> None:
    d = _decider(1440.0)
    state: dict = {}
    stock.mark(_view(0, 10_000.0, state), 20.0, 1.0)
    past = _target(d, _view(100_000, 10_000.0, state))
    unlimited = _target(d, _view(100_000, None, {}))
    assert np.isclose(past, unlimited)


def test_unlimited_stock_is_unchanged_by_the_stock_rule() -> None:
    views = [_view(10, None), _view(10, None)]
    with_rule = _decider(1440.0).propose(views, _bounds() * 2, 0.0)
    without = _decider(0.0).propose(views, _bounds() * 2, 0.0)
    assert [p.price for p in with_rule] == [p.price for p in without]


def test_the_demand_to_cover_is_the_sales_rate_since_arrival_at_the_price_in_force() -> None:
    state: dict = {}
    rng = np.random.default_rng(0)
    # two days at 16 then 24: 2 units a window on average at a geometric mean price of ~19.6
    for w in range(2880):
        stock.mark(_view(w, 5000.0 - w, state), 16.0 if w % 2 else 24.0, float(rng.poisson(2.0)))
    e = np.array([-2.0])
    level = np.array([9.0])  # the next window's forecast (a busy hour): not what is covered
    got = stock.demand_per_window([_view(2880, 2120.0, state)], e, level)[0]
    assert abs(got - 2.0 * (20.0 / math.sqrt(16.0 * 24.0)) ** -2.0) < 0.15
    fresh: dict = {}
    stock.mark(_view(0, 100.0, fresh), 20.0, 1.0)  # too few labels yet: the forecast
    assert stock.demand_per_window([_view(1, 99.0, fresh)], e, level)[0] == 9.0
