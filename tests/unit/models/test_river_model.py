"""The pooled River regressor learns any tick a partition can produce without a singular matrix;
River forecasts in each SKU's own scale; a snapshot of the earlier log1p model is refused."""

from __future__ import annotations

import base64
import logging
import math
import pickle

import numpy as np
import pytest
from river import linear_model

from repricer.models import river_model
from repricer.models.base import SkuView
from repricer.models.calibration import Calibrator
from repricer.models.river_model import (
    SNAPSHOT_FORMAT,
    RegressorName,
    RiverDemand,
    StableBayesianLinearRegression,
)

T0 = 1_767_225_600_000


def _same(n: int) -> list[SkuView]:
    """n identical first-window SKUs (level 1 unit a window): every feature column constant,
    zero price change."""
    return [
        SkuView(
            sku=f"S{i}", price=10.0, ref_price=10.0, cost=5.0, next_window_start=T0, units_ewma=1.0
        )
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
    # it learned the mean of the rows it saw, units 0, 1, 2 at level 1
    assert got[0, 1] == pytest.approx(1.0, rel=1e-3)
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


def test_a_snapshot_of_the_log1p_model_is_refused_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A format-1 snapshot (River's own class, learned log1p(units)) is not used: its weights
    are in another unit. The refusal is logged and the pooled model starts fresh."""
    old = linear_model.BayesianLinearRegression(alpha=1.0, beta=2.0, smoothing=0.999)
    rng = np.random.default_rng(3)
    for _ in range(300):
        x = {f: float(v) for f, v in zip("abc", rng.normal(0, 1, 3), strict=True)}
        old.learn_one(x, x["a"] - 2 * x["b"])
    blob = base64.b64encode(pickle.dumps((old, 300))).decode()
    m = RiverDemand()
    m.learn_pooled(_same(50), np.full(50, 10.0), np.full(50, 3.0))
    with caplog.at_level(logging.WARNING, logger="repricer.models.river_model"):
        m.restore(blob)
    assert "River snapshot refused" in caplog.text and "river-bayes-1" in caplog.text
    assert isinstance(m.pooled, StableBayesianLinearRegression)
    assert m.n_learned == 0
    views, grid = _same(3), np.array([[9.0, 10.0, 11.0]] * 3)
    np.testing.assert_array_equal(m.forecast(views, grid), RiverDemand().forecast(views, grid))
    assert m.version == "river-bayes-2"
    # its own snapshots carry the format and come back as they were
    m.learn_pooled(_same(50), np.full(50, 10.0), np.full(50, 3.0))
    fmt, _, n, noise = pickle.loads(base64.b64decode(m.snapshot()))
    assert (fmt, n, noise) == (SNAPSHOT_FORMAT, 50, m.noise)
    back = RiverDemand()
    back.restore(m.snapshot())
    np.testing.assert_array_equal(back.forecast(views, grid), m.forecast(views, grid))


def _series(
    scale: float, windows: int = 900, seed: int = 5, regressor: RegressorName = "bayes"
) -> tuple[RiverDemand, list[SkuView]]:
    """River fed ``windows`` windows of four SKUs whose demand (units and views) is ``scale``
    times the same draw; prices explore around the base. Returns the model and the SKUs'
    views of the next window. The SKUs' level comes from the calibrator's discounted label
    sums, as in the engine."""
    rng = np.random.default_rng(seed)
    rates = np.array([0.5, 1.0, 2.0, 4.0])
    cal = Calibrator()
    m = RiverDemand(regressor)
    views = [
        SkuView(sku=f"S{i}", price=10.0, ref_price=10.0, cost=5.0, next_window_start=T0)
        for i in range(len(rates))
    ]
    for t in range(windows):
        start = T0 + t * 60_000
        season = 1.0 + 0.4 * math.sin(2 * math.pi * t / 240)
        prices = np.array([10.0 * float(rng.choice([0.95, 1.0, 1.05])) for _ in views])
        mean = rates * season * (prices / 10.0) ** -2.0
        units = scale * rng.poisson(mean).astype(np.float64)
        seen = scale * rng.poisson(mean * 20).astype(np.float64)
        for v in views:
            v.next_window_start = start
        m.learn(views, prices, units)
        cal.learn_local_batch(views, {}, {}, units)
        for v, p, u, s in zip(views, prices.tolist(), units.tolist(), seen.tolist(), strict=True):
            first = t == 0
            v.units_ewma = u if first else v.units_ewma + 0.3 * (u - v.units_ewma)
            v.views_ewma = s if first else v.views_ewma + 0.3 * (s - v.views_ewma)
            v.last_units, v.last_views, v.price = u, s, p
            v.windows_seen += 1
    for v in views:
        v.next_window_start = T0 + windows * 60_000
    return m, views


@pytest.mark.parametrize("scale", [100.0, 0.01])
def test_river_forecasts_a_scaled_series_in_proportion(scale: float) -> None:
    """The same demand 100 times busier, or 100 times sparser: River forecasts 100 times more,
    or less (scale-free), at every candidate price; each model learned its own series from
    scratch. (Not to the last digit: the level's floor and a first tick's guess of the noise
    differ; the log1p model before was off by a factor of two and more.)"""
    base, views = _series(1.0)
    scaled, sviews = _series(scale)
    grid = np.array([[v.price * f for f in (0.9, 1.0, 1.1)] for v in views])
    want = base.forecast(views, grid) * scale
    got = scaled.forecast(sviews, grid)
    assert (want > 0).all()
    np.testing.assert_allclose(got, want, rtol=0.01)
    assert scaled.dispersion() == pytest.approx(base.dispersion() * scale, rel=0.02)
    # and both follow the SKUs' own level: the busiest sells about eight times the quietest
    assert 4.0 < want[3, 1] / want[0, 1] < 16.0


@pytest.mark.parametrize("regressor", ["bayes", "linear", "pa"])
def test_every_pooled_regressor_forecasts_the_level(regressor: RegressorName) -> None:
    """Each choice of ``REPRICER_RIVER_REGRESSOR`` learns the level-relative target: at the
    base price its forecast is within a factor of two of the true mean (a run-away learner, as the
    passive-aggressive one was with C = 0.01, is off by a factor of ten)."""
    m, views = _series(1.0, regressor=regressor)
    got = m.forecast(views, np.array([[v.price] for v in views]))[:, 0]
    season = 1.0 + 0.4 * math.sin(2 * math.pi * 900 / 240)
    truth = np.array([0.5, 1.0, 2.0, 4.0]) * season
    assert ((got > truth / 2) & (got < truth * 2)).all(), (got, truth)
