"""A tick's labels learned as arrays equal the same labels learned one SKU at a time.

Each per-SKU learner has a batch form (``ModelDecider.learn_local_batch`` and the members'
vectorised updates); here each is run side by side with its one-label form, or with a plain
loop written out as the reference, on the same labels and states.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest

from repricer.models.base import ModelBase, SkuView, context_features, context_matrix
from repricer.models.decider import ENSEMBLE, ModelDecider
from repricer.models.elasticity import Elasticity, PooledPrior
from repricer.models.ensemble import update_errors, update_errors_batch
from repricer.models.river_model import (
    _FORGET,
    _PRIOR,
    PRIOR_SLOPE,
    STATE_KEY,
    RiverDemand,
    levels,
)

T0 = 1_767_225_600_000
W = 60_000


def _views(n: int, seed: int = 0) -> list[SkuView]:
    """SKUs in every condition a label meets: fresh or learned state, stock or not, sold out."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ref = float(rng.uniform(5, 50))
        st: dict[str, Any] = {}
        if i % 4:  # some SKUs have learned before, some are new
            st[STATE_KEY] = [*rng.normal(0, 0.3, 2).round(6).tolist(), 0.3, -0.01, 0.2]
        if i % 8 == 1:
            st["rls"] = [0.1, -0.2, 0.3, -0.01, 0.2]  # the log1p model's correction: dropped
            st["el"] = [float(x) for x in (3.0, -0.5, 2.0, -9.0, 3.0) * rng.uniform(0.5, 2, 5)]
            st["loss"] = {"river": float(rng.uniform(0, 50)), "lstm": float(rng.uniform(0, 50))}
            st["ens_d"] = [float(rng.uniform(0, 80)), float(rng.uniform(0, 60))]
        if i % 7 == 3:
            st["loss"] = {"river": 3.0}  # a member the SKU has not been scored on yet
            st["err"] = {"river": 0.1}  # the previous weighting's state, dropped on learning
        out.append(
            SkuView(
                sku=f"S{i}",
                price=ref * float(rng.uniform(0.7, 1.4)),
                ref_price=ref,
                cost=ref / 2,
                next_window_start=T0 + int(rng.integers(0, 1440)) * W,
                units_ewma=float(rng.gamma(2, 1)),
                views_ewma=float(rng.gamma(2, 5)) if i % 9 else 0.0,
                last_units=float(rng.integers(0, 6)),
                last_views=float(rng.integers(0, 30)),
                windows_seen=int(rng.integers(0, 100)),
                stock=None if i % 3 else float(rng.integers(0, 6)),
                state=st,
            )
        )
    return out


def _labels(views: list[SkuView], seed: int = 1) -> tuple[list[dict[str, Any]], np.ndarray]:
    rng = np.random.default_rng(seed)
    saveds = []
    for i, v in enumerate(views):
        pred: dict[str, float] = {
            "river": round(float(rng.gamma(2, 1)), 6),
            "lstm": round(float(rng.gamma(2, 1)), 6),
            ENSEMBLE: round(float(rng.gamma(2, 1)), 6),
            "_river_z": round(float(rng.normal(1, 0.5)), 6),
            "_river_l": round(float(rng.gamma(2, 1)), 6),
        }
        if i % 5 == 1:
            del pred["lstm"]  # no forecast from a member: charged the others' worst loss
        if i % 6 == 2:
            del pred[ENSEMBLE]  # none recorded: recombined from the members
        if i % 11 == 4:
            del pred["_river_z"]
        if i % 10 == 3:
            del pred["_river_l"]  # saved before the level was: the SKU's level now
        price = v.price * float(rng.choice([0.95, 1.0, 1.05]))
        if i % 13 == 5:
            price = math.nan  # unusable labels are skipped by every part
        saveds.append({"price": price, "pred": pred})
    units = rng.poisson(2.0, len(views)).astype(np.float64)
    units[::17] = -1.0
    return saveds, units


def _close(a: Any, b: Any, path: str = "") -> None:
    """Same structure, numbers equal to 1e-12 relative (they are mostly identical)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    else:
        assert type(a) is type(b), path
        if isinstance(a, float):
            assert a == pytest.approx(b, rel=1e-12, abs=1e-12, nan_ok=True), path
        else:
            assert a == b, path


def _decider() -> ModelDecider:
    d = ModelDecider(members=[RiverDemand()])
    d.members = [*d.members, _Named("lstm")]  # a second member, as the default decider has
    d.elasticity = Elasticity(prior=PooledPrior(mean_e=-2.2, dispersion=1.4))
    return d


class _Named(ModelBase):
    """A member with a name and the protocol's defaults only (learns no per-SKU state):
    per-SKU learning reads members' names and forecasts."""

    version = "1"

    def __init__(self, name: str) -> None:
        self.name = name


