"""The price from a curved demand response, chosen among candidate prices.

The elasticity posterior (:mod:`models.elasticity`) learns ``log q = a + e·x + k·x²/2`` with
``x = log(p / ref)``: the elasticity at price ``p`` is ``e + k·x``. With ``k = 0`` (constant
elasticity) the profit optimum is the markup rule ``c·e/(e+1)``; with ``k ≠ 0`` (linear or logit
demand, which fall faster than that at high prices) it has no closed form, so the expected
objective ``(p - c)·E[q(p)]`` (or ``p·E[q(p)]``) is evaluated at ``n`` candidate prices spread
over the reachable range (the guardrails' floor and ceiling intersected with one ``max_step``
from the current price), plus the markup rule at the local elasticity of the best of them
(over the guardrail range; the decider clips it to one step) and a few Newton steps on the
first-order condition from it, and the best is taken.

With ``k = 0`` the objective is unimodal and that last candidate is its exact optimum, so the
choice is the constant-elasticity one bit for bit (tests/unit/models/test_curvature.py).
"""

from __future__ import annotations

import numpy as np

from repricer.models.elasticity import Response
from repricer.models.pricing import Objective, optimal_price, response_ratio

__all__ = ["CANDIDATES", "best_price", "response_ratio", "thompson_draw"]
CANDIDATES = 9


def _value(
    p: np.ndarray, e: np.ndarray, k: np.ndarray, anchor: np.ndarray, cost: np.ndarray, obj: str
) -> np.ndarray:
    """Expected objective at ``p`` up to a per-row positive factor (the level cancels)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = np.log(p / anchor)
        eta = e * x + k * x * x / 2.0
        eta = eta - np.nanmax(eta, axis=-1, keepdims=True)
        margin = p - cost if obj == "profit" else p
        return np.nan_to_num(margin * np.exp(eta), nan=-np.inf)


def best_price(
    e: np.ndarray,
    k: np.ndarray,
    anchor: np.ndarray,
    cost: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    down: np.ndarray,
    up: np.ndarray,
    objective: Objective,
    n: int = CANDIDATES,
) -> np.ndarray:
    """(N,) the best price under elasticity ``e`` and curvature ``k`` around ``anchor``.

    Candidates: ``n`` prices spread geometrically over ``[max(lo, down), min(hi, up)]`` (the
    reachable part of the guardrail range) and the markup rule at the local elasticity of the
    best of them, on ``[lo, hi]`` (returned unclipped so that the caller's step rule applies as
    it does to the constant-elasticity optimum), and Newton's refinement of the best. Where nothing is reachable (the price is more
    than a step outside the guardrails) the constant-elasticity optimum, the caller moves toward
    it.
    """
    hi = np.maximum(hi, lo)
    low, high = np.maximum(lo, down), np.minimum(hi, up)
    empty = ~(low <= high)
    low, high = np.where(empty, lo, low), np.where(empty, hi, high)
    col = (slice(None), None)
    with np.errstate(divide="ignore", invalid="ignore"):
        steps = np.linspace(0.0, 1.0, n)[None, :]
        grid = low[col] * (high / low)[col] ** steps
    vg = _value(grid, e[col], k[col], anchor[col], cost[col], objective)
    j = np.argmax(vg, axis=1)
    rows = np.arange(len(e))
    p0, v0 = grid[rows, j], vg[rows, j]
    with np.errstate(divide="ignore", invalid="ignore"):
        local = e + k * np.nan_to_num(np.log(p0 / anchor))
    p1 = optimal_price(local, cost, lo, hi, objective)
    p2 = _newton(p0, e, k, anchor, cost, low, high, objective)
    cand = np.stack([np.clip(p1, low, high), p0, p2], axis=1)
    v = _value(cand, e[col], k[col], anchor[col], cost[col], objective)
    # ties go to the markup rule, then to the grid: with k = 0 the choice is the markup rule's
    pick = np.argmax(v > v.max(axis=1, keepdims=True) - 1e-12 * np.abs(v).max(axis=1)[col], 1)
    best = np.where(pick == 0, p1, np.where(pick == 1, p0, p2))
    best = np.where(v0 > -np.inf, best, p1)
    return np.where(empty, optimal_price(e, cost, lo, hi, objective), best)


def _newton(
    p: np.ndarray,
    e: np.ndarray,
    k: np.ndarray,
    anchor: np.ndarray,
    cost: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    objective: Objective,
    steps: int = 4,
) -> np.ndarray:
    """Newton steps in ``x = log(p / anchor)`` on the first-order condition from ``p`` (the best
    candidate), kept in ``[low, high]``: ``p/(p - c) + e + k·x = 0`` (profit) or
    ``1 + e + k·x = 0`` (revenue)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(steps):
            x = np.log(p / anchor)
            if objective == "profit":
                g = p / (p - cost) + e + k * x
                dg = k - p * cost / (p - cost) ** 2
            else:
                g, dg = 1.0 + e + k * x, k
            nxt = anchor * np.exp(x - g / dg)
            p = np.where(np.isfinite(nxt) & (dg < 0), np.clip(nxt, low, high), p)
    return p


def thompson_draw(r: Response, spread: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(e, k): the elasticity drawn from each SKU's posterior, ``spread`` times its sd (0: the
    mean) from the standard normals ``z`` (as before curvature existed), and the curvature at
    its posterior mean given that elasticity. Curvature is not explored on its own: where its
    posterior is centred at 0 and independent of ``e`` (a SKU without evidence of bending) the
    draw, and so the price, is the constant-elasticity one; the price moves that explore ``e``
    are what teach ``k``."""
    e = r.e + spread * r.e_sd * z
    return e, r.k + spread * r.k_sd * r.rho * z
