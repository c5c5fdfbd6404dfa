"""How far a catalogue's demand bends: the spread of the curvature prior, learned from the SKUs.

The elasticity posterior (:mod:`models.elasticity`) gives each SKU the curvature prior
``k ~ N(0, τ²)`` (``τ`` the pool's ``sd_k``): 0 is constant elasticity. ``τ`` is learned by
empirical Bayes from what the SKUs' own labels say about their ``k``. Each SKU's evidence is its
own likelihood of ``k`` with its level and elasticity integrated out under their (proper)
pooled priors, a Gaussian with mean ``k̂ᵢ`` and precision ``wᵢ`` (a Schur complement of the 3x3
information). With ``kᵢ ~ N(0, τ²)`` and ``k̂ᵢ | kᵢ ~ N(kᵢ, 1/wᵢ)``, ``E[wᵢ·k̂ᵢ²] = 1 + wᵢ·τ²``,
so the method of moments gives

    τ² ≈ (Σ wᵢ·k̂ᵢ² - n) / Σ wᵢ

over the ``n`` SKUs with some evidence on ``k`` (the others add about 1 to the first sum and
nothing else). Under constant elasticity ``Σ wᵢ·k̂ᵢ²`` is chi-square with ``n`` degrees of
freedom, so the estimate is noisy while the evidence is thin (±0.8 on 20 SKUs after half a
day of the default market), and its positive noise would bend SKUs that do not bend: only
what exceeds ``NULL_Z`` standard deviations of that null (``√(2n)``) counts. On constant-elasticity demand
the estimate scatters around 0 and the pool's spread sinks to its floor, so the price is the
constant-elasticity one; where SKUs bend (linear, logit demand) it grows, up to a cap, and
each SKU's own evidence decides how far it bends. The prior's mean stays at 0: a catalogue whose
SKUs mostly bend one way would otherwise bend the ones that do not.
"""

from __future__ import annotations

import math

import numpy as np

SD_K_FLOOR = 1e-4  # near 0: the curvature is pinned and the price is constant-elasticity's
SD_K_CAP = 1.0  # the widest prior: a SKU still needs evidence to bend far
NULL_Z = 2.0  # how far above chance the SKUs' evidence must bend before the spread grows
MIN_PREC = 0.05  # a SKU whose own evidence on k is vaguer (sd > 4.5) adds only noise


def bend_evidence(
    el: np.ndarray, ek: np.ndarray, prior_prec: tuple[float, float], prior_mean: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) each SKU's own estimate of its curvature and that estimate's precision.

    ``el`` (N, 5) and ``ek`` (N, 4) are the SKUs' own likelihood rows (information form, as
    :mod:`models.elasticity` stores them: ``J00, J01, J11, h0, h1`` and ``J02, J12, J22, h2``);
    level and elasticity are integrated out under the pooled prior (precisions, means)."""
    pa, pe = prior_prec
    j00, j01, j11 = el[:, 0] + pa, el[:, 1], el[:, 2] + pe
    h0, h1 = el[:, 3] + pa * prior_mean[0], el[:, 4] + pe * prior_mean[1]
    c0, c1, j22, h2 = ek[:, 0], ek[:, 1], ek[:, 2], ek[:, 3]
    det = j00 * j11 - j01 * j01  # > 0: the prior makes the (a, e) block positive definite
    # u = inv(J_ae) · (J02, J12): what (a, e) explain of the curvature's information
    u0, u1 = (j11 * c0 - j01 * c1) / det, (j00 * c1 - j01 * c0) / det
    prec = j22 - (c0 * u0 + c1 * u1)
    with np.errstate(divide="ignore", invalid="ignore"):
        k_hat = np.where(prec > 0, (h2 - (u0 * h0 + u1 * h1)) / prec, 0.0)
    return k_hat, np.maximum(prec, 0.0)


def spread_moment(k_hat: np.ndarray, prec: np.ndarray) -> tuple[float, float] | None:
    """The method-of-moments estimate of ``τ²`` beyond chance (below 0: no bending beyond
    noise) and the share of SKUs it rests on; None when fewer than 3 SKUs have evidence on
    ``k`` (precision at least ``MIN_PREC``)."""
    use = np.isfinite(k_hat) & (prec >= MIN_PREC)
    n = int(use.sum())
    if n < 3:
        return None
    w, k = prec[use], k_hat[use]
    est = (float((w * k * k).sum()) - n - NULL_Z * math.sqrt(2.0 * n)) / float(w.sum())
    return est, n / len(k_hat)


def spread(var_k: float, floor: float = SD_K_FLOOR, cap: float = SD_K_CAP) -> float:
    """The prior's standard deviation from the pool's running estimate of ``τ²``."""
    return float(np.sqrt(min(max(var_k, floor * floor), cap * cap)))