def test_decider_learns_a_batch_as_it_learns_one_label_at_a_time() -> None:
    views = _views(300)
    saveds, units = _labels(views)
    one, batch = copy.deepcopy(views), copy.deepcopy(views)
    d = _decider()
    for v, s, u in zip(one, saveds, units, strict=True):
        d.learn_local(v, s, float(u))
    d.learn_local_batch(batch, saveds, units)
    for a, b in zip(one, batch, strict=True):
        _close(a.state, b.state, a.sku)
    assert sum("nl" in v.state for v in batch) > 200  # the labels were not all skipped


def test_a_batch_takes_one_label_per_sku() -> None:
    views = _views(2)
    saveds, units = _labels(views)
    with pytest.raises(ValueError, match="one label per SKU"):
        _decider().learn_local_batch([views[0], views[0]], saveds, units)


def test_elasticity_batch_equals_label_by_label() -> None:
    views = _views(200, seed=3)
    saveds, units = _labels(views, seed=4)
    prices = np.array([s["price"] for s in saveds])
    for forget in (1.0, 0.999):
        el = Elasticity(forget=forget, prior=PooledPrior(mean_a=-2.5, dispersion=2.0))
        one, batch = copy.deepcopy(views), copy.deepcopy(views)
        for v, p, u in zip(one, prices, units, strict=True):
            el.learn_local(v, float(p), float(u))
        el.learn_local_batch(batch, prices, units)
        for a, b in zip(one, batch, strict=True):
            _close(a.state, b.state, a.sku)


def test_ensemble_losses_and_dispersion_batch_equal_label_by_label() -> None:
    views = _views(200, seed=5)
    saveds, units = _labels(views, seed=6)
    names = ["river", "lstm"]
    one, batch = copy.deepcopy(views), copy.deepcopy(views)
    for v, s, u in zip(one, saveds, units, strict=True):
        p = s["pred"]
        update_errors(v, {n: p.get(n, math.nan) for n in names}, float(u), p.get(ENSEMBLE))
    update_errors_batch(
        batch,
        {n: np.array([s["pred"].get(n, math.nan) for s in saveds]) for n in names},
        units,
        np.array([s["pred"].get(ENSEMBLE, math.nan) for s in saveds]),
    )
    for a, b in zip(one, batch, strict=True):
        _close(a.state, b.state, a.sku)


def _rls_reference(v: SkuView, r: float, y: float, zp: float, level: float) -> None:
    """The per-SKU correction of units ÷ level, one label at a time (weighted RLS)."""
    got = v.state.get(STATE_KEY)
    t0, t1, p00, p01, p11 = got if got else [0.0, 0.0, _PRIOR[0], 0.0, _PRIOR[1]]
    resid = y / level - zp
    px0, px1 = p00 + p01 * r, p01 + p11 * r
    denom = _FORGET / (level / (level + 1.5)) + px0 + px1 * r  # a fresh model's dispersion
    k0, k1 = px0 / denom, px1 / denom
    err = resid - (t0 + t1 * r)
    t0, t1 = t0 + k0 * err, t1 + k1 * err
    p00, p01, p11 = (
        (p00 - k0 * px0) / _FORGET,
        (p01 - k0 * px1) / _FORGET,
        (p11 - k1 * px1) / _FORGET,
    )
    p00, p11 = min(p00, _PRIOR[0]), min(p11, _PRIOR[1])
    p01 = max(-math.sqrt(p00 * p11), min(p01, math.sqrt(p00 * p11)))
    v.state[STATE_KEY] = [round(t0, 6), round(t1, 6), p00, p01, p11]
    v.state.pop("rls", None)
    v.state["nl"] = int(v.state.get("nl", 0)) + 1


