"""Demand families of the market simulator, each with its exact (dynamic) oracle price.

Every family keeps the simulator's funnel (views → cart → order of 1-3 units, see
:mod:`streams.tools.simulator.truth`): expected units per minute at price ``p`` and instant
``t`` are ``views_per_min * season(t) * conversion(p, t) * MEAN_QTY``. The families differ in
``conversion`` and ``season``:

* ``constant`` — constant elasticity ``c0 * (p / base) ** e`` (the simulator's own market);
* ``linear`` — linear demand ``c0 * (P0 - p) / (P0 - base)`` with a choke price ``P0``;
* ``logit`` — logit choice between our SKU, a competitor and no purchase:
  ``reach * E / (1 + E + K)``, ``E = exp(alpha - beta * p / base)``, ``K = exp(alpha - beta * p_c(t) / base)``;
  the competitor's price ``p_c`` drops for a promotion of some hours every few days;
* ``regime`` — constant elasticity whose elasticity changes once, at a time unknown to the
  policy (between 35% and 65% of the run);
* ``longtail`` — constant elasticity at 0.1-20 units a day at the initial price;
* ``weekly`` — constant elasticity with a weekly as well as a daily season;
* ``stock`` — constant elasticity with finite stock and no replenishment during the run.

The oracle (:func:`oracle_at`) knows the truth at every instant: the season multiplies demand,
so the best price depends on ``t`` only through the regime and the competitor's promotion, and
it re-optimises when those change. With finite stock it is the best fixed price for the whole
run in expectation (the fluid bound: ``max(p*, p_cover)``, where expected demand over the run
at ``p_cover`` equals the stock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from repricer.streams.tools.simulator.truth import (
    CART_MULTIPLIER_RANGE,
    CATEGORIES,
    CONVERSION_RANGE,
    COST_CLIP,
    COST_MEDIAN,
    COST_SIGMA,
    ELASTICITY_RANGE,
    MAX_CONVERSION,
    MAX_PRICE_FACTOR,
    MEAN_QTY,
    MIN_PER_DAY,
    MIN_PRICE_FACTOR,
    MS_PER_DAY,
    MS_PER_MIN,
    SEASON_AMP_RANGE,
    UNITS_AT_BASE_RANGE,
    Objective,
    SkuTruth,
    oracle_price_of,
)

FAMILIES: tuple[str, ...] = (
    "constant",
    "linear",
    "logit",
    "regime",
    "longtail",
    "weekly",
    "stock",
)
MARKETS: tuple[str, ...] = (*FAMILIES, "mix")

LONGTAIL_UNITS_PER_DAY = (0.1, 20.0)  # log-uniform, at the initial price
CHOKE_RANGE = (1.5, 3.0)  # linear: the choke price, x base price
LOGIT_BETA_RANGE = (3.0, 7.0)  # price sensitivity per base price
LOGIT_ALPHA_OFFSET = (-0.5, 1.0)  # alpha = beta + this: our utility at the base price
COMPETITOR_RANGE = (0.85, 1.15)  # the competitor's regular price, x our base price
PROMO_PERIOD_DAYS = (2.0, 4.0)
PROMO_HOURS = (8.0, 24.0)
PROMO_DISCOUNT = (0.15, 0.35)
REGIME_AT = (0.35, 0.65)  # share of the run after which the elasticity changes
REGIME_SHIFT = (0.8, 1.5)  # |new - old| elasticity
WEEKLY_AMP_RANGE = (0.2, 0.5)
STOCK_COVER = (0.3, 0.9)  # stock = this share of the run's expected demand at the base price


@dataclass(frozen=True, slots=True)
class FamilyTruth(SkuTruth):
    """A SKU's hidden truth in one demand family (the parameters other families ignore are 0)."""

    family: str = "constant"
    start_ms: int = 0
    horizon_ms: int = 0
    elasticity_after: float = 0.0  # regime: the elasticity from switch_ms on
    switch_ms: int = 0
    choke_price: float = 0.0  # linear
    logit_alpha: float = 0.0
    logit_beta: float = 0.0
    logit_reach: float = 0.0
    competitor_price: float = 0.0
    promo_period_ms: int = 0
    promo_ms: int = 0
    promo_phase_ms: int = 0
    promo_discount: float = 0.0
    weekly_amp: float = 0.0
    weekly_phase: float = 0.0


