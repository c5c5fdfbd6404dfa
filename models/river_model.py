"""Online River demand model: one pooled regressor across SKUs plus a tiny per-SKU correction.

The pooled River regressor learns ``log1p(units)`` of the next window from context features
(demand level, traffic, last window, time of day, price level) and the log price *change*
(candidate ÷ price in force), so every
SKU — including a brand-new one — starts from what all SKUs taught it. Each SKU then keeps a
two-parameter recursive-least-squares correction (intercept and price slope, with forgetting)
of the pooled model's residual: its own level and its own elasticity, in 5 floats of state.

The pooled regressor is chosen by measurement (``repricer bench forecast``); the default is
River's ``BayesianLinearRegression`` with forgetting, which was the most accurate of the
candidates on simulator data and is cheap (see README).
"""

from __future__ import annotations

import base64
import math
import pickle
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from river import linear_model, optim, preprocessing

try:  # imported here, not in the first tick that learns (a third of a second)
    import pandas as _pd
except ImportError:  # pragma: no cover - pandas comes with chdb; without it, learn_one per row
    _pd = None

from models.base import (
    CONTEXT_FEATURES,
    SkuView,
    clean,
    context_features,
    context_matrix,
    log_price_change,
)

RegressorName = Literal["bayes", "linear", "pa"]
_MAX_Z = 12.0  # expm1(12) ≈ 160k units per window: beyond that a forecast is an error

# Per-SKU RLS: prior variance of (intercept, slope), forgetting factor.
_PRIOR = (0.5, 0.25)
# Prior slope of log1p(units) on the log price change (≈ elasticity -1.5 at ~2 units per
# window). The pooled model learns the deviation from it, so a cold model does not believe
# demand ignores price (and walk prices up) before exploration has taught it otherwise.
PRIOR_SLOPE = -1.0
_FORGET = 0.995


def make_regressor(name: RegressorName = "bayes") -> Any:
    """A fresh pooled River regressor."""
    if name == "bayes":
        return linear_model.BayesianLinearRegression(alpha=1.0, beta=2.0, smoothing=0.999)
    if name == "linear":
        return preprocessing.StandardScaler() | linear_model.LinearRegression(
            optimizer=optim.SGD(0.01), l2=1e-4, intercept_lr=0.01
        )
    if name == "pa":
        return preprocessing.StandardScaler() | linear_model.PARegressor(C=0.01, mode=2, eps=0.1)
    raise ValueError(f"unknown regressor {name!r}")


_RLS_NEW = (0.0, 0.0, _PRIOR[0], 0.0, _PRIOR[1])  # theta0, theta1, P00, P01, P11


def _rls(views: Sequence[SkuView]) -> np.ndarray:
    """(N, 5) each SKU's correction: theta0, theta1, P00, P01, P11 (the prior if it has none)."""
    rows = [got if (got := v.state.get("rls")) and len(got) == 5 else _RLS_NEW for v in views]
    return np.array(rows, dtype=np.float64).reshape(len(views), 5)


_POOLED_FEATURES = (*CONTEXT_FEATURES, "log_price_change")


def _frames(x: np.ndarray, y: list[float]) -> tuple[Any, Any] | None:
    """The pooled rows as a pandas DataFrame and Series (River's batch input), or None."""
    if _pd is None:  # pragma: no cover - pandas comes with chdb
        return None
    return _pd.DataFrame(x, columns=list(_POOLED_FEATURES)), _pd.Series(y, dtype=np.float64)


