"""From forecasts to a proposed price: candidates, ensemble, objective, exploration, reasons.

``ModelDecider.propose`` evaluates a grid of candidate prices around each SKU's current price
with every demand model in one batch per model, combines them (``models.ensemble``), picks the
candidate that maximises expected profit ``(p - cost) * q(p)`` (or revenue), and sometimes
explores a neighbouring candidate so that price elasticity stays identifiable. Exploration is
pseudo-random but deterministic per (SKU, window): a replay makes the same decision, so the
PriceChange gets the same ``event_id``. The guardrails run after this and have the last word.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from models.base import DemandModel, SkuView
from models.baselines import LastWindow, MovingAverage
from models.ensemble import combine, update_errors
from models.guardrails import Bounds
from models.river_model import RegressorName, RiverDemand

log = logging.getLogger(__name__)
Objective = Literal["profit", "revenue"]
ENSEMBLE = "ensemble"


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposed price with its explanation and the forecasts behind it."""

    price: float
    reasons: tuple[str, ...]
    forecast_at_old: float
    forecast_at_new: float
    elasticity: float
    model_versions: dict[str, str] = field(default_factory=dict)
    explored: bool = False


def _unit_random(sku: str, window_start: int, salt: str = "") -> float:
    h = hashlib.blake2b(f"{sku}|{window_start}|{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def grid_elasticity(prices: np.ndarray, units: np.ndarray) -> float:
    """Least-squares slope of log units on log price over a candidate grid (nan if undefined)."""
    ok = np.isfinite(units) & (units > 0) & (prices > 0)
    if ok.sum() < 2:
        return math.nan
    lp, lq = np.log(prices[ok]), np.log(units[ok])
    var = float(((lp - lp.mean()) ** 2).sum())
    return float(((lp - lp.mean()) * (lq - lq.mean())).sum() / var) if var > 0 else math.nan


class Decider(Protocol):
    """What the window engine needs from the decision layer (``ModelDecider``, or a test fake).

    Learning is split so that each label is learned exactly once across crashes: shared state
    (``learn_pooled``, persisted via ``snapshot``) once per tick and partition; per-SKU state
    (``learn_local``, in ``SkuView.state``) atomically with the SKU's own record.
    """

    def propose(
        self, views: Sequence[SkuView], bounds: Sequence[Bounds], min_margin: float
    ) -> list[Proposal]: ...

    def predict_at(self, views: Sequence[SkuView], prices: np.ndarray) -> dict[str, np.ndarray]: ...

    def learn_pooled(
        self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray
    ) -> None: ...

    def learn_local(self, view: SkuView, saved: Mapping[str, Any], units: float) -> None: ...

    def snapshot(self) -> str | None: ...

    def restore(self, blob: str) -> None: ...


@dataclass
class ModelDecider:
    """Demand models + ensemble + objective + exploration."""

    members: Sequence[DemandModel]
    objective: Objective = "profit"
    max_step: float = 0.05
    n_candidates: int = 7
    explore_floor: float = 0.05
    explore_steps: int = 2  # how many grid steps an exploration moves (measured: 2 > 1)
    min_gain: float = 0.02  # hold unless the best candidate beats the current price by 2%
    explore_decay_windows: float = 60.0
    baselines: Sequence[DemandModel] = (LastWindow(), MovingAverage())
    version: str = "model-v1"

    def candidates(self, views: Sequence[SkuView]) -> np.ndarray:
        """(N, K) prices: log-spaced within ±max_step of the current price, current in the middle."""
        steps = np.linspace(-self.max_step, self.max_step, self.n_candidates)
        cur = np.array([v.price for v in views], dtype=np.float64)
        return cur[:, None] * np.exp(np.log1p(steps))[None, :]

    def forecasts(self, views: Sequence[SkuView], prices: np.ndarray) -> dict[str, np.ndarray]:
        """Every member's and baseline's forecast, plus the ensemble of the members."""
        out = {m.name: m.forecast(views, prices) for m in self.members}
        out[ENSEMBLE] = combine(views, {m.name: out[m.name] for m in self.members})
        for b in self.baselines:
            out[b.name] = b.forecast(views, prices)
        return out

    def price_response(self, views: Sequence[SkuView], prices: np.ndarray) -> np.ndarray:
        """(N, K) expected units: the ensemble's level at the current price, moved along River's
        learned price response (the architecture's split: every member forecasts the level,
        River's elasticity — identified by exploration — says how demand moves with price)."""
        river = next((m for m in self.members if isinstance(m, RiverDemand)), None)
        if river is None:
            return self.forecasts(views, prices)[ENSEMBLE]
        cur = np.array([v.price for v in views], dtype=np.float64)[:, None]
        level = combine(views, {m.name: m.forecast(views, cur) for m in self.members})[:, 0]
        slope = river.price_slope(views)
        d = np.log(prices / cur)
        with np.errstate(over="ignore", invalid="ignore"):
            return np.expm1(np.log1p(np.maximum(level, 0.0))[:, None] + slope[:, None] * d)

    def model_versions(self) -> dict[str, str]:
        return {m.name: m.version for m in self.members} | {"decider": self.version}

    def propose(
        self, views: Sequence[SkuView], bounds: Sequence[Bounds], min_margin: float
    ) -> list[Proposal]:
        if not views:
            return []
        prices = self.candidates(views)
        q = self.price_response(views, prices)
        versions = self.model_versions()
        mid = self.n_candidates // 2
        out = []
        for i, (v, bd) in enumerate(zip(views, bounds, strict=True)):
            p, qi = prices[i], q[i]
            if not np.isfinite(qi).any():
                out.append(
                    Proposal(
                        math.nan, ("model_unavailable",), math.nan, math.nan, math.nan, versions
                    )
                )
                continue
            margin = p - bd.cost if self.objective == "profit" else p
            value = np.where(np.isfinite(qi), margin * qi, -np.inf)
            inside = (p >= bd.floor(min_margin) - 1e-9) & (p <= bd.max_price + 1e-9)
            if inside.any():
                value = np.where(inside, value, -np.inf)
            best = int(np.argmax(value))
            if value[best] - value[mid] <= max(self.min_gain, 1e-9) * max(1e-9, abs(value[mid])):
                best = mid  # no (significant) expected gain: hold
            reasons: list[str] = []
            explored = False
            eps = max(self.explore_floor, 1.0 / (1.0 + v.windows_seen / self.explore_decay_windows))
            if _unit_random(v.sku, v.next_window_start) < eps:
                step = (
                    self.explore_steps
                    if _unit_random(v.sku, v.next_window_start, "dir") < 0.5
                    else -self.explore_steps
                )
                k = min(max(best + step, 0), self.n_candidates - 1)
                if k != best and np.isfinite(value[k]):
                    best, explored = k, True
                    reasons.append("exploration")
            e = grid_elasticity(p, qi)
            if best != mid and not explored:
                reasons.append("profit_opt" if self.objective == "profit" else "revenue_opt")
            if math.isfinite(e):
                if -1.0 < e <= 0.0 or e > 0:
                    reasons.append("elasticity_low")
                elif e < -3.0:
                    reasons.append("elasticity_high")
            q_now = qi[mid]
            if math.isfinite(q_now) and v.windows_seen >= 3:
                if q_now > 1.25 * v.units_ewma + 0.5:
                    reasons.append("demand_up")
                elif q_now < 0.75 * v.units_ewma - 0.5:
                    reasons.append("demand_down")
            if best == mid:
                reasons.append("hold")
            out.append(
                Proposal(
                    price=float(p[best]),
                    reasons=tuple(reasons),
                    forecast_at_old=float(q_now) if math.isfinite(q_now) else math.nan,
                    forecast_at_new=float(qi[best]),
                    elasticity=e,
                    model_versions=versions,
                    explored=explored,
                )
            )
        return out

    def predict_at(self, views: Sequence[SkuView], prices: np.ndarray) -> dict[str, np.ndarray]:
        """(N,) forecasts of every model at one price per SKU, saved to learn and score later.

        Keys starting with ``_`` are internal (the pooled River prediction the per-SKU part
        learns the residual of); the others become rows of the ``forecasts`` table.
        """
        p = np.asarray(prices, dtype=np.float64)
        out = {k: v[:, 0] for k, v in self.forecasts(views, p[:, None]).items()}
        for m in self.members:
            if isinstance(m, RiverDemand):
                out["_river_z"] = m.pooled_z(views, p)
        return out

    def learn_pooled(self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        for m in self.members:
            if isinstance(m, RiverDemand):
                m.learn_pooled(views, prices, units)
            else:
                m.learn(views, prices, units)

    def learn_local(self, view: SkuView, saved: Mapping[str, Any], units: float) -> None:
        preds = saved.get("pred") or {}
        for m in self.members:
            if isinstance(m, RiverDemand) and "_river_z" in preds:
                m.learn_local(
                    [view],
                    np.array([saved["price"]]),
                    np.array([units]),
                    np.array([preds["_river_z"]]),
                )
        update_errors(view, {m.name: preds.get(m.name, math.nan) for m in self.members}, units)

    def snapshot(self) -> str | None:
        blobs = {m.name: m.snapshot() for m in self.members if isinstance(m, RiverDemand)}
        return json.dumps(blobs) if blobs else None

    def restore(self, blob: str) -> None:
        blobs = json.loads(blob)
        for m in self.members:
            if isinstance(m, RiverDemand) and m.name in blobs:
                m.restore(blobs[m.name])


def default_decider(
    *,
    max_step: float = 0.05,
    objective: Objective = "profit",
    lstm: bool = True,
    regressor: RegressorName = "bayes",
) -> ModelDecider:
    """River (+ the shipped ONNX LSTM when it loads) behind the ensemble."""
    members: list[DemandModel] = [RiverDemand(regressor)]
    if lstm:
        try:
            from models.lstm_model import LstmDemand

            members.append(LstmDemand())
        except Exception as exc:  # no model file or no usable onnxruntime: River alone
            log.warning("LSTM unavailable, using River only: %s", exc)
    return ModelDecider(members=members, objective=objective, max_step=max_step)


def finite_or_none(values: Mapping[str, float]) -> dict[str, float]:
    return {k: round(float(v), 6) for k, v in values.items() if v is not None and math.isfinite(v)}
