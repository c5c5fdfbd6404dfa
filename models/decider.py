"""From forecasts to a proposed price: elasticity, objective, exploration, reasons.

``ModelDecider.propose`` decides every SKU of a tick in one vectorised pass: each SKU's
response posterior (``models.elasticity``: elasticity and curvature) gives the price that
maximises expected profit ``(p - cost) * q(p)`` (or revenue) among candidate prices
(``models.curvature``), drawn by Thompson sampling so that the response stays identifiable
while it is uncertain; the demand models (one batch per model, combined by ``models.ensemble``)
give the demand level. Draws are deterministic per (SKU, window): a replay makes the same
decision, so the PriceChange gets the same ``event_id``. The guardrails have the last word.

The decider knows its members only through :class:`~models.base.DemandModel`: it forecasts,
learns (shared phase, per-SKU phase), snapshots and restores every member alike, and
:func:`default_decider` takes the members from :mod:`models.registry`.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from repricer.models import registry
from repricer.models import stock as stock_clock
from repricer.models.base import DemandModel, SkuView, Snapshot
from repricer.models.calibration import Calibrator
from repricer.models.curvature import best_price, response_ratio, thompson_draw
from repricer.models.draws import unit_normals
from repricer.models.elasticity import Elasticity, units_per_label
from repricer.models.ensemble import combine, update_errors, update_errors_batch
from repricer.models.guardrails import Bounds
from repricer.models.pool_experiment import PoolExperiment
from repricer.models.pricing import Objective, objective_ratio, optimal_price
from repricer.models.river_model import RegressorName

log = logging.getLogger(__name__)
ENSEMBLE = "ensemble"
_ELASTICITY = "_elasticity"  # key of the pooled elasticity prior in the snapshot
_ENSEMBLE = "_ensemble"  # key of the members' pooled calibration and evidence in the snapshot
_RAW = "_raw_"  # prefix of a member's uncalibrated forecast saved with a decision
_BYTES = "b64"  # a member snapshot given as bytes is stored as {"b64": base64 text}


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


class Decider(Protocol):
    """What the window engine needs from the decision layer (``ModelDecider``, or a test fake).

    Learning is split so that each label is learned exactly once across crashes: shared state
    (``learn_pooled``, persisted via ``snapshot``) once per tick and partition; per-SKU state
    (``learn_local_batch``, in each ``SkuView.state``) atomically with the SKU's own record: the
    engine calls it once per tick with that tick's labels (at most one per SKU) before it writes
    any SKU record of the tick.
    """

    def propose(
        self, views: Sequence[SkuView], bounds: Sequence[Bounds], min_margin: float
    ) -> list[Proposal]: ...

    def predict_at(self, views: Sequence[SkuView], prices: np.ndarray) -> dict[str, np.ndarray]: ...

    def learn_pooled(
        self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray
    ) -> None: ...

    def learn_local_batch(
        self, views: Sequence[SkuView], saveds: Sequence[Mapping[str, Any]], units: np.ndarray
    ) -> None: ...

    def snapshot(self) -> str | None: ...

    def restore(self, blob: str) -> None: ...

    def models(self) -> Sequence[DemandModel]:
        """The demand models deciding (for hot reload, metrics and the dashboard)."""
        ...


@dataclass
class ModelDecider:
    """Demand models (level) + per-SKU elasticity posterior + objective + exploration.

    The price comes from the elasticity posterior's response ``log q = a + e·x + k·x²/2``: the
    best of candidate prices (``models.curvature``; with curvature ``k = 0`` exactly the markup
    rule ``c·e/(e+1)``, whatever the demand level), at most ``max_step`` per decision.
    Exploration is Thompson sampling: ``(e, k)`` is drawn from the SKU's posterior
    (deterministically per SKU and hour), so a SKU explores while its response is uncertain
    and settles as the posterior narrows. The demand models give the level (forecast at the old
    and the new price, reason codes).
    """

    members: Sequence[DemandModel]
    objective: Objective = "profit"
    max_step: float = 0.05
    # hold unless the move gains this fraction of expected profit (under the drawn elasticity):
    # near the optimum, moves of a few tenths of a percent earn nothing and churn prices
    min_gain: float = 0.002
    thompson: float = 1.0  # scale of the posterior draw (0: certainty equivalence)
    # one posterior draw per SKU per hour of event time instead of one per decision: as much
    # profit with a fifth to a tenth of the price changes (measured, see the commit history)
    thompson_hold_ms: int = 3_600_000
    # exploration pays only where enough units will sell to learn from: a SKU whose own labels
    # average fewer than explore_units_per_day[0] units a day does not explore (it prices at
    # its posterior mean, i.e. at the pooled prior while its own data say little), one above
    # [1] explores fully, linearly in between; the first explore_after labels explore fully
    explore_units_per_day: tuple[float, float] = (20.0, 100.0)
    explore_after: int = 10
    # a SKU that does not explore prices where its expected gain over the catalogue price, less
    # hold_z sds of it from the pooled mean's uncertainty (times 1 - explore_scale), is best
    hold_z: float = 1.0
    pool: PoolExperiment = field(default_factory=PoolExperiment)  # sparse SKUs learn the pool
    windows_per_day: float = 1440.0
    restock_windows: float = 0.0  # stock must cover this many windows of demand; 0: ignore stock
    salvage: float = 1.0  # worth of a unit left over after restock_windows, fraction of cost
    elasticity: Elasticity = field(default_factory=Elasticity)
    # members' forecasts scaled per SKU to what it sells, weights with pooled evidence
    # (models.calibration); False: members as they are, weights from per-SKU losses only
    calibrate: bool = True
    calibrator: Calibrator = field(default_factory=Calibrator)
    baselines: Sequence[DemandModel] = field(default_factory=registry.build_baselines)
    version: str = "model-v2"
    # the members' forecasts at the price in force from the last ``level`` (``propose``), kept
    # for one ``predict_at`` on the same views: SKUs whose price did not move are not forecast
    # twice (forecasts are per row: scoring a subset gives the same numbers)
    _at_cur: tuple[Sequence[SkuView], np.ndarray, dict[str, np.ndarray]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        names = [m.name for m in self.members]
        bad = {n for n in names if names.count(n) > 1 or n.startswith("_") or n == ENSEMBLE}
        if bad:
            raise ValueError(f"member names must be unique, not {ENSEMBLE!r}, no '_': {bad}")

    def models(self) -> Sequence[DemandModel]:
        """The ensemble's members (not the baselines)."""
        return tuple(self.members)

    def _ensemble(
        self, views: Sequence[SkuView], raw: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Members' forecasts scaled by their per-SKU calibration, and their ensemble."""
        if not self.calibrate or not raw or not views:
            return {**raw, ENSEMBLE: combine(views, raw)}
        names = list(raw)
        c, pen = self.calibrator.prepare(views, names)
        out = {n: self.calibrator.scale(raw[n], c[:, j]) for j, n in enumerate(names)}
        return {**out, ENSEMBLE: combine(views, out, pen)}

    def forecasts(self, views: Sequence[SkuView], prices: np.ndarray) -> dict[str, np.ndarray]:
        """Every member's (calibrated) and baseline's forecast, plus the members' ensemble."""
        out = self._ensemble(views, {m.name: m.forecast(views, prices) for m in self.members})
        for b in self.baselines:
            out[b.name] = b.forecast(views, prices)
        return out

    def level(self, views: Sequence[SkuView]) -> np.ndarray:
        """(N,) the ensemble's forecast at the price in force."""
        cur = np.array([v.price for v in views], dtype=np.float64)
        at = {m.name: m.forecast(views, cur[:, None])[:, 0] for m in self.members}
        self._at_cur = (views, cur, at)
        return self._ensemble(views, at)[ENSEMBLE]

    def _members_at(self, views: Sequence[SkuView], prices: np.ndarray) -> dict[str, np.ndarray]:
        """(N,) each member's own (uncalibrated) forecast at ``prices``, reusing ``level``'s
        where nothing moved."""
        memo, self._at_cur = self._at_cur, None
        if memo is not None and memo[0] is views:
            cur = np.array([v.price for v in views], dtype=np.float64)
            if np.array_equal(cur, memo[1]) and set(memo[2]) == {m.name for m in self.members}:
                moved = np.flatnonzero(~(prices == cur))
                out = {k: a.copy() for k, a in memo[2].items()}
                if moved.size:
                    sub = [views[i] for i in moved.tolist()]
                    for m in self.members:
                        out[m.name][moved] = m.forecast(sub, prices[moved][:, None])[:, 0]
                return out
        return {m.name: m.forecast(views, prices[:, None])[:, 0] for m in self.members}

    def model_versions(self) -> dict[str, str]:
        return {m.name: m.version for m in self.members} | {
            "elasticity": self.elasticity.version,
            "decider": self.version,
        }

    def propose(
        self, views: Sequence[SkuView], bounds: Sequence[Bounds], min_margin: float
    ) -> list[Proposal]:
        if not views:
            return []
        cur = np.array([v.price for v in views], dtype=np.float64)
        cost = np.array([b.cost for b in bounds], dtype=np.float64)
        lo = np.array([b.floor(min_margin) for b in bounds], dtype=np.float64)
        hi = np.array([b.max_price for b in bounds], dtype=np.float64)
        r, scale = self.elasticity.response(views), self.explore_scale(views)
        e_mean, e_draw, k_draw = r.e, r.e, r.k
        if self.thompson > 0:
            z = unit_normals(views, "ts", self.thompson_hold_ms)
            e_draw, k_draw = thompson_draw(r, self.thompson * scale, z)
        anchor = np.array([max(v.ref_price, 1e-9) for v in views], dtype=np.float64)
        down, up = cur * (1.0 - self.max_step), cur * (1.0 + self.max_step)
        target = best_price(e_draw, k_draw, anchor, cost, lo, hi, down, up, self.objective)
        exploit = best_price(e_mean, r.k, anchor, cost, lo, hi, down, up, self.objective)
        # sparse SKUs: the pool's experiment, then the expected-profit price (models.pool_experiment)
        rule = (self.objective, self.hold_z, self.min_gain, self.windows_per_day)
        target, back, trial = self.pool.steer(
            self.elasticity, views, (e_mean, r.e_sd, r.k), target, (cost, lo, hi), scale, rule
        )
        level = self.level(views)
        stock_move = np.zeros(len(views), dtype=np.int8)
        if self.restock_windows > 0:
            target, stock_move = self._cover_stock(views, target, e_draw, level, cost, lo, hi)
        price = np.clip(target, down, up)
        explored = np.sign(np.clip(exploit, down, up) - cur) != np.sign(price - cur)
        gain = objective_ratio(price, cur, e_draw, cost, self.objective, k_draw, anchor) - 1.0
        back &= (np.abs(price / cur - 1.0) > self.min_gain) & (stock_move == 0)
        hold = ~((gain > max(self.min_gain, 1e-9)) | back) & (stock_move == 0)
        price = np.where(hold, cur, price)
        explored &= ~hold & (stock_move == 0) & ~back
        ok = np.isfinite(e_mean) & np.isfinite(price) & np.isfinite(level)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            q_new = np.maximum(level, 0.0) * response_ratio(price, cur, e_mean, r.k, anchor)
        versions = self.model_versions()
        out = []
        # per SKU from lists: indexing numpy arrays element by element costs more than the rest
        with np.errstate(divide="ignore", invalid="ignore"):  # the elasticity at the new price
            e_l = (e_mean + r.k * np.nan_to_num(np.log(price / anchor))).tolist()
        ok_l, move_l, hold_l = ok.tolist(), stock_move.tolist(), hold.tolist()
        expl_l = np.where(trial & ~hold, 2, explored).tolist()
        level_l, price_l, q_new_l = level.tolist(), price.tolist(), q_new.tolist()
        for i, v in enumerate(views):
            if not ok_l[i]:
                out.append(
                    Proposal(
                        math.nan, ("model_unavailable",), math.nan, math.nan, math.nan, versions
                    )
                )
                continue
            e = e_l[i]
            reasons: list[str] = []
            if move_l[i] > 0:
                reasons.append("low_stock")
            elif move_l[i] < 0:
                reasons.append("overstock")
            elif expl_l[i]:
                reasons.append("pool_experiment" if expl_l[i] == 2 else "exploration")
            elif not hold_l[i]:
                reasons.append("profit_opt" if self.objective == "profit" else "revenue_opt")
            if -1.0 < e:
                reasons.append("elasticity_low")
            elif e < -3.0:
                reasons.append("elasticity_high")
            q_now = level_l[i]
            if v.windows_seen >= 3:
                if q_now > 1.25 * v.units_ewma + 0.5:
                    reasons.append("demand_up")
                elif q_now < 0.75 * v.units_ewma - 0.5:
                    reasons.append("demand_down")
            if hold_l[i]:
                reasons.append("hold")
            out.append(
                Proposal(
                    price=price_l[i],
                    reasons=tuple(reasons),
                    forecast_at_old=q_now,
                    forecast_at_new=q_new_l[i],
                    elasticity=e,
                    model_versions=versions,
                    explored=expl_l[i] == 1,
                )
            )
        return out

    def explore_scale(self, views: Sequence[SkuView]) -> np.ndarray:
        """(N,) 0..1, how much each SKU explores, from the units a day its own labels show."""
        labels, per_label = units_per_label(views)
        lo, hi = self.explore_units_per_day
        per_day = per_label * self.windows_per_day
        scale = np.clip((per_day - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
        return np.where(labels < self.explore_after, 1.0, scale)

    def _cover_stock(
        self,
        views: Sequence[SkuView],
        target: np.ndarray,
        e: np.ndarray,
        level: np.ndarray,
        cost: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Targets for SKUs with known stock, and +1/-1 where stock raised/lowered them.

        Selling ``stock`` over the next ``restock_windows`` windows at price ``p``: while demand
        at the profit optimum would sell out sooner, the best price is the one at which expected
        demand over the horizon equals the stock (``p_cover``); when it would leave stock over,
        units left are worth only ``salvage * cost``, so the optimum is ``p_cover`` but not below
        the profit optimum at that lower unit cost. Both cases: ``max(p_cover, p*(salvage·c))``.
        """
        stock = np.array([math.nan if v.stock is None else v.stock for v in views])
        known = np.isfinite(stock) & np.isfinite(e) & (e < 0) & np.isfinite(level) & (level > 0)
        if not known.any():
            return target, np.zeros(len(views), dtype=np.int8)
        cur = np.array([v.price for v in views], dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            window_ms = 86_400_000 / self.windows_per_day
            left = stock_clock.windows_left(views, self.restock_windows, window_ms)
            rate = stock_clock.demand_per_window(views, e, level)
            demand = left * np.where(known, rate, 1.0)
            p_cover = cur * (np.maximum(stock, 0.0) / demand) ** (1.0 / np.where(known, e, -1.0))
        p_low = optimal_price(e, self.salvage * cost, lo, hi, self.objective)
        inv = np.minimum(np.maximum(np.maximum(p_cover, p_low), lo), np.maximum(hi, lo))
        inv = np.where(known & np.isfinite(inv), inv, target)
        move = np.where(inv > target * (1 + 1e-9), 1, np.where(inv < target * (1 - 1e-9), -1, 0))
        return inv, move.astype(np.int8)

    def predict_at(self, views: Sequence[SkuView], prices: np.ndarray) -> dict[str, np.ndarray]:
        """(N,) forecasts of every model at one price per SKU, saved to learn and score later.

        Keys starting with ``_`` are internal (the pooled River prediction the per-SKU part
        learns the residual of); the others become rows of the ``forecasts`` table.
        """
        p = np.asarray(prices, dtype=np.float64).reshape(len(views))
        raw = self._members_at(views, p)
        out = self._ensemble(views, raw)
        if self.calibrate:
            out.update({_RAW + k: a for k, a in raw.items()})
        for b in self.baselines:
            out[b.name] = b.forecast(views, p[:, None])[:, 0]
        for m in self.members:
            out.update(m.decision_memo(views, p))
        return out

    def learn_pooled(self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        self._at_cur = None
        for m in self.members:
            m.learn_pooled(views, prices, units)
        self.elasticity.learn_pooled(views, prices, units)
        if self.calibrate:
            self.calibrator.learn_pooled(views)

    def learn_local_batch(
        self, views: Sequence[SkuView], saveds: Sequence[Mapping[str, Any]], units: np.ndarray
    ) -> None:
        """Learn one label per SKU into each SKU's state, vectorised over the SKUs.

        ``saveds[i]`` is what the decision saved for ``views[i]`` (price and forecasts). The same
        as :meth:`learn_local` label by label (tests/unit/test_decider_batch.py): no row reads
        another SKU's state or anything this writes.
        """
        self._at_cur = None
        n = len(views)
        if n == 0:
            return
        if len({id(v.state) for v in views}) != n:
            raise ValueError("learn_local_batch takes at most one label per SKU")
        y = np.asarray(units, dtype=np.float64).reshape(n)
        preds = [s.get("pred") or {} for s in saveds]
        prices = np.array([float(s["price"]) for s in saveds], dtype=np.float64)
        for m in self.members:
            m.learn_local(views, prices, y, preds)
        self.elasticity.learn_local_batch(views, prices, y)
        for v, pr, u in zip(views, prices.tolist(), y.tolist(), strict=True):
            stock_clock.mark(v, pr, u)
        nan = math.nan
        self._learn_calibration(views, preds, y)
        update_errors_batch(
            views,
            {m.name: np.array([p.get(m.name, nan) for p in preds]) for m in self.members},
            y,
            np.array([p.get(ENSEMBLE, nan) for p in preds], dtype=np.float64),
        )

    def learn_local(self, view: SkuView, saved: Mapping[str, Any], units: float) -> None:
        """One label of one SKU, learned by each part in turn (the reference for the batch)."""
        preds = saved.get("pred") or {}
        for m in self.members:
            m.learn_local([view], np.array([saved["price"]]), np.array([units]), [preds])
        self.elasticity.learn_local(view, float(saved["price"]), units)
        stock_clock.mark(view, float(saved["price"]), float(units))
        self._learn_calibration([view], [preds], np.array([units], dtype=np.float64))
        update_errors(
            view,
            {m.name: preds.get(m.name, math.nan) for m in self.members},
            units,
            preds.get(ENSEMBLE),
        )

    def _learn_calibration(
        self, views: Sequence[SkuView], preds: Sequence[Mapping[str, float]], y: np.ndarray
    ) -> None:
        if not self.calibrate:
            return
        nan = math.nan
        names = [m.name for m in self.members]
        self.calibrator.learn_local_batch(
            views,
            {k: np.array([p.get(_RAW + k, nan) for p in preds], dtype=np.float64) for k in names},
            {k: np.array([p.get(k, nan) for p in preds], dtype=np.float64) for k in names},
            y,
        )

    def snapshot(self) -> str | None:
        """The shared state: every member's snapshot that is not ``None``, by member name, and
        the pooled elasticity prior, as one JSON object."""
        blobs: dict[str, Any] = {}
        for m in self.members:
            got = m.snapshot()
            if got is not None:
                blobs[m.name] = _encode(got)
        blobs[_ELASTICITY] = self.elasticity.snapshot()
        if self.calibrate:
            blobs[_ENSEMBLE] = self.calibrator.snapshot()
        return json.dumps(blobs)

    def restore(self, blob: str) -> None:
        """Back to a :meth:`snapshot`: members it has a snapshot of restore theirs; the others
        keep their state (a member added since starts fresh)."""
        self._at_cur = None
        blobs = json.loads(blob)
        for m in self.members:
            if m.name in blobs:
                m.restore(_decode(blobs[m.name]))
        if _ELASTICITY in blobs:
            self.elasticity.restore(blobs[_ELASTICITY])
        if _ENSEMBLE in blobs:
            self.calibrator.restore(blobs[_ENSEMBLE])


def _encode(snap: Snapshot) -> Any:
    return {_BYTES: base64.b64encode(snap).decode()} if isinstance(snap, bytes) else snap


def _decode(obj: Any) -> bytes | str:
    if isinstance(obj, dict):
        return base64.b64decode(obj[_BYTES])
    return str(obj)


def default_decider(
    *,
    max_step: float = 0.05,
    objective: Objective = "profit",
    lstm: bool = True,
    regressor: RegressorName = "bayes",
    restock_windows: float = 0.0,
    salvage: float = 1.0,
    thompson_hold_ms: int = 3_600_000,
    windows_per_day: float = 1440.0,
    pool: PoolExperiment | None = None,
) -> ModelDecider:
    """The registered members (:mod:`models.registry`: River + the shipped ONNX LSTM when it
    loads; ``lstm=False`` leaves the LSTM out) behind the ensemble."""
    members = registry.build_members(exclude=() if lstm else ("lstm",), regressor=regressor)
    return ModelDecider(
        members=members,
        objective=objective,
        max_step=max_step,
        restock_windows=restock_windows,
        salvage=salvage,
        thompson_hold_ms=thompson_hold_ms,
        windows_per_day=windows_per_day,
        pool=pool or PoolExperiment(),
    )


def finite_or_none(values: Mapping[str, float]) -> dict[str, float]:
    return {k: round(float(v), 6) for k, v in values.items() if v is not None and math.isfinite(v)}
