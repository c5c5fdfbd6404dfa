"""Conformance checks run over every demand model (in the spirit of ``river.checks``).

Each check takes a zero-argument factory (fresh model) and raises ``AssertionError`` with a
message when the model breaks the contract. ``tests/unit/test_model_checks.py`` runs them all
over every model that ships.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator

import numpy as np

from models.base import DemandModel, SkuView
from models.lstm_features import window_features

Factory = Callable[[], DemandModel]
T0 = 1_767_225_600_000
W = 60_000


def sample_views(n: int = 12, seed: int = 0, *, history: int = 10) -> list[SkuView]:
    """Deterministic SKU views with plausible histories."""
    rng = np.random.default_rng(seed)
    views = []
    for i in range(n):
        ref = float(rng.uniform(5, 200))
        price = ref * float(rng.uniform(0.8, 1.2))
        units = rng.poisson(rng.uniform(0.5, 5), size=history)
        views_n = units * 20 + rng.poisson(30, size=history)
        hist = [
            [float(x) for x in window_features(u, v, u * 2, price, ref, T0 + k * W)]
            for k, (u, v) in enumerate(zip(units, views_n, strict=True))
        ]
        views.append(
            SkuView(
                sku=f"S{i}",
                price=price,
                ref_price=ref,
                cost=ref / 1.6,
                next_window_start=T0 + history * W,
                units_ewma=float(units.mean()),
                views_ewma=float(views_n.mean()),
                last_units=float(units[-1]),
                last_views=float(views_n[-1]),
                windows_seen=history,
                history=hist,
                state={},
            )
        )
    return views


def _train(model: DemandModel, views: list[SkuView], rounds: int = 30, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        prices = np.array([v.price * rng.uniform(0.95, 1.05) for v in views])
        units = rng.poisson([max(v.units_ewma, 0.1) for v in views]).astype(np.float64)
        model.learn(views, prices, units)


def _grid(views: list[SkuView]) -> np.ndarray:
    return np.array([[v.price * f for f in (0.95, 1.0, 1.05)] for v in views])


def check_shape_and_finite(factory: Factory) -> None:
    m = factory()
    views = sample_views()
    out = m.forecast(views, _grid(views))
    assert out.shape == (len(views), 3), f"{m.name}: shape {out.shape}"
    assert np.all(np.isfinite(out)), f"{m.name}: non-finite forecast for SKUs with history"
    assert np.all(out >= 0), f"{m.name}: negative forecast"
    _train(m, views)
    out = m.forecast(views, _grid(views))
    assert np.all(np.isfinite(out)) and np.all(out >= 0), f"{m.name}: bad forecast after learning"


def check_picklable(factory: Factory) -> None:
    m = factory()
    views = sample_views()
    _train(m, views, rounds=5)
    clone = pickle.loads(pickle.dumps(m))
    np.testing.assert_allclose(clone.forecast(views, _grid(views)), m.forecast(views, _grid(views)))


def check_unseen_sku(factory: Factory) -> None:
    m = factory()
    views = sample_views()
    _train(m, views, rounds=5)
    new = sample_views(1, seed=99)[0]
    new.sku = "NEVER-SEEN"
    new.state = {"unknown_key": [1, 2, 3]}  # state written by some other model version
    out = m.forecast([new], _grid([new]))
    assert out.shape == (1, 3) and np.all(np.isfinite(out) & (out >= 0)), f"{m.name}: {out}"
    bare = SkuView(sku="BARE", price=10.0, ref_price=10.0, cost=5.0, next_window_start=T0)
    out = m.forecast([bare], np.array([[9.5, 10.0, 10.5]]))  # no history, no averages
    assert out.shape == (1, 3) and np.all(np.isnan(out) | (out >= 0)), f"{m.name}: {out}"


def check_deterministic(factory: Factory) -> None:
    a, b = factory(), factory()
    va, vb = sample_views(seed=3), sample_views(seed=3)
    _train(a, va, seed=5)
    _train(b, vb, seed=5)
    np.testing.assert_array_equal(a.forecast(va, _grid(va)), b.forecast(vb, _grid(vb)))


CHECKS: tuple[Callable[[Factory], None], ...] = (
    check_shape_and_finite,
    check_picklable,
    check_unseen_sku,
    check_deterministic,
)


def all_checks() -> Iterator[Callable[[Factory], None]]:
    yield from CHECKS


def shipped_models() -> dict[str, Factory]:
    """A factory for every demand model that ships."""
    from models.baselines import LastWindow, MovingAverage
    from models.lstm_model import LstmDemand
    from models.river_model import RiverDemand
    from models.seasonal_model import SeasonalPoisson

    return {
        "river-bayes": lambda: RiverDemand("bayes"),
        "river-linear": lambda: RiverDemand("linear"),
        "river-pa": lambda: RiverDemand("pa"),
        "lstm": LstmDemand,
        "seasonal": SeasonalPoisson,
        "last_window": LastWindow,
        "moving_average": MovingAverage,
    }
