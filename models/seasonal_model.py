"""Per-SKU online Poisson regression with a daily cycle: a long-memory demand level.

Window demand is a small count (a few units a minute), so any level estimate from the last few
windows — the moving average, River's features, the LSTM's 23-window input — carries most of the
Poisson noise of those windows. :class:`SeasonalPoisson` keeps, per SKU, a Poisson regression
with a log link,

    log E[units] = θ0 + θ1 · sin(2π·h/24) + θ2 · cos(2π·h/24) + θ3 · log(price / ref_price),

fitted online by recursive Newton steps (the extended Kalman filter of a Poisson GLM) with slow
forgetting (about 2000 windows). It so averages over days of windows while following the time of
day (``h``, UTC hour of the window start) and the price charged; ``θ3`` starts at a prior
elasticity and moves as far as the SKU's own price variation identifies it.

Labels reach it through the SKU's window history (``SkuView.history``, the LSTM's feature rows):
at every forecast it first folds in the closed windows it has not seen, counted by
``SkuView.windows_seen``. Its per-SKU state (18 floats, in ``SkuView.state``) is persisted with
the SKU's record in the same write as the window that taught it, so every label is learned
exactly once, also across crashes and rebalances, without any shared state; :meth:`learn` has
nothing to do. It forecasts *expected* units (the :class:`~models.base.DemandModel` contract);
:meth:`SeasonalPoisson.quantile` gives the median (or any quantile) for absolute-error metrics
(see :mod:`models.quantiles`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from repricer.models.base import ModelBase, SkuView, clean, log_price_ratio
from repricer.models.lstm_features import FEATURES, hour_features
from repricer.models.quantiles import count_quantile, dispersion, update_dispersion

STATE_KEY = "sp"
DISP_KEY = "sp_d"
FORGET = 0.9995
PRIOR_SLOPE = -1.5  # prior log-log price slope (a typical retail elasticity)
PRIOR_VAR = (1.0, 0.3, 0.3, 0.5)  # intercept, sin, cos, log price
_MAX_Z = 12.0
_K = 4
_UNITS, _PRICE, _HS, _HC = (
    FEATURES.index("log_units"),
    FEATURES.index("log_price_ratio"),
    FEATURES.index("hour_sin"),
    FEATURES.index("hour_cos"),
)
_R = range(_K)
_UPPER = [(i, j) for i in _R for j in _R if j >= i]
_SD = [math.sqrt(v) for v in PRIOR_VAR]


def _unpack(state: dict[str, Any]) -> tuple[int, list[float], list[list[float]]] | None:
    got = state.get(STATE_KEY)
    if not got or len(got) != 1 + _K + len(_UPPER):
        return None
    p = [[0.0] * _K for _ in _R]
    for (i, j), x in zip(_UPPER, got[1 + _K :], strict=True):
        p[i][j] = p[j][i] = float(x)
    return int(got[0]), [float(t) for t in got[1 : 1 + _K]], p


def _pack(n: int, theta: list[float], p: list[list[float]]) -> list[float]:
    return [n] + [round(t, 6) for t in theta] + [float(f"{p[i][j]:.6g}") for i, j in _UPPER]


class SeasonalPoisson(ModelBase):
    """Per-SKU online Poisson GLM (level, daily cycle, price) as a :class:`DemandModel`."""

    name = "seasonal"

    def __init__(self, *, forget: float = FORGET, prior_slope: float = PRIOR_SLOPE) -> None:
        self.forget = forget
        self.prior_slope = prior_slope

    @property
    def version(self) -> str:
        return "seasonal-poisson-1"

    # -- per-SKU learning from the window history ------------------------------------------
    def _prior(self, v: SkuView) -> tuple[list[float], list[list[float]]]:
        theta = [math.log(max(v.units_ewma, 0.1)), 0.0, 0.0, self.prior_slope]
        return theta, [[PRIOR_VAR[i] if i == j else 0.0 for j in _R] for i in _R]

    def _step(
        self, theta: list[float], p: list[list[float]], x: list[float], y: float, mu: float
    ) -> None:
        """One Newton step on the Poisson log-likelihood (information mu·x·xᵀ), in place.

        Plain floats: a 4x4 update per label is cheaper in Python than in numpy.
        """
        f = self.forget
        for i in _R:
            for j in _R:
                p[i][j] /= f
        px = [sum(p[i][j] * x[j] for j in _R) for i in _R]
        den = 1.0 + mu * sum(x[i] * px[i] for i in _R)
        g = (y - mu) / den
        for i in _R:
            theta[i] += px[i] * g
        h = mu / den
        for i in _R:
            for j in _R:
                p[i][j] -= px[i] * px[j] * h
        # bounded: forgetting without excitation (a price that never moves) must not wind the
        # covariance up beyond the prior
        cap = [min(1.0, _SD[i] / math.sqrt(max(p[i][i], 1e-12))) for i in _R]
        for i in _R:
            for j in _R:
                p[i][j] *= cap[i] * cap[j]

    def catch_up(self, v: SkuView) -> tuple[list[float], list[list[float]]] | None:
        """Fold the SKU's unseen closed windows into its state; its (θ, P), or None if none."""
        got = _unpack(v.state)
        if got is None:
            if v.windows_seen <= 0 and not v.history:
                return None
            n_upto, (theta, p) = 0, self._prior(v)
        else:
            n_upto, theta, p = got
        new = v.windows_seen - n_upto
        if new <= 0:
            return theta, p
        # the newest ``new`` rows (fewer if the history is shorter) are the unseen windows
        rows = list(v.history)[-new:] if v.history else []
        for row in rows:
            lpr = float(row[_PRICE])
            if not math.isfinite(lpr):
                continue
            y = float(round(math.expm1(float(row[_UNITS]))))
            x = [1.0, float(row[_HS]), float(row[_HC]), lpr]
            z = sum(t * xi for t, xi in zip(theta, x, strict=True))
            mu = math.exp(min(max(z, -15.0), _MAX_Z))
            update_dispersion(v.state, DISP_KEY, mu, y)
            self._step(theta, p, x, y, mu)
        v.state[STATE_KEY] = _pack(v.windows_seen, theta, p)
        # forecast from the stored (rounded) state, so a repeated call gives the same numbers
        _, theta, p = _unpack(v.state)  # type: ignore[misc]
        return theta, p

    # -- the DemandModel contract ------------------------------------------------------------
    def forecast(self, views: Sequence[SkuView], prices: np.ndarray) -> np.ndarray:
        p = np.asarray(prices, dtype=np.float64)
        lpr = log_price_ratio(p, views)
        out = np.full(p.shape, np.nan)
        for i, v in enumerate(views):
            got = self.catch_up(v)
            if got is None:
                continue
            theta = got[0]
            hs, hc = hour_features(v.next_window_start)
            z = theta[0] + theta[1] * float(hs) + theta[2] * float(hc) + theta[3] * lpr[i]
            with np.errstate(over="ignore", invalid="ignore"):
                out[i] = np.exp(np.clip(z, -15.0, _MAX_Z))
        return clean(out)

    def price_elasticity(self, views: Sequence[SkuView]) -> np.ndarray:
        """(N,) each SKU's log-log price slope ``θ3`` (``d log E[units] / d log price``).

        The prior slope for a SKU it knows nothing about. Unlike a slope of ``log1p(units)``
        this does not depend on the demand level, so a level from any model (or the ensemble)
        can be moved along it: ``q(p) = level · (p / price) ** elasticity``.
        """
        out = np.full(len(views), self.prior_slope)
        for i, v in enumerate(views):
            got = self.catch_up(v)
            if got is not None:
                out[i] = got[0][3]
        return out

    def quantile(self, views: Sequence[SkuView], prices: np.ndarray, q: float = 0.5) -> np.ndarray:
        """Quantile ``q`` of units (the median for ``q = 0.5``), same shape as ``prices``."""
        mean = self.forecast(views, prices)
        disp = np.array([dispersion(v.state, DISP_KEY) for v in views])
        return count_quantile(mean, disp.reshape((-1,) + (1,) * (mean.ndim - 1)), q)

    def learn(self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        return None  # labels arrive through SkuView.history at the next forecast (see module)
