"""The decider and the worker know demand models only through the protocol.

* The decider's snapshot carries every member's shared state, keyed by member name, and a
  fresh decider restored from it decides and forecasts exactly as the one that learned.

No code outside a model's own file tests for a concrete model class: that scan is in
``test_architecture.py`` with the other checks over the source.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace

import numpy as np
import pytest

from repricer.models.base import ModelBase, SkuView
from repricer.models.checks import sample_views
from repricer.models.decider import ModelDecider, default_decider
from repricer.models.guardrails import Bounds
from repricer.models.registry import MODELS, entry
from repricer.models.river_model import RiverDemand

# ------------------------------------------------------------------ the decider's persistence


def _bounds(views: list[SkuView]) -> list[Bounds]:
    return [Bounds(cost=v.cost, min_price=v.cost, max_price=v.ref_price * 3) for v in views]


def _ticks(d: ModelDecider, views: list[SkuView], n: int, seed: int) -> None:
    """``n`` ticks as the window engine drives the decider: decide, save, learn both phases."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        props = d.propose(views, _bounds(views), 0.05)
        finals = [
            p.price if math.isfinite(p.price) else v.price
            for p, v in zip(props, views, strict=True)
        ]
        preds = d.predict_at(views, np.array(finals))
        saveds = [
            {"price": finals[i], "pred": {k: round(float(a[i]), 6) for k, a in preds.items()}}
            for i in range(len(views))
        ]
        units = rng.poisson([max(v.units_ewma, 0.2) for v in views]).astype(np.float64)
        d.learn_pooled(views, np.array(finals), units)
        d.learn_local_batch(views, saveds, units)
        for v, f in zip(views, finals, strict=True):
            v.price = f


def _decided(d: ModelDecider, views: list[SkuView]) -> tuple[list[tuple[float, ...]], dict]:
    vs = copy.deepcopy(views)
    props = [
        (p.price, p.forecast_at_old, p.forecast_at_new, p.elasticity, *p.reasons)
        for p in d.propose(vs, _bounds(vs), 0.05)
    ]
    vs = copy.deepcopy(views)
    preds = d.predict_at(vs, np.array([v.price * 1.02 for v in vs]))
    return props, {k: a.tolist() for k, a in preds.items()}


def _full_decider() -> ModelDecider:
    """The default ensemble plus every registered candidate."""
    d = default_decider()
    extra = [e.build() for e in MODELS if e.role == "candidate"]
    return replace(d, members=[*d.members, *extra])


def test_a_fresh_decider_restored_from_a_snapshot_decides_the_same() -> None:
    d = _full_decider()
    assert [m.name for m in d.models()] == ["river", "lstm", "seasonal"]
    views = sample_views(30, seed=21)
    _ticks(d, views, 15, seed=22)
    snap = d.snapshot()
    assert snap is not None
    want = _decided(d, views)
    fresh = _full_decider()
    assert _decided(fresh, views) != want  # what it learned matters, so the check can fail
    fresh.restore(snap)
    assert _decided(fresh, views) == want
    # and both learn on alike
    va, vb = copy.deepcopy(views), copy.deepcopy(views)
    _ticks(d, va, 5, seed=23)
    _ticks(fresh, vb, 5, seed=23)
    assert _decided(d, va) == _decided(fresh, vb)


def test_snapshot_is_keyed_by_member_name_and_restores_the_format_of_before() -> None:
    """Members without shared state (the LSTM, the seasonal model) are not in it; the layout
    is the one workers wrote before the protocol, {"river": ..., "_elasticity": ...}, plus the
    ensemble's pooled calibration ("_ensemble"), which a snapshot of before lacks: restored
    from one, a decider decides as the one that learned with that pooled state cleared."""
    d = _full_decider()
    views = sample_views(20, seed=31)
    _ticks(d, views, 5, seed=32)
    river = next(m for m in d.models() if m.name == "river")
    old_format = json.dumps({"river": river.snapshot(), "_elasticity": d.elasticity.snapshot()})
    got = json.loads(d.snapshot() or "")
    assert got.pop("_ensemble") == d.calibrator.snapshot() != {}
    assert got == json.loads(old_format)
    fresh = _full_decider()
    fresh.restore(old_format)
    cleared = copy.deepcopy(d)
    cleared.calibrator.restore({})
    assert _decided(fresh, views) == _decided(cleared, views)
    assert _decided(fresh, views) != _decided(d, views)  # the pooled state matters


class _BytesState(ModelBase):
    """A model whose shared state is bytes (a pooled level)."""

    name = "bytes_model"
    version = "1"

    def __init__(self) -> None:
        self.level = 1.0

    def forecast(self, views, prices):  # type: ignore[no-untyped-def]
        return np.full(np.shape(prices), self.level)

    def learn(self, views, prices, units) -> None:  # type: ignore[no-untyped-def]
        self.level = 0.5 * self.level + 0.5 * float(np.mean(units))

    def snapshot(self) -> bytes:
        return np.float64(self.level).tobytes() + b"\x00\xff"  # not text

    def restore(self, blob: bytes | str) -> None:
        assert isinstance(blob, bytes) and blob.endswith(b"\x00\xff")
        self.level = float(np.frombuffer(blob[:8], dtype=np.float64)[0])


def test_a_member_with_bytes_state_survives_a_restart() -> None:
    d = ModelDecider(members=[RiverDemand(), _BytesState()])
    views = sample_views(10, seed=41)
    _ticks(d, views, 3, seed=42)
    level = d.members[1].level  # type: ignore[attr-defined]
    assert level != 1.0
    fresh = ModelDecider(members=[RiverDemand(), _BytesState()])
    fresh.restore(d.snapshot() or "")
    assert fresh.members[1].level == level  # type: ignore[attr-defined]
    assert _decided(fresh, views) == _decided(d, views)


def test_member_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        ModelDecider(members=[RiverDemand(), RiverDemand("linear")])


def test_without_lstm_the_default_ensemble_is_river_alone() -> None:
    assert [m.name for m in default_decider(lstm=False).models()] == ["river"]
    assert entry("lstm").optional and entry("lstm").role == "member"