# --------------------------------------------------------------------------- the truth at t


def elasticity_at(tr: FamilyTruth, t_ms: int) -> float:
    """The constant-elasticity families' elasticity in force at ``t_ms``."""
    if tr.family == "regime" and t_ms >= tr.switch_ms:
        return tr.elasticity_after
    return tr.elasticity


def promo_on(tr: FamilyTruth, t_ms: int) -> bool:
    """Whether the competitor runs a promotion at ``t_ms``."""
    if tr.family != "logit" or tr.promo_period_ms <= 0:
        return False
    return (t_ms - tr.start_ms - tr.promo_phase_ms) % tr.promo_period_ms < tr.promo_ms


def competitor_price_at(tr: FamilyTruth, t_ms: int) -> float:
    """The competitor's price at ``t_ms`` (logit family)."""
    d = tr.promo_discount if promo_on(tr, t_ms) else 0.0
    return tr.competitor_price * (1.0 - d)


def state_at(tr: FamilyTruth, t_ms: int) -> tuple[bool, bool]:
    """What the best price depends on at ``t_ms``: (after the regime change, promotion on)."""
    return (tr.family == "regime" and t_ms >= tr.switch_ms, promo_on(tr, t_ms))


def _logit_share(tr: FamilyTruth, price: Any, comp: float) -> Any:
    x = np.asarray(price, dtype=float) / tr.base_price
    ours = np.exp(tr.logit_alpha - tr.logit_beta * x)
    theirs = math.exp(tr.logit_alpha - tr.logit_beta * comp / tr.base_price)
    return ours / (1.0 + ours + theirs)


def conversion_at(tr: FamilyTruth, price: Any, t_ms: int) -> Any:
    """P(order | view) at ``price`` and instant ``t_ms``."""
    p = np.asarray(price, dtype=float)
    if tr.family == "linear":
        c = (
            tr.conversion_at_base
            * np.maximum(0.0, tr.choke_price - p)
            / (tr.choke_price - tr.base_price)
        )
    elif tr.family == "logit":
        c = tr.logit_reach * _logit_share(tr, p, competitor_price_at(tr, t_ms))
    else:
        c = tr.conversion_at_base * (p / tr.base_price) ** elasticity_at(tr, t_ms)
    return np.minimum(MAX_CONVERSION, c)


def season_at(tr: FamilyTruth, t_ms: int | float) -> float:
    """Multiplier of the view rate at ``t_ms``: daily, times weekly for the weekly family."""
    minute = (t_ms % MS_PER_DAY) / MS_PER_MIN
    s = 1.0 + tr.season_amp * math.sin(2.0 * math.pi * minute / MIN_PER_DAY + tr.season_phase)
    if tr.weekly_amp:
        day = t_ms / MS_PER_DAY
        s *= 1.0 + tr.weekly_amp * math.sin(2.0 * math.pi * day / 7.0 + tr.weekly_phase)
    return s


def units_per_min(tr: FamilyTruth, price: float, t_ms: int) -> float:
    """Expected units per minute at ``price`` at instant ``t_ms`` (ignores stock-outs)."""
    return float(tr.views_per_min * season_at(tr, t_ms) * conversion_at(tr, price, t_ms) * MEAN_QTY)


def expected_objective(tr: FamilyTruth, price: Any, t_ms: int, objective: Objective) -> Any:
    """Expected objective per view at ``t_ms`` (the season and traffic factored out)."""
    p = np.asarray(price, dtype=float)
    margin = p - tr.cost if objective == "profit" else p
    return margin * conversion_at(tr, p, t_ms)


def season_integral_min(tr: FamilyTruth, t0_ms: int, t1_ms: int) -> float:
    """∫ season(t) dt over [t0, t1), in minutes (exact for the daily season alone)."""
    if tr.weekly_amp:
        ts = np.linspace(t0_ms, t1_ms, 20_001)
        vals = np.array([season_at(tr, float(t)) for t in ts])
        return float(np.trapezoid(vals, ts) / MS_PER_MIN)
    w = 2.0 * math.pi / MIN_PER_DAY
    m0, m1 = t0_ms / MS_PER_MIN, t1_ms / MS_PER_MIN
    a, ph = tr.season_amp, tr.season_phase
    return (m1 - m0) + a / w * (math.cos(w * m0 + ph) - math.cos(w * m1 + ph))


