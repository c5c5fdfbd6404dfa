"""Conformance checks run over every demand model (in the spirit of ``river.checks``).

Each check takes a zero-argument factory (fresh model) and raises ``AssertionError`` with a
message when the model breaks the contract. ``tests/unit/test_model_checks.py`` runs them all
over every model registered in :mod:`models.registry` (:func:`shipped_models`), so a new model
is checked as soon as it is listed there. :func:`check_persistence` is the one that keeps a
learning model from silently forgetting on restart: whatever it learned must come back from its
snapshot.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable, Iterator

import numpy as np

from repricer.models.base import DemandModel, ModelInfo, SkuView
from repricer.models.lstm_features import window_features

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


def _train_split(model: DemandModel, views: list[SkuView], rounds: int, seed: int) -> None:
    """Learn as the window engine does: what the decision saves, then the shared phase, then
    the per-SKU phase."""
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        prices = np.array([v.price * rng.uniform(0.95, 1.05) for v in views])
        units = rng.poisson([max(v.units_ewma, 0.1) for v in views]).astype(np.float64)
        memo = model.decision_memo(views, prices)
        for k, a in memo.items():
            assert k.startswith("_") and np.shape(a) == (len(views),), f"{model.name}: memo {k}"
        saved = [{k: float(a[i]) for k, a in memo.items()} for i in range(len(views))]
        model.learn_pooled(views, prices, units)
        model.learn_local(views, prices, units, saved)


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


def check_persistence(factory: Factory) -> None:
    """Snapshot -> restore into a fresh instance -> the same forecasts, the same learning after.

    Per-SKU state travels in the views (copied here as the SKU records would be); everything
    else the model learned must come back from :meth:`~models.base.DemandModel.snapshot`.
    Also: a snapshot does not change as the model goes on learning, and restoring one into a
    model that has learned since (the engine's rollback of a failed tick) goes back to it.
    """
    m = factory()
    views = sample_views(seed=4)
    _train_split(m, views, rounds=20, seed=6)
    _train(m, views, rounds=5, seed=7)
    snap = m.snapshot()
    assert snap is None or isinstance(snap, bytes | str), f"{m.name}: snapshot {type(snap)}"
    grid = _grid(views)
    want = m.forecast(copy.deepcopy(views), grid)

    def restored() -> DemandModel:
        fresh = factory()
        if snap is not None:
            fresh.restore(snap)
        return fresh

    got = restored().forecast(copy.deepcopy(views), grid)
    np.testing.assert_array_equal(
        got, want, err_msg=f"{m.name}: what it learned does not survive snapshot/restore"
    )
    later = copy.deepcopy(views)
    _train_split(m, later, rounds=10, seed=8)
    np.testing.assert_array_equal(
        restored().forecast(copy.deepcopy(views), grid),
        want,
        err_msg=f"{m.name}: the snapshot changed as the model learned on",
    )
    if snap is not None:
        m.restore(snap)
        np.testing.assert_array_equal(
            m.forecast(copy.deepcopy(views), grid),
            want,
            err_msg=f"{m.name}: restoring into a model that learned since does not go back",
        )
    a, b = m, restored()
    va, vb = copy.deepcopy(views), copy.deepcopy(views)
    _train_split(a, va, rounds=10, seed=9)
    _train_split(b, vb, rounds=10, seed=9)
    np.testing.assert_array_equal(
        a.forecast(va, _grid(va)),
        b.forecast(vb, _grid(vb)),
        err_msg=f"{m.name}: learns differently after a restore",
    )


def check_describes_itself(factory: Factory) -> None:
    m = factory()
    info = m.info()
    assert isinstance(info, ModelInfo), f"{m.name}: info() is {type(info)}"
    assert (info.name, info.version) == (m.name, m.version), f"{m.name}: info {info}"
    assert m.name and not m.name.startswith("_"), f"bad model name {m.name!r}"
    assert m.maybe_reload() is False, f"{m.name}: reloaded though nothing changed"


CHECKS: tuple[Callable[[Factory], None], ...] = (
    check_shape_and_finite,
    check_picklable,
    check_unseen_sku,
    check_deterministic,
    check_persistence,
    check_describes_itself,
)


def all_checks() -> Iterator[Callable[[Factory], None]]:
    yield from CHECKS


def shipped_models() -> dict[str, Factory]:
    """A factory for every registered demand model (and each configuration it is checked in)."""
    from repricer.models.registry import check_factories

    return check_factories()
