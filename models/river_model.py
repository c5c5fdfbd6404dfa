"""Online River demand model: one pooled regressor across SKUs plus a tiny per-SKU correction.

The pooled River regressor learns ``log1p(units)`` of the next window from context features
(demand level, traffic, last window, time of day, price level) and the log price *change*
(candidate ÷ price in force), so every
SKU — including a brand-new one — starts from what all SKUs taught it. Each SKU then keeps a
two-parameter recursive-least-squares correction (intercept and price slope, with forgetting)
of the pooled model's residual: its own level and its own elasticity, in 5 floats of state.

The pooled regressor is chosen by measurement (``repricer bench forecast``); the default is
River's ``BayesianLinearRegression`` with forgetting, which was the most accurate of the
candidates on simulator data and is cheap (see README), in a numerically robust form
(:class:`StableBayesianLinearRegression`).
"""

from __future__ import annotations

import base64
import math
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from river import linear_model, optim, preprocessing

from repricer.models.base import (
    CONTEXT_FEATURES,
    ModelBase,
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


# The prior's weight in the smoothed posterior never decays below this (a ridge of
# _PRIOR_FLOOR / alpha on the precision; the data's own weights sum to at most 1).
_PRIOR_FLOOR = 1e-8


def _spd_inverse(a: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite matrix, through its Cholesky factor.

    If rounding left it not numerically positive definite, the smallest diagonal jitter that
    makes it so (1e-12 of its largest diagonal entry, then 100 times more, up to 1e-4) is added
    first.

    >>> _spd_inverse(np.array([[4.0, 2.0], [2.0, 2.0]])).round(6).tolist()
    [[0.5, -0.5], [-0.5, 1.0]]
    >>> _spd_inverse(np.ones((2, 2))).shape  # singular: jittered, not an error
    (2, 2)
    """
    a = (a + a.T) / 2.0
    if not np.isfinite(a).all():
        raise np.linalg.LinAlgError("precision matrix is not finite")
    eye = np.eye(len(a))
    scale = float(np.max(np.abs(np.diag(a)), initial=0.0)) or 1.0
    for jitter in (0.0, *(scale * 10.0**k for k in range(-12, -3, 2))):
        try:
            low = np.linalg.cholesky(a + jitter * eye if jitter else a)
        except np.linalg.LinAlgError:
            continue
        low_inv = np.linalg.solve(low, eye)
        return low_inv.T @ low_inv
    raise np.linalg.LinAlgError("precision matrix is not positive definite")


class StableBayesianLinearRegression(linear_model.BayesianLinearRegression):
    """River's ``BayesianLinearRegression`` whose posterior can always be computed.

    With ``smoothing`` every row decays the prior's precision by ``smoothing``, so one tick of
    100k rows at 0.999 leaves ``0.999**100_000`` ≈ 4e-44 of it: nothing next to the data's
    precision, which is singular whenever the tick's rows span fewer directions than there are
    features (in one tick every row has the same time of day, and a first tick the same zero
    price change and last window = average). River's ``np.linalg.inv`` then raises
    ``LinAlgError: Singular matrix``. Here the prior's weight stops decaying at
    ``_PRIOR_FLOOR`` (1e-8: a ridge that pins directions the data never saw, and changes the
    others by about 1e-8), the covariance comes from a Cholesky factor, and an update is
    computed in full before the model changes (a failure leaves it as it was). Otherwise the
    posterior is River's (tests/unit/test_decider_batch.py). Relies on River's array state
    (river >= 0.26).
    """

    def __init__(self, alpha: float = 1, beta: float = 1, smoothing: float | None = None) -> None:
        super().__init__(alpha=alpha, beta=beta, smoothing=smoothing)
        self._prior_w = 1.0  # weight left of the prior's precision (1/alpha on the diagonal)

    def learn_one(self, x: dict[Any, float], y: float) -> None:
        if self.smoothing is None:  # no decay: River's Sherman-Morrison update
            super().learn_one(x, y)
            return
        self._ensure_features(x.keys())
        x_arr = np.zeros(self._cap, dtype=np.float64)
        for f, v in x.items():
            x_arr[self._idx[f]] = v
        bx = self.beta * x_arr
        s = self.smoothing
        self._commit(
            s * self._ss_arr + (1 - s) * np.outer(bx, x_arr),
            s * self._eta_arr + (1 - s) * bx * y,
            self._prior_w * s,
            self._cap,
        )

    def learn_many(self, X: Any, y: Any) -> None:
        """River's ``learn_many`` (a DataFrame and a Series), through :meth:`learn_matrix`."""
        self.learn_matrix(
            np.asarray(X, dtype=np.float64),
            np.asarray(y, dtype=np.float64),
            [str(c) for c in X.columns],
        )

    def learn_matrix(self, x: np.ndarray, y: np.ndarray, features: Sequence[str]) -> None:
        """Learn the rows of ``x`` (columns named by ``features``) oldest first, as ``learn_one``
        row by row would: River's closed form of the batch, row ``k`` of ``N`` weighted by
        ``(1 - s) * s**(N - 1 - k)``, without a DataFrame."""
        self._ensure_features(features)
        idx = np.fromiter((self._idx[f] for f in features), dtype=np.intp, count=len(features))
        n = len(self._idx)
        ss, eta, prior_w = self._ss_arr.copy(), self._eta_arr.copy(), self._prior_w
        if self.smoothing is None:
            ss[np.ix_(idx, idx)] += self.beta * (x.T @ x)
            eta[idx] += self.beta * (x.T @ y)
        else:
            s = self.smoothing
            weights = (1 - s) * s ** np.arange(len(x) - 1, -1, -1, dtype=np.float64)
            decay = s ** len(x)
            ss[:n, :n] *= decay
            eta[:n] *= decay
            prior_w *= decay
            ss[np.ix_(idx, idx)] += self.beta * (x.T * weights) @ x
            eta[idx] += self.beta * (x.T @ (weights * y))
        self._commit(ss, eta, prior_w, n)

    def _commit(self, ss: np.ndarray, eta: np.ndarray, prior_w: float, k: int) -> None:
        """Make ``ss``/``eta`` the posterior, the prior floored, the covariance of ``ss[:k, :k]``
        refreshed; nothing changes if it cannot be computed."""
        if self.smoothing is not None and prior_w < _PRIOR_FLOOR:
            ss[np.diag_indices(k)] += (_PRIOR_FLOOR - prior_w) / self.alpha
            prior_w = _PRIOR_FLOOR
        cov = _spd_inverse(ss[:k, :k]) if k else None
        if not np.isfinite(eta).all():
            raise ValueError("natural mean is not finite")
        self._ss_arr, self._eta_arr, self._prior_w = ss, eta, prior_w
        if cov is not None:
            self._ss_inv_arr[:k, :k] = cov
        self._m_dirty = True


def make_regressor(name: RegressorName = "bayes") -> Any:
    """A fresh pooled River regressor."""
    if name == "bayes":
        return StableBayesianLinearRegression(alpha=1.0, beta=2.0, smoothing=0.999)
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


class RiverDemand(ModelBase):
    """Pooled River regressor + per-SKU RLS correction, as a :class:`DemandModel`.

    The pooled regressor is shared state (``snapshot``/``restore``, learned by
    ``learn_pooled``); the correction is per-SKU state, learned by ``learn_local`` from the
    pooled prediction the decision saved (``decision_memo``).
    """

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

    def restore(self, blob: bytes | str) -> None:
        self.pooled, self.n_learned = pickle.loads(
            base64.b64decode(blob)
        )  # our own changelog topic
        if type(self.pooled) is linear_model.BayesianLinearRegression:
            # a snapshot from before the stable form: same state, plus the prior's weight left
            reg = StableBayesianLinearRegression.__new__(StableBayesianLinearRegression)
            reg.__dict__.update(self.pooled.__dict__)
            reg._prior_w = (reg.smoothing or 1.0) ** self.n_learned
            self.pooled = reg

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
        """The pooled regressor learns a tick's labels (rows whose features, price or units are
        not finite, or units negative, are skipped)."""
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
        finite = np.isfinite(x).all(axis=1)  # e.g. log(price / ref) of an overflowing ratio
        if not finite.all():
            x = x[finite]
            target = [t for t, f in zip(target, finite.tolist(), strict=True) if f]
            if not target:
                return
        reg = self.pooled
        if isinstance(reg, StableBayesianLinearRegression):
            # River's closed form of the batch (row k weighted by its smoothing s^(N-1-k)): the
            # posterior of learn_one row by row, without a 9x9 inverse per row
            reg.learn_matrix(x, np.array(target, dtype=np.float64), _POOLED_FEATURES)
        else:
            for row, t in zip(x.tolist(), target, strict=True):
                self.pooled.learn_one(dict(zip(_POOLED_FEATURES, row, strict=True)), t)
        self.n_learned += len(target)

    @property
    def memo_key(self) -> str:
        """Key of the pooled prediction saved with a decision (``_river_z``)."""
        return f"_{self.name}_z"

    def decision_memo(self, views: Sequence[SkuView], prices: np.ndarray) -> dict[str, np.ndarray]:
        """The pooled prediction at the decided prices: the per-SKU part learns its residual."""
        return {self.memo_key: self.pooled_z(views, prices)}

    def learn_local(
        self,
        views: Sequence[SkuView],
        prices: np.ndarray,
        units: np.ndarray,
        saved: Sequence[Mapping[str, float]],
    ) -> None:
        """Each SKU whose decision saved a pooled prediction learns its residual."""
        key = self.memo_key
        has = [i for i, s in enumerate(saved) if key in s]
        if has:
            self.learn_residual(
                [views[i] for i in has],
                np.asarray(prices, dtype=np.float64)[has],
                np.asarray(units, dtype=np.float64)[has],
                np.array([saved[i][key] for i in has], dtype=np.float64),
            )

    def learn_residual(
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
        self.learn_residual(views, prices, units, z)
