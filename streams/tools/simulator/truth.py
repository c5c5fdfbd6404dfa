"""The market simulator's hidden demand truth per SKU, its demand functions and oracle price.

Pure logic (no Kafka, no I/O) and deterministic for a seed. :class:`Market` draws a hidden
:class:`SkuTruth` per SKU, publishes the visible part as :class:`~schemas.events.CatalogItem`,
and on every :meth:`Market.step` emits the clickstream and orders of a time interval as
:class:`~schemas.events.Click` and :class:`~schemas.events.Order` structs (``ts`` in epoch ms).

Demand model, per SKU and per product-page view:

* views arrive as an inhomogeneous Poisson process with rate
  ``views_per_min * season(t)`` per minute, ``season(t) = 1 + season_amp * sin(2π·m/1440 + phase)``
  where ``m`` is the UTC minute of day (sampled exactly, by thinning);
* ``conversion(p) = min(0.95, conversion_at_base * (p / base_price) ** elasticity)``;
* ``cart(p) = min(1, conversion(p) * k)`` with ``k = cart_rate / conversion_at_base`` (≥ 1), so a
  view adds to cart with probability ``cart(p)`` and every order comes from a carted view;
* a carted view that does not convert is removed from the cart with probability
  :data:`REMOVE_PROB`; a converted one becomes an order of ``qty`` 1, 2 or 3 units
  (probabilities :data:`QTY_PROBS`, mean :data:`MEAN_QTY`).

So the expected units per minute at price ``p`` and time ``t`` are exactly
``views_per_min * season(t) * conversion(p) * MEAN_QTY`` (:meth:`Market.expected_units_per_min`),
and the price that maximises expected profit does not depend on ``t`` (see
:meth:`Market.oracle_price`).

The price a shopper sees is the price in force at the time of the view; the order of a converted
view is charged that price (the price is locked when the item goes into the cart).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

MS_PER_MIN = 60_000
MS_PER_DAY = 86_400_000
MIN_PER_DAY = 1440

MAX_CONVERSION = 0.95
QTY_VALUES: tuple[int, ...] = (1, 2, 3)
QTY_PROBS: tuple[float, ...] = (0.85, 0.10, 0.05)
MEAN_QTY: float = float(sum(q * p for q, p in zip(QTY_VALUES, QTY_PROBS, strict=True)))  # 1.2
REMOVE_PROB = 0.4  # P(remove_from_cart | carted and not ordered)
CART_DELAY_MS = (2_000, 20_000)  # view -> add_to_cart
CHECKOUT_DELAY_MS = (5_000, 60_000)  # add_to_cart -> order / remove_from_cart
N_CUSTOMERS = 50_000

CATEGORIES: tuple[str, ...] = (
    "electronics",
    "home",
    "toys",
    "beauty",
    "sports",
    "books",
    "garden",
    "fashion",
)

# Ranges of the drawn truths (see Market._draw_truths).
COST_MEDIAN = 30.0
COST_SIGMA = 0.9
COST_CLIP = (3.0, 400.0)
ELASTICITY_RANGE = (-3.5, -1.3)
CONVERSION_RANGE = (0.02, 0.08)
CART_MULTIPLIER_RANGE = (2.0, 4.0)
UNITS_AT_BASE_RANGE = (0.5, 4.0)  # log-uniform, units per minute at base price, season = 1
SEASON_AMP_RANGE = (0.0, 0.6)
MIN_PRICE_FACTOR = 1.05  # min_price = cost * 1.05
MAX_PRICE_FACTOR = 4.0  # max_price = cost * 4
STOCK_MINUTES_RANGE = (600.0, 3000.0)  # stocked SKUs hold this many minutes of base demand

Objective = Literal["profit", "revenue"]


@dataclass(frozen=True, slots=True)
class SkuTruth:
    """Hidden truth of one SKU (what a perfect pricing model would know)."""

    sku: str
    category: str
    cost: float
    base_price: float
    min_price: float
    max_price: float
    elasticity: float  # price elasticity of conversion (negative)
    views_per_min: float  # mean product-page views per minute when season(t) == 1
    conversion_at_base: float  # P(order | view) at base_price
    cart_rate: float  # P(add_to_cart | view) at base_price, >= conversion_at_base
    season_amp: float  # amplitude of the daily seasonality, 0..0.6
    season_phase: float  # radians
    stock: int | None = None  # initial stock; None = unlimited


# --------------------------------------------------------------------------- demand functions


def minute_of_day(t_ms: int) -> float:
    """UTC minute of day (fractional) of an epoch-ms timestamp."""
    return (t_ms % MS_PER_DAY) / MS_PER_MIN


def season_factor(truth: SkuTruth, minute: float | np.ndarray) -> float | np.ndarray:
    """Multiplier of the view rate at ``minute`` of the (UTC) day."""
    return 1.0 + truth.season_amp * np.sin(2.0 * np.pi * minute / MIN_PER_DAY + truth.season_phase)


def conversion(truth: SkuTruth, price: float | np.ndarray) -> float | np.ndarray:
    """P(order | view) at ``price``."""
    return np.minimum(
        MAX_CONVERSION,
        truth.conversion_at_base
        * (np.asarray(price, dtype=float) / truth.base_price) ** truth.elasticity,
    )


def cart_probability(truth: SkuTruth, price: float | np.ndarray) -> float | np.ndarray:
    """P(add_to_cart | view) at ``price``; always ≥ :func:`conversion`."""
    k = truth.cart_rate / truth.conversion_at_base
    return np.minimum(1.0, conversion(truth, price) * k)


def demand_curve_units(truth: SkuTruth, price: float, minute: float) -> float:
    """Expected units sold per minute at ``price`` at ``minute`` of the UTC day."""
    return float(
        truth.views_per_min * season_factor(truth, minute) * conversion(truth, price) * MEAN_QTY
    )


def _objective_value(
    truth: SkuTruth, price: float | np.ndarray, objective: Objective
) -> np.ndarray:
    """Objective per unit of traffic (season and views factored out): margin or price * conv."""
    p = np.asarray(price, dtype=float)
    conv = conversion(truth, p)
    if objective == "profit":
        return (p - truth.cost) * conv
    if objective == "revenue":
        return p * conv
    raise ValueError(f"unknown objective {objective!r}")


def oracle_price_of(truth: SkuTruth, objective: Objective = "profit") -> float:
    """Exact argmax over ``[min_price, max_price]`` of the expected objective.

    ``(p - c) * conversion(p)`` is increasing where conversion is capped and, for elasticity < -1,
    unimodal with peak ``c * e / (1 + e)`` where it is not; ``p * conversion(p)`` peaks at the cap
    edge. So the argmax is among the bounds, the unconstrained optimum and the cap edge.
    """
    lo, hi = truth.min_price, truth.max_price
    e = truth.elasticity
    cands = [lo, hi]
    if e < -1.0 and objective == "profit":
        cands.append(truth.cost * e / (1.0 + e))
    if e != 0.0:
        # price at which the conversion reaches MAX_CONVERSION
        cands.append(truth.base_price * (MAX_CONVERSION / truth.conversion_at_base) ** (1.0 / e))
    arr = np.clip(np.asarray(cands, dtype=float), lo, hi)
    vals = _objective_value(truth, arr, objective)
    return float(arr[int(np.argmax(vals))])
