"""The price a constant-elasticity response recommends, and how much better a candidate price
is than the current one under it (the level of demand cancels out of both)."""

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


def objective_ratio(
    p: np.ndarray, cur: np.ndarray, e: np.ndarray, cost: np.ndarray, objective: Objective
) -> np.ndarray:
    """Expected objective at ``p`` ÷ at ``cur`` under elasticity ``e`` (the level cancels)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = (p / cur) ** e
        if objective == "profit":
            return np.where(cur > cost, r * (p - cost) / (cur - cost), np.inf)
        return r * p / cur
