"""Scale-free ensemble members: per-SKU online calibration, pooled by demand scale.

A member trained on one market (the shipped LSTM: simulator SKUs selling a few units a minute)
can be off by a large factor on another (a grocery SKU selling a few units a *day*), and a
squared-error weight per SKU hardly notices: a 5x over-forecast of 0.01 units costs 0.0016
squared units a window. Two things fix that, both learned online from realised labels:

* **Calibration.** Each member's forecast is multiplied by a per-SKU factor ``c``, the ratio of
  units sold to units the member forecast on that SKU (discounted sums, about the last 200
  labels), shrunk towards the pooled ratio of the SKU's *scale bucket* (SKUs whose long-run
  level lies in the same half-decade of units per window) with a prior weight of
  :data:`TAU` units sold (a gamma prior on the ratio). A sparse SKU has little evidence of its own, so it takes its
  bucket's factor; a busy one soon has its own. A bucket pools all its SKUs, so a member 5x
  off is scaled back as soon as the bucket has sold a few units: within a few windows.
* **Pooled evidence.** Per bucket and member, the discounted sum over labels of the member's
  Poisson log-score *regret* (its log-likelihood of the label below the best member's, in nats,
  capped at :data:`REGRET_CAP`): the evidence, summed over all SKUs of the bucket, that the
  member is worse there. :mod:`models.ensemble` multiplies a member's weight by
  ``exp(-ETA_POOL · (R_m - min R))``. Nats are scale-free: a member 5x off on SKUs selling
  0.01 units a window loses 2.4 · 0.01 nats per SKU and window, over 150 SKUs 3.6 nats a
  window, so its weight falls below 5% within one or two windows. The regret forgets per unit
  sold in the bucket (about the last 50 units) and slowly per tick (about 1000 windows), so a
  bucket that holds a single long-tail SKU still collects evidence across several of its sales.

State. Per SKU (``SkuView.state``, written by :meth:`Calibrator.learn_local_batch` with the
SKU's record): ``cal`` = ``{"w": labels, "y": units, "m": {member: [units, forecast]}}`` (discounted) and
``cal_last``, the last label's contribution to the pooled sums. Shared (the decider's snapshot,
key ``_ensemble``): per bucket and member ``[units, forecast, regret]``. The engine learns
shared state once per tick from the labelled SKUs' views (``learn_pooled``) and per-SKU state
after it; the per-label contribution is only known in the per-SKU phase, so each SKU leaves it
in ``cal_last`` and the next ``learn_pooled`` that sees the SKU folds it in (one label late,
exactly once: the per-SKU phase of the same tick overwrites it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from repricer.models.base import SkuView
from repricer.models.lstm_features import LEVEL_EWMA_WEIGHT, LEVEL_FORGET

CAL_KEY = "cal"
LAST_KEY = "cal_last"
SKU_FORGET = LEVEL_FORGET  # per label: about the last 200 labels of the SKU
UNIT_FORGET = 0.995  # per unit sold in the bucket: pooled sums keep about the last 200 units
POOL_FORGET = 0.9995  # and per tick (a bucket that sells nothing forgets slowly)
REGRET_UNIT_FORGET = 0.98  # per unit sold in the bucket: regret of about the last 50 units
REGRET_FORGET = 0.999  # and per tick: a sparse bucket keeps about 1000 windows of evidence
# prior weight of the bucket's ratio in a SKU's factor, in units sold: a ratio of counts is
# noisy (its relative error about 1/sqrt(units)), so a SKU needs tens of units of its own
TAU = 20.0
TAU_POOL = 1.0  # prior weight of 1.0 in a bucket's ratio, in units
C_RANGE = (0.02, 50.0)  # a factor outside this says the member is broken, not miscalibrated
REGRET_CAP = 5.0  # nats per label: one surprising window must not silence a member
EPS = 1e-3  # floor of a forecast in the log score (units per window)
BUCKETS = (-8, 4)  # half-decades of units per window: 1e-4 .. 1e2


def bucket_of(level: float) -> str:
    """Scale bucket of a SKU selling ``level`` units a window (half-decades, as a string).

    >>> [bucket_of(x) for x in (0.004, 0.01, 0.05, 1.0, 3.0)]
    ['-5', '-4', '-3', '0', '0']
    """
    b = math.floor(2.0 * math.log10(max(level, 1e-6)))
    return str(min(max(b, BUCKETS[0]), BUCKETS[1]))


def sku_levels(views: Sequence[SkuView]) -> np.ndarray:
    """(N,) each SKU's long-run units per window: its discounted labels, the recent average
    first. Not floored (the scale-free models floor it at ``lstm_features.LEVEL_FLOOR``)."""
    got = [v.state.get(CAL_KEY) or {} for v in views]
    wy = np.array([(g.get("w", 0.0), g.get("y", 0.0)) for g in got], dtype=np.float64)
    wy = wy.reshape(len(views), 2)
    ue = np.array([v.units_ewma for v in views], dtype=np.float64)
    k = LEVEL_EWMA_WEIGHT  # the recent average counts as five labels
    n = wy[:, 0] + k
    return wy[:, 1] / n + (k / n) * np.maximum(ue, 0.0)  # (y + k·ewma) / (w + k), no overflow


def log_score(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Poisson log-likelihood of ``y`` under mean ``pred`` up to a term in ``y`` alone."""
    lam = np.maximum(pred, EPS)
    return y * np.log(lam) - lam


