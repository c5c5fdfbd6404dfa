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

from models.base import SkuView, clean, context_features, log_price_change

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


def _rls(state: dict[str, Any]) -> list[float]:
    got = state.get("rls")
    if not got or len(got) != 5:
        return [0.0, 0.0, _PRIOR[0], 0.0, _PRIOR[1]]  # theta0, theta1, P00, P01, P11
    return [float(v) for v in got]


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
        z0 = np.empty(len(views))
        slope = np.empty(len(views))
        for i, v in enumerate(views):
            x = context_features(v)
            x["log_price_change"] = 0.0
            z0[i] = self.pooled.predict_one(x)
            x["log_price_change"] = 1.0
            slope[i] = self.pooled.predict_one(x) - z0[i] + PRIOR_SLOPE
        shape = (len(views),) + (1,) * (lpr.ndim - 1)
        return z0.reshape(shape) + slope.reshape(shape) * lpr

    def price_slope(self, views: Sequence[SkuView]) -> np.ndarray:
        """(N,) slope of log1p(units) on the log price change: pooled + prior + the SKU's own."""
        cur = np.array([v.price for v in views], dtype=np.float64)
        z = self.pooled_z(views, np.stack([cur, cur * math.e], axis=1))
        local = np.array([_rls(v.state)[1] for v in views], dtype=np.float64)
        return (z[:, 1] - z[:, 0]) + local

    def local_z(self, views: Sequence[SkuView], prices: np.ndarray) -> np.ndarray:
        lpr = log_price_change(prices, views)
        th = np.array([_rls(v.state)[:2] for v in views], dtype=np.float64)
        th = th.reshape((len(views),) + (1,) * (lpr.ndim - 1) + (2,))
        return th[..., 0] + th[..., 1] * lpr

    def forecast(self, views: Sequence[SkuView], prices: np.ndarray) -> np.ndarray:
        z = self.pooled_z(views, prices) + self.local_z(views, prices)
        with np.errstate(over="ignore", invalid="ignore"):
            return clean(np.expm1(np.clip(z, 0.0, _MAX_Z)))

    # -- learning --------------------------------------------------------------------------
    def learn_pooled(self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        lpr = log_price_change(np.asarray(prices, dtype=np.float64), views)
        for v, r, y in zip(views, lpr, units, strict=True):
            if not (math.isfinite(r) and math.isfinite(y) and y >= 0):
                continue
            x = context_features(v)
            x["log_price_change"] = float(r)
            self.pooled.learn_one(x, math.log1p(float(y)) - PRIOR_SLOPE * float(r))
            self.n_learned += 1

    def learn_local(
        self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray, pooled_z: np.ndarray
    ) -> None:
        """Update each SKU's correction with the residual of the pooled prediction it was given."""
        lpr = log_price_change(np.asarray(prices, dtype=np.float64), views)
        for v, r, y, zp in zip(views, lpr, units, pooled_z, strict=True):
            if not (math.isfinite(r) and math.isfinite(y) and math.isfinite(zp) and y >= 0):
                continue
            t0, t1, p00, p01, p11 = _rls(v.state)
            resid = math.log1p(float(y)) - float(zp)
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
            p00, p11 = min(p00, _PRIOR[0]), min(p11, _PRIOR[1])
            p01 = max(-math.sqrt(p00 * p11), min(p01, math.sqrt(p00 * p11)))
            v.state["rls"] = [round(t0, 6), round(t1, 6), p00, p01, p11]
            v.state["nl"] = int(v.state.get("nl", 0)) + 1  # labels learned by this SKU

    def learn(self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        z = self.pooled_z(views, np.asarray(prices, dtype=np.float64))
        self.learn_pooled(views, prices, units)
        self.learn_local(views, prices, units, z)