class RiverDemand:
    """Pooled River regressor + per-SKU RLS correction, as a :class:`DemandModel`."""

    name = "river"

    def __init__(
        self, regressor: RegressorName = "bayes", *, factory: Callable[[], Any] | None = None
    ) -> None:
        self.regressor_name = regressor
        self.pooled = factory() if factory else make_regressor(regressor)
        self.n_learned = 0

    @property
    def version(self) -> str:
        return f"river-{self.regressor_name}-1"

    # -- persistence of the pooled part (the per-SKU part lives in SkuView.state) -------------
    def snapshot(self) -> str:
        return base64.b64encode(pickle.dumps((self.pooled, self.n_learned))).decode()

    def restore(self, blob: str) -> None:
        self.pooled, self.n_learned = pickle.loads(
            base64.b64decode(blob)
        )  # our own changelog topic

    # -- forecasting ---------------------------------------------------------------------------
    def pooled_z(self, views: Sequence[SkuView], prices: np.ndarray) -> np.ndarray:
        """Pooled prediction of ``log1p(units)``, same shape as ``prices`` ((N,) or (N, K)).

        Every candidate regressor is affine in the log price ratio, so two predictions per SKU
        (at ratio 0 and 1) give the whole candidate grid, however many candidates there are.
        """
        lpr = log_price_change(np.asarray(prices, dtype=np.float64), views)
        z0, slope = self._pooled_parts(views)
        shape = (len(views),) + (1,) * (lpr.ndim - 1)
        return z0.reshape(shape) + slope.reshape(shape) * lpr

    def _pooled_parts(self, views: Sequence[SkuView]) -> tuple[np.ndarray, np.ndarray]:
        """(N,) pooled prediction at the price in force, and its slope on the log price change."""
        reg = self.pooled
        if isinstance(reg, linear_model.BayesianLinearRegression):
            # linear without intercept: its weights are its predictions at unit vectors, and
            # summing them feature by feature in the dict's order reproduces predict_one exactly
            x = context_matrix(views)
            acc = np.zeros(len(views))
            for j, f in enumerate(CONTEXT_FEATURES):
                acc = acc + reg.predict_one({f: 1.0}) * x[:, j]
            w = reg.predict_one({"log_price_change": 1.0})
            z0 = acc + w * 0.0
            return z0, ((acc + w * 1.0) - z0) + PRIOR_SLOPE
        z0 = np.empty(len(views))
        slope = np.empty(len(views))
        for i, v in enumerate(views):
            x_one = context_features(v)
            x_one["log_price_change"] = 0.0
            z0[i] = reg.predict_one(x_one)
            x_one["log_price_change"] = 1.0
            slope[i] = reg.predict_one(x_one) - z0[i] + PRIOR_SLOPE
        return z0, slope

    def price_slope(self, views: Sequence[SkuView]) -> np.ndarray:
        """(N,) slope of log1p(units) on the log price change: pooled + prior + the SKU's own."""
        cur = np.array([v.price for v in views], dtype=np.float64)
        z = self.pooled_z(views, np.stack([cur, cur * math.e], axis=1))
        local = _rls(views)[:, 1]
        return (z[:, 1] - z[:, 0]) + local

    def local_z(self, views: Sequence[SkuView], prices: np.ndarray) -> np.ndarray:
        lpr = log_price_change(prices, views)
        th = _rls(views)[:, :2]
        th = th.reshape((len(views),) + (1,) * (lpr.ndim - 1) + (2,))
        return th[..., 0] + th[..., 1] * lpr

    def forecast(self, views: Sequence[SkuView], prices: np.ndarray) -> np.ndarray:
        z = self.pooled_z(views, prices) + self.local_z(views, prices)
        with np.errstate(over="ignore", invalid="ignore"):
            return clean(np.expm1(np.clip(z, 0.0, _MAX_Z)))

    # -- learning --------------------------------------------------------------------------
    def learn_pooled(self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        lpr = log_price_change(np.asarray(prices, dtype=np.float64), views)
        y = np.asarray(units, dtype=np.float64).reshape(-1)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(lpr) & np.isfinite(y) & (y >= 0)
        idx = np.flatnonzero(ok).tolist()
        if not idx:
            return
        x = np.column_stack([context_matrix([views[i] for i in idx]), lpr[idx]])
        target = [
            math.log1p(u) - PRIOR_SLOPE * r
            for u, r in zip(y[idx].tolist(), lpr[idx].tolist(), strict=True)
        ]
        reg = self.pooled
        batch = (
            _frames(x, target)
            if isinstance(reg, linear_model.BayesianLinearRegression) and hasattr(reg, "learn_many")
            else None
        )
        if batch is not None:
            # River's closed form of the batch (row k weighted by its smoothing s^(N-1-k)): the
            # posterior of learn_one row by row, without a 9x9 inverse per row
            reg.learn_many(*batch)
        else:
            for row, t in zip(x.tolist(), target, strict=True):
                self.pooled.learn_one(dict(zip(_POOLED_FEATURES, row, strict=True)), t)
        self.n_learned += len(idx)

    def learn_local(
        self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray, pooled_z: np.ndarray
    ) -> None:
        """Update each SKU's correction with the residual of the pooled prediction it was given.

        One RLS step per label, vectorised over the batch (one label per SKU: each row reads
        and writes its own SKU's state).
        """
        lpr = log_price_change(np.asarray(prices, dtype=np.float64), views)
        y = np.asarray(units, dtype=np.float64).reshape(-1)
        zp = np.asarray(pooled_z, dtype=np.float64).reshape(-1)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(lpr) & np.isfinite(y) & np.isfinite(zp) & (y >= 0)
        idx = np.flatnonzero(ok).tolist()
        if not idx:
            return
        vs = [views[i] for i in idx]
        r, y, zp = lpr[idx], y[idx], zp[idx]
        t0, t1, p00, p01, p11 = _rls(vs).T
        # math.log1p, as the pooled model's target (numpy's differs in the last bit)
        resid = np.array([math.log1p(u) for u in y.tolist()]) - zp
        # RLS with forgetting for x = (1, r)
        px0, px1 = p00 + p01 * r, p01 + p11 * r
        denom = _FORGET + px0 + px1 * r
        k0, k1 = px0 / denom, px1 / denom
        err = resid - (t0 + t1 * r)
        t0, t1 = t0 + k0 * err, t1 + k1 * err
        p00, p01, p11 = (
            (p00 - k0 * px0) / _FORGET,
            (p01 - k0 * px1) / _FORGET,
            (p11 - k1 * px1) / _FORGET,
        )
        # bounded: forgetting without excitation must not wind the covariance up
        p00, p11 = np.minimum(p00, _PRIOR[0]), np.minimum(p11, _PRIOR[1])
        with np.errstate(invalid="ignore"):
            lim = np.sqrt(p00 * p11)
        p01 = np.maximum(-lim, np.minimum(p01, lim))
        for v, a, b, c, d, e in zip(
            vs, t0.tolist(), t1.tolist(), p00.tolist(), p01.tolist(), p11.tolist(), strict=True
        ):
            v.state["rls"] = [round(a, 6), round(b, 6), c, d, e]
            v.state["nl"] = int(v.state.get("nl", 0)) + 1  # labels learned by this SKU

    def learn(self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        z = self.pooled_z(views, np.asarray(prices, dtype=np.float64))
        self.learn_pooled(views, prices, units)
        self.learn_local(views, prices, units, z)
