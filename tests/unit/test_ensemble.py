"""The ensemble concentrates on the member that is consistently closer to the mean."""

from __future__ import annotations

import math

import numpy as np

from repricer.models.base import SkuView
from repricer.models.ensemble import combine, update_errors


def _view() -> SkuView:
    return SkuView(sku="S", price=10.0, ref_price=10.0, cost=5.0, next_window_start=0)


def test_weights_move_to_the_better_member_despite_count_noise() -> None:
    rng = np.random.default_rng(0)
    v = _view()
    for _ in range(1500):
        mu = float(rng.uniform(1.0, 3.0))
        good, bad = mu, mu * 1.3
        update_errors(v, {"good": good, "bad": bad}, float(rng.poisson(mu)))
    out = combine([v], {"good": np.array([[1.0]]), "bad": np.array([[2.0]])})
    assert out[0, 0] < 1.1  # weight of "good" > 0.9


def test_fresh_sku_averages_and_missing_members_are_left_out() -> None:
    v = _view()
    out = combine([v], {"a": np.array([[1.0, 2.0]]), "b": np.array([[3.0, math.nan]])})
    np.testing.assert_allclose(out, [[2.0, 2.0]])
    out = combine([v], {"a": np.array([[math.nan]]), "b": np.array([[math.nan]])})
    assert math.isnan(out[0, 0])


def test_p50_is_the_median_below_a_skewed_mean() -> None:
    from repricer.models.ensemble import p50

    rng = np.random.default_rng(1)
    v = _view()
    for _ in range(3000):  # over-dispersed counts: 1-3 units per order, like the simulator
        units = float(rng.choice([1, 2, 3], rng.poisson(0.5), p=[0.85, 0.1, 0.05]).sum())
        update_errors(v, {"a": 0.6, "b": 0.6}, units)
    assert v.state["ens_d"][1] > 0  # the ensemble's own residuals were tracked
    np.testing.assert_array_equal(p50([v], np.array([0.6, 1.5])), [0.0, 1.0])
