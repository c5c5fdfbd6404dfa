"""``repricer backtest --market …``: static vs policy vs dynamic oracle over demand families
and seeds, reported per family as the median with its min and max over seeds.

Each seed runs the three pricings on the same :class:`~streams.tools.simulator.family_market.
FamilyMarket` (common random numbers), driving the real engine in process
(:func:`streams.tools.backtest.run_market`). Per family, the ratios sum the realised profit of
that family's SKUs: ``profit_vs_oracle`` (the whole run), ``profit_vs_oracle_last_day``,
``profit_vs_static``; ``prior_oracle_vs_oracle`` (and its last day) is the ceiling of a pricing
that knows the family but not the SKU (:mod:`~streams.tools.simulator.prior_oracle`);
``guardrail_violations`` counts the published changes that break a hard
rule, checked by :class:`~streams.tools.price_audit.PriceAudit` apart from the guardrail code.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from repricer.streams.settings import Settings
from repricer.streams.tools.backtest import RunResult, run_market
from repricer.streams.tools.simulator.families import FAMILIES, family_of

RATIOS = ("profit_vs_oracle", "profit_vs_oracle_last_day", "profit_vs_static")
# the same without the sales noise: expected profit at the prices charged (what a long tail's
# few sales cannot show), and static ÷ oracle, the room there is
EXPECTED = (
    "static_vs_oracle",
    "expected_vs_oracle",
    "expected_vs_oracle_last_day",
    "expected_vs_static",
)
# the best a pricing that does not learn the SKU can do (its family's prior, not its truth):
# the whole run and the last day, realised on the same traffic, and the run in expectation
PRIOR = ("prior_oracle_vs_oracle", "prior_oracle_vs_oracle_last_day", "prior_expected_vs_oracle")
PRICINGS = ("static", "policy", "oracle", "prior_oracle")


def ratio(a: float, b: float) -> float | None:
    """``a / b`` to 6 decimals, ``None`` when ``b`` is 0 (no denominator to compare with)."""
    return round(a / b, 6) if b else None


def _family_sums(
    run: RunResult, fam_of: dict[str, str], expected: bool = False
) -> dict[str, tuple[float, float]]:
    """Per family: (profit over the run, profit of the last day), realised or expected."""
    out: dict[str, list[float]] = {}
    days = run.sku_expected_profit_by_day if expected else run.sku_profit_by_day
    last = days[-1] if days else {}
    for day in days:
        for sku, p in day.items():
            out.setdefault(fam_of[sku], [0.0, 0.0])[0] += p
    for sku, p in last.items():
        out.setdefault(fam_of[sku], [0.0, 0.0])[1] += p
    return {f: (v[0], v[1]) for f, v in out.items()}


def seed_report(
    *,
    market: str,
    skus: int,
    days: float,
    seed: int,
    settings: Settings,
    markup: float = 2.0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One seed: per family the three ratios, plus the run's price changes and violations."""
    runs: dict[str, RunResult] = {}
    for pricing in PRICINGS:
        runs[pricing] = run_market(
            pricing,  # type: ignore[arg-type]
            skus=skus,
            days=days,
            seed=seed,
            settings=settings,
            markup=markup,
            market_name=market,
            progress=progress,
        )
    fam_of = {f"SKU-{i:04d}": family_of(market, i) for i in range(skus)}
    sums = {p: _family_sums(r, fam_of) for p, r in runs.items()}
    exp = {p: _family_sums(r, fam_of, expected=True) for p, r in runs.items()}
    fams: dict[str, dict[str, float | None]] = {}
    for fam in sorted(sums["policy"], key=FAMILIES.index):
        po, st, orc = sums["policy"][fam], sums["static"][fam], sums["oracle"][fam]
        pri = sums["prior_oracle"][fam]
        fams[fam] = {
            "profit_vs_oracle": ratio(po[0], orc[0]),
            "profit_vs_oracle_last_day": ratio(po[1], orc[1]),
            "profit_vs_static": ratio(po[0], st[0]),
            "static_vs_oracle": ratio(st[0], orc[0]),
            "expected_vs_oracle": ratio(exp["policy"][fam][0], exp["oracle"][fam][0]),
            "expected_vs_oracle_last_day": ratio(exp["policy"][fam][1], exp["oracle"][fam][1]),
            "expected_vs_static": ratio(exp["policy"][fam][0], exp["static"][fam][0]),
            "prior_oracle_vs_oracle": ratio(pri[0], orc[0]),
            "prior_oracle_vs_oracle_last_day": ratio(pri[1], orc[1]),
            "prior_expected_vs_oracle": ratio(exp["prior_oracle"][fam][0], exp["oracle"][fam][0]),
        }
    pol = runs["policy"]
    return {
        "seed": seed,
        "families": fams,
        "price_changes": pol.price_changes,
        "guardrail_violations": sum(pol.audit_violations.values()),
        "violations_by_rule": dict(pol.audit_violations),
        "seconds": round(sum(r.seconds for r in runs.values()), 1),
    }


