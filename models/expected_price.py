"""The price a SKU that does not explore charges: expected profit over its elasticity posterior.

Plugging the posterior mean of the elasticity into the markup rule ignores how unsure the
posterior is. With constant elasticity the objective at ``p`` relative to the reference price
``ref`` is ``r(p, e) = (p/ref)**e * A(p)``, ``A = (p - c)/(ref - c)`` (profit) or ``p/ref``
(revenue); for ``e ~ N(m, s²)`` and ``x = log(p/ref)`` its expectation is exact (a log-normal
moment, no quadrature needed): ``E[r] = A · exp(m·x + s²x²/2)``. A SKU without data of its own
has ``m, s`` of the pooled prior: the family's mean and spread, so ``E[r]`` is what the price
earns over the family's SKUs (the prior oracle's objective, with the family learned).

The price is the candidate in ``[lo, hi]`` that maximises ``E[r] - 1 - z·sd`` where ``sd`` is
the uncertainty of that expectation: how much it moves when the pooled mean elasticity moves
by one standard error (shared by every SKU of the family, so it does not average out over the
catalogue as each SKU's own spread does). With ``z = 0``: the expected-profit price. With
``z > 0`` a move must pay by more than ``z`` standard deviations of its expected gain, so where
the family's mean is barely known the price stays near ``ref`` (where the gain and its spread
are both zero), and where it is known the price goes to the expected optimum. Where no
candidate beats ``min_gain`` the SKU keeps ``ref`` (the catalogue price). Vectorised over SKUs
(N) and candidates (K).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from repricer.models.pricing import Objective, objective_ratio, optimal_price, response_ratio

CANDIDATES = 41  # geometric grid between each SKU's bounds, besides ref and the plug-in optimum


def expected_gain(
    p: np.ndarray,
    ref: np.ndarray,
    e_mean: np.ndarray,
    e_sd: np.ndarray,
    cost: np.ndarray,
    objective: Objective,
    bend: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Expected relative gain ``E[r(p, e)] - 1`` of ``p`` over ``ref`` for ``e ~ N(m, s²)``,
    under constant elasticity or, with ``bend = (k, anchor)``, under the curved response
    ``e·x + k·x²/2`` around ``anchor`` (the curvature at its posterior mean, as the Thompson
    draw takes it given ``e``).

    ``p`` is (N,) or (N, K); the other arrays are (N,)."""
    p = np.asarray(p, dtype=np.float64)
    shape = (len(ref),) + (1,) * (p.ndim - 1)
    ref, m, s, c = (
        np.asarray(a, dtype=np.float64).reshape(shape) for a in (ref, e_mean, e_sd, cost)
    )
    # E[exp(e·x)] = exp(m·x + s²x²/2): the objective ratio of a curved response, curvature s²
    r = objective_ratio(p, ref, m, c, objective, k=s * s, anchor=ref)
    if bend is not None:
        k, anchor = (np.asarray(a, dtype=np.float64).reshape(shape) for a in bend)
        r = r * response_ratio(p, ref, np.zeros_like(k), k, anchor)
    return r - 1.0


def expected_price(
    e_mean: np.ndarray,
    e_sd: np.ndarray,
    shared: np.ndarray,
    box: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    objective: Objective,
    z: np.ndarray,
    min_gain: float,
    bend: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) the price in ``[lo, hi]`` maximising the expected gain over ``ref`` minus ``z``
    sds of that expectation, and (N,) that score; ``ref`` where no candidate scores above
    ``min_gain``.

    ``box`` is (cost, ref, lo, hi), ``ref`` within ``[lo, hi]``. The expectation is over
    ``e ~ N(e_mean, e_sd²)``; its sd is how far it moves when ``e_mean`` moves by ``shared``
    (the pooled mean's uncertainty, from :mod:`models.pool_experiment`). Where
    ``ref <= cost`` (profit: no margin to compare against) the plug-in optimum is returned."""
    cost, ref, lo, hi = box
    n = len(ref)
    top = np.maximum(hi, lo)
    plug = optimal_price(e_mean, cost, lo, hi, objective)
    t = np.linspace(0.0, 1.0, CANDIDATES)
    with np.errstate(divide="ignore", invalid="ignore"):
        grid = np.exp(np.log(lo)[:, None] + np.log(top / lo)[:, None] * t[None, :])
    cand = np.concatenate([grid, plug[:, None], ref[:, None]], axis=1)
    cand = np.minimum(np.maximum(cand, lo[:, None]), top[:, None])
    g = expected_gain(cand, ref, e_mean, e_sd, cost, objective, bend)
    up = expected_gain(cand, ref, e_mean + shared, e_sd, cost, objective, bend)
    down = expected_gain(cand, ref, e_mean - shared, e_sd, cost, objective, bend)
    score = g - np.asarray(z, dtype=np.float64).reshape(n, 1) * np.abs(up - down) / 2.0
    score = np.where(np.isfinite(score), score, -np.inf)
    best = np.argmax(score, axis=1)
    rows = np.arange(n)
    price, top_score = cand[rows, best], score[rows, best]
    price = np.where(top_score > min_gain, price, ref)
    no_margin = (ref <= cost) if objective == "profit" else np.zeros(n, dtype=bool)
    return np.where(no_margin, plug, price), np.where(no_margin, np.inf, top_score)


def steer(
    target: np.ndarray,
    ref_price: Sequence[float],
    posterior: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    box: tuple[np.ndarray, np.ndarray, np.ndarray],
    scale: np.ndarray,
    rule: tuple[Objective, float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """The decider's targets after the sparse-SKU rule, and (N,) where it steers them
    (``posterior``: elasticity mean, sd and shared sd, and the curvature's mean around
    ``ref_price``; ``box``: cost, floor, ceiling;
    ``rule``: objective, ``hold_z``, ``min_gain``).

    A SKU that explores fully (``scale`` 1) keeps its ``target``. One that does not explore
    (``scale`` 0) is steered to :func:`expected_price` with ``z = hold_z``; one that explores
    partly keeps its draw where some move is sure to pay (``z = hold_z·(1 - scale)``) and is
    steered back to its catalogue price (``ref_price`` within the bounds) where none is."""
    (e_mean, e_sd, shared, k), (cost, lo, hi), (objective, hold_z, min_gain) = posterior, box, rule
    anchor = np.asarray(ref_price, dtype=np.float64)
    ref = np.minimum(np.maximum(anchor, lo), np.maximum(hi, lo))
    z = hold_z * (1.0 - scale)
    back = z > 0
    if not back.any():
        return target, back
    i = np.flatnonzero(back)
    p_exp = ref.copy()
    sub = (cost[i], ref[i], lo[i], hi[i])
    bend = (k[i], anchor[i])
    p_exp[i], _ = expected_price(
        e_mean[i], e_sd[i], shared[i], sub, objective, z[i], min_gain, bend
    )
    back &= (p_exp == ref) | (scale <= 0)
    return np.where(back, p_exp, target), back
