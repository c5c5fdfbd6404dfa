"""The decider and the worker know demand models only through the protocol.

* The decider's snapshot carries every member's shared state, keyed by member name, and a
  fresh decider restored from it decides and forecasts exactly as the one that learned.
* No code outside a model's own file tests for a concrete model class (``isinstance``,
  ``issubclass``, ``type(x) is``): what a model can do is asked through the protocol.
"""

from __future__ import annotations

import ast
import copy
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.base import ModelBase, SkuView
from models.checks import sample_views
from models.decider import ModelDecider, default_decider
from models.guardrails import Bounds
from models.registry import MODELS, entry
from models.river_model import RiverDemand

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".venv", ".git", "build", "dist", "node_modules", "__pycache__", ".mypy_cache"}


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
    is the one workers wrote before the protocol: {"river": ..., "_elasticity": ...}."""
    d = _full_decider()
    views = sample_views(20, seed=31)
    _ticks(d, views, 5, seed=32)
    river = next(m for m in d.models() if m.name == "river")
    old_format = json.dumps({"river": river.snapshot(), "_elasticity": d.elasticity.snapshot()})
    assert json.loads(d.snapshot() or "") == json.loads(old_format)
    fresh = _full_decider()
    fresh.restore(old_format)
    assert _decided(fresh, views) == _decided(d, views)


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


# ------------------------------------------------------------- no probing for model classes

_CHECKED_CALLS = {"isinstance", "issubclass"}


def _py_files() -> list[Path]:
    out = []
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT)
        if not SKIP_DIRS.intersection(rel.parts):
            out.append(p)
    return out


def _names(node: ast.AST) -> set[str]:
    """Class names an isinstance target mentions: ``C``, ``mod.C``, ``(A, B)``, ``A | B``."""
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Attribute):
        return {node.attr}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return set().union(*(_names(e) for e in node.elts))
    if isinstance(node, ast.BinOp):
        return _names(node.left) | _names(node.right)
    return set()


def model_classes() -> dict[str, Path]:
    """Concrete demand models defined in models/: subclasses of ModelBase (transitively) and any
    other class implementing ``forecast`` and ``learn`` (not a Protocol)."""
    bases: dict[str, set[str]] = {}
    where: dict[str, Path] = {}
    implements: set[str] = set()
    for path in sorted((ROOT / "models").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef):
                continue
            names = set().union(*(_names(b) for b in node.bases)) if node.bases else set()
            if "Protocol" in names:
                continue
            bases[node.name], where[node.name] = names, path
            methods = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
            if {"forecast", "learn"} <= methods:
                implements.add(node.name)
    found = set(implements)
    grew = True
    while grew:
        more = {c for c, b in bases.items() if b & (found | {"ModelBase"})} - found
        found |= more
        grew = bool(more)
    return {c: where[c] for c in found}


def probes(source: str, classes: set[str]) -> list[tuple[int, str]]:
    """(line, class) of every isinstance/issubclass/``type(x) is C`` naming one of ``classes``."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _CHECKED_CALLS
            and len(node.args) == 2
        ):
            hits += [(node.lineno, c) for c in sorted(_names(node.args[1]) & classes)]
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Call)
            and isinstance(node.left.func, ast.Name)
            and node.left.func.id == "type"
        ):
            for comp in node.comparators:
                hits += [(node.lineno, c) for c in sorted(_names(comp) & classes)]
    return hits


def test_the_scan_finds_every_registered_model_class() -> None:
    classes = model_classes()
    registered = {e.target.partition(":")[2] for e in MODELS}
    assert registered <= set(classes), registered - set(classes)
    assert "ModelDecider" not in classes and "Elasticity" not in classes


def test_the_scan_catches_a_probe() -> None:
    src = (
        "if isinstance(m, RiverDemand): pass\n"
        "ok = isinstance(m, (int, river_model.LstmDemand))\n"
        "ok = isinstance(m, int | SeasonalPoisson)\n"
        "ok = type(m) is LastWindow\n"
        "ok = isinstance(m, dict)\n"
    )
    got = probes(src, set(model_classes()))
    assert got == [(1, "RiverDemand"), (2, "LstmDemand"), (3, "SeasonalPoisson"), (4, "LastWindow")]


def test_no_code_outside_a_model_file_tests_for_a_model_class() -> None:
    classes = model_classes()
    bad = []
    for path in _py_files():
        own = {c for c, p in classes.items() if p == path}
        for line, cls in probes(path.read_text(), set(classes) - own):
            bad.append(f"{path.relative_to(ROOT)}:{line}: {cls}")
    assert not bad, "ask the model through models.base.DemandModel instead:\n" + "\n".join(bad)