def _sig(x: float) -> float:
    """``x`` to 4 significant digits (what a pooled sum of many labels needs of one)."""
    return float(f"{x:.4g}")


class Calibrator:
    """Per-SKU calibration factors and pooled evidence of the ensemble's members."""

    def __init__(self) -> None:
        # bucket -> member -> [units, forecast, regret], discounted per tick
        self.pooled: dict[str, dict[str, list[float]]] = {}

    # -- shared state --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {b: {m: list(x) for m, x in ms.items()} for b, ms in self.pooled.items()}

    def restore(self, blob: Mapping[str, Any]) -> None:
        self.pooled = {
            str(b): {str(m): [float(t) for t in x] for m, x in ms.items()} for b, ms in blob.items()
        }

    def _pool(self, b: str, name: str) -> list[float]:
        return self.pooled.get(b, {}).get(name) or [0.0, 0.0, 0.0]

    # -- reading ------------------------------------------------------------------------------
    def buckets(self, views: Sequence[SkuView]) -> list[str]:
        """:func:`bucket_of` :func:`sku_levels` of every view."""
        level = sku_levels(views)
        b = np.floor(2.0 * np.log10(np.maximum(level, 1e-6)))
        return [str(int(x)) for x in np.clip(b, *BUCKETS).tolist()]

    def _per_bucket(
        self, views: Sequence[SkuView], names: Sequence[str], row: Any, bk: Sequence[str] | None
    ) -> np.ndarray:
        """(N, M): ``row(bucket)`` ((M,) array) of each SKU's bucket, computed once a bucket."""
        cache: dict[str, np.ndarray] = {}
        rows = []
        for b in self.buckets(views) if bk is None else bk:
            got = cache.get(b)
            if got is None:
                got = cache[b] = row(b)
            rows.append(got)
        return np.array(rows, dtype=np.float64).reshape(len(views), len(names))

    def factors(
        self, views: Sequence[SkuView], names: Sequence[str], bk: Sequence[str] | None = None
    ) -> np.ndarray:
        """(N, M) calibration factor of each member on each SKU (1 for what nothing taught)."""

        def prior(b: str) -> np.ndarray:
            x = np.array([self._pool(b, n)[:2] for n in names], dtype=np.float64).reshape(-1, 2)
            return (x[:, 0] + TAU_POOL) / (x[:, 1] + TAU_POOL)

        pr = self._per_bucket(views, names, prior, bk)
        none = (0.0, 0.0)
        flat: list[float] = []
        for v in views:
            got = (v.state.get(CAL_KEY) or {}).get("m") or {}
            for n in names:
                flat.extend(got.get(n) or none)
        own = np.array(flat, dtype=np.float64).reshape(len(views), len(names), 2)
        # gamma-Poisson: the bucket's ratio as a prior worth TAU units sold
        pr = np.clip(pr, *C_RANGE)
        return np.clip((own[..., 0] + TAU) / (own[..., 1] + TAU / pr), *C_RANGE)

    def penalty(
        self, views: Sequence[SkuView], names: Sequence[str], bk: Sequence[str] | None = None
    ) -> np.ndarray:
        """(N, M) pooled regret of each member in each SKU's bucket above the best member's."""

        def excess(b: str) -> np.ndarray:
            r = np.array([self._pool(b, n)[2] for n in names], dtype=np.float64)
            return r - (r.min() if len(r) else 0.0)

        return self._per_bucket(views, names, excess, bk)

    def prepare(
        self, views: Sequence[SkuView], names: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`factors` and :meth:`penalty` at once (the buckets computed once)."""
        bk = self.buckets(views)
        return self.factors(views, names, bk), self.penalty(views, names, bk)

    @staticmethod
    def scale(forecast: np.ndarray, factor: np.ndarray) -> np.ndarray:
        """A member's forecast ((N,) or (N, K)) times its (N,) factors."""
        a = np.asarray(forecast, dtype=np.float64)
        return a * factor.reshape((-1,) + (1,) * (a.ndim - 1))

    def apply(
        self, views: Sequence[SkuView], forecasts: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Each member's forecast ((N,) or (N, K)) times its factor on each SKU."""
        names = list(forecasts)
        if not names or not views:
            return {n: np.asarray(a, dtype=np.float64) for n, a in forecasts.items()}
        c = self.factors(views, names)
        return {n: self.scale(forecasts[n], c[:, j]) for j, n in enumerate(names)}

    # -- learning -------------------------------------------------------------------------------
    def learn_pooled(self, views: Sequence[SkuView]) -> None:
        """Decay the pooled sums one tick and fold in each view's last label (``cal_last``).

        Units and forecasts forget per unit sold in the bucket (and slowly per tick), so a
        sparse bucket keeps enough units for a ratio, a busy one follows changes quickly.
        """
        lasts = [got for v in views if (got := v.state.get(LAST_KEY)) and len(got) == 3]
        sold: dict[str, float] = {}
        for b, y, _ in lasts:
            sold[str(b)] = sold.get(str(b), 0.0) + float(y)
        for b, ms in self.pooled.items():
            keep = POOL_FORGET * UNIT_FORGET ** sold.get(b, 0.0)
            keep_r = REGRET_FORGET * REGRET_UNIT_FORGET ** sold.get(b, 0.0)
            for x in ms.values():
                x[0] *= keep
                x[1] *= keep
                x[2] *= keep_r
        for last in lasts:
            b, y, per = str(last[0]), float(last[1]), last[2]
            ms = self.pooled.setdefault(b, {})
            for n, (f, r) in per.items():
                x = ms.setdefault(n, [0.0, 0.0, 0.0])
                x[0] += y
                x[1] += float(f)
                x[2] += float(r)
        for ms in self.pooled.values():  # bounded: forgotten members go
            for n in [n for n, x in ms.items() if x[1] < 1e-6 and x[2] < 1e-6 and x[0] < 1e-6]:
                del ms[n]

    def learn_local_batch(
        self,
        views: Sequence[SkuView],
        raw: Mapping[str, np.ndarray],
        calibrated: Mapping[str, np.ndarray],
        units: np.ndarray,
    ) -> None:
        """One label per SKU: the SKU's sums, and its contribution to the pooled ones.

        ``raw[name]`` (N,) is the member's own forecast (``nan``: none), ``calibrated[name]``
        the one the ensemble used (``nan``: none).
        """
        n = len(views)
        if n == 0:
            return
        names = list(raw)
        y = np.asarray(units, dtype=np.float64).reshape(n)
        levels = self.buckets(views)
        m = len(names)
        f = np.array([np.asarray(raw[k], dtype=np.float64) for k in names]).reshape(m, n).T
        g = np.array([np.asarray(calibrated[k], dtype=np.float64) for k in names])
        g = g.reshape(m, n).T
        ok = np.isfinite(f) & np.isfinite(g) & (f >= 0) & np.isfinite(y)[:, None]
        with np.errstate(invalid="ignore"):
            score = np.where(ok, log_score(np.where(ok, g, 1.0), y[:, None]), -np.inf)
        best = score.max(axis=1, initial=-np.inf) if m else np.full(n, -np.inf)
        gap = np.where(ok, best[:, None] - np.where(ok, score, 0.0), 0.0)
        regret = np.minimum(gap, REGRET_CAP)
        worst = np.where(ok.any(axis=1), regret.max(axis=1, initial=0.0), 0.0)
        regret = np.where(ok, regret, worst[:, None])
        for i, v in enumerate(views):
            if not math.isfinite(float(y[i])):
                continue
            got = dict(v.state.get(CAL_KEY) or {})
            got["w"] = round(SKU_FORGET * float(got.get("w", 0.0)) + 1.0, 4)
            got["y"] = round(SKU_FORGET * float(got.get("y", 0.0)) + float(y[i]), 4)
            sums = dict(got.get("m") or {})
            per: dict[str, list[float]] = {}
            for j, k in enumerate(names):
                if not ok[i, j]:
                    continue
                sy, sf = sums.get(k) or (0.0, 0.0)
                sums[k] = [
                    round(SKU_FORGET * float(sy) + float(y[i]), 4),
                    round(SKU_FORGET * float(sf) + float(f[i, j]), 4),
                ]
                per[k] = [_sig(float(f[i, j])), _sig(float(regret[i, j]))]
            got["m"] = sums
            v.state[CAL_KEY] = got
            v.state[LAST_KEY] = [levels[i], float(y[i]), per] if per else None
