"""Online River demand model: one pooled regressor across SKUs plus a tiny per-SKU correction.

**Scale-free.** Everything is relative to the SKU's level ``L`` (long-run units per window,
:func:`models.calibration.sku_levels` floored at ``lstm_features.LEVEL_FLOOR``: the LSTM's). The
pooled River regressor learns units ÷ ``L`` of the next window from features whose counts are
``log1p(count ÷ L)`` as the LSTM's (recent and last units and views; time of day, price level)
and the log price *change* (candidate ÷ price in force); the forecast is ``L`` times its
prediction, so every SKU — a brand-new one too — starts from what all SKUs taught it, in its own
scale. Each SKU keeps a recursive-least-squares correction (intercept and price slope, with
forgetting) of the pooled residual, in 5 floats of state. The ratio itself is learned (not its
``log1p``), so the forecast is the mean. Units vary about their mean ``μ`` by about ``φ · μ``
(``φ``, the dispersion, is about 1.4 for 1-3 unit orders), so units ÷ ``L`` vary by ``φ / L``: each
label counts with its evidence ``L / (L + φ)`` in the pooled fit (weighted least squares) and in
the correction (the RLS gain), and a long-tail SKU's one sale nudges them as its few units
deserve. ``φ`` is learned (pooled, discounted), so the model stays scale-free: a shop whose
every count is 100 times another's is forecast 100 times higher.

Snapshots carry :data:`SNAPSHOT_FORMAT`; one of the earlier ``log1p`` model (format 1, version
``river-<regressor>-1``) is refused with a warning and the pooled model starts fresh (its weights
are in another unit). The per-SKU correction moved to a new key; the old one is dropped when the
SKU next learns. The pooled regressor (default River's ``BayesianLinearRegression`` with
forgetting, in a numerically robust form: :class:`StableBayesianLinearRegression`) was chosen by
measurement (``repricer bench forecast``, README).
"""

from __future__ import annotations

import base64
import logging
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
from repricer.models.calibration import sku_levels
from repricer.models.lstm_features import LEVEL_FLOOR

log = logging.getLogger(__name__)

RegressorName = Literal["bayes", "linear", "pa"]
_MAX_RATIO = 1000.0  # a forecast above 1000x the SKU's level is an error, not a forecast
_MAX_UNITS = math.expm1(12.0)  # ≈ 160k units per window: so is one above this

# Per-SKU RLS: prior variance of (intercept, slope) of units ÷ level, forgetting factor.
_PRIOR = (0.5, 0.25)
# Prior slope of units ÷ level on the log price change (elasticity -1.5 at the level): the pooled
# model learns the deviation, so a cold model does not believe demand ignores price.
PRIOR_SLOPE = -1.5
_FORGET = 0.995
# Dispersion (variance of units per unit of mean) before any label; then learned
COUNT_NOISE = 1.5
DISPERSION_FORGET = 0.9999
SNAPSHOT_FORMAT = "river-level/2"
STATE_KEY = "rlr"  # per-SKU correction of units ÷ level (``_RLS_NEW`` layout)
_OLD_STATE_KEY = "rls"  # format 1's correction of log1p(units): dropped when the SKU learns


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
    posterior is River's (tests/unit/models/test_decider_batch.py). Relies on River's array state
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

    def mean_weights(self, features: Sequence[str]) -> np.ndarray:
        """Posterior mean weight of each of ``features`` (0 for one never seen), without caching
        it as ``predict_one`` does (so the model's state does not change)."""
        if not self._idx:
            return np.zeros(len(features))
        m = self._ss_inv_arr @ self._eta_arr if self._m_dirty else self._m_arr
        return np.array([m[self._idx[f]] if f in self._idx else 0.0 for f in features])

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
        return preprocessing.StandardScaler() | linear_model.PARegressor(C=0.001, mode=1, eps=0.1)
    raise ValueError(f"unknown regressor {name!r}")


_RLS_NEW = (0.0, 0.0, _PRIOR[0], 0.0, _PRIOR[1])  # theta0, theta1, P00, P01, P11


def _rls(views: Sequence[SkuView]) -> np.ndarray:
    """(N, 5) each SKU's correction: theta0, theta1, P00, P01, P11 (the prior if it has none)."""
    rows = [got if (got := v.state.get(STATE_KEY)) and len(got) == 5 else _RLS_NEW for v in views]
    return np.array(rows, dtype=np.float64).reshape(len(views), 5)


