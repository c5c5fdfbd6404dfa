"""The curvature of the demand response: learned where demand bends, ~0 where it does not, and
the candidate-price choice that reduces to the markup rule when it is 0."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest

from repricer.models.base import SkuView
from repricer.models.bend_prior import SD_K_CAP, SD_K_FLOOR, bend_evidence
from repricer.models.curvature import best_price, thompson_draw
from repricer.models.decider import ModelDecider
from repricer.models.elasticity import Elasticity, PooledPrior, Response
from repricer.models.guardrails import Bounds
from repricer.models.pricing import objective_ratio, optimal_price
from repricer.models.river_model import RiverDemand

REF = 20.0


def _view(sku: str, views_ewma: float = 400.0, price: float = REF) -> SkuView:
    return SkuView(
        sku=sku, price=price, ref_price=REF, cost=10.0, next_window_start=0, views_ewma=views_ewma
    )


def _learn(
    shape: Callable[[np.ndarray], np.ndarray],
    n: int,
    windows: int,
    seed: int = 0,
    prior: PooledPrior | None = None,
    learn_spread: bool = True,
) -> Response:
    """Poisson sales of ``n`` SKUs at prices spread ±30% around the reference; ``shape(r)`` is
    the demand at ``r = p / ref`` relative to the reference (1 at r = 1). The change watch is
    off: at 20 units a window over 1500 windows its rare false alarm (tests/unit/models/
    test_change_watch.py) would drop a SKU's evidence at a random time, and this is about what
    the evidence says."""
    rng = np.random.default_rng(seed)
    el = Elasticity(prior=prior, detect=0.0, learn_spread=learn_spread)
    views = [_view(f"S{i}") for i in range(n)]
    for _ in range(windows):
        prices = REF * np.exp(rng.uniform(-0.3, 0.3, n))
        lam = 400.0 * math.exp(-2.0) * shape(prices / REF)
        units = rng.poisson(lam).astype(np.float64)
        el.learn_pooled(views, prices, units)
        el.learn_local_batch(views, prices, units)
    return el.response(views)


def _truth(shape: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
    """(e, k) the model converges to on ``shape``: the Poisson maximum-likelihood fit of
    ``log q = a + e·x + k·x²/2`` over the sampled range (x uniform on ±0.3). A shape that is not
    quadratic in x (linear, logit) has no single true ``k``; this is the best one."""
    x = np.linspace(-0.3, 0.3, 2001)
    mu = shape(np.exp(x))
    z = np.stack([np.ones_like(x), x, x * x / 2.0], axis=1)
    theta = np.zeros(3)
    for _ in range(50):
        lam = np.exp(z @ theta)
        theta += np.linalg.solve((z * lam[:, None]).T @ z, z.T @ (mu - lam))
    return float(theta[1]), float(theta[2])


def _linear(r: np.ndarray) -> np.ndarray:  # choke price 1.5 x ref: e = -2, k = -6 at ref
    return np.maximum(1.5 - r, 0.0) / 0.5


def _logit(r: np.ndarray) -> np.ndarray:  # logit share, beta 5, competitor at the ref price
    def share(s: np.ndarray) -> np.ndarray:
        ours = np.exp(4.0 - 5.0 * s)
        return ours / (1.0 + ours + math.exp(-1.0))

    return share(r) / share(np.ones(1))


@pytest.mark.parametrize("shape", [_linear, _logit], ids=["linear", "logit"])
def test_curvature_is_recovered_where_demand_bends(
    shape: Callable[[np.ndarray], np.ndarray],
) -> None:
    _, k_true = _truth(shape)
    assert abs(k_true) > 1.5  # the shapes do bend
    r = _learn(shape, n=4, windows=1500)
    assert np.all(r.k_sd < 0.5)  # narrowed from the prior's 1.0
    assert np.all(np.abs(r.k - k_true) < 4 * r.k_sd + 0.1 * abs(k_true)), (r.k, r.k_sd, k_true)
    assert np.all(np.sign(r.k) == np.sign(k_true))
    # the price it chooses earns the true optimum's profit, and more than a constant-elasticity
    # fit to the same data (its curvature pinned at 0) earns
    flat = _learn(shape, n=4, windows=1500, prior=PooledPrior(sd_k=1e-4), learn_spread=False)
    assert np.all(np.abs(flat.k) < 1e-6)
    lo, hi = np.full(4, REF * math.exp(-0.3)), np.full(4, REF * math.exp(0.3))
    cost, anchor = np.full(4, 10.0), np.full(4, REF)
    grid = np.linspace(lo[0], hi[0], 20_001)
    truth = (grid - 10.0) * shape(grid / REF)
    curved = best_price(r.e, r.k, anchor, cost, lo, hi, lo, hi, "profit")
    constant = best_price(flat.e, flat.k, anchor, cost, lo, hi, lo, hi, "profit")
    earned = (curved - 10.0) * shape(curved / REF) / truth.max()
    earned_flat = (constant - 10.0) * shape(constant / REF) / truth.max()
    assert np.all(earned > 0.99), earned
    assert np.all(earned > earned_flat) and earned.mean() > earned_flat.mean() + 0.005, (
        earned,
        earned_flat,
    )


def test_curvature_stays_near_zero_on_constant_elasticity() -> None:
    r = _learn(lambda x: x**-2.5, n=6, windows=1500, seed=3)
    assert np.all(np.abs(r.k) < 3 * r.k_sd), (r.k, r.k_sd)
    assert np.all(np.abs(r.k) < 0.5)
    assert np.all(np.abs(r.e + 2.5) < 0.1), r.e


def _bounds(n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    cost = rng.uniform(5.0, 50.0, n)
    lo = cost * rng.uniform(1.0, 1.3, n)
    hi = cost * rng.uniform(1.5, 4.0, n)
    cur = np.exp(rng.uniform(np.log(lo * 0.8), np.log(hi * 1.2)))  # some outside the range
    return cost, lo, hi, cur


def test_with_no_curvature_the_choice_is_the_markup_rule() -> None:
    rng = np.random.default_rng(5)
    n = 4000
    cost, lo, hi, cur = _bounds(n, rng)
    e = rng.uniform(-5.0, -0.5, n)
    anchor = cur * rng.uniform(0.7, 1.3, n)
    down, up = cur * 0.95, cur * 1.05
    for objective in ("profit", "revenue"):
        got = best_price(e, np.zeros(n), anchor, cost, lo, hi, down, up, objective)
        want = optimal_price(e, cost, lo, hi, objective)
        assert np.array_equal(got, want), objective  # bit for bit: today's choice
        assert np.array_equal(np.clip(got, down, up), np.clip(want, down, up))


def test_with_curvature_the_choice_is_the_best_reachable_price() -> None:
    rng = np.random.default_rng(6)
    n = 500
    cost, lo, hi, cur = _bounds(n, rng)
    cur = np.clip(cur, lo, hi)
    e, k = rng.uniform(-4.0, -1.2, n), rng.uniform(-8.0, 3.0, n)
    anchor = cur * rng.uniform(0.8, 1.2, n)
    down, up = cur * 0.9, cur * 1.1
    got = np.clip(best_price(e, k, anchor, cost, lo, hi, down, up, "profit"), down, up)
    low, high = np.maximum(lo, down), np.minimum(hi, up)
    fine = low[:, None] * (high / low)[:, None] ** np.linspace(0, 1, 2001)[None, :]
    xf, xc = np.log(fine / anchor[:, None]), np.log(cur / anchor)[:, None]
    ratio_k = np.exp(e[:, None] * (xf - xc) + k[:, None] * (xf**2 - xc**2) / 2) * (
        (fine - cost[:, None]) / (cur - cost)[:, None]
    )
    best = ratio_k.max(axis=1)
    mine = objective_ratio(got, cur, e, cost, "profit", k, anchor)
    assert np.all(mine >= best - 1e-4 * np.abs(best)), np.min(mine - best)
    # and the constant-elasticity price is not: curvature changes the choice
    ce = np.clip(optimal_price(e, cost, lo, hi, "profit"), down, up)
    assert np.mean(np.abs(ce / got - 1.0) > 0.01) > 0.2


def test_old_state_without_curvature_loads_with_k_at_its_prior() -> None:
    prior = PooledPrior(mean_a=-3.0, mean_e=-2.0, sd_a=1.5, sd_e=0.75, sd_k=0.8)
    el = Elasticity(prior=prior)
    old = _view("old")
    old.state["el"] = [40.0, -3.0, 2.5, -110.0, 6.0]  # saved before curvature existed
    mean, cov = el.posterior([old])
    # (a, e) as the two-parameter posterior computed it: k's prior is independent of them
    pa, pe = 1 / 1.5**2, 1 / 0.75**2
    j = np.array([[40.0 + pa, -3.0], [-3.0, 2.5 + pe]])
    h = np.array([-110.0 + pa * -3.0, 6.0 + pe * -2.0])
    assert mean[0] == pytest.approx(np.linalg.solve(j, h))
    inv = np.linalg.inv(j)
    assert cov[0] == pytest.approx([inv[0, 0], inv[0, 1], inv[1, 1]])
    r = el.response([old])
    assert r.k[0] == 0.0 and r.k_sd[0] == pytest.approx(0.8) and r.rho[0] == 0.0
    el.learn_local(old, 22.0, 3.0)
    assert len(old.state["ek"]) == 4 and len(old.state["el"]) == 5
    # a pooled prior saved before curvature existed restores with the default sd_k
    el2 = Elasticity()
    old_blob = {"mean_a": -3.1, "mean_e": -2.2, "sd_a": 1.5, "sd_e": 0.75, "dispersion": 1.3}
    el2.restore(json.dumps(old_blob | {"n": 9}))
    assert el2.prior.sd_k == PooledPrior().sd_k == SD_K_FLOOR and el2.prior.mean_e == -2.2
    # one saved with a spread but before it was learned keeps it, as the learned moment
    el2.restore(json.dumps(old_blob | {"n": 9, "sd_k": 0.8}))
    assert el2.prior.sd_k == 0.8 and el2.prior.var_k == pytest.approx(0.64)
    # and the learned spread persists with the pool
    el2.prior.var_k, el2.prior.sd_k = 0.3, math.sqrt(0.3)
    el3 = Elasticity()
    el3.restore(el2.snapshot())
    assert (el3.prior.var_k, el3.prior.sd_k) == (0.3, math.sqrt(0.3))


def test_learning_one_by_one_equals_the_batch_with_curvature() -> None:
    el = Elasticity()
    rng = np.random.default_rng(2)
    a = [_view(f"S{i}") for i in range(8)]
    b = [_view(f"S{i}") for i in range(8)]
    for _ in range(40):
        prices = REF * np.exp(rng.uniform(-0.3, 0.3, 8))
        units = rng.poisson(5.0, 8).astype(np.float64)
        el.learn_local_batch(a, prices, units)
        for v, p, u in zip(b, prices.tolist(), units.tolist(), strict=True):
            el.learn_local(v, p, u)
    assert [v.state for v in a] == [v.state for v in b]
    assert any(abs(x) > 0 for v in a for x in v.state["ek"])


def test_thompson_leaves_an_unbent_sku_at_the_constant_elasticity_draw() -> None:
    el = Elasticity()
    r = el.response([_view("fresh")] * 3)
    z = np.array([-1.0, 0.0, 2.0])
    e, k = thompson_draw(r, np.ones(3), z)
    assert np.array_equal(e, r.e + r.e_sd * z) and np.all(k == 0.0)


def test_decider_prices_a_bent_sku_off_the_markup_rule() -> None:
    """With a confident k < 0 (demand falls faster above the reference) the decider goes to
    the lower price the curved response says; with k = 0 it goes where the markup rule says."""
    bounds = [Bounds(cost=10.0, min_price=10.5, max_price=40.0)] * 5
    prices = {}
    for bend in (0.0, -6.0):
        d = ModelDecider(members=[RiverDemand()], thompson=0.0, max_step=0.5)
        d.elasticity.prior = PooledPrior(mean_e=-2.5, sd_e=0.01, sd_k=1.0)
        views = [_view(f"S{i}", price=24.0) for i in range(5)]
        for v in views:  # a likelihood that pins k at ``bend`` (information 1e6)
            v.state["ek"] = [0.0, 0.0, 1e6, 1e6 * bend]
        got = d.propose(views, bounds, 0.05)
        prices[bend] = [p.price for p in got]
        for p in got:  # the elasticity it reports is the response's at the new price
            assert p.elasticity == pytest.approx(-2.5 + bend * math.log(p.price / REF), abs=0.02)
    assert prices[0.0] == pytest.approx([10.0 * 2.5 / 1.5] * 5)  # c·e/(e+1) = 16.67
    # curved: the elasticity at p is -2.5 - 6·log(p/20), less elastic below the reference
    grid = np.linspace(12.0, 36.0, 240_001)
    x = np.log(grid / REF)
    best = grid[np.argmax((grid - 10.0) * np.exp(-2.5 * x - 6.0 * x * x / 2))]
    assert best > 18.0  # a higher optimum than the markup rule's 16.67
    assert prices[-6.0] == pytest.approx([best] * 5, abs=1e-3)


def _catalogue(
    shape: Callable[[np.ndarray], np.ndarray], prior: PooledPrior, windows: int = 600
) -> tuple[Elasticity, list[SkuView]]:
    """20 SKUs selling at prices spread ±20% around the reference (as exploring SKUs do)."""
    rng = np.random.default_rng(11)
    el = Elasticity(prior=prior, detect=0.0)
    views = [_view(f"S{i}", views_ewma=100.0) for i in range(20)]
    for _ in range(windows):
        prices = REF * np.exp(rng.uniform(-0.2, 0.2, 20))
        units = rng.poisson(100.0 * math.exp(-2.0) * shape(prices / REF)).astype(np.float64)
        el.learn_pooled(views, prices, units)
        el.learn_local_batch(views, prices, units)
    return el, views


def test_the_curvature_spread_sinks_on_constant_elasticity_and_grows_where_demand_bends() -> None:
    # started wide, a constant-elasticity catalogue pins the curvature at 0 ...
    wide = PooledPrior(sd_k=SD_K_CAP, var_k=SD_K_CAP**2)
    assert _catalogue(lambda r: r**-2.5, wide)[0].prior.sd_k == SD_K_FLOOR
    # ... and started pinned, a linear or logit one lets its SKUs bend as far as the cap allows
    for shape in (_linear, _logit):
        el, _ = _catalogue(shape, PooledPrior())
        assert PooledPrior().sd_k == SD_K_FLOOR
        assert el.prior.sd_k == SD_K_CAP, shape.__name__


def test_the_evidence_on_curvature_is_the_posterior_with_a_flat_prior_on_it() -> None:
    rng = np.random.default_rng(4)
    n = 50
    x = rng.uniform(-0.3, 0.3, (n, 40))
    w = rng.uniform(0.0, 5.0, (n, 40))
    z = np.stack([np.ones_like(x), x, x * x / 2.0], axis=2)
    info = np.einsum("nt,nti,ntj->nij", w, z, z)
    h = rng.normal(0.0, 10.0, (n, 3))
    el = np.stack([info[:, 0, 0], info[:, 0, 1], info[:, 1, 1], h[:, 0], h[:, 1]], axis=1)
    ek = np.stack([info[:, 0, 2], info[:, 1, 2], info[:, 2, 2], h[:, 2]], axis=1)
    k_hat, prec = bend_evidence(el, ek, (0.5, 2.0), (-3.0, -2.0))
    j = info + np.diag([0.5, 2.0, 0.0])[None]
    cov = np.linalg.inv(j)
    mean = np.einsum("nij,nj->ni", cov, h + np.array([0.5 * -3.0, 2.0 * -2.0, 0.0]))
    assert k_hat == pytest.approx(mean[:, 2], rel=1e-9, abs=1e-9)
    assert prec == pytest.approx(1.0 / cov[:, 2, 2], rel=1e-9)


def test_at_the_floor_the_decider_prices_by_the_markup_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A catalogue that does not bend prices as before curvature existed: each proposal equals
    the one the constant-elasticity rule (``optimal_price`` at the drawn elasticity) makes."""
    learned, views = _catalogue(lambda r: r**-2.5, PooledPrior(), windows=300)
    assert learned.prior.sd_k == SD_K_FLOOR
    assert any(abs(x) > 0 for v in views for x in v.state["ek"])  # evidence on k is there
    bounds = [Bounds(cost=10.0, min_price=10.5, max_price=40.0)] * 20
    for i, v in enumerate(views):
        v.price = 14.0 + i
    prices = {}
    for rule in ("curved", "markup"):
        if rule == "markup":
            monkeypatch.setattr(
                "repricer.models.decider.best_price",
                lambda e, k, anchor, cost, lo, hi, down, up, obj: optimal_price(
                    e, cost, lo, hi, obj
                ),
            )
        d = ModelDecider(members=[RiverDemand()])
        d.elasticity = learned
        prices[rule] = [p.price for p in d.propose(views, bounds, 0.05)]
    # the pinned curvature is ~1e-6, not 0: the same price to 1e-8 (published in cents)
    assert prices["curved"] == pytest.approx(prices["markup"], rel=1e-8)
    assert sum(p != v.price for p, v in zip(prices["curved"], views, strict=True)) > 5
