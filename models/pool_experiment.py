"""Sparse SKUs learn their pool's mean elasticity on purpose, then price at what it says.

A SKU selling a few units a day cannot learn its own elasticity, and one that never moves its
price tells the pool nothing about the family's mean either (its level and elasticity are
confounded). A coordinated experiment across the pool's sparse SKUs can: each moves its log
price by ``±delta`` around where it would otherwise price, a sign drawn per SKU and block of
``block_ms`` (deterministic, so a replay decides the same), so the pooled mean elasticity gains
``Σ units·delta²`` of information a day while each SKU loses about ``½|e|(|e|-1)·delta²`` of its
profit (the curvature of profit in log price at the optimum).

The pool's mean is estimated from the SKUs' own evidence as random effects
(:meth:`~models.elasticity.Elasticity.own_e`: each SKU's estimate is the family's mean plus a
spread ``sd_e`` plus its own noise), with the pooled prior as prior. Its uncertainty costs each
SKU about ``½·var/(|e|(|e|-1))`` of profit a day (the price error it causes, squared, times the
curvature), so one more day of the experiment pays while ``horizon_days`` of that saving beats
its cost: while ``sd > sqrt(|e|(|e|-1)) / (horizon_days · Σ units a day)^¼``. The experiment runs
only where the pool sells enough to learn its mean to ``useful_sd`` within ``horizon_days``
(seven long-tail SKUs do not, a hundred do); it stops
when the pool is sure enough, and the sparse SKUs then price at the expected-profit optimum
over their posterior, less ``hold_z`` sds of the gain from the pooled mean's uncertainty
(:mod:`models.expected_price`), else at the catalogue price.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from repricer.models.base import SkuView
from repricer.models.draws import unit_signs
from repricer.models.elasticity import Elasticity, units_per_label
from repricer.models.expected_price import steer
from repricer.models.pricing import Objective


def pool_mean(
    info: np.ndarray, score: np.ndarray, prior_mean: float, sd_e: float
) -> tuple[float, float]:
    """Posterior mean and sd of the pool's mean elasticity from its SKUs' own evidence
    (``info``, ``score``: :meth:`~models.elasticity.Elasticity.own_e`), each SKU a draw of the
    family with spread ``sd_e``, and the prior ``N(prior_mean, sd_e²)``."""
    pe = 1.0 / sd_e**2
    w = 1.0 / (1.0 + np.maximum(info, 0.0) * sd_e**2)
    prec = pe + float((w * info).sum())
    return (pe * prior_mean + float((w * score).sum())) / prec, 1.0 / math.sqrt(prec)


@dataclass(frozen=True, slots=True)
class PoolExperiment:
    """Randomised log-price offsets on sparse SKUs while the pool's mean elasticity is unsure."""

    delta: float = 0.15  # log-price offset of a SKU in the experiment (±)
    block_ms: int = 3 * 3_600_000  # one sign per SKU and block of event time
    horizon_days: float = 3.0  # what is learned must pay within this; 0: never experiment
    # the pool must be able to learn its mean to this sd within horizon_days: less is of no use,
    # as the sparse-SKU rule (hold_z = 1) makes a move worth a few percent, about 0.15 in log
    # price (keystone to the long tail's cost x 1.7), only once the mean is known to about 0.3
    useful_sd: float = 0.3

    def wanted_sd(self, mean_e: float, units_per_day: float) -> float:
        """The pool mean's sd below which one more day of the experiment costs more than it
        saves over ``horizon_days``."""
        c = max(abs(mean_e) * (abs(mean_e) - 1.0), 0.5)
        return math.sqrt(c) / max(self.horizon_days * units_per_day, 1e-9) ** 0.25

    def running(self, mean_e: float, sd: float, units_per_day: float) -> bool:
        """Whether the pool experiments: it is less sure than :meth:`wanted_sd` and sells
        enough to learn its mean to ``useful_sd`` within ``horizon_days``."""
        if self.horizon_days <= 0 or self.delta <= 0:
            return False
        need = 1.0 / self.useful_sd**2 - 1.0 / sd**2
        enough = units_per_day * self.delta**2 * self.horizon_days >= need
        return enough and sd > self.wanted_sd(mean_e, units_per_day)

    def signs(self, views: Sequence[SkuView]) -> np.ndarray:
        """(N,) ±1 per SKU and block, deterministic."""
        return unit_signs(views, "pool", self.block_ms)

    def steer(
        self,
        el: Elasticity,
        views: Sequence[SkuView],
        posterior: tuple[np.ndarray, np.ndarray, np.ndarray],
        target: np.ndarray,
        box: tuple[np.ndarray, np.ndarray, np.ndarray],
        scale: np.ndarray,
        rule: tuple[Objective, float, float, float],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Targets after the sparse-SKU rule, (N,) where the rule sets them and (N,) where the
        experiment does (``posterior``: each SKU's elasticity mean and sd and curvature mean,
        as the decider read them from ``el``; ``box``: cost, floor, ceiling; ``rule``: objective, ``hold_z``,
        ``min_gain``, windows a day). SKUs that explore fully keep ``target``."""
        objective, hold_z, min_gain, per_day = rule
        sparse = hold_z * (1.0 - scale) > 0
        none = np.zeros(len(views), dtype=bool)
        if not sparse.any():
            return target, none, none
        e_mean, e_sd, k = posterior
        idx = np.flatnonzero(sparse)
        pool = [views[i] for i in idx.tolist()]
        info, score = el.own_e(pool)
        pr = el.prior
        mu, sd = pool_mean(info, score, pr.mean_e, pr.sd_e)
        # each SKU's posterior mean moves by Var(e)/sd_e² per unit of the pooled mean
        shrink = e_sd**2 / pr.sd_e**2
        m = np.where(sparse, e_mean + shrink * (mu - pr.mean_e), e_mean)
        shared = shrink * sd
        post = (m, np.sqrt(e_sd**2 + shared**2), shared, k)
        refs = [v.ref_price for v in views]
        target, back = steer(target, refs, post, box, scale, (objective, hold_z, min_gain))
        units = float(units_per_label(pool)[1].sum()) * per_day
        if not self.running(mu, sd, units):
            return target, back, none
        trial = sparse & (scale <= 0)
        _, lo, hi = box
        signs = self.signs(views)
        moved = target * np.exp(self.delta * signs)
        moved = np.minimum(np.maximum(moved, lo), np.maximum(hi, lo))
        # a SKU already on its block's side of where it would price, within half the offset of
        # its target, keeps its price: it teaches the pool about as much (the information grows
        # with the offset squared, [delta/2, 3·delta/2] averages about delta²), and following
        # the target as the pool's estimate drifts each window would publish a change each time
        cur = np.array([v.price for v in views], dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            near = (np.log(cur / target) * signs > 0) & (
                np.abs(np.log(cur / moved)) < self.delta / 2.0
            )
        moved = np.where(near, cur, moved)
        return np.where(trial, moved, target), back | trial, trial