# --------------------------------------------------------------------------- oracle


def _logit_optimum(tr: FamilyTruth, comp: float, unit_cost: float) -> float:
    """Unconstrained argmax of ``(p - unit_cost) * share(p)``: the root of
    ``1 - beta/base · (p - unit_cost) · (1 - share(p))``, decreasing in p (bisection)."""
    k = tr.logit_beta / tr.base_price
    lo, hi = max(unit_cost, 0.0), max(unit_cost, 0.0) + 1.0
    while 1.0 - k * (hi - unit_cost) * (1.0 - float(_logit_share(tr, hi, comp))) > 0:
        hi = unit_cost + 2.0 * (hi - unit_cost) + 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 1.0 - k * (mid - unit_cost) * (1.0 - float(_logit_share(tr, mid, comp))) > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def _instant_oracle(tr: FamilyTruth, t_ms: int, objective: Objective) -> float:
    lo, hi = tr.min_price, tr.max_price
    unit_cost = tr.cost if objective == "profit" else 0.0
    if tr.family == "linear":
        # (p - c)(P0 - p) peaks at (P0 + c) / 2; the conversion never reaches its cap in range
        return float(min(max(0.5 * (tr.choke_price + unit_cost), lo), hi))
    if tr.family == "logit":
        return float(min(max(_logit_optimum(tr, competitor_price_at(tr, t_ms), unit_cost), lo), hi))
    ce = replace(tr, elasticity=elasticity_at(tr, t_ms))
    return oracle_price_of(ce, objective)


def _stock_oracle(tr: FamilyTruth, objective: Objective) -> float:
    """Best fixed price for the run with finite stock: ``max(p*, p_cover)`` in [lo, hi]."""
    p = oracle_price_of(tr, objective)
    minutes = season_integral_min(tr, tr.start_ms, tr.start_ms + tr.horizon_ms)
    per_min = tr.views_per_min * tr.conversion_at_base * MEAN_QTY  # at base, season 1
    need = max(float(tr.stock or 0), 0.5) / max(per_min * minutes, 1e-12)
    p_cover = tr.base_price * need ** (1.0 / tr.elasticity)
    return float(min(max(p, p_cover, tr.min_price), tr.max_price))


def oracle_at(tr: FamilyTruth, t_ms: int, objective: Objective = "profit") -> float:
    """The price maximising the expected objective at ``t_ms`` knowing the truth (exact)."""
    if tr.stock is not None:
        return _stock_oracle(tr, objective)
    return _instant_oracle(tr, t_ms, objective)


def fluid_profit(tr: FamilyTruth, price: float) -> float:
    """Expected profit of a fixed price over the run, sales capped by the stock (fluid model)."""
    minutes = season_integral_min(tr, tr.start_ms, tr.start_ms + tr.horizon_ms)
    demand = tr.views_per_min * minutes * float(conversion_at(tr, price, tr.start_ms)) * MEAN_QTY
    sold = demand if tr.stock is None else min(demand, float(tr.stock))
    return (price - tr.cost) * sold


# --------------------------------------------------------------------------- drawing a catalog


def family_of(market: str, i: int) -> str:
    """The family of the ``i``-th SKU of a market: the market itself, or in turn for ``mix``."""
    if market == "mix":
        return FAMILIES[i % len(FAMILIES)]
    if market not in FAMILIES:
        raise ValueError(f"unknown market {market!r}; one of {', '.join(MARKETS)}")
    return market