def summary(values: Sequence[float | None]) -> dict[str, float | None]:
    """Median, min and max of the finite values (``None`` when no seed defines the ratio: no
    profit at all in the denominator). Shared with ``repricer bench forecast --seeds``."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return {"median": None, "min": None, "max": None}
    return {
        "median": round(statistics.median(v), 4),
        "min": round(min(v), 4),
        "max": round(max(v), 4),
    }


def backtest_markets(
    *,
    market: str,
    skus: int,
    days: float,
    seeds: int,
    seed: int,
    settings: Settings,
    markup: float = 2.0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Seeds ``seed .. seed + seeds - 1`` of ``market``; per family the median and range."""
    if seeds < 1:
        raise ValueError("seeds must be >= 1")
    t = time.monotonic()
    per_seed = []
    for k in range(seeds):
        s = seed + k
        if progress:
            progress(f"[backtest {market}] seed {s} ({k + 1}/{seeds}): {skus} SKUs x {days} days")
        per_seed.append(
            seed_report(
                market=market,
                skus=skus,
                days=days,
                seed=s,
                settings=settings,
                markup=markup,
                progress=progress,
            )
        )
    fams = [f for f in FAMILIES if any(f in r["families"] for r in per_seed)]
    violations: Counter[str] = Counter()
    for r in per_seed:
        violations.update(r["violations_by_rule"])
    return {
        "market": market,
        "skus": skus,
        "days": days,
        "seeds": [r["seed"] for r in per_seed],
        "initial_price_rule": f"cost-plus: cost x {markup:g}",
        "families": {
            f: {
                "skus": sum(1 for i in range(skus) if family_of(market, i) == f),
                **{
                    key: summary([r["families"][f][key] for r in per_seed if f in r["families"]])
                    for key in (*RATIOS, *EXPECTED, *PRIOR)
                },
            }
            for f in fams
        },
        "guardrail_violations": sum(violations.values()),
        "violations_by_rule": dict(violations),
        "price_changes": summary([float(r["price_changes"]) for r in per_seed]),
        "per_seed": per_seed,
        "seconds": round(time.monotonic() - t, 1),
    }


def table(report: dict[str, Any]) -> str:
    """The per-family table of a :func:`backtest_markets` report (median [min-max])."""

    def cell(s: dict[str, Any]) -> str:
        if s["median"] is None:
            return "n/a"
        return f"{s['median']:.3f} [{s['min']:.3f}-{s['max']:.3f}]"

    head = ("family", "skus", *RATIOS, *EXPECTED, *PRIOR)
    rows = [
        (f, str(v["skus"]), *(cell(v[k]) for k in (*RATIOS, *EXPECTED, *PRIOR)))
        for f, v in report["families"].items()
    ]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in (head, *rows)]
    lines.append(
        f"market {report['market']}: {report['skus']} SKUs x {report['days']:g} days, seeds "
        f"{report['seeds']}; median [min-max] over seeds; guardrail violations "
        f"{report['guardrail_violations']}"
    )
    return "\n".join(lines)
