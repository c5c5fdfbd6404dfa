"""In-process runs of the real window engine against the market simulator (no Kafka).

``run_market`` feeds the simulator's per-window totals through the same ``WindowEngine``,
demand models, policy and guardrails the worker runs, applies every price change back to the
market, and records realised profit per simulated day plus every forecast the models made.
``repricer backtest`` compares three pricings of one market with one seed (common random
numbers, so the same traffic): static prices, the policy, and the oracle. ``repricer bench
forecast`` scores the models' forecasts against naive baselines on the same kind of run.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from models.decider import default_decider
from models.guardrails import Bounds, GuardrailConfig, check_price
from streams.envelope import CatalogEnv, CountsEnv, WatermarkEnv
from streams.settings import Settings
from streams.simulator import MEAN_QTY, Market, Objective, SkuTruth, oracle_price_of
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
    seconds: float = 0.0

    @property
    def profit(self) -> float:
        return float(sum(self.profit_by_day))

    @property
    def revenue(self) -> float:
        return float(sum(self.revenue_by_day))


def guardrail_config(s: Settings) -> GuardrailConfig:
    return GuardrailConfig(
        min_margin=s.min_margin,
        max_step=s.max_step,
        min_change=s.min_change,
        cooldown_ms=s.cooldown_s * 1000,
        rounding=s.rounding,
    )


def run_market(
    pricing: Pricing,
    *,
    skus: int,
    days: float,
    seed: int,
    settings: Settings,
    start_ms: int = 1_767_225_600_000,
    lstm: bool = True,
    keep_forecasts: bool = False,
    markup: float | None = None,
    stocked: float = 0.0,
    progress: Callable[[str], None] | None = None,
) -> RunResult:
    """Run one pricing over ``days`` simulated days of ``skus`` SKUs; deterministic for a seed.

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
    cfg = guardrail_config(settings)
    truths = market.truths
    if pricing == "oracle":
        for sku, t in truths.items():
            market.apply_price(sku, oracle_price(t, days * 1440, settings.objective), start_ms)
    engine = WindowEngine(
        window_ms=w_ms,
        lateness_ms=0,
        guardrails=cfg,
        decider=default_decider(
            max_step=settings.max_step,
            objective=settings.objective,
            lstm=lstm,
            regressor=settings.river_regressor,
            restock_windows=settings.restock_s / settings.window_s,
            salvage=settings.salvage,
        ),
        policy_version=settings.policy_version,
        rate_limit_per_tick=settings.rate_limit_per_window,
    )
    table: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    opens: dict[str, Any] = {}
    off = 0
    if pricing == "policy":
        for item in market.catalog():
            off += 1
            env = CatalogEnv(
                sku=item.sku,
                cost=item.cost,
                base_price=item.base_price,
                min_price=item.min_price,
                max_price=item.max_price,
                currency=item.currency,
                stock=item.stock,
            )
            engine.handle(env, partition=0, offset=off, skus=table, meta=meta, opens=opens)
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
        counts = market.step_counts(t0, t0 + w_ms)
        if pricing == "policy":
            for sku, (o, u, r, v, c, rm) in counts.items():
                off += 1
                env_c = CountsEnv(
                    sku=sku,
                    ts=t0,
                    orders=o,
                    units=u,
                    revenue=r,
                    views=v,
                    carts=c,
                    removes=rm,
                    src="sim/0",
                    off=off,
                )
                engine.handle(env_c, partition=0, offset=off, skus=table, meta=meta, opens=opens)
                if keep_forecasts:
                    res.units[(sku, t0)] = u
            off += 1
            out = engine.handle(
                WatermarkEnv(src="sim/0", ts=t0 + w_ms),
                partition=0,
                offset=off,
                skus=table,
                meta=meta,
                opens=opens,
            )
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
    lstm: bool = True,
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
            lstm=lstm,
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


def forecast_bench(
    *,
    skus: int,
    days: float,
    seed: int,
    settings: Settings,
    eval_days: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """WAPE of every model on the last ``eval_days`` of a policy run, ÷ the best naive baseline."""
    res = run_market(
        "policy",
        skus=skus,
        days=days,
        seed=seed,
        settings=settings,
        keep_forecasts=True,
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
    # same window yesterday: a naive baseline computed from the sales series itself
    yest = [
        (float(res.units.get((s, ws - DAY_MS), math.nan)), float(res.units[(s, ws)]))
        for s, ws in keys["ensemble"]
    ]
    yest = [(p, a) for p, a in yest if math.isfinite(p)]
    if yest:
        by_model["same_window_yesterday"] = yest
    scores = {
        m: round(wape(np.array([p for p, _ in v]), np.array([a for _, a in v])), 4)
        for m, v in by_model.items()
        if v
    }
    naive = [m for m in ("last_window", "moving_average", "same_window_yesterday") if m in scores]
    best_naive = min(naive, key=lambda m: scores[m])
    out: dict[str, Any] = {f"wape_{m}": s for m, s in scores.items()}
    for m in ("ensemble", "river", "lstm"):
        if m in scores:
            out[f"wape_ratio_{m}"] = round(scores[m] / scores[best_naive], 4)
    out["best_naive_baseline"] = best_naive
    out["labels_scored"] = len(by_model.get("ensemble", []))
    out["seconds"] = round(res.seconds, 1)
    return out
