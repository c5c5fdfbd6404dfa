"""The sparse-SKU price: expected profit over the elasticity posterior, sure to beat the
catalogue price by more than the pooled mean's uncertainty, always within the bounds."""

from __future__ import annotations

import numpy as np

from repricer.models.expected_price import expected_gain, expected_price, steer
from repricer.models.pricing import optimal_price

COST, REF, LO, HI = 10.0, 20.0, 10.5, 40.0


def _price(m: float, s: float, shared: float, z: float, n: int = 1) -> np.ndarray:
    box = tuple(np.full(n, v) for v in (COST, REF, LO, HI))
    one = np.full(n, 1.0)
    return expected_price(m * one, s * one, shared * one, box, "profit", z * one, 0.002)[0]


def test_expected_gain_is_the_mean_over_the_posterior() -> None:
    # the log-normal moment against a brute-force average over e ~ N(-2.4, 0.6²)
    rng = np.random.default_rng(1)
    e = rng.normal(-2.4, 0.6, 400_000)
    for p in (12.0, 17.0, 20.0, 31.0):
        brute = np.mean((p / REF) ** e * (p - COST) / (REF - COST)) - 1.0
        exact = expected_gain(
            np.array([p]),
            np.array([REF]),
            np.array([-2.4]),
            np.array([0.6]),
            np.array([COST]),
            "profit",
        )[0]
        assert abs(exact - brute) < 2e-3


def test_a_confident_posterior_goes_to_the_optimum() -> None:
    for m in (-1.6, -2.4, -3.0):
        plug = COST * m / (m + 1.0)
        p = _price(m, 0.02, 0.01, 1.0)[0]
        assert abs(p / plug - 1.0) < 0.02, (m, p, plug)


def test_a_wide_posterior_prices_between_the_optimum_and_the_catalogue_price() -> None:
    plug = COST * -3.0 / (-3.0 + 1.0)  # 15: below the catalogue price
    shares = (0.1, 0.2, 0.3, 0.5, 1.0)
    prices = [_price(-3.0, 0.75, shared, 1.0)[0] for shared in shares]
    assert all(plug - 1e-9 <= p <= REF + 1e-9 for p in prices)
    # the less the pooled mean is known, the closer to the catalogue price (the last: holds)
    assert prices == sorted(prices)
    assert plug < prices[2] < REF
    assert prices[-1] == REF


def test_without_the_safeguard_the_price_maximises_the_average_over_the_posterior() -> None:
    # the spread of e makes (p/ref)**e convex in log p: the expected optimum lies a little
    # beyond the plug-in one (as the prior oracle's cost x 1.69 lies beyond the mean's 1.71)
    rng = np.random.default_rng(2)
    e = rng.normal(-2.4, 0.75, 200_000)
    grid = np.geomspace(LO, HI, 2001)
    brute = grid[np.argmax([np.mean((p / REF) ** e * (p - COST)) for p in grid])]
    p = _price(-2.4, 0.75, 0.0, 0.0)[0]
    assert abs(p / brute - 1.0) < 0.02
    assert p < COST * -2.4 / (-2.4 + 1.0)


def test_the_catalogue_price_is_kept_where_nothing_is_sure() -> None:
    # the pooled mean is the catalogue price's own optimum: no move pays in expectation
    assert _price(-2.0, 0.75, 0.0, 1.0)[0] == REF
    # a mean that favours a move, known to +-0.6: not sure enough
    assert _price(-2.4, 0.75, 0.6, 1.0)[0] == REF
    # without the safeguard (z = 0) the same posterior moves to its expected optimum
    assert _price(-2.4, 0.75, 0.6, 0.0)[0] < REF


def test_never_outside_the_bounds() -> None:
    rng = np.random.default_rng(7)
    n = 2000
    cost = rng.uniform(1.0, 50.0, n)
    lo = cost * rng.uniform(1.0, 1.5, n)
    hi = lo * rng.uniform(1.0, 5.0, n)
    ref = rng.uniform(lo, hi)
    m, s = rng.uniform(-5.0, 0.5, n), rng.uniform(0.0, 2.0, n)
    shared, z = rng.uniform(0.0, 1.0, n), rng.uniform(0.0, 2.0, n)
    for objective in ("profit", "revenue"):
        p, _ = expected_price(m, s, shared, (cost, ref, lo, hi), objective, z, 0.002)
        assert np.all(np.isfinite(p))
        assert np.all(p >= lo - 1e-9) and np.all(p <= hi + 1e-9)


def test_steer_leaves_explorers_alone_and_sends_the_unsure_back() -> None:
    n = 3
    cost, lo, hi = np.full(n, COST), np.full(n, LO), np.full(n, HI)
    target = np.full(n, 30.0)
    scale = np.array([1.0, 0.5, 0.0])  # explores fully, partly, not at all
    post = (np.full(n, -2.3), np.full(n, 0.75), np.full(n, 0.6), np.zeros(n))
    got, back = steer(target, [REF] * n, post, (cost, lo, hi), scale, ("profit", 1.0, 0.002))
    assert got.tolist() == [30.0, REF, REF]
    assert back.tolist() == [False, True, True]
    sure = (np.full(n, -3.0), np.full(n, 0.05), np.full(n, 0.01), np.zeros(n))
    got, back = steer(target, [22.0] * n, sure, (cost, lo, hi), scale, ("profit", 1.0, 0.002))
    assert got[0] == 30.0 and got[1] == 30.0  # partial explorer keeps its draw
    assert (
        abs(got[2] - float(optimal_price(np.array([-3.0]), cost[:1], lo[:1], hi[:1], "profit")[0]))
        < 0.3
    )
    assert back.tolist() == [False, False, True]


def test_a_sparse_sku_that_bends_prices_by_its_curved_response() -> None:
    # linear-like demand: elasticity -1.5 at the catalogue price, curvature -6 (steeper above
    # it). The constant-elasticity rule sees e = -1.5 and prices at the ceiling's side; the
    # curved expectation stops where the local elasticity makes the margin pay, and that price
    # earns more under the curved truth than the one the constant rule picks.
    box = (np.array([COST]), np.array([REF]), np.array([LO]), np.array([HI]))
    m, s, shared, k = (np.array([v]) for v in (-1.5, 0.05, 0.01, -6.0))
    flat, _ = expected_price(m, s, shared, box, "profit", np.zeros(1), 0.002)
    bent, _ = expected_price(m, s, shared, box, "profit", np.zeros(1), 0.002, (k, box[1]))
    grid = np.geomspace(LO, HI, 4001)
    x = np.log(grid / REF)
    truth = (grid - COST) * np.exp(-1.5 * x - 6.0 * x * x / 2.0)
    best = grid[np.argmax(truth)]
    assert abs(bent[0] / best - 1.0) < 0.02 < abs(flat[0] / best - 1.0)

    def value(p: float) -> float:
        xp = np.log(p / REF)
        return float((p - COST) * np.exp(-1.5 * xp - 3.0 * xp * xp))

    assert value(bent[0]) > value(flat[0])
    # with k = 0 the curved rule is the constant-elasticity one
    zero = (np.zeros(1), box[1])
    assert expected_price(m, s, shared, box, "profit", np.zeros(1), 0.002, zero)[0] == flat
