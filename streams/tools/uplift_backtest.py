"""``repricer backtest --holdout F``: does the uplift report find the policy's true effect?

One simulated market per seed, run through the worker's engine (``build_engine``) the way a
shop goes live: every SKU in shadow for ``before_days`` (decided, nothing published), then
``repricer control live '*'`` — every SKU but the holdout (``Holdout``: the fraction ``F`` of
SKUs by hash; with ``--stratified``, drawn at the switch by category and the shadow period's
sales, ``streams.holdout_draw``) is priced by the policy; the holdout keeps its price. The
uplift estimate (``streams.uplift.estimate``, the arithmetic ``repricer report --uplift`` runs
on the sink's totals) is computed from the realised sales, and compared with the true effect,
which the simulator knows: for each treated SKU and window after the switch, the expected profit
(revenue, units) at the price charged minus at the price it had when the policy went live.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from repricer.streams.build import build_engine, holdout
from repricer.streams.engine.config import Holdout
from repricer.streams.envelope import ControlEnv
from repricer.streams.holdout_draw import draw
from repricer.streams.settings import Settings
from repricer.streams.tools.backtest import DAY_MS, EngineFeed
from repricer.streams.tools.simulator.market import Market
from repricer.streams.uplift import METRICS, SkuTotals, estimate


def holdout_run(
    *,
    skus: int,
    days: float,
    before_days: float,
    seed: int,
    settings: Settings,
    markup: float = 2.0,
    confidence: float = 0.95,
    start_ms: int = 1_767_225_600_000,
    stratified: bool = False,
) -> dict[str, Any]:
    """One seed: the estimate, the true effect, and whether the interval covers it. With
    ``stratified``, the holdout is drawn at the switch by category and the shadow period's
    sales (``streams.holdout_draw``), as ``repricer holdout draw`` would, instead of by hash."""
    t_start = time.monotonic()
    settings = settings.model_copy(update={"lateness_s": 0, "mode": "shadow"})
    # unlimited stock: with stock-outs what a SKU would have sold at another price depends on
    # its whole path, and the true effect below (expected demand at two prices) would not hold
    market = Market(
        n_skus=skus, seed=seed, start_ms=start_ms, initial_markup=markup, stocked_fraction=0.0
    )
    truths = market.truths
    hold = holdout(settings)
    treated = {s for s in truths if not hold.holds(s)}
    if stratified:  # drawn at the switch from the shadow period's sales; no hash fraction
        settings = settings.model_copy(update={"holdout_fraction": 0.0})
    feed = EngineFeed(build_engine(settings))
    feed.catalog(market)
    w_ms = settings.window_ms
    windows = int(days * DAY_MS // w_ms)
    switch = int(before_days * DAY_MS // w_ms)
    units = {s: [0.0, 0.0] for s in truths}
    revenue = {s: [0.0, 0.0] for s in truths}
    true = dict.fromkeys(METRICS, 0.0)
    held: dict[str, float] = {}
    strata = 0  # stratified: strata of the draw
    changes = 0
    for w in range(windows):
        t0 = start_ms + w * w_ms
        after = w >= switch
        if w == switch:
            if stratified:
                treated, strata = _stratified(feed, market, units, hold.fraction, hold.salt)
            feed.send(ControlEnv(sku="*", action="live", price=None, who="backtest", why="on"))
            held = {s: market.price_at(s, t0) for s in treated}
        if after:  # the true effect in this window, from the hidden demand
            mid, minutes = t0 + w_ms // 2, w_ms / 60_000
            for s in treated:
                p, q = market.price_at(s, t0), held[s]
                if p == q:
                    continue
                c = truths[s].cost
                u_p = market.expected_units_per_min(s, p, mid) * minutes
                u_q = market.expected_units_per_min(s, q, mid) * minutes
                true["units"] += u_p - u_q
                true["revenue"] += p * u_p - q * u_q
                true["profit"] += (p - c) * u_p - (q - c) * u_q
        counts = market.step_counts(t0, t0 + w_ms)
        for s, (_, u, r, *_) in counts.items():
            units[s][after] += u
            revenue[s][after] += r
        feed.counts(t0, counts)
        out = feed.close(t0 + w_ms)
        for ch in out.changes:
            changes += 1
            market.apply_price(ch.sku, ch.new_price, t0 + w_ms)
    days_before = switch * w_ms / DAY_MS
    days_after = (windows - switch) * w_ms / DAY_MS
    totals = {
        s: SkuTotals(
            units=(units[s][0], units[s][1]),
            revenue=(revenue[s][0], revenue[s][1]),
            cost=truths[s].cost,
        )
        for s in truths
    }
    est = estimate(
        totals, treated, days_before=days_before, days_after=days_after, confidence=confidence
    )
    per_sku_day = max(len(treated), 1) * days_after
    truth = {m: round(v / per_sku_day, 6) for m, v in true.items()}
    covered = {
        m: est[m]["ci"][0] <= truth[m] <= est[m]["ci"][1]
        for m in METRICS
        if est.get("enough_data") and "ci" in est.get(m, {})
    }
    return {
        "seed": seed,
        "holdout_skus": len(truths) - len(treated),
        "strata": strata,
        "estimate": est,
        "true_per_sku_day": truth,
        "covered": covered,
        "price_changes": changes,
        "seconds": round(time.monotonic() - t_start, 1),
    }


def _stratified(
    feed: EngineFeed, market: Market, units: dict[str, list[float]], fraction: float, salt: str
) -> tuple[set[str], int]:
    """The stratified holdout from the sales so far, set on the engine; the treated SKUs and
    the number of strata."""
    categories = {s: t.category for s, t in market.truths.items()}
    d = draw(categories, {s: u[0] for s, u in units.items()}, fraction=fraction, salt=salt)
    feed.engine.config.holdout = Holdout(skus=d.held)
    return set(categories) - d.held, len(d.strata)


def holdout_backtest(
    *,
    skus: int,
    days: float,
    before_days: float,
    seeds: list[int],
    settings: Settings,
    markup: float = 2.0,
    confidence: float = 0.95,
    stratified: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every seed, and in how many of them the interval covered the true effect."""
    runs = []
    for seed in seeds:
        r = holdout_run(
            skus=skus,
            days=days,
            before_days=before_days,
            seed=seed,
            settings=settings,
            markup=markup,
            confidence=confidence,
            stratified=stratified,
        )
        runs.append(r)
        if progress:
            est = r["estimate"]
            what = (
                f"profit {est['profit']['per_sku_day']:+.2f}/SKU-day "
                f"CI {est['profit']['ci']} true {r['true_per_sku_day']['profit']:+.2f}"
                if est.get("enough_data") and "ci" in est.get("profit", {})
                else est.get("why", "no estimate")
            )
            progress(f"seed {seed}: {what} ({r['seconds']}s)")
    coverage = {
        m: round(sum(r["covered"][m] for r in runs if m in r["covered"]) / len(runs), 3)
        for m in METRICS
    }
    return {
        "skus": skus,
        "days": days,
        "before_days": before_days,
        "holdout_fraction": settings.holdout_fraction,
        "stratified": stratified,
        "confidence": confidence,
        "seeds": seeds,
        "coverage": coverage,
        "runs": runs,
    }
