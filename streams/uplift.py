"""The policy's uplift: treated SKUs against the holdout, difference in differences.

Each SKU is a unit. For each SKU and each metric (profit, revenue, units) its mean per day
*after* the policy was switched on minus its mean per day *before* is its change ``d``; the
estimate is the difference of ``d`` between treated and holdout SKUs per SKU-day, adjusted for
the SKUs' level before the switch (Lin's regression ``d ~ 1 + T + x + T*x``, ``x`` the level
before, centred): sales move in proportion to a SKU's size (a season, a trend), and SKU sizes
are heavy-tailed, so the plain difference of means is at the mercy of which few big SKUs fell
in which group. The interval is from the HC3 (heteroskedasticity-robust, leverage-corrected)
standard error and Student's t with ``n - 4`` degrees of freedom; SKUs are the independent
units (a SKU's days are not counted as independent). With the holdout drawn at random
(``Holdout``: a hash of salt and SKU), the difference in differences removes what the SKUs had
in common over time and what the groups differed in before the switch.

``estimate`` does the arithmetic from per-SKU totals; ``from_clickhouse`` reads those totals
from ``sales_1m`` (quiet windows have no row: they count as zero) with each SKU's unit cost: the
latest the engine recorded on its ``sales_1m`` rows of the period (the catalog's cost when the
window closed), else -- rows written before ``sales_1m`` had a ``cost`` column read 0, which
counts as unknown -- the one it recorded in ``shadow_decisions``. The profit covers the SKUs
with a cost, and says how many; with fewer than ``MIN_SKUS`` in a group it says not enough
data. ``repricer backtest --holdout`` feeds it the simulator's sales, whose true effect it
knows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from repricer.infra.clickhouse import ClickHouseBackend, check_ident
from repricer.infra.clickhouse.tables import PRICE_CHANGES, SALES_1M, SHADOW_DECISIONS

METRICS = ("profit", "revenue", "units")
MIN_SKUS = 10  # per group: fewer, and the report says there is not enough data yet
MIN_DAYS = 1.0  # per period (before and after the switch)
DAY_S = 86_400


@dataclass(frozen=True)
class SkuTotals:
    """One SKU's totals in the period before the switch and the period after it."""

    units: tuple[float, float]
    revenue: tuple[float, float]
    cost: float | None  # unit cost, if known (profit = revenue - units x cost)

    def metric(self, name: str) -> tuple[float, float] | None:
        if name == "units":
            return self.units
        if name == "revenue":
            return self.revenue
        if self.cost is None:
            return None
        c = self.cost
        return (self.revenue[0] - c * self.units[0], self.revenue[1] - c * self.units[1])


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile (Cornish-Fisher from the normal one; within 0.5% for df >= 5).

    >>> round(t_quantile(0.975, 1e9), 3), round(t_quantile(0.975, 10), 2)
    (1.96, 2.23)
    """
    z = _norm_quantile(p)
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def _norm_quantile(p: float) -> float:
    """The standard normal quantile, by bisection of ``erf`` (exact to 1e-12)."""
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def lin_hc3(
    d_t: list[float], d_h: list[float], x_t: list[float], x_h: list[float]
) -> tuple[float, float]:
    """The treatment coefficient of ``d ~ 1 + T + xc + T*xc`` (``xc``: ``x`` centred over all
    SKUs) and its HC3 standard error.

    >>> est, se = lin_hc3([3.0, 4.0, 5.0], [1.0, 0.0, 2.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    >>> round(est, 6), round(se, 6)
    (3.0, 1.5)
    """
    y = np.array([*d_t, *d_h], dtype=np.float64)
    t = np.array([1.0] * len(d_t) + [0.0] * len(d_h))
    xs = np.array([*x_t, *x_h], dtype=np.float64)
    xc = xs - xs.mean()
    X = np.column_stack([np.ones_like(y), t, xc, t * xc])
    xtx_inv = np.linalg.pinv(X.T @ X)
    beta = xtx_inv @ X.T @ y
    e = y - X @ beta
    h = np.einsum("ij,jk,ik->i", X, xtx_inv, X)
    w = (e / np.clip(1.0 - h, 1e-9, None)) ** 2
    cov = xtx_inv @ (X.T * w) @ X @ xtx_inv
    return float(beta[1]), float(math.sqrt(max(cov[1, 1], 0.0)))


def estimate(
    totals: Mapping[str, SkuTotals],
    treated: set[str],
    *,
    days_before: float,
    days_after: float,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The uplift per treated SKU-day of each metric, with its interval, from per-SKU totals.

    ``treated`` are the SKUs the policy priced after the switch; every other SKU of ``totals``
    is in the holdout. Returns ``enough_data: False`` and why, when either group has fewer
    than ``MIN_SKUS`` SKUs or either period is shorter than ``MIN_DAYS``.
    """
    n_t = sum(1 for s in totals if s in treated)
    n_h = len(totals) - n_t
    out: dict[str, Any] = {
        "treated_skus": n_t,
        "holdout_skus": n_h,
        "days_before": round(days_before, 3),
        "days_after": round(days_after, 3),
        "sku_days": round(len(totals) * (days_before + days_after), 1),
        "confidence": confidence,
    }
    why = []
    if min(n_t, n_h) < MIN_SKUS:
        why.append(f"{n_t} treated and {n_h} holdout SKUs (need {MIN_SKUS} in each)")
    if min(days_before, days_after) < MIN_DAYS:
        why.append(
            f"{days_before:.2f} days before and {days_after:.2f} after the switch "
            f"(need {MIN_DAYS:g} each)"
        )
    if why:
        return out | {"enough_data": False, "why": "not enough data: " + "; ".join(why)}
    out["enough_data"] = True
    for name in METRICS:
        d: dict[bool, list[float]] = {True: [], False: []}
        x: dict[bool, list[float]] = {True: [], False: []}
        for sku, t in totals.items():
            m = t.metric(name)
            if m is not None:
                d[sku in treated].append(m[1] / days_after - m[0] / days_before)
                x[sku in treated].append(m[0] / days_before)
        if min(len(d[True]), len(d[False])) < MIN_SKUS:
            out[name] = {
                "enough_data": False,
                "why": f"not enough data: cost known for {len(d[True])} treated and "
                f"{len(d[False])} holdout SKUs (need {MIN_SKUS} in each)",
            }
            continue
        est, se = lin_hc3(d[True], d[False], x[True], x[False])
        half = t_quantile(0.5 + confidence / 2, len(d[True]) + len(d[False]) - 4) * se
        out[name] = {
            "per_sku_day": round(est, 6),
            "ci": [round(est - half, 6), round(est + half, 6)],
            "total_per_day": round(est * len(d[True]), 4),  # over the treated SKUs
            "skus": len(d[True]) + len(d[False]),
        }
    return out


def from_clickhouse(
    ch: ClickHouseBackend,
    *,
    since: datetime,
    until: datetime,
    start: datetime,
    holds: Any,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The estimate from the sink: windows in ``[start, since)`` are before the switch, in
    ``[since, until)`` after it; ``holds(sku)`` says whether a SKU is in the holdout."""
    db = check_ident(ch.database, "database")
    s, a, u = int(start.timestamp()), int(since.timestamp()), int(until.timestamp())
    rows = ch.query(
        f"SELECT sku, "
        f"sumIf(units, window_start < toDateTime(%(a)s)), "
        f"sumIf(units, window_start >= toDateTime(%(a)s)), "
        f"sumIf(revenue, window_start < toDateTime(%(a)s)), "
        f"sumIf(revenue, window_start >= toDateTime(%(a)s)), "
        f"countIf(cost > 0), argMaxIf(cost, window_start, cost > 0) "
        f"FROM {SALES_1M.at(db)} FINAL "
        f"WHERE window_start >= toDateTime(%(s)s) AND window_start < toDateTime(%(u)s) "
        f"GROUP BY sku",
        {"s": s, "a": a, "u": u},
    )
    recorded = dict(
        ch.query(
            f"SELECT sku, argMax(cost, decided_at) FROM {SHADOW_DECISIONS.at(db)} FINAL "
            f"WHERE cost > 0 GROUP BY sku"
        )
    )
    totals = {
        str(sku): SkuTotals(
            units=(float(u0), float(u1)),
            revenue=(float(r0), float(r1)),
            cost=float(c) if n else float(recorded[sku]) if sku in recorded else None,
        )
        for sku, u0, u1, r0, r1, n, c in rows
    }
    treated = {sku for sku in totals if not holds(sku)}
    out = estimate(
        totals,
        treated,
        days_before=(a - s) / DAY_S,
        days_after=(u - a) / DAY_S,
        confidence=confidence,
    )
    out["skus_with_cost"] = sum(1 for t in totals.values() if t.cost is not None)
    return out


def first_live_decision(ch: ClickHouseBackend) -> datetime | None:
    """When the policy first published a price change (``price_changes`` issued by ``policy``),
    or None if it never has: the default switch time of the dashboard's uplift."""
    db = check_ident(ch.database, "database")
    n, first = ch.query(
        f"SELECT count(), toUInt32(min(decided_at)) FROM {PRICE_CHANGES.at(db)} FINAL "
        f"WHERE issued_by = 'policy'"
    )[0]
    return datetime.fromtimestamp(int(first), UTC) if int(n) else None


def report(
    ch: ClickHouseBackend,
    *,
    holds: Any,
    window_s: int,
    since: datetime | None = None,
    until: datetime | None = None,
    start: datetime | None = None,
) -> dict[str, Any]:
    """``repricer report --uplift`` and the dashboard's ``/api/uplift``: the estimate around
    ``since`` (default: :func:`first_live_decision`) up to ``until`` (default: now), cut to the
    last closed window; the period before is as long as the one after unless ``start`` says."""
    source = "given"
    if since is None:
        since, source = first_live_decision(ch), "first live decision"
        if since is None:
            return {
                "enough_data": False,
                "why": "not enough data: the policy has not published a price change yet",
            }
    until = until if until is not None else datetime.now(UTC)
    start = start if start is not None else since - (until - since)
    until = until - timedelta(seconds=until.timestamp() % window_s)  # closed windows only
    out = from_clickhouse(ch, since=since, until=until, start=start, holds=holds)
    return {"since": since.isoformat(), "since_from": source, "until": until.isoformat()} | out
