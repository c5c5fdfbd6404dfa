"""In-process runs of the real window engine against the market simulator (no Kafka).

``run_market`` feeds the simulator's per-window totals through the same ``WindowEngine``,
demand models, policy and guardrails the worker runs, applies every price change back to the
market, and records realised profit per simulated day plus every forecast the models made.
``repricer backtest`` compares three pricings of one market with one seed (common random
numbers, so the same traffic): static prices, the policy, and the oracle. ``repricer bench
forecast`` (:mod:`streams.tools.bench.forecast`) scores the models' forecasts against naive
baselines on the same kind of run.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from repricer.models.base import DemandModel
from repricer.models.guardrails import Bounds, check_price
from repricer.streams.build import build_engine
from repricer.streams.engine import OpenWindows, PartitionState, SkuState, WindowEngine
from repricer.streams.envelope import CatalogEnv, CountsEnv, WatermarkEnv
from repricer.streams.settings import Settings
from repricer.streams.tools.price_audit import PriceAudit
from repricer.streams.tools.simulator.families import FamilyTruth
from repricer.streams.tools.simulator.family_market import FamilyMarket
from repricer.streams.tools.simulator.market import Market
from repricer.streams.tools.simulator.prior_oracle import PriorOracle, prior_oracles
from repricer.streams.tools.simulator.truth import MEAN_QTY, Objective, SkuTruth, oracle_price_of

DAY_MS = 86_400_000
Pricing = Literal["static", "policy", "oracle", "prior_oracle"]


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
    # realised profit per SKU of each simulated day (per-family reports)
    sku_profit_by_day: list[dict[str, float]] = field(default_factory=list)
    # family markets: expected profit per SKU of each day at the prices charged (the truth's
    # expectation, without the sales noise; 0 once sold out)
    sku_expected_profit_by_day: list[dict[str, float]] = field(default_factory=list)
    # price changes outside the hard rules, checked apart from the guardrail code (PriceAudit)
    audit_violations: Counter[str] = field(default_factory=Counter)
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
        self.skus: dict[str, SkuState] = {}
        self.meta: dict[str, PartitionState] = {}
        self.opens: dict[str, OpenWindows] = {}
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
    market_name: str | None = None,
) -> RunResult:
    """Run one pricing over ``days`` simulated days of ``skus`` SKUs; deterministic for a seed.

    ``extra_members`` adds demand models to the default decider's ensemble (candidates not yet
    wired into ``default_decider``, measured side by side).
    ``stocked`` is the share of SKUs with finite stock and no replenishment during the run; the
    oracle prices those to sell their stock at best over the run (:func:`oracle_price`).
    ``market_name`` draws the market from the demand families instead
    (:class:`~streams.tools.simulator.family_market.FamilyMarket`: one family or ``mix``);
    its oracle re-optimises at every window (a dynamic oracle), and ``prior_oracle`` prices
    every SKU knowing its family's distribution of truths but not its own
    (:class:`~streams.tools.simulator.prior_oracle.PriorOracle`).
    """
    t_start = time.monotonic()
    w_ms = settings.window_ms
    windows = int(days * DAY_MS // w_ms)
    market: Market
    if market_name is None:
        market = Market(
            n_skus=skus,
            seed=seed,
            start_ms=start_ms,
            initial_markup=markup or 1.6,
            stocked_fraction=stocked,
        )
    else:
        market = FamilyMarket(
            market=market_name,
            n_skus=skus,
            seed=seed,
            start_ms=start_ms,
            horizon_ms=windows * w_ms,
            initial_markup=markup or 1.6,
        )
    truths = market.truths
    priors: dict[str, tuple[PriorOracle, FamilyTruth]] = {}
    if pricing == "prior_oracle":
        if not isinstance(market, FamilyMarket):
            raise ValueError("the prior oracle needs a market of demand families (market_name)")
        priors = prior_oracles(market, markup or 1.6, settings.objective)
    dynamic_oracle = pricing == "oracle" and market_name is not None
    if pricing == "oracle" and not dynamic_oracle:
        for sku, t in truths.items():
            market.apply_price(sku, oracle_price(t, days * 1440, settings.objective), start_ms)
    # the worker's engine; this feed closes each window itself (no allowed lateness)
    engine = build_engine(
        settings.model_copy(update={"lateness_s": 0}), extra_members=extra_members
    )
    cfg = engine.guardrails
    feed = EngineFeed(engine)
    audit = PriceAudit(cfg, {s: (t.cost, t.min_price, t.max_price) for s, t in truths.items()})
    if pricing == "policy":
        feed.catalog(market)
    bounds = {
        s: Bounds(cost=t.cost, min_price=t.min_price, max_price=t.max_price)
        for s, t in truths.items()
    }
    res = RunResult(pricing=pricing, profit_by_day=[], revenue_by_day=[])
    day_profit = day_revenue = 0.0
    day_expected: dict[str, float] = {}
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
        if dynamic_oracle:
            for sku in truths:
                p = market.oracle_price(sku, t0, objective=settings.objective)
                if p != market.price_at(sku, t0):
                    market.apply_price(sku, p, t0)
        for sku, (prior, truth) in priors.items():
            p = prior.price(truth, t0)
            if p != market.price_at(sku, t0):
                market.apply_price(sku, p, t0)
        if market_name is not None:
            mid = t0 + w_ms // 2
            for sku, t in truths.items():
                p = market.price_at(sku, t0)
                units = market.expected_units_per_min(sku, p, mid) * w_ms / 60_000
                day_expected[sku] = day_expected.get(sku, 0.0) + (p - t.cost) * units
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
                res.audit_violations.update(
                    audit.check(ch.sku, ch.old_price, ch.new_price, t0 + w_ms)
                )
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
            res.sku_profit_by_day.append({s: now[s]["profit"] - prev[s]["profit"] for s in now})
            res.sku_expected_profit_by_day.append(day_expected)
            day_expected = {}
            prev = {s: dict(r) for s, r in now.items()}
            if progress:
                progress(f"{pricing}: day {len(res.profit_by_day)} profit {day_profit:,.0f}")
    if feed.skus:
        sizes: Counter[str] = Counter()
        for st in feed.skus.values():
            for k, val in st.model_state.items():
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
