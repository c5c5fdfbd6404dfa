"""Closed-loop market simulator: :class:`Market`, a simulated shop whose hidden demand truths
(:mod:`streams.tools.simulator.truth`, which describes the demand model) react to the prices we
set.

Pure logic (no Kafka, no I/O) and deterministic for a seed. :class:`Market` draws a hidden
:class:`~streams.tools.simulator.truth.SkuTruth` per SKU, publishes the visible part as
:class:`~schemas.events.CatalogItem`, and on every :meth:`Market.step` emits the clickstream and
orders of a time interval as :class:`~schemas.events.Click` and :class:`~schemas.events.Order`
structs (``ts`` in epoch ms).
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from repricer.schemas.events import CatalogItem, Click, Order
from repricer.streams.tools.simulator.truth import (
    CART_DELAY_MS,
    CART_MULTIPLIER_RANGE,
    CATEGORIES,
    CHECKOUT_DELAY_MS,
    CONVERSION_RANGE,
    COST_CLIP,
    COST_MEDIAN,
    COST_SIGMA,
    ELASTICITY_RANGE,
    MAX_PRICE_FACTOR,
    MEAN_QTY,
    MIN_PRICE_FACTOR,
    MS_PER_DAY,
    MS_PER_MIN,
    N_CUSTOMERS,
    QTY_PROBS,
    QTY_VALUES,
    REMOVE_PROB,
    SEASON_AMP_RANGE,
    STOCK_MINUTES_RANGE,
    UNITS_AT_BASE_RANGE,
    Objective,
    SkuTruth,
    cart_probability,
    conversion,
    demand_curve_units,
    minute_of_day,
    oracle_price_of,
    season_factor,
)


class Market:
    """A simulated shop: hidden demand truths that react to the prices applied to them."""

    def __init__(
        self,
        *,
        n_skus: int = 50,
        seed: int = 7,
        start_ms: int,
        currency: str = "EUR",
        initial_markup: float = 1.6,
        stocked_fraction: float = 0.1,
    ) -> None:
        if n_skus < 1:
            raise ValueError("n_skus must be >= 1")
        if initial_markup <= 0:
            raise ValueError("initial_markup must be > 0")
        self.seed = seed
        self.currency = currency
        self.start_ms = int(start_ms)
        self._now = int(start_ms)
        ss = np.random.SeedSequence(seed)
        truth_ss, step_ss = ss.spawn(2)
        self.truths: dict[str, SkuTruth] = self._draw_truths(
            np.random.default_rng(truth_ss), n_skus, initial_markup, stocked_fraction
        )
        self._rng = np.random.default_rng(step_ss)
        self._price: dict[str, float] = {s: t.base_price for s, t in self.truths.items()}
        # pending (effective_ms, price) changes with effective_ms > now, sorted by time
        self._pending: dict[str, list[tuple[int, float]]] = {s: [] for s in self.truths}
        self._stock: dict[str, int | None] = {s: t.stock for s, t in self.truths.items()}
        self._realised: dict[str, dict[str, float]] = {
            s: {"units": 0.0, "revenue": 0.0, "profit": 0.0, "orders": 0.0, "views": 0.0}
            for s in self.truths
        }
        self._click_seq = 0
        self._order_seq = 0
        self._session_seq = 0
        self._qty_values = np.asarray(QTY_VALUES, dtype=np.int64)
        self._qty_cdf = np.cumsum(QTY_PROBS)

    # ---------------------------------------------------------------------------- truths

    @staticmethod
    def _draw_truths(
        rng: np.random.Generator, n: int, markup: float, stocked_fraction: float
    ) -> dict[str, SkuTruth]:
        cost = np.clip(
            np.exp(rng.normal(math.log(COST_MEDIAN), COST_SIGMA, n)), COST_CLIP[0], COST_CLIP[1]
        )
        elasticity = rng.uniform(*ELASTICITY_RANGE, n)
        conv = rng.uniform(*CONVERSION_RANGE, n)
        cart_k = rng.uniform(*CART_MULTIPLIER_RANGE, n)
        units = np.exp(
            rng.uniform(math.log(UNITS_AT_BASE_RANGE[0]), math.log(UNITS_AT_BASE_RANGE[1]), n)
        )
        amp = rng.uniform(*SEASON_AMP_RANGE, n)
        phase = rng.uniform(0.0, 2.0 * math.pi, n)
        cat = rng.integers(0, len(CATEGORIES), n)
        stocked = rng.random(n) < stocked_fraction
        stock_minutes = rng.uniform(*STOCK_MINUTES_RANGE, n)
        truths: dict[str, SkuTruth] = {}
        for i in range(n):
            c = round(float(cost[i]), 2)
            base = round(c * markup, 2)
            lo = round(min(c * MIN_PRICE_FACTOR, base), 2)
            hi = round(max(c * MAX_PRICE_FACTOR, base), 2)
            sku = f"SKU-{i:04d}"
            truths[sku] = SkuTruth(
                sku=sku,
                category=CATEGORIES[int(cat[i])],
                cost=c,
                base_price=base,
                min_price=lo,
                max_price=hi,
                elasticity=round(float(elasticity[i]), 4),
                views_per_min=float(units[i] / (conv[i] * MEAN_QTY)),
                conversion_at_base=float(conv[i]),
                cart_rate=float(conv[i] * cart_k[i]),
                season_amp=float(amp[i]),
                season_phase=float(phase[i]),
                stock=int(units[i] * stock_minutes[i]) if stocked[i] else None,
            )
        return truths

    def catalog(self) -> list[CatalogItem]:
        """Catalog records of all SKUs (``base_price`` = initial price, ``stock`` = remaining)."""
        return [
            CatalogItem(
                sku=t.sku,
                cost=t.cost,
                base_price=t.base_price,
                min_price=t.min_price,
                max_price=t.max_price,
                currency=self.currency,
                stock=self._stock[t.sku],
                category=t.category,
            )
            for t in self.truths.values()
        ]

    # ---------------------------------------------------------------------------- prices

    @property
    def now_ms(self) -> int:
        """Simulation clock: the end of the last step (``start_ms`` before the first)."""
        return self._now

    def price(self, sku: str) -> float:
        """Price in force now (at :attr:`now_ms`)."""
        return self._price[sku]

    def price_at(self, sku: str, t_ms: int) -> float:
        """Price in force at ``t_ms`` ≥ now, given the changes applied so far."""
        p = self._price[sku]
        for eff, q in self._pending[sku]:
            if eff > t_ms:
                break
            p = q
        return p

    def apply_price(self, sku: str, price: float, effective_ms: int) -> None:
        """Set the price of ``sku`` from ``effective_ms`` on (from now if that is in the past)."""
        if sku not in self.truths:
            raise KeyError(sku)
        price = float(price)
        if not math.isfinite(price) or price <= 0:
            raise ValueError(f"price must be finite and > 0, got {price!r}")
        eff = int(effective_ms)
        if eff <= self._now:
            self._price[sku] = price
            return
        pending = self._pending[sku]
        times = [e for e, _ in pending]
        i = bisect.bisect_left(times, eff)
        if i < len(pending) and pending[i][0] == eff:
            pending[i] = (eff, price)  # the later decision for the same instant wins
        else:
            pending.insert(i, (eff, price))

    def stock(self, sku: str) -> int | None:
        """Remaining stock (None = unlimited)."""
        return self._stock[sku]

    def set_stock(self, sku: str, stock: int | None) -> None:
        """Override the remaining stock of ``sku`` (scenario tests: sell-outs, restocks)."""
        if stock is not None and stock < 0:
            raise ValueError("stock must be >= 0")
        self._stock[sku] = stock

    def _advance_prices(self, t_ms: int) -> None:
        for sku, pending in self._pending.items():
            while pending and pending[0][0] <= t_ms:
                self._price[sku] = pending.pop(0)[1]

    # ---------------------------------------------------------------------------- truth queries

    def expected_units_per_min(self, sku: str, price: float, t_ms: int) -> float:
        """Expected units per minute at ``price`` at instant ``t_ms`` (ignores stock-outs).

        Exactly the rate :meth:`step` realises in expectation:
        ``views_per_min * season(t) * conversion(price) * MEAN_QTY``.
        """
        return demand_curve_units(self.truths[sku], price, minute_of_day(t_ms))

    def expected_objective_per_min(
        self, sku: str, price: float, t_ms: int, *, objective: Objective = "profit"
    ) -> float:
        """Expected profit (``(p - cost) * units``) or revenue (``p * units``) per minute."""
        t = self.truths[sku]
        units = self.expected_units_per_min(sku, price, t_ms)
        return (price - t.cost) * units if objective == "profit" else price * units

    def oracle_price(
        self, sku: str, t_ms: int | None = None, *, objective: Objective = "profit"
    ) -> float:
        """Price in ``[min_price, max_price]`` maximising the expected objective per minute.

        Seasonality multiplies demand, so the argmax does not depend on ``t_ms`` (kept for the
        interface: a time-varying truth could use it).
        """
        if objective not in ("profit", "revenue"):
            raise ValueError(f"unknown objective {objective!r}")
        return oracle_price_of(self.truths[sku], objective)

    def realised(self) -> dict[str, dict[str, float]]:
        """Per SKU: ``units``, ``revenue``, ``profit`` (also ``orders``, ``views``) so far."""
        return {s: dict(v) for s, v in self._realised.items()}

    # ---------------------------------------------------------------------------- simulation

    def step_counts(
        self, t0_ms: int, t1_ms: int
    ) -> dict[str, tuple[int, int, float, int, int, int]]:
        """Per-SKU window totals ``(orders, units, revenue, views, carts, removes)`` for [t0, t1).

        The same demand model as :meth:`step` (same expected units), drawn as counts rather than
        events — thousands of times faster, for backtests and benchmarks over simulated weeks.
        The price in force at ``t0`` holds for the whole interval.
        """
        t0, t1 = int(t0_ms), int(t1_ms)
        if t1 <= t0 or t0 < self._now:
            raise ValueError("step_counts needs now <= t0 < t1")
        self._advance_prices(t0)
        rng = self._rng
        minutes = (t1 - t0) / MS_PER_MIN
        mid_minute = (((t0 + t1) // 2) % MS_PER_DAY) / MS_PER_MIN
        out: dict[str, tuple[int, int, float, int, int, int]] = {}
        for sku, tr in self.truths.items():
            price = self._price[sku]
            views = int(rng.poisson(tr.views_per_min * minutes * season_factor(tr, mid_minute)))
            conv = float(conversion(tr, price))
            cart_p = float(cart_probability(tr, price))
            # a fixed number of draws per SKU and step, whatever the price: runs at different
            # prices with one seed see the same traffic (common random numbers)
            carts = int(rng.binomial(views, cart_p))
            orders = int(rng.binomial(carts, min(1.0, conv / cart_p)))
            removes = int(rng.binomial(carts - orders, REMOVE_PROB))
            units = int(rng.multinomial(orders, QTY_PROBS) @ self._qty_values)
            out[sku] = self._book(sku, tr.cost, price, orders, units, views, carts, removes)
        self._now = t1
        self._advance_prices(t1)
        return out

    def _book(
        self,
        sku: str,
        cost: float,
        price: float,
        orders: int,
        units: int,
        views: int,
        carts: int,
        removes: int,
    ) -> tuple[int, int, float, int, int, int]:
        """A window's draws for one SKU, capped by its stock and added to what it realised:
        (orders, units, revenue, views, carts, removes)."""
        stock = self._stock[sku]
        if stock is not None:
            units = min(units, stock)
            orders = min(orders, units)
            self._stock[sku] = stock - units
        revenue = units * price
        rec = self._realised[sku]
        rec["units"] += units
        rec["revenue"] += revenue
        rec["profit"] += revenue - units * cost
        rec["orders"] += orders
        rec["views"] += views
        return (orders, units, revenue, views, carts, removes)

    def step(self, t0_ms: int, t1_ms: int) -> list[Order | Click]:
        """All events with ``t0_ms <= ts < t1_ms``, sorted by ``ts``; advances the clock to t1."""
        t0, t1 = int(t0_ms), int(t1_ms)
        if t1 <= t0:
            raise ValueError("step needs t0_ms < t1_ms")
        if t0 < self._now:
            raise ValueError(f"step starts at {t0} before the simulation clock {self._now}")
        self._advance_prices(t0)
        rng = self._rng
        span = t1 - t0
        minutes = span / MS_PER_MIN
        seed = self.seed
        cur = self.currency
        events: list[Order | Click] = []
        for sku, tr in self.truths.items():
            # views: inhomogeneous Poisson process by thinning a homogeneous one at peak rate
            peak = 1.0 + tr.season_amp
            n = int(rng.poisson(tr.views_per_min * minutes * peak))
            if n == 0:
                continue
            ts = t0 + rng.integers(0, span, n)
            keep = rng.random(n) * peak < season_factor(tr, (ts % MS_PER_DAY) / MS_PER_MIN)
            ts = np.sort(ts[keep])
            n = int(ts.size)
            if n == 0:
                continue
            # price in force at each view
            pending = self._pending[sku]
            if pending and pending[0][0] < t1:
                eff = np.asarray([e for e, _ in pending], dtype=np.int64)
                prices = np.asarray([self._price[sku]] + [p for _, p in pending])
                p_seen = prices[np.searchsorted(eff, ts, side="right")]
            else:
                p_seen = np.full(n, self._price[sku])
            conv = conversion(tr, p_seen)
            cart_p = cart_probability(tr, p_seen)
            u = rng.random(n)
            carted = u < cart_p
            ordered = u < conv  # conv <= cart_p, so every order is carted
            u_remove = rng.random(n)
            removed = carted & ~ordered & (u_remove < REMOVE_PROB)
            cart_ts = np.minimum(ts + rng.integers(*CART_DELAY_MS, n), t1 - 1)
            out_ts = np.minimum(cart_ts + rng.integers(*CHECKOUT_DELAY_MS, n), t1 - 1)
            qty = self._qty_values[np.searchsorted(self._qty_cdf, rng.random(n), side="right")]
            cust = rng.integers(0, N_CUSTOMERS, n)

            s0 = self._session_seq
            self._session_seq += n
            c0 = self._click_seq
            ts_l = ts.tolist()
            p_l = p_seen.tolist()
            for i in range(n):
                events.append(
                    Click(
                        event_id=f"c-{seed}-{c0 + i}",
                        ts=ts_l[i],
                        session_id=f"s-{seed}-{s0 + i}",
                        sku=sku,
                        type="view",
                        price_seen=p_l[i],
                    )
                )
            c = c0 + n
            cart_l = cart_ts.tolist()
            out_l = out_ts.tolist()
            for i in np.flatnonzero(carted).tolist():
                events.append(
                    Click(
                        event_id=f"c-{seed}-{c}",
                        ts=cart_l[i],
                        session_id=f"s-{seed}-{s0 + i}",
                        sku=sku,
                        type="add_to_cart",
                        price_seen=p_l[i],
                    )
                )
                c += 1
            for i in np.flatnonzero(removed).tolist():
                events.append(
                    Click(
                        event_id=f"c-{seed}-{c}",
                        ts=out_l[i],
                        session_id=f"s-{seed}-{s0 + i}",
                        sku=sku,
                        type="remove_from_cart",
                        price_seen=p_l[i],
                    )
                )
                c += 1
            self._click_seq = c

            order_idx = np.flatnonzero(ordered)
            if order_idx.size:
                order_idx = order_idx[np.argsort(out_ts[order_idx], kind="stable")]
                stock = self._stock[sku]
                qty_l = qty.tolist()
                cust_l = cust.tolist()
                rec = self._realised[sku]
                units = 0
                revenue = 0.0
                norders = 0
                for i in order_idx.tolist():
                    q = qty_l[i]
                    if stock is not None:
                        if stock <= 0:
                            break
                        q = min(q, stock)
                        stock -= q
                    price = p_l[i]
                    events.append(
                        Order(
                            order_id=f"o-{seed}-{self._order_seq}",
                            ts=out_l[i],
                            sku=sku,
                            qty=q,
                            unit_price=price,
                            currency=cur,
                            customer_id=f"u-{seed}-{cust_l[i]}",
                        )
                    )
                    self._order_seq += 1
                    units += q
                    revenue += q * price
                    norders += 1
                self._stock[sku] = stock
                rec["units"] += units
                rec["revenue"] += revenue
                rec["profit"] += revenue - units * tr.cost
                rec["orders"] += norders
            self._realised[sku]["views"] += n

        events.sort(key=_ts_key)
        self._now = t1
        self._advance_prices(t1)
        return events


def _ts_key(e: Order | Click) -> int:
    return e.ts  # type: ignore[return-value]  # always int epoch ms here
