"""From expected units to the point forecast an absolute-error metric rewards.

Demand models forecast *expected* units: pricing maximises ``(p - cost) · E[units]``, and an
unbiased mean is what a profit forecast needs. WAPE (and MAE) are minimised by the *median* of
the predictive distribution instead, which for small, right-skewed counts sits well below the
mean (with 1.2 expected units the median is 1; with 0.5 it is 0). :func:`count_quantile` turns an
expected count into a quantile of a negative binomial with that mean and a variance of
``dispersion · mean`` (Poisson when ``dispersion <= 1``); :func:`dispersion` and
:func:`update_dispersion` learn the dispersion of a forecaster's own residuals online, in two
floats of per-SKU state.

>>> float(count_quantile(1.2, 1.0))
1.0
>>> float(count_quantile(0.5, 1.0))
0.0
>>> float(count_quantile(6.0, 2.0))  # over-dispersed: the median is below the mean
5.0
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping, Sequence
from typing import Any

import numpy as np

DISPERSION_PRIOR = 1.5  # variance / mean of the prior: a Poisson with some over-dispersion
DISPERSION_PSEUDO = 20.0  # weight of the prior, in units of expected demand
DISPERSION_FORGET = 0.9995  # memory of about 2000 windows
DISPERSION_CLIP = (1.0, 10.0)
_MAX_K = 10_000


def count_quantile(
    mean: float | np.ndarray, dispersion: float | np.ndarray, q: float = 0.5
) -> np.ndarray:
    """Smallest integer ``k`` with ``P(Y <= k) >= q`` for ``Y`` negative binomial (or Poisson).

    ``mean`` and ``dispersion`` broadcast; a non-finite or negative mean gives ``nan``.
    """
    if not 0.0 < q < 1.0:
        raise ValueError("q must be in (0, 1)")
    mu = np.asarray(mean, dtype=np.float64)
    d = np.clip(np.asarray(dispersion, dtype=np.float64), *DISPERSION_CLIP)
    mu, d = np.broadcast_arrays(mu, d)
    bad = ~np.isfinite(mu) | (mu < 0) | ~np.isfinite(d)
    m = np.where(bad, 0.0, mu)
    poisson = d <= 1.0 + 1e-9
    # NB(r, p) with mean m and variance d·m: p = 1/d (success), r = m / (d - 1)
    succ = np.where(poisson, 1.0, 1.0 / d)
    r = np.where(poisson, 0.0, m / np.maximum(d - 1.0, 1e-12))
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        pmf = np.where(poisson, np.exp(-m), np.exp(r * np.log(succ)))
    cdf = pmf.copy()
    out = np.where(cdf >= q, 0.0, np.nan)
    k = 0
    while np.isnan(out).any() and k < _MAX_K:
        # pmf(k+1) = pmf(k) · m/(k+1) (Poisson) or pmf(k) · (k + r)/(k+1) · (1 - p) (NB)
        pmf = np.where(poisson, pmf * m / (k + 1), pmf * (k + r) / (k + 1) * (1.0 - succ))
        k += 1
        cdf = cdf + pmf
        out = np.where(np.isnan(out) & (cdf >= q), float(k), out)
    out = np.where(np.isnan(out), np.ceil(m), out)  # numerically exhausted: fall back to the mean
    return np.where(bad, np.nan, out)


def dispersion(state: MutableMapping[str, Any] | None, key: str) -> float:
    """Current variance-to-mean ratio of the residuals tracked under ``state[key]``."""
    got = (state or {}).get(key)
    r2, mu = (float(got[0]), float(got[1])) if got and len(got) == 2 else (0.0, 0.0)
    d = (r2 + DISPERSION_PRIOR * DISPERSION_PSEUDO) / (mu + DISPERSION_PSEUDO)
    return float(min(max(d, DISPERSION_CLIP[0]), DISPERSION_CLIP[1]))


def update_dispersion(
    state: MutableMapping[str, Any], key: str, predicted: float, actual: float
) -> None:
    """Fold one labelled forecast into the residual dispersion under ``state[key]``."""
    if not (math.isfinite(predicted) and math.isfinite(actual) and predicted >= 0):
        return
    got = state.get(key)
    r2, mu = (float(got[0]), float(got[1])) if got and len(got) == 2 else (0.0, 0.0)
    r2 = DISPERSION_FORGET * r2 + (actual - predicted) ** 2
    mu = DISPERSION_FORGET * mu + predicted
    state[key] = [round(r2, 4), round(mu, 4)]


def update_dispersion_batch(
    states: Sequence[MutableMapping[str, Any]],
    key: str,
    predicted: np.ndarray,
    actual: np.ndarray,
) -> None:
    """:func:`update_dispersion` for one labelled forecast per state, vectorised."""
    pred = np.asarray(predicted, dtype=np.float64).reshape(-1)
    act = np.asarray(actual, dtype=np.float64).reshape(-1)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(pred) & np.isfinite(act) & (pred >= 0)
    idx = np.flatnonzero(ok).tolist()
    if not idx:
        return
    sub = [states[i] for i in idx]
    prev = np.array(
        [got if (got := st.get(key)) and len(got) == 2 else (0.0, 0.0) for st in sub],
        dtype=np.float64,
    ).reshape(len(sub), 2)
    pred, act = pred[idx], act[idx]
    r2 = DISPERSION_FORGET * prev[:, 0] + (act - pred) ** 2
    mu = DISPERSION_FORGET * prev[:, 1] + pred
    for st, a, b in zip(sub, r2.tolist(), mu.tolist(), strict=True):
        st[key] = [round(a, 4), round(b, 4)]
