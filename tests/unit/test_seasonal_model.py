"""The seasonal Poisson model learns a SKU's level and daily cycle from its window history."""

from __future__ import annotations

import copy
import math

import numpy as np

from repricer.models.base import SkuView
from repricer.models.lstm_features import window_features
from repricer.models.quantiles import count_quantile
from repricer.models.seasonal_model import STATE_KEY, SeasonalPoisson

T0 = 1_767_225_600_000
W = 60_000


def _true_mean(ws: int, price: float) -> float:
    h = (ws % 86_400_000) / 3_600_000
    return 2.0 * (1.0 + 0.5 * math.sin(2 * math.pi * h / 24 + 1.0)) * (price / 10.0) ** -2.0


def _run(
    model: SeasonalPoisson, windows: int, seed: int = 0
) -> tuple[list[float], list[float], list[float], dict[str, object]]:
    """Feed a SKU window by window as the engine does; forecasts, truths, moving averages and
    the SKU's final model state."""
    rng = np.random.default_rng(seed)
    state: dict[str, object] = {}
    hist: list[list[float]] = []
    ewma = 0.0
    preds, truth, mas = [], [], []
    for k in range(windows):
        ws = T0 + k * W
        price = 10.0 * (1.0 + 0.05 * ((k // 90) % 3 - 1))  # some price moves
        view = SkuView(
            sku="S",
            price=price,
            ref_price=10.0,
            cost=5.0,
            next_window_start=ws,
            units_ewma=ewma,
            last_units=0.0,
            windows_seen=k,
            history=list(hist),
            state=state,
        )
        preds.append(float(model.forecast([view], np.array([[price]]))[0, 0]))
        mu = _true_mean(ws, price)
        truth.append(mu)
        mas.append(ewma)
        units = int(rng.poisson(mu))
        hist.append([float(x) for x in window_features(units, 40, 5, price, 10.0, ws)])
        del hist[:-23]
        ewma = float(units) if k == 0 else ewma + 0.3 * (units - ewma)
    return preds, truth, mas, state


def test_tracks_the_true_mean_far_better_than_a_moving_average() -> None:
    preds, truth, mas, _ = _run(SeasonalPoisson(), 2 * 1440)
    p, t, m = (np.array(a[-600:]) for a in (preds, truth, mas))
    err = np.abs(p - t).sum() / t.sum()
    assert err < 0.08, err
    assert err < 0.5 * np.abs(m - t).sum() / t.sum()


def test_learns_the_log_log_price_elasticity() -> None:
    model = SeasonalPoisson(prior_slope=-1.0)
    *_, state = _run(model, 2 * 1440)
    v = SkuView("S", 10.0, 10.0, 5.0, T0 + 2 * 1440 * W, windows_seen=2 * 1440, state=state)
    el = float(model.price_elasticity([v])[0])
    assert -2.6 < el < -1.4, el  # true: -2.0, prior: -1.0


def test_each_window_is_learned_once_and_state_survives_a_restart() -> None:
    model = SeasonalPoisson()
    hist = [
        [float(x) for x in window_features(u, 40, 5, 10.0, 10.0, T0 + k * W)]
        for k, u in enumerate([1, 3, 0, 2, 2, 4, 1])
    ]
    v = SkuView("S", 10.0, 10.0, 5.0, T0 + 7 * W, units_ewma=2.0, windows_seen=7, history=hist)
    a = model.forecast([v], np.array([[9.5, 10.0]]))
    saved = copy.deepcopy(v.state)
    assert saved[STATE_KEY][0] == 7  # learned up to the 7th closed window
    b = model.forecast([v], np.array([[9.5, 10.0]]))  # same tick again: nothing new to learn
    assert v.state == saved
    np.testing.assert_array_equal(a, b)
    restarted = SkuView(
        "S",
        10.0,
        10.0,
        5.0,
        T0 + 7 * W,
        units_ewma=2.0,
        windows_seen=7,
        history=hist,
        state=copy.deepcopy(saved),
    )
    np.testing.assert_array_equal(
        SeasonalPoisson().forecast([restarted], np.array([[9.5, 10.0]])), a
    )
    assert a[0, 0] > a[0, 1]  # demand falls with price


def test_count_quantile_is_the_median_of_draws() -> None:
    rng = np.random.default_rng(1)
    for mean, disp in ((0.4, 1.0), (1.3, 1.0), (2.5, 1.5), (7.0, 2.5)):
        if disp == 1.0:
            draws = rng.poisson(mean, 50_000)
        else:
            draws = rng.negative_binomial(mean / (disp - 1.0), 1.0 / disp, 50_000)
        assert float(count_quantile(mean, disp)) == float(np.median(draws)), (mean, disp)
    assert math.isnan(float(count_quantile(float("nan"), 1.5)))
