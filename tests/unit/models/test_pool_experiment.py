"""The pool's experiment: sparse SKUs move their prices by ±delta within the guardrails while
the pool's mean elasticity is unsure, only moving prices inform it, and the experiment stops
once the pool is sure."""

from __future__ import annotations

import math

import numpy as np

from repricer.models.base import SkuView
from repricer.models.decider import ModelDecider
from repricer.models.elasticity import Elasticity, PooledPrior
from repricer.models.guardrails import Bounds
from repricer.models.pool_experiment import PoolExperiment, pool_mean
from repricer.models.river_model import RiverDemand

COST, REF = 10.0, 20.0
TRUE_E = -2.4


def _views(n: int, price: float = REF, start: int = 0) -> list[SkuView]:
    return [
        SkuView(
            sku=f"S{i}",
            price=price,
            ref_price=REF,
            cost=COST,
            next_window_start=start,
            views_ewma=20.0,
        )
        for i in range(n)
    ]


def _learn(el: Elasticity, vs: list[SkuView], spread: float, labels: int, seed: int = 3) -> None:
    """``labels`` windows of Poisson sales at 1 unit per window at the reference price, prices
    ``±spread`` in log around it (0: all at the reference)."""
    rng = np.random.default_rng(seed)
    for _ in range(labels):
        p = REF * np.exp(spread * rng.choice([-1.0, 1.0], len(vs)))
        y = rng.poisson(1.0 * (p / REF) ** TRUE_E).astype(float)
        el.learn_local_batch(vs, p, y)


def _pool(el: Elasticity, vs: list[SkuView]) -> tuple[float, float]:
    return pool_mean(*el.own_e(vs), el.prior.mean_e, el.prior.sd_e)


def test_the_pool_learns_its_mean_elasticity_only_from_prices_that_moved() -> None:
    still, moved = Elasticity(prior=PooledPrior()), Elasticity(prior=PooledPrior())
    a, b = _views(100), _views(100)
    _learn(still, a, 0.0, 300)
    _learn(moved, b, 0.15, 300)
    info_still, info_moved = still.own_e(a)[0].sum(), moved.own_e(b)[0].sum()
    assert info_still < 1e-6  # 30,000 units at one price: nothing on the elasticity
    # ±0.15 in log price: about units x 0.15² of information
    assert 0.5 * 300 * 0.15**2 * 100 < info_moved < 2.0 * 300 * 0.15**2 * 100
    (mu_still, sd_still), (mu_moved, sd_moved) = _pool(still, a), _pool(moved, b)
    assert mu_still == still.prior.mean_e and sd_still == still.prior.sd_e  # the prior alone
    assert sd_moved < 0.2 < sd_still
    assert abs(mu_moved - TRUE_E) < 3 * sd_moved  # and it finds the family's mean


def test_the_experiment_runs_while_the_pool_is_unsure_and_it_pays() -> None:
    exp = PoolExperiment()
    # 140 SKUs x 4 units a day: unsure at the prior's sd, sure once the sd is small
    assert exp.running(-2.4, 0.75, 560.0)
    assert not exp.running(-2.4, 0.1, 560.0)
    wanted = exp.wanted_sd(-2.4, 560.0)
    assert exp.running(-2.4, wanted * 1.01, 560.0) and not exp.running(-2.4, wanted * 0.99, 560.0)
    # the more the pool sells, the surer it must be before stopping (learning is cheap)
    assert exp.wanted_sd(-2.4, 5600.0) < wanted
    # seven SKUs selling 4 a day would take far beyond the horizon to learn: never start
    assert not exp.running(-2.4, 0.75, 28.0)
    assert not PoolExperiment(horizon_days=0).running(-2.4, 0.75, 560.0)


def _decide(
    d: ModelDecider, vs: list[SkuView], bounds: list[Bounds], per_day: float, labels: int = 100
) -> list:
    for v in vs:
        v.state.setdefault("cd", [0.0, 0.0, float(labels), per_day / 1440.0 * labels, 0.0])
    return d.propose(vs, bounds, 0.05)