def levels(views: Sequence[SkuView]) -> np.ndarray:
    """(N,) each SKU's level, units per window (:func:`models.calibration.sku_levels`, floored
    at ``LEVEL_FLOOR`` as the LSTM's): the unit River forecasts in."""
    return np.maximum(sku_levels(views), LEVEL_FLOOR)


def _dispersion(noise: Sequence[float]) -> float:
    sq, lv = noise
    return sq / lv if sq > 0 and lv > 0 and math.isfinite(sq / lv) else COUNT_NOISE


def evidence(level: np.ndarray, dispersion: float = COUNT_NOISE) -> np.ndarray:
    """Weight of one label of a SKU at ``level``: ``level / (level + dispersion)``, the inverse
    of the variance of units ÷ level (in units of a busy SKU's).

    >>> evidence(np.array([0.01, 1.5, 150.0])).round(4).tolist()
    [0.0066, 0.5, 0.9901]
    """
    lv = np.asarray(level, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(lv), 1.0, lv / (lv + dispersion))


_POOLED_FEATURES = (*CONTEXT_FEATURES, "log_price_change")


class RiverDemand(ModelBase):
    """Pooled River regressor + per-SKU RLS correction, as a :class:`DemandModel`.

    The pooled regressor is shared state (``snapshot``/``restore``, learned by
    ``learn_pooled``); the correction is per-SKU state, learned by ``learn_local`` from the
    pooled prediction and the level the decision saved (``decision_memo``). Both learn units ÷
    the SKU's level (:func:`levels`); forecasts are the level times their prediction.
    """

    name = "river"

    def __init__(
        self, regressor: RegressorName = "bayes", *, factory: Callable[[], Any] | None = None
    ) -> None:
        self.regressor_name = regressor
        self._factory = factory
        self.pooled = self._fresh()
        self.n_learned = 0
        # discounted sums of squared residuals (units²) and of units sold: the dispersion
        self.noise = [0.0, 0.0]

    def _fresh(self) -> Any:  # a new pooled regressor
        return self._factory() if self._factory else make_regressor(self.regressor_name)

    @property
    def version(self) -> str:
        return f"river-{self.regressor_name}-2"

    def dispersion(self) -> float:
        """Learned variance of a window's units per unit of its level (``COUNT_NOISE`` before
        any residual)."""
        return _dispersion(self.noise)

    # -- persistence of the pooled part (the per-SKU part lives in SkuView.state) -------------
    def snapshot(self) -> str:
        return base64.b64encode(
            pickle.dumps((SNAPSHOT_FORMAT, self.pooled, self.n_learned, list(self.noise)))
        ).decode()

    def restore(self, blob: bytes | str) -> None:
        """Back to a :meth:`snapshot`. One of the ``log1p`` model before (format 1) is refused:
        logged, and the pooled model starts fresh (as a member added since does)."""
        got = pickle.loads(base64.b64decode(blob))  # our own changelog topic
        if isinstance(got, tuple) and len(got) == 4 and got[0] == SNAPSHOT_FORMAT:
            _, self.pooled, self.n_learned, noise = got
            self.noise = list(noise)
            return
        learned = got[1] if isinstance(got, tuple) and len(got) == 2 else "?"
        log.warning(
            "River snapshot refused: it is format 1 (version river-%s-1, learned log1p(units); "
            "%s labels), this model is %s (learns units ÷ the SKU's level) and cannot use its "
            "weights; the pooled model starts fresh",
            self.regressor_name,
            learned,
            self.version,
        )
        self.pooled, self.n_learned, self.noise = self._fresh(), 0, [0.0, 0.0]

    # -- forecasting ---------------------------------------------------------------------------
    def pooled_z(
        self, views: Sequence[SkuView], prices: np.ndarray, level: np.ndarray | None = None
    ) -> np.ndarray:
        """Pooled prediction of units ÷ ``level`` (default :func:`levels`), shaped as ``prices``
        ((N,) or (N, K)). Every candidate regressor is affine in the log price ratio, so two
        predictions per SKU (at ratio 0 and 1) give the whole candidate grid."""
        lpr = log_price_change(np.asarray(prices, dtype=np.float64), views)
        z0, slope = self._pooled_parts(views, levels(views) if level is None else level)
        shape = (len(views),) + (1,) * (lpr.ndim - 1)
        return z0.reshape(shape) + slope.reshape(shape) * lpr

    def _pooled_parts(
        self, views: Sequence[SkuView], level: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N,) pooled prediction at the price in force, and its slope on the log price change."""
        reg = self.pooled
        if isinstance(reg, linear_model.BayesianLinearRegression):
            # linear without intercept: its weights are its predictions at unit vectors, and
            # summing them feature by feature in the dict's order reproduces predict_one exactly
            x = context_matrix(views, level)
            acc = np.zeros(len(views))
            for j, f in enumerate(CONTEXT_FEATURES):
                acc = acc + reg.predict_one({f: 1.0}) * x[:, j]
            w = reg.predict_one({"log_price_change": 1.0})
            z0 = acc + w * 0.0
            return z0, ((acc + w * 1.0) - z0) + PRIOR_SLOPE
        z0 = np.empty(len(views))
        slope = np.empty(len(views))
        for i, (v, lv) in enumerate(zip(views, level.tolist(), strict=True)):
            x_one = context_features(v, lv)
            x_one["log_price_change"] = 0.0
            z0[i] = reg.predict_one(x_one)
            x_one["log_price_change"] = 1.0
            slope[i] = reg.predict_one(x_one) - z0[i] + PRIOR_SLOPE
        return z0, slope

    def local_z(self, views: Sequence[SkuView], prices: np.ndarray) -> np.ndarray:
        """Each SKU's own correction of units ÷ level at ``prices``."""
        lpr = log_price_change(prices, views)
        th = _rls(views)[:, :2]
        th = th.reshape((len(views),) + (1,) * (lpr.ndim - 1) + (2,))
        return th[..., 0] + th[..., 1] * lpr

    def forecast(self, views: Sequence[SkuView], prices: np.ndarray) -> np.ndarray:
        level = levels(views)
        ratio = self.pooled_z(views, prices, level) + self.local_z(views, prices)
        shape = (len(views),) + (1,) * (ratio.ndim - 1)
        with np.errstate(over="ignore", invalid="ignore"):
            units = level.reshape(shape) * np.clip(ratio, 0.0, _MAX_RATIO)
            return clean(np.minimum(units, _MAX_UNITS))

    # -- learning --------------------------------------------------------------------------
    def learn_pooled(self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        """The pooled regressor learns a tick's labels as units ÷ level, each weighted by its
        :func:`evidence` (rows whose features, price or units are not finite, or units
        negative, are skipped)."""
        lpr = log_price_change(np.asarray(prices, dtype=np.float64), views)
        y = np.asarray(units, dtype=np.float64).reshape(-1)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(lpr) & np.isfinite(y) & (y >= 0)
        idx = np.flatnonzero(ok).tolist()
        if not idx:
            return
        sub = [views[i] for i in idx]
        level = levels(sub)
        x = np.column_stack([context_matrix(sub, level), lpr[idx]])
        with np.errstate(over="ignore", invalid="ignore"):
            target = y[idx] / level - PRIOR_SLOPE * lpr[idx]
        # e.g. log(price / ref) of an overflowing ratio, or units ÷ level beyond float
        finite = np.isfinite(x).all(axis=1) & np.isfinite(target)
        if not finite.all():
            x, target, level = x[finite], target[finite], level[finite]
            if not len(target):
                return
        reg = self.pooled
        noise = self._noise_after(x, target, level)  # first: a first tick in its own scale
        weight = evidence(level, _dispersion(noise))
        if isinstance(reg, StableBayesianLinearRegression):
            # weighted least squares: each row scaled by the root of its weight, in River's
            # closed form of the batch (row k weighted by its smoothing s^(N-1-k)): the
            # posterior of learn_one row by row, without a 9x9 inverse per row
            root = np.sqrt(weight)
            reg.learn_matrix(x * root[:, None], target * root, _POOLED_FEATURES)
        else:
            # SGD-type learners: a row of weight w is the target moved w of the way from the
            # prediction (for squared loss the same gradient as weighting the row)
            for row, t, w in zip(x.tolist(), target.tolist(), weight.tolist(), strict=True):
                xd = dict(zip(_POOLED_FEATURES, row, strict=True))
                guess = float(reg.predict_one(xd))
                reg.learn_one(xd, guess + w * (t - guess))
        self.n_learned += len(target)
        self.noise = noise

    def _noise_after(self, x: np.ndarray, target: np.ndarray, level: np.ndarray) -> list[float]:
        """The dispersion's sums with the rows' squared residuals in units (before learning
        them) folded in."""
        reg = self.pooled
        with np.errstate(over="ignore", invalid="ignore"):
            if isinstance(reg, StableBayesianLinearRegression):
                guess = x @ reg.mean_weights(_POOLED_FEATURES)
            else:
                guess = np.array(
                    [reg.predict_one(dict(zip(_POOLED_FEATURES, r, strict=True))) for r in x]
                )
            sq = (level * (target - guess)) ** 2
            # units sold: E[squared residual] = φ · E[units], and units, unlike a level (the
            # floor before a SKU's first window), do not make a new SKU's first sale a spike
            sold = level * (target + PRIOR_SLOPE * x[:, -1])
        ok = np.isfinite(sq) & np.isfinite(sold)
        keep = DISPERSION_FORGET ** int(ok.sum())
        total = [float(sq[ok].sum()), float(sold[ok].sum())]
        if not all(math.isfinite(t) for t in total):
            return list(self.noise)
        return [keep * a + b for a, b in zip(self.noise, total, strict=True)]

    @property
    def memo_key(self) -> str:
        """Key of the pooled prediction saved with a decision (``_river_z``)."""
        return f"_{self.name}_z"

    def decision_memo(self, views: Sequence[SkuView], prices: np.ndarray) -> dict[str, np.ndarray]:
        """The pooled prediction at the decided prices and the level it is relative to: the
        per-SKU part learns its residual."""
        level = levels(views)
        return {self.memo_key: self.pooled_z(views, prices, level), f"_{self.name}_l": level}

    def learn_local(
        self,
        views: Sequence[SkuView],
        prices: np.ndarray,
        units: np.ndarray,
        saved: Sequence[Mapping[str, float]],
    ) -> None:
        """Each SKU whose decision saved a pooled prediction learns its residual (against the
        level saved with it; the SKU's level now if none was)."""
        key, lkey = self.memo_key, f"_{self.name}_l"
        has = [i for i, s in enumerate(saved) if key in s]
        if has:
            sub = [views[i] for i in has]
            now = levels(sub)
            level = [float(saved[i].get(lkey, lv)) for i, lv in zip(has, now.tolist(), strict=True)]
            self.learn_residual(
                sub,
                np.asarray(prices, dtype=np.float64)[has],
                np.asarray(units, dtype=np.float64)[has],
                np.array([saved[i][key] for i in has], dtype=np.float64),
                np.array(level, dtype=np.float64),
            )

    def learn_residual(
        self,
        views: Sequence[SkuView],
        prices: np.ndarray,
        units: np.ndarray,
        pooled_z: np.ndarray,
        level: np.ndarray | None = None,
    ) -> None:
        """Update each SKU's correction with the residual of the pooled prediction it was given
        (units ÷ ``level``, default :func:`levels`): one RLS step per label weighted by its
        evidence, vectorised (one label per SKU: each row reads and writes its own state)."""
        lpr = log_price_change(np.asarray(prices, dtype=np.float64), views)
        y = np.asarray(units, dtype=np.float64).reshape(-1)
        zp = np.asarray(pooled_z, dtype=np.float64).reshape(-1)
        lv = levels(views) if level is None else np.asarray(level, dtype=np.float64).reshape(-1)
        lv = np.maximum(lv, LEVEL_FLOOR)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(lpr) & np.isfinite(y) & np.isfinite(zp) & np.isfinite(lv) & (y >= 0)
        idx = np.flatnonzero(ok).tolist()
        if not idx:
            return
        vs = [views[i] for i in idx]
        r, y, zp, lv = lpr[idx], y[idx], zp[idx], lv[idx]
        t0, t1, p00, p01, p11 = _rls(vs).T
        resid = y / lv - zp
        # RLS with forgetting for x = (1, r), the label weighted by its evidence
        px0, px1 = p00 + p01 * r, p01 + p11 * r
        denom = _FORGET / evidence(lv, self.dispersion()) + px0 + px1 * r
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
            v.state[STATE_KEY] = [round(a, 6), round(b, 6), c, d, e]
            v.state.pop(_OLD_STATE_KEY, None)
            v.state["nl"] = int(v.state.get("nl", 0)) + 1  # labels learned by this SKU

    def learn(self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        level = levels(views)
        z = self.pooled_z(views, np.asarray(prices, dtype=np.float64), level)
        self.learn_pooled(views, prices, units)
        self.learn_residual(views, prices, units, z, level)
