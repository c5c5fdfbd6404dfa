"""In-process runs of the real window engine against the market simulator (no Kafka).

``run_market`` feeds the simulator's per-window totals through the same ``WindowEngine``,
demand models, policy and guardrails the worker runs, applies every price change back to the
market, and records realised profit per simulated day plus every forecast the models made.
``repricer backtest`` compares three pricings of one market with one seed (common random
numbers, so the same traffic): static prices, the policy, and the oracle. ``repricer bench
forecast`` scores the models' forecasts against naive baselines on the same kind of run.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from models.base import DemandModel
from models.guardrails import Bounds, check_price
from models.quantiles import count_quantile, dispersion, update_dispersion
from streams.build import build_engine
from streams.envelope import CatalogEnv, CountsEnv, WatermarkEnv
from streams.settings import Settings
from streams.simulator import (
    MEAN_QTY,
    QTY_PROBS,
    QTY_VALUES,
    Market,
    Objective,
    SkuTruth,
    oracle_price_of,
)
from streams.windowing import WindowEngine

DAY_MS = 86_400_000
Pricing = Literal["static", "policy", "oracle"]


@dataclass
class RunResult:
    """What one in-process run produced."""

    pricing: str
    profit_by_day: list[float]
    revenue_by_day: list[float]
    price_changes: int = 0
    guardrail_hits: Counter[str] = field(default_factory=Counter)
    guardrail_violations: int = 0
    forecasts: list[tuple[str, int, str, float, float]] = field(default_factory=list)
    units: dict[tuple[str, int], int] = field(default_factory=dict)
    # hidden truth (benchmarks only, never shown to a model): expected units per (sku, window)
    # at the price actually charged, the Poisson mean of the simulator's order count x MEAN_QTY
    expected: dict[tuple[str, int], float] = field(default_factory=dict)
    # mean JSON bytes per SKU of each key of the models' per-SKU state at the end of the run
    state_bytes: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def profit(self) -> float:
        return float(sum(self.profit_by_day))

    @property
    def revenue(self) -> float:
        return float(sum(self.revenue_by_day))


class EngineFeed:
    """One partition of a ``WindowEngine`` over dict tables, fed the market's envelopes.

    Every envelope gets the next offset; ``skus`` is the SKU table the engine keeps.
    """

    def __init__(self, engine: WindowEngine) -> None:
        self.engine = engine
        self.skus: dict[str, Any] = {}
        self.meta: dict[str, Any] = {}
        self.opens: dict[str, Any] = {}
        self.off = 0

    def send(self, env: Any) -> Any:
        self.off += 1
        return self.engine.handle(
            env, partition=0, offset=self.off, skus=self.skus, meta=self.meta, opens=self.opens
        )

    def catalog(self, market: Market) -> None:
        """Every item of the market's catalog."""
        for item in market.catalog():
            self.send(
                CatalogEnv(
                    sku=item.sku,
                    cost=item.cost,
                    base_price=item.base_price,
                    min_price=item.min_price,
                    max_price=item.max_price,
                    currency=item.currency,
                    stock=item.stock,
                )
            )

    def counts(self, t0: int, counts: dict[str, tuple[int, int, float, int, int, int]]) -> None:
        """One window's totals per SKU (``Market.step_counts``), the window starting at ``t0``."""
        for sku, (o, u, r, v, c, rm) in counts.items():
            env = CountsEnv(
                sku=sku,
                ts=t0,
                orders=o,
                units=u,
                revenue=r,
                views=v,
                carts=c,
                removes=rm,
                src="sim/0",
                off=self.off + 1,  # the offset send gives it
            )
            self.send(env)

    def close(self, ts: int) -> Any:
        """The watermark at ``ts``: the engine's output for the windows it closes."""
        return self.send(WatermarkEnv(src="sim/0", ts=ts))