def test_sparse_skus_experiment_within_the_guardrails_and_never_explore() -> None:
    n = 200
    # tight bounds on half the SKUs: floor and ceiling 5% around the price, inside ±delta
    bounds = [
        Bounds(cost=COST, min_price=19.0, max_price=21.0)
        if i % 2
        else Bounds(cost=COST, min_price=10.5, max_price=40.0)
        for i in range(n)
    ]
    d = ModelDecider(members=[RiverDemand()])
    d.elasticity.prior = PooledPrior(mean_e=-2.0, sd_e=0.75)
    moved = []
    for block in range(8):
        start = block * d.pool.block_ms
        for price in (REF, 19.0, 21.0):  # within every SKU's bounds
            vs = _views(n, price=price, start=start)
            for v, b, p in zip(vs, bounds, _decide(d, vs, bounds, 2.0), strict=True):
                floor = b.floor(0.05)
                assert floor - 1e-9 <= p.price <= b.max_price + 1e-9
                assert abs(p.price / v.price - 1.0) <= d.max_step + 1e-9
                assert "exploration" not in p.reasons
                if p.price != v.price and v.price == REF:
                    assert "pool_experiment" in p.reasons
                    moved.append(math.copysign(1.0, p.price - v.price))
    # from the catalogue price each SKU steps toward its sign: both ways, about as often
    assert len(moved) > n * 8 * 0.8
    assert 0.4 < moved.count(1.0) / len(moved) < 0.6
    # a SKU's sign holds within a block and is drawn anew in each
    first = [p.price for p in _decide(d, _views(n, start=0), bounds, 2.0)]
    again = [p.price for p in _decide(d, _views(n, start=d.pool.block_ms - 1), bounds, 2.0)]
    later = [p.price for p in _decide(d, _views(n, start=d.pool.block_ms), bounds, 2.0)]
    assert first == again and first != later
    # without the experiment, the same SKUs hold their catalogue price (the pool knows nothing)
    off = ModelDecider(members=[RiverDemand()], pool=PoolExperiment(horizon_days=0))
    off.elasticity.prior = PooledPrior(mean_e=-2.0, sd_e=0.75)
    assert all(p.price == REF for p in _decide(off, _views(n), bounds, 2.0))


def test_the_experiment_stops_when_the_pool_is_sure_and_the_tail_moves_to_its_multiple() -> None:
    n = 200
    bounds = [Bounds(cost=COST, min_price=10.5, max_price=40.0)] * n
    d = ModelDecider(members=[RiverDemand()])
    d.elasticity.prior = PooledPrior(mean_e=-2.0, sd_e=0.75)
    vs = _views(n)
    _decide(d, vs, bounds, 2.0)
    _learn(d.elasticity, vs, 0.15, 60)  # the experiment's evidence: the pool is now sure
    for v in vs:  # a SKU still sells 2 units a day (the labels above are the pool's, in bulk)
        v.state["cd"] = [0.0, 0.0, 100.0, 2.0 / 1440.0 * 100, 0.0]
    mu, sd = _pool(d.elasticity, vs)
    assert sd < d.pool.wanted_sd(mu, 2.0 * n) and abs(mu - TRUE_E) < 3 * sd
    props = d.propose(vs, bounds, 0.05)
    assert not any({"pool_experiment", "exploration"} & set(p.reasons) for p in props)
    # the SKUs head for the family's multiple, below the catalogue price (optimum cost x 1.71),
    # where each SKU's own evidence does not say otherwise
    prices = [p.price for p in props]
    assert sum(p < REF for p in prices) > 0.7 * n
    assert sum(p > REF for p in prices) < 0.1 * n


def test_an_experimenting_sku_near_its_target_keeps_its_price() -> None:
    # a SKU whose price already sits on its block's side, within half the offset of its
    # target, holds (it teaches the pool about as much); one further away walks on toward it
    n = 200
    bounds = [Bounds(cost=COST, min_price=10.5, max_price=40.0)] * n
    d = ModelDecider(members=[RiverDemand()])
    d.elasticity.prior = PooledPrior(mean_e=-2.0, sd_e=0.75)
    signs = d.pool.signs(_views(n)).tolist()
    delta = d.pool.delta

    def decide(offset: float) -> list[tuple[float, float, float, tuple[str, ...]]]:
        vs = _views(n)
        for v, s in zip(vs, signs, strict=True):
            v.price = round(REF * math.exp(offset * delta * s), 2)
        props = _decide(d, vs, bounds, 2.0)
        return [(s, v.price, p.price, p.reasons) for s, v, p in zip(signs, vs, props, strict=True)]

    for s, cur, new, reasons in decide(0.8):  # 0.2·delta short of the target: stays
        assert new == cur and "hold" in reasons, (s, cur, new, reasons)
    for offset in (0.4, -0.8):  # 0.6·delta short, or the other side: steps toward the target
        for s, cur, new, reasons in decide(offset):
            assert (new - cur) * s > 0 and "pool_experiment" in reasons, (s, cur, new, reasons)