def test_river_correction_batch_equals_the_per_label_reference() -> None:
    views = _views(200, seed=7)
    saveds, units = _labels(views, seed=8)
    prices = np.array([s["price"] for s in saveds])
    zp = np.array([s["pred"].get("_river_z", math.nan) for s in saveds])
    lv = np.array([s["pred"].get("_river_l", 0.5) for s in saveds])
    one, batch = copy.deepcopy(views), copy.deepcopy(views)
    for v, p, u, z, level in zip(one, prices, units, zp, lv, strict=True):
        r = math.log(p / v.price) if p > 0 else 0.0
        if math.isfinite(r) and math.isfinite(z) and u >= 0:
            _rls_reference(v, r, float(u), float(z), float(level))
    RiverDemand().learn_residual(batch, prices, units, zp, lv)
    for a, b in zip(one, batch, strict=True):
        _close(a.state, b.state, a.sku)
    assert not any("rls" in v.state for v in batch if "nl" in v.state)


def test_pooled_prediction_equals_river_predict_one() -> None:
    """The vectorised pooled forecast reproduces River's own per-SKU predictions."""
    views = _views(100, seed=9)
    m = RiverDemand()
    m.learn_pooled(views, np.array([v.price * 1.03 for v in views]), np.arange(100) % 5)
    lv = levels(views)
    for v, row, level in zip(views, context_matrix(views, lv), lv.tolist(), strict=True):
        assert list(context_features(v, level).values()) == row.tolist()
    prices = np.array([[v.price * f for f in (0.9, 1.0, 1.1)] for v in views])
    got = m.pooled_z(views, prices)
    for i, v in enumerate(views):
        x = context_features(v, float(lv[i]))
        x["log_price_change"] = 0.0
        z0 = m.pooled.predict_one(x)
        x["log_price_change"] = 1.0
        slope = m.pooled.predict_one(x) - z0 + PRIOR_SLOPE
        want = z0 + slope * np.log(prices[i] / v.price)
        np.testing.assert_allclose(got[i], want, rtol=1e-12, atol=1e-12)


def test_pooled_model_learns_a_batch_as_row_by_row() -> None:
    """The pooled regressor learns a tick's labels in River's closed form (learn_many); the
    posterior is the one learn_one reaches row by row, each row units ÷ level weighted by its
    evidence (features and target scaled by the root of the weight)."""
    views = _views(400, seed=11)
    prices = np.array([v.price * (1.0 + 0.05 * ((i % 3) - 1)) for i, v in enumerate(views)])
    units = (np.arange(400) % 7).astype(np.float64)
    units[5] = math.nan  # skipped by both
    batch, loop = RiverDemand(), RiverDemand()
    batch.learn_pooled(views[:200], prices[:200], units[:200])
    phi = [batch.dispersion()]  # each tick's rows are weighted with the dispersion after it
    batch.learn_pooled(views[200:], prices[200:], units[200:])
    phi += [batch.dispersion()]
    lpr = np.log(prices / np.array([v.price for v in views]))
    lv = levels(views)
    for i, (v, r, y, level) in enumerate(zip(views, lpr, units, lv.tolist(), strict=True)):
        if math.isfinite(y):
            x = context_features(v, level)
            x["log_price_change"] = float(r)
            root = math.sqrt(level / (level + phi[i // 200]))
            target = float(y) / level - PRIOR_SLOPE * float(r)
            loop.pooled.learn_one({f: a * root for f, a in x.items()}, target * root)
    assert batch.n_learned == 399
    got = batch.pooled_z(views, prices)
    want = loop.pooled_z(views, prices)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_forecasts_after_a_proposal_equal_forecasts_from_scratch() -> None:
    """``predict_at`` reuses ``propose``'s forecasts for SKUs whose price did not move."""
    from repricer.models.guardrails import Bounds
    from repricer.models.lstm_model import LstmDemand

    views = _views(120, seed=12)
    rng = np.random.default_rng(13)
    for v in views:
        v.history = rng.normal(0, 1, (int(rng.integers(1, 24)), 6)).round(5).tolist()
    river = RiverDemand()
    river.learn_pooled(views, np.array([v.price for v in views]), np.arange(120) % 4)
    d = ModelDecider(members=[river, LstmDemand()])
    bounds = [Bounds(cost=v.cost, min_price=v.cost, max_price=v.ref_price * 3) for v in views]
    props = d.propose(views, bounds, 0.05)
    moved = [
        p.price if i % 3 else v.price for i, (v, p) in enumerate(zip(views, props, strict=True))
    ]
    finals = np.array(moved)
    assert 20 < int((finals != np.array([v.price for v in views])).sum()) < 100
    got = d.predict_at(views, finals)
    assert d._at_cur is None  # used once
    want = d.predict_at(list(views), finals)  # another list: everything forecast again
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