def run_market(
    pricing: Pricing,
    *,
    skus: int,
    days: float,
    seed: int,
    settings: Settings,
    start_ms: int = 1_767_225_600_000,
    keep_forecasts: bool = False,
    markup: float | None = None,
    extra_members: Sequence[Callable[[], DemandModel]] = (),
    stocked: float = 0.0,
    progress: Callable[[str], None] | None = None,
) -> RunResult:
    """Run one pricing over ``days`` simulated days of ``skus`` SKUs; deterministic for a seed.

    ``extra_members`` adds demand models to the default decider's ensemble (candidates not yet
    wired into ``default_decider``, measured side by side).
    ``stocked`` is the share of SKUs with finite stock and no replenishment during the run; the
    oracle prices those to sell their stock at best over the run (:func:`oracle_price`).
    """
    t_start = time.monotonic()
    market = Market(
        n_skus=skus,
        seed=seed,
        start_ms=start_ms,
        initial_markup=markup or 1.6,
        stocked_fraction=stocked,
    )
    w_ms = settings.window_ms
    windows = int(days * DAY_MS // w_ms)
    truths = market.truths
    if pricing == "oracle":
        for sku, t in truths.items():
            market.apply_price(sku, oracle_price(t, days * 1440, settings.objective), start_ms)
    # the worker's engine; this feed closes each window itself (no allowed lateness)
    engine = build_engine(
        settings.model_copy(update={"lateness_s": 0}), extra_members=extra_members
    )
    cfg = engine.guardrails
    feed = EngineFeed(engine)
    if pricing == "policy":
        feed.catalog(market)
    bounds = {
        s: Bounds(cost=t.cost, min_price=t.min_price, max_price=t.max_price)
        for s, t in truths.items()
    }
    res = RunResult(pricing=pricing, profit_by_day=[], revenue_by_day=[])
    day_profit = day_revenue = 0.0
    prev = {s: dict(r) for s, r in market.realised().items()}
    day_windows = max(1, DAY_MS // w_ms)
    for w in range(windows):
        t0 = start_ms + w * w_ms
        if keep_forecasts:
            mid = t0 + w_ms // 2  # step_counts draws the window at its mid-point season
            for sku in truths:
                res.expected[(sku, t0)] = (
                    market.expected_units_per_min(sku, market.price_at(sku, t0), mid)
                    * w_ms
                    / 60_000
                )
        counts = market.step_counts(t0, t0 + w_ms)
        if pricing == "policy":
            feed.counts(t0, counts)
            if keep_forecasts:
                for sku, (_, units, *_) in counts.items():
                    res.units[(sku, t0)] = units
            out = feed.close(t0 + w_ms)
            for ch in out.changes:
                res.price_changes += 1
                res.guardrail_hits.update(ch.guardrails)
                bad = check_price(ch.new_price, bounds=bounds[ch.sku], cfg=cfg)
                in_bounds = not check_price(ch.old_price, bounds=bounds[ch.sku], cfg=cfg)
                too_far = abs(ch.new_price - ch.old_price) > cfg.max_step * ch.old_price + 1e-9
                if bad or (in_bounds and too_far and "override" not in ch.guardrails):
                    res.guardrail_violations += 1
                market.apply_price(ch.sku, ch.new_price, t0 + w_ms)
            if keep_forecasts:
                res.forecasts.extend(
                    (f.sku, f.window_start, f.model, f.predicted, f.actual) for f in out.forecasts
                )
        if (w + 1) % day_windows == 0 or w == windows - 1:
            now = market.realised()
            day_profit = sum(now[s]["profit"] - prev[s]["profit"] for s in now)
            day_revenue = sum(now[s]["revenue"] - prev[s]["revenue"] for s in now)
            res.profit_by_day.append(day_profit)
            res.revenue_by_day.append(day_revenue)
            prev = {s: dict(r) for s, r in now.items()}
            if progress:
                progress(f"{pricing}: day {len(res.profit_by_day)} profit {day_profit:,.0f}")
    if feed.skus:
        sizes: Counter[str] = Counter()
        for st in feed.skus.values():
            for k, val in (st.get("m") or {}).items():
                sizes[k] += len(json.dumps(val, separators=(",", ":")))
        res.state_bytes = {k: round(n / len(feed.skus), 1) for k, n in sorted(sizes.items())}
    res.seconds = time.monotonic() - t_start
    return res


def oracle_price(truth: SkuTruth, minutes: float, objective: Objective = "profit") -> float:
    """The best fixed price of a SKU over ``minutes``, knowing its hidden demand and stock.

    Unlimited stock: the simulator's exact optimum. Finite stock without replenishment: never
    below the price at which expected demand over the run equals the stock (selling out early
    at a lower price earns less; unsold units cost nothing here), i.e. ``max(p*, p_cover)``.
    """
    p = oracle_price_of(truth, objective)
    if truth.stock is None:
        return p
    per_min = truth.views_per_min * truth.conversion_at_base * MEAN_QTY  # at base, season 1
    need = max(truth.stock, 0.5) / max(per_min * minutes, 1e-12)
    p_cover = truth.base_price * need ** (1.0 / truth.elasticity)
    return float(min(max(p, p_cover, truth.min_price), truth.max_price))


def backtest(
    *,
    skus: int,
    days: float,
    seed: int,
    settings: Settings,
    markup: float = 2.0,
    stocked: float = 0.0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Static vs policy vs oracle on one market and seed; the report ``repricer backtest`` prints."""
    runs = {
        p: run_market(
            p,
            skus=skus,
            days=days,
            seed=seed,
            settings=settings,
            markup=markup,
            stocked=stocked,
            progress=progress,
        )
        for p in ("static", "policy", "oracle")
    }
    st, po, orc = runs["static"], runs["policy"], runs["oracle"]

    def ratio(a: float, b: float) -> float:
        return round(a / b, 4) if b else math.nan

    return {
        "skus": skus,
        "days": days,
        "seed": seed,
        "initial_price_rule": f"cost-plus: cost x {markup:g}",
        "stocked_fraction": stocked,
        "restock_s": settings.restock_s,
        "profit": {
            "static": round(st.profit, 2),
            "policy": round(po.profit, 2),
            "oracle": round(orc.profit, 2),
        },
        "revenue": {
            "static": round(st.revenue, 2),
            "policy": round(po.revenue, 2),
            "oracle": round(orc.revenue, 2),
        },
        "profit_last_day": {
            "static": round(st.profit_by_day[-1], 2),
            "policy": round(po.profit_by_day[-1], 2),
            "oracle": round(orc.profit_by_day[-1], 2),
        },
        "profit_vs_oracle_last_day": ratio(po.profit_by_day[-1], orc.profit_by_day[-1]),
        "profit_vs_oracle": ratio(po.profit, orc.profit),
        "profit_vs_static": ratio(po.profit, st.profit),
        "static_vs_oracle": ratio(st.profit, orc.profit),
        "profit_vs_static_last_day": ratio(po.profit_by_day[-1], st.profit_by_day[-1]),
        "price_changes": po.price_changes,
        "guardrail_hits": dict(po.guardrail_hits),
        "guardrail_violations": po.guardrail_violations,
        "policy_profit_by_day": [round(p, 2) for p in po.profit_by_day],
        "oracle_profit_by_day": [round(p, 2) for p in orc.profit_by_day],
        "seconds": round(sum(r.seconds for r in runs.values()), 1),
    }


def wape(pred: np.ndarray, actual: np.ndarray) -> float:
    """Weighted absolute percentage error: sum |error| / sum actual (well-defined with zeros)."""
    return float(np.abs(pred - actual).sum() / max(actual.sum(), 1e-9))


def compound_poisson_median(mean_units: float) -> float:
    """Median of the simulator's units in a window whose expected units are ``mean_units``.

    Orders are Poisson with mean ``mean_units / MEAN_QTY`` and each order is 1, 2 or 3 units
    (``QTY_PROBS``); the pmf of the compound sum comes from Panjer's recursion.
    """
    lam = max(float(mean_units), 0.0) / MEAN_QTY
    g = [math.exp(-lam)]
    cdf = g[0]
    k = 0
    while cdf < 0.5:
        k += 1
        g.append(
            lam
            / k
            * sum(q * p * g[k - q] for q, p in zip(QTY_VALUES, QTY_PROBS, strict=True) if q <= k)
        )
        cdf += g[k]
    return float(k)


def _p50_forecasts(
    forecasts: Sequence[tuple[str, int, str, float, float]], since: int
) -> dict[str, list[tuple[float, float]]]:
    """Per model, (median point forecast, actual) of every window from ``since`` on.

    The median is the negative-binomial median of the recorded expected-units forecast, with
    the dispersion of the model's residuals on that SKU *before* the window (causal: it uses
    only labels the model had already seen).
    """
    states: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    rows: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for sku, ws, model, pred, act in sorted(forecasts, key=lambda f: (f[1], f[0], f[2])):
        st = states[(model, sku)]
        if ws >= since:
            rows[model].append((pred, dispersion(st, "d"), act))
        update_dispersion(st, "d", pred, act)
    out = {}
    for model, r in rows.items():
        arr = np.array(r, dtype=np.float64)
        p50 = count_quantile(arr[:, 0], arr[:, 1])
        out[model] = list(zip(p50.tolist(), arr[:, 2].tolist(), strict=True))
    return out


def forecast_bench(
    *,
    skus: int,
    days: float,
    seed: int,
    settings: Settings,
    eval_days: float = 1.0,
    extra_members: Sequence[Callable[[], DemandModel]] = (),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """WAPE of every model on the last ``eval_days`` of a policy run, ÷ the best naive baseline.

    Models forecast expected units (what pricing needs); WAPE rewards the median. So besides
    the recorded (mean) forecasts this also scores each model's median point forecast
    (``wape_ratio_<model>_p50``: :func:`models.quantiles.count_quantile` of the recorded forecast
    with the dispersion of that model's own past residuals on the SKU, learned causally), and
    how far each mean forecast is from the true expected units (``truth_error_<model>``:
    sum |forecast - true mean| / sum true mean, which only a simulator can measure).
    """
    res = run_market(
        "policy",
        skus=skus,
        days=days,
        seed=seed,
        settings=settings,
        keep_forecasts=True,
        extra_members=extra_members,
        progress=progress,
    )
    w_ms = settings.window_ms
    end = 1_767_225_600_000 + int(days * DAY_MS // w_ms) * w_ms
    since = end - int(eval_days * DAY_MS)
    by_model: dict[str, list[tuple[float, float]]] = defaultdict(list)
    keys: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for sku, ws, model, pred, act in res.forecasts:
        if ws >= since:
            by_model[model].append((pred, act))
            keys[model].append((sku, ws))
    medians = _p50_forecasts(res.forecasts, since)
    # same window yesterday: a naive baseline computed from the sales series itself
    yest = [
        (float(res.units.get((s, ws - DAY_MS), math.nan)), float(res.units[(s, ws)]))
        for s, ws in keys["ensemble"]
    ]
    yest = [(p, a) for p, a in yest if math.isfinite(p)]
    if yest:
        by_model["same_window_yesterday"] = yest
    # the attainable bound, from the hidden truth: the true expected units (what an unbiased
    # model converges to) and its median (what minimises the expected absolute error, hence
    # WAPE); no forecast from the observable past can do better than the better of the two
    # in expectation. Neither is a model: nothing learns from them.
    truth = [
        (res.expected[(s, ws)], float(res.units[(s, ws)]))
        for s, ws in keys["ensemble"]
        if (s, ws) in res.expected
    ]
    if truth:
        by_model["oracle_mean"] = truth
        by_model["oracle_median"] = [(compound_poisson_median(m), a) for m, a in truth]
    for m, v in medians.items():
        if not m.endswith("_p50"):
            by_model.setdefault(f"{m}_p50", v)  # a recorded p50 row (if any) wins
    scores = {
        m: round(wape(np.array([p for p, _ in v]), np.array([a for _, a in v])), 4)
        for m, v in by_model.items()
        if v
    }
    naive = [m for m in ("last_window", "moving_average", "same_window_yesterday") if m in scores]
    best_naive = min(naive, key=lambda m: scores[m])
    out: dict[str, Any] = {f"wape_{m}": s for m, s in scores.items()}
    for m in scores:
        if m not in naive:
            out[f"wape_ratio_{m}"] = round(scores[m] / scores[best_naive], 4)
    if "oracle_mean" in scores:
        out["wape_ratio_oracle"] = min(
            out["wape_ratio_oracle_mean"], out["wape_ratio_oracle_median"]
        )
    out["best_naive_baseline"] = best_naive
    for m in by_model:
        if m.endswith("_p50") or m.startswith("oracle") or m == "same_window_yesterday":
            continue
        pairs = [
            (p, res.expected[k])
            for (p, _), k in zip(by_model[m], keys[m], strict=True)
            if k in res.expected
        ]
        if pairs:
            err = sum(abs(p - t) for p, t in pairs) / max(sum(t for _, t in pairs), 1e-9)
            out[f"truth_error_{m}"] = round(err, 4)
    out["model_state_bytes_per_sku"] = res.state_bytes
    out["labels_scored"] = len(by_model.get("ensemble", []))
    out["seconds"] = round(res.seconds, 1)
    return out
