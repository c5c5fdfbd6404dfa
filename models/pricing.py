"""The price a constant-elasticity response recommends, and how much better a candidate price
is than the current one under it or under a curved one (the level of demand cancels out)."""

from __future__ import annotations

from typing import Literal

import numpy as np

Objective = Literal["profit", "revenue"]


def optimal_price(
    e: np.ndarray, cost: np.ndarray, lo: np.ndarray, hi: np.ndarray, objective: Objective
) -> np.ndarray:
    """Price maximising ``(p - cost) * p**e`` (profit) or ``p**(1 + e)`` (revenue) on [lo, hi].

    For constant elasticity ``e < -1`` the profit optimum is the markup rule ``cost * e/(e+1)``;
    for ``e >= -1`` demand is too inelastic for an interior optimum and the ceiling wins.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        if objective == "profit":
            p = np.where(e < -1.0 - 1e-6, cost * e / (e + 1.0), np.inf)
        else:
            p = np.where(e < -1.0, -np.inf, np.inf)
    return np.minimum(np.maximum(p, lo), np.maximum(hi, lo))


def response_ratio(
    p: np.ndarray,
    cur: np.ndarray,
    e: np.ndarray,
    k: np.ndarray | None = None,
    anchor: np.ndarray | None = None,
) -> np.ndarray:
    """Expected units at ``p`` ÷ at ``cur`` under ``log q = a + e·x + k·x²/2`` with
    ``x = log(p / anchor)`` (``k`` None: constant elasticity, ``(p / cur) ** e``)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if k is None or anchor is None:
            return (p / cur) ** e
        xp, xc = np.log(p / anchor), np.log(cur / anchor)
        return np.exp(e * (xp - xc) + k * (xp * xp - xc * xc) / 2.0)


def objective_ratio(
    p: np.ndarray,
    cur: np.ndarray,
    e: np.ndarray,
    cost: np.ndarray,
    objective: Objective,
    k: np.ndarray | None = None,
    anchor: np.ndarray | None = None,
) -> np.ndarray:
    """Expected objective at ``p`` ÷ at ``cur`` under elasticity ``e`` (and curvature ``k``
    around ``anchor``, see :func:`response_ratio`; the level cancels)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = response_ratio(p, cur, e, k, anchor)
        if objective == "profit":
            return np.where(cur > cost, r * (p - cost) / (cur - cost), np.inf)
        return r * p / cur
