"""The pooled River regressor learns any tick a partition can produce without a singular matrix."""

from __future__ import annotations

import base64
import math
import pickle

import numpy as np
import pytest
from river import linear_model

from repricer.models import river_model
from repricer.models.base import SkuView
from repricer.models.river_model import RiverDemand, StableBayesianLinearRegression

T0 = 1_767_225_600_000


def _same(n: int) -> list[SkuView]:
    """n identical first-window SKUs: every feature column constant, zero price change."""
    return [
        SkuView(sku=f"S{i}", price=10.0, ref_price=10.0, cost=5.0, next_window_start=T0)
        for i in range(n)
    ]


def test_a_degenerate_100k_row_tick_is_learned() -> None:
    """100k rows spanning one direction of nine: River's inverse of the precision raised
    ``LinAlgError: Singular matrix`` (the prior had decayed to 0.999**100_000)."""
    views = _same(100_000)
    m = RiverDemand()
    m.learn_pooled(views, np.full(len(views), 10.0), np.arange(len(views)) % 3)
    assert m.n_learned == 100_000
    reg = m.pooled
    assert isinstance(reg, StableBayesianLinearRegression)
    assert np.isfinite(reg._ss_inv_arr).all()
    got = m.forecast(views[:2], np.array([[9.0, 10.0, 11.0]] * 2))
    assert np.isfinite(got).all()
    # it learned the level of the rows it saw: mean of log1p(0, 1, 2)
    want = np.expm1(np.mean(np.log1p([0.0, 1.0, 2.0])))
    assert got[0, 1] == pytest.approx(want, rel=1e-3)
    # and the next tick (other hour, real variety) still learns and forecasts
    rng = np.random.default_rng(1)
    more = [
        SkuView(
            sku=f"S{i}",
            price=float(p),
            ref_price=10.0,
            cost=5.0,
            next_window_start=T0 + 3_600_000,
            units_ewma=float(u),
            last_units=float(u),
        )
        for i, (p, u) in enumerate(zip(rng.uniform(8, 12, 500), rng.poisson(2, 500), strict=True))
    ]
    m.learn_pooled(more, np.array([v.price * 1.02 for v in more]), rng.poisson(2, 500))
    assert np.isfinite(m.forecast(more, np.array([[v.price] for v in more]))).all()


def test_extreme_finite_values_are_learned_or_skipped() -> None:
    """Huge units and prices: rows whose features overflow are skipped, the rest learned."""
    m = RiverDemand()
    big = [
        SkuView(
            sku="a",
            price=1e300,
            ref_price=1e-300,  # log(price / ref) overflows: skipped
            cost=1.0,
            next_window_start=T0,
            units_ewma=1e308,
            views_ewma=1e308,
            last_units=1e308,
            last_views=1e308,
        ),
        SkuView(
            sku="b",
            price=1e150,
            ref_price=1e-150,
            cost=1.0,
            next_window_start=T0,
            units_ewma=1e308,
            views_ewma=1e308,
            last_units=1e308,
            last_views=1e308,
        ),
    ] * 20_000
    m.learn_pooled(big, np.array([1e-300, 1e300] * 20_000), np.full(len(big), 1e308))
    assert m.n_learned == 20_000
    assert np.isfinite(m.pooled._ss_inv_arr).all()
    with np.errstate(invalid="ignore"):
        got = m.forecast(big[:2], np.array([[1e300], [1e150]]))
    assert math.isnan(got[0, 0])  # its features are not finite: no forecast, not an error
    assert math.isfinite(got[1, 0])


def test_a_failed_update_leaves_the_model_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    m = RiverDemand()
    views = _same(50)
    m.learn_pooled(views, np.full(50, 11.0), np.ones(50))
    before = m.snapshot()

    def fail(a: np.ndarray) -> np.ndarray:
        raise np.linalg.LinAlgError("boom")

    monkeypatch.setattr(river_model, "_spd_inverse", fail)
    with pytest.raises(np.linalg.LinAlgError):
        m.learn_pooled(views, np.full(50, 9.0), np.full(50, 5.0))
    assert m.snapshot() == before


def test_a_snapshot_of_rivers_own_class_is_restored_in_the_stable_form() -> None:
    """Snapshots written before the stable form hold River's class: restored, they predict the
    same and then learn what would make River's own update fail."""
    old = linear_model.BayesianLinearRegression(alpha=1.0, beta=2.0, smoothing=0.999)
    rng = np.random.default_rng(3)
    for _ in range(300):
        x = {f: float(v) for f, v in zip("abc", rng.normal(0, 1, 3), strict=True)}
        old.learn_one(x, x["a"] - 2 * x["b"])
    blob = base64.b64encode(pickle.dumps((old, 300))).decode()
    m = RiverDemand()
    m.restore(blob)
    assert isinstance(m.pooled, StableBayesianLinearRegression)
    assert m.pooled._prior_w == pytest.approx(0.999**300)
    x = {"a": 0.3, "b": -1.2, "c": 2.0}
    assert m.pooled.predict_one(x) == old.predict_one(x)
    m.learn_pooled(_same(100_000), np.full(100_000, 10.0), np.ones(100_000))
    assert math.isfinite(m.pooled.predict_one(x))
