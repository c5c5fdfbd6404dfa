""":class:`FamilyMarket`: the simulated shop with demand drawn from the families of
:mod:`streams.tools.simulator.families` (one family, or ``mix``: every family in turn).

The same funnel as :class:`~.market.Market`, with exact common random numbers: the views and
three uniforms per view are drawn whatever the prices, and a view orders when its uniform is
below the conversion, so static, policy and oracle runs of one seed see the same traffic and a
SKU priced lower sells to a superset of the same visitors. Only the conversion and the season
depend on the family and on the instant. Window totals only (:meth:`FamilyMarket.step_counts`):
this market drives backtests and forecast benchmarks, not the event-level simulator.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from repricer.schemas.events import Click, Order
from repricer.streams.tools.simulator.families import (
    FamilyTruth,
    conversion_at,
    draw_truths,
    oracle_at,
    season_at,
    state_at,
    units_per_min,
)
from repricer.streams.tools.simulator.market import Market
from repricer.streams.tools.simulator.truth import (
    MS_PER_MIN,
    REMOVE_PROB,
    Objective,
    SkuTruth,
)


class FamilyMarket(Market):
    """A market whose SKUs follow the demand families; ``horizon_ms`` is the run's length (the
    regime changes and the stocked SKUs' stock are drawn for it)."""

    def __init__(
        self,
        *,
        market: str,
        n_skus: int,
        seed: int,
        start_ms: int,
        horizon_ms: int,
        initial_markup: float = 2.0,
        currency: str = "EUR",
    ) -> None:
        self.market = market
        self.horizon_ms = int(horizon_ms)
        self._oracle_memo: dict[tuple[str, tuple[bool, bool], str], float] = {}
        super().__init__(
            n_skus=n_skus,
            seed=seed,
            start_ms=start_ms,
            currency=currency,
            initial_markup=initial_markup,
            stocked_fraction=0.0,
        )

    def _draw_truths(  # type: ignore[override]
        self, rng: np.random.Generator, n: int, markup: float, stocked_fraction: float
    ) -> dict[str, SkuTruth]:
        del stocked_fraction  # the stock family holds the stocked SKUs
        return dict(
            draw_truths(
                rng,
                n,
                market=self.market,
                markup=markup,
                start_ms=self.start_ms,
                horizon_ms=self.horizon_ms,
            )
        )

    def truth(self, sku: str) -> FamilyTruth:
        return cast(FamilyTruth, self.truths[sku])

    def families(self) -> dict[str, str]:
        """The family of every SKU."""
        return {s: self.truth(s).family for s in self.truths}

    def expected_units_per_min(self, sku: str, price: float, t_ms: int) -> float:
        """Expected units per minute at ``price`` at ``t_ms``; 0 once the SKU has sold out
        (what can still sell: the forecast benchmark's attainable bound)."""
        left = self._stock[sku]
        if left is not None and left <= 0:
            return 0.0
        return units_per_min(self.truth(sku), price, t_ms)

    def oracle_price(
        self, sku: str, t_ms: int | None = None, *, objective: Objective = "profit"
    ) -> float:
        """The exact best price at ``t_ms`` (:func:`~.families.oracle_at`), memoised per state
        of the truth (regime, promotion)."""
        tr = self.truth(sku)
        t = self._now if t_ms is None else int(t_ms)
        key = (sku, state_at(tr, t), objective)
        got = self._oracle_memo.get(key)
        if got is None:
            got = self._oracle_memo[key] = oracle_at(tr, t, objective)
        return got

    def step_counts(
        self, t0_ms: int, t1_ms: int
    ) -> dict[str, tuple[int, int, float, int, int, int]]:
        """Per-SKU window totals ``(orders, units, revenue, views, carts, removes)`` for [t0, t1),
        the truth taken at the window's mid-point.

        Common random numbers, exactly: the views are drawn from the truth alone, then three
        uniforms per view (``u``: cart and order, ``r``: remove, ``q``: quantity), so every draw
        is the same whatever the prices. A view orders when ``u < conversion`` and carts when
        ``u < cart probability``: at a lower price a SKU sells to a superset of the same views.
        """
        t0, t1 = int(t0_ms), int(t1_ms)
        if t1 <= t0 or t0 < self._now:
            raise ValueError("step_counts needs now <= t0 < t1")
        self._advance_prices(t0)
        rng = self._rng
        minutes = (t1 - t0) / MS_PER_MIN
        mid = (t0 + t1) // 2
        skus = list(self.truths)
        n = len(skus)
        lam = np.empty(n)
        conv = np.empty(n)
        cart_p = np.empty(n)
        for i, sku in enumerate(skus):
            tr = self.truth(sku)
            lam[i] = tr.views_per_min * minutes * season_at(tr, mid)
            conv[i] = min(1.0, float(conversion_at(tr, self._price[sku], mid)))
            cart_p[i] = min(1.0, conv[i] * tr.cart_rate / tr.conversion_at_base)
        views = rng.poisson(lam)
        u, r, q = rng.random((3, int(views.sum())))
        of = np.repeat(np.arange(n), views)
        ordered = u < conv[of]
        carted = u < cart_p[of]
        removed = carted & ~ordered & (r < REMOVE_PROB)
        qty = self._qty_values[np.minimum(np.searchsorted(self._qty_cdf, q, side="right"), 2)]
        orders = np.bincount(of, weights=ordered, minlength=n)
        units = np.bincount(of, weights=qty * ordered, minlength=n)
        carts = np.bincount(of, weights=carted, minlength=n)
        removes = np.bincount(of, weights=removed, minlength=n)
        out: dict[str, tuple[int, int, float, int, int, int]] = {}
        for i, sku in enumerate(skus):
            out[sku] = self._book(
                sku,
                self.truth(sku).cost,
                self._price[sku],
                int(orders[i]),
                int(units[i]),
                int(views[i]),
                int(carts[i]),
                int(removes[i]),
            )
        self._now = t1
        self._advance_prices(t1)
        return out

    def step(self, t0_ms: int, t1_ms: int) -> list[Order | Click]:
        raise NotImplementedError("FamilyMarket draws window totals only (step_counts)")

    def describe(self) -> dict[str, Any]:
        """SKUs per family (for reports)."""
        out: dict[str, int] = {}
        for fam in self.families().values():
            out[fam] = out.get(fam, 0) + 1
        return {"market": self.market, "skus_per_family": out}