def draw_truths(
    rng: np.random.Generator,
    n: int,
    *,
    market: str,
    markup: float,
    start_ms: int,
    horizon_ms: int,
) -> dict[str, FamilyTruth]:
    """``n`` SKUs of ``market`` (one family, or ``mix``: every family in turn).

    Every parameter is drawn for every SKU whatever its family, so a seed draws the same
    costs, levels and seasons in every market.
    """
    u = rng.uniform
    cost = np.clip(
        np.exp(rng.normal(math.log(COST_MEDIAN), COST_SIGMA, n)), COST_CLIP[0], COST_CLIP[1]
    )
    elasticity = u(*ELASTICITY_RANGE, n)
    conv = u(*CONVERSION_RANGE, n)
    cart_k = u(*CART_MULTIPLIER_RANGE, n)
    log_u = np.log(UNITS_AT_BASE_RANGE)
    units = np.exp(u(log_u[0], log_u[1], n))  # per minute
    log_t = np.log(LONGTAIL_UNITS_PER_DAY)
    tail_units = np.exp(u(log_t[0], log_t[1], n)) / MIN_PER_DAY
    amp = u(*SEASON_AMP_RANGE, n)
    phase = u(0.0, 2.0 * math.pi, n)
    cat = rng.integers(0, len(CATEGORIES), n)
    choke = u(*CHOKE_RANGE, n)
    beta = u(*LOGIT_BETA_RANGE, n)
    alpha_off = u(*LOGIT_ALPHA_OFFSET, n)
    comp = u(*COMPETITOR_RANGE, n)
    period = u(*PROMO_PERIOD_DAYS, n)
    promo_h = u(*PROMO_HOURS, n)
    promo_phase = u(0.0, 1.0, n)
    discount = u(*PROMO_DISCOUNT, n)
    switch = u(*REGIME_AT, n)
    shift = u(*REGIME_SHIFT, n)
    w_amp = u(*WEEKLY_AMP_RANGE, n)
    w_phase = u(0.0, 2.0 * math.pi, n)
    cover = u(*STOCK_COVER, n)
    truths: dict[str, FamilyTruth] = {}
    for i in range(n):
        fam = family_of(market, i)
        c = round(float(cost[i]), 2)
        base = round(c * markup, 2)
        lo = round(min(c * MIN_PRICE_FACTOR, base), 2)
        hi = round(max(c * MAX_PRICE_FACTOR, base), 2)
        upm = float(tail_units[i] if fam == "longtail" else units[i])
        e = round(float(elasticity[i]), 4)
        extra: dict[str, Any] = {}
        if fam == "regime":
            # toward the middle of the range, so the new optimum is inside the bounds
            step = float(shift[i]) * (-1.0 if e > -2.4 else 1.0)
            extra.update(
                elasticity_after=round(min(max(e + step, -4.5), -1.15), 4),
                switch_ms=int(start_ms + float(switch[i]) * horizon_ms),
            )
        elif fam == "linear":
            extra["choke_price"] = round(float(choke[i]) * base, 4)
        elif fam == "logit":
            b, a = float(beta[i]), float(beta[i] + alpha_off[i])
            pc = float(comp[i]) * base
            e_b, k_b = math.exp(a - b), math.exp(a - b * pc / base)
            period_ms = int(float(period[i]) * MS_PER_DAY)
            extra.update(
                logit_alpha=a,
                logit_beta=b,
                logit_reach=float(conv[i]) * (1.0 + e_b + k_b) / e_b,  # conv_at_base at base
                competitor_price=round(pc, 4),
                promo_period_ms=period_ms,
                promo_ms=int(float(promo_h[i]) * 3_600_000),
                promo_phase_ms=int(float(promo_phase[i]) * period_ms),
                promo_discount=float(discount[i]),
            )
        elif fam == "weekly":
            extra.update(weekly_amp=float(w_amp[i]), weekly_phase=float(w_phase[i]))
        sku = f"SKU-{i:04d}"
        t = FamilyTruth(
            sku=sku,
            category=CATEGORIES[int(cat[i])],
            cost=c,
            base_price=base,
            min_price=lo,
            max_price=hi,
            elasticity=e,
            views_per_min=upm / (float(conv[i]) * MEAN_QTY),
            conversion_at_base=float(conv[i]),
            cart_rate=float(conv[i] * cart_k[i]),
            season_amp=float(amp[i]),
            season_phase=float(phase[i]),
            family=fam,
            start_ms=int(start_ms),
            horizon_ms=int(horizon_ms),
            **extra,
        )
        if fam == "stock":
            run_min = season_integral_min(t, t.start_ms, t.start_ms + t.horizon_ms)
            t = replace(t, stock=max(1, int(float(cover[i]) * upm * run_min)))
        truths[sku] = t
    return truths
