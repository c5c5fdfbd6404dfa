"""The prior oracle: the best price that does not know the SKU's own truth.

It knows a family's *distribution* of truths (it draws ``draws`` truths from the same family
generator, :func:`~.families.draw_truths`, with a seed of its own) but not the SKU's, and charges
the multiple of cost that maximises the expected objective summed over those draws. In every
family the SKU's observable catalogue data (cost, catalogue price, bounds, category) are drawn
independently of its demand, and the catalogue price, the bounds, the choke price and the
competitor's price all scale with cost, so a single multiple of cost per family (per hour: the
chance that a regime has changed grows with time) is the Bayes-optimal price without learning,
up to the grid (:data:`GRID_POINTS` multiples between the price bounds) and the Monte Carlo
error of the draws. No policy that does not learn the SKU's own response can beat it in
expectation; ``prior_oracle ÷ oracle`` is the ceiling of such a policy.

The draws are weighted as they come (traffic and cost): the backtest sums profit over SKUs,
so the multiple maximises the family's total in expectation. Finite stock (the ``stock`` family)
is priced like the oracle there, one price for the run, on the fluid model (sales capped by the
stock).
"""

from __future__ import annotations

import numpy as np

from repricer.streams.tools.simulator.families import (
    FamilyTruth,
    conversion_at,
    draw_truths,
    season_at,
    season_integral_min,
    state_at,
)
from repricer.streams.tools.simulator.family_market import FamilyMarket
from repricer.streams.tools.simulator.truth import (
    MAX_PRICE_FACTOR,
    MEAN_QTY,
    MIN_PRICE_FACTOR,
    Objective,
)

GRID_POINTS = 481  # multiples of cost, geometric from the lowest to the highest bound
DRAWS = 4000
PRIOR_SEED = 987_654_321  # the prior's own draws: never a seed a backtest runs
HOUR_MS = 3_600_000


def multiple_grid() -> np.ndarray:
    """The candidate multiples of cost (the catalogue bounds are cost x these factors)."""
    return np.geomspace(MIN_PRICE_FACTOR, MAX_PRICE_FACTOR, GRID_POINTS)


def price_of(tr: FamilyTruth, multiple: float | np.ndarray) -> np.ndarray:
    """The price at ``multiple`` x cost, inside the SKU's bounds."""
    return np.clip(np.asarray(multiple) * tr.cost, tr.min_price, tr.max_price)


class PriorOracle:
    """Best multiple of cost for one family, knowing its distribution of truths only."""

    def __init__(
        self,
        family: str,
        *,
        markup: float,
        start_ms: int,
        horizon_ms: int,
        objective: Objective = "profit",
        draws: int = DRAWS,
        seed: int = PRIOR_SEED,
    ) -> None:
        self.family = family
        self.objective = objective
        self.grid = multiple_grid()
        rng = np.random.default_rng(seed)
        self.truths = list(
            draw_truths(
                rng, draws, market=family, markup=markup, start_ms=start_ms, horizon_ms=horizon_ms
            ).values()
        )
        self._vec: dict[tuple[int, tuple[bool, bool]], np.ndarray] = {}
        self._memo: dict[int, float] = {}
        self._fixed: float | None = None
        if any(t.stock is not None for t in self.truths):
            self._fixed = self._stock_multiple()

    def _margin(self, tr: FamilyTruth, p: np.ndarray) -> np.ndarray:
        return p - tr.cost if self.objective == "profit" else p

    def _per_min(self, d: int, t_ms: int) -> np.ndarray:
        """Draw ``d``'s expected objective per minute over the grid at ``t_ms``, season aside."""
        tr = self.truths[d]
        key = (d, state_at(tr, t_ms))
        v = self._vec.get(key)
        if v is None:
            p = price_of(tr, self.grid)
            conv = np.minimum(1.0, conversion_at(tr, p, t_ms))
            v = self._vec[key] = tr.views_per_min * MEAN_QTY * self._margin(tr, p) * conv
        return v

    def objective_at(self, t_ms: int) -> np.ndarray:
        """Expected objective per minute at ``t_ms``, summed over the draws, per multiple."""
        total = np.zeros(len(self.grid))
        for d, tr in enumerate(self.truths):
            total += season_at(tr, t_ms) * self._per_min(d, t_ms)
        return total

    def _stock_multiple(self) -> float:
        total = np.zeros(len(self.grid))
        for tr in self.truths:
            p = price_of(tr, self.grid)
            minutes = season_integral_min(tr, tr.start_ms, tr.start_ms + tr.horizon_ms)
            demand = tr.views_per_min * minutes * MEAN_QTY * conversion_at(tr, p, tr.start_ms)
            sold = demand if tr.stock is None else np.minimum(demand, float(tr.stock))
            total += self._margin(tr, p) * sold
        return float(self.grid[int(np.argmax(total))])

    def multiple_at(self, t_ms: int) -> float:
        """The best multiple of cost for the hour holding ``t_ms`` (taken at its mid-point)."""
        if self._fixed is not None:
            return self._fixed
        hour = int(t_ms) // HOUR_MS
        got = self._memo.get(hour)
        if got is None:
            obj = self.objective_at(hour * HOUR_MS + HOUR_MS // 2)
            got = self._memo[hour] = float(self.grid[int(np.argmax(obj))])
        return got

    def price(self, tr: FamilyTruth, t_ms: int) -> float:
        """The prior oracle's price for the SKU of truth ``tr`` at ``t_ms`` (to the cent)."""
        return round(float(price_of(tr, self.multiple_at(t_ms))), 2)


def prior_oracles(
    market: FamilyMarket, markup: float, objective: Objective = "profit"
) -> dict[str, tuple[PriorOracle, FamilyTruth]]:
    """Per SKU of ``market`` (catalogue prices at cost x ``markup``), its family's prior
    oracle (one per family, shared by its SKUs) and the SKU's truth (its cost and bounds)."""
    out: dict[str, tuple[PriorOracle, FamilyTruth]] = {}
    by_family: dict[str, PriorOracle] = {}
    for sku in market.truths:
        tr = market.truth(sku)
        prior = by_family.get(tr.family)
        if prior is None:
            prior = by_family[tr.family] = PriorOracle(
                tr.family,
                markup=markup,
                start_ms=tr.start_ms,
                horizon_ms=tr.horizon_ms,
                objective=objective,
            )
        out[sku] = (prior, tr)
    return out
