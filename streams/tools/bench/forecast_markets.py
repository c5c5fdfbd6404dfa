"""``repricer bench forecast --market …``: the forecast benchmark per demand family.

One policy run of a :class:`~streams.tools.simulator.family_market.FamilyMarket` (one family,
or ``mix``: every family in turn), its forecasts scored per family exactly as
:func:`streams.tools.bench.forecast.forecast_bench` scores a run: WAPE of every model and of the
naive baselines, each model ÷ the best naive baseline, and ``wape_ratio_oracle``, the WAPE of
the true expected demand (and of its median) ÷ the same baseline: the attainable bound.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from repricer.streams.settings import Settings
from repricer.streams.tools.backtest import RunResult, run_market
from repricer.streams.tools.bench.common import Progress, machine
from repricer.streams.tools.bench.forecast import score_run
from repricer.streams.tools.simulator.families import FAMILIES, family_of


def family_subset(res: RunResult, skus: set[str]) -> RunResult:
    """The part of a run's forecasts, labels and truths that belongs to ``skus``."""
    return replace(
        res,
        forecasts=[f for f in res.forecasts if f[0] in skus],
        units={k: v for k, v in res.units.items() if k[0] in skus},
        expected={k: v for k, v in res.expected.items() if k[0] in skus},
    )


def forecast_markets(
    market: str = "mix",
    *,
    skus: int | None = None,
    days: float | None = None,
    eval_days: float | None = None,
    seed: int = 11,
    quick: bool = False,
    settings: Settings | None = None,
    progress: Progress = None,
) -> dict[str, Any]:
    """Per family of ``market``: every model's WAPE, ratios to the best naive baseline and the
    attainable bound ``wape_ratio_oracle``."""
    d_skus, d_days, d_eval = (28, 1.25, 0.25) if quick else (70, 3.0, 1.0)
    skus, days, eval_days = skus or d_skus, days or d_days, eval_days or d_eval
    s = settings or Settings()
    if progress:
        progress(f"[bench forecast] market {market}: {skus} SKUs x {days} days, policy run")
    res = run_market(
        "policy",
        skus=skus,
        days=days,
        seed=seed,
        settings=s,
        keep_forecasts=True,
        market_name=market,
        progress=progress,
    )
    by_family: dict[str, set[str]] = {}
    for i in range(skus):
        by_family.setdefault(family_of(market, i), set()).add(f"SKU-{i:04d}")
    fams = {}
    for fam in FAMILIES:
        if fam in by_family:
            sub = family_subset(res, by_family[fam])
            try:
                got = score_run(sub, settings=s, days=days, eval_days=eval_days)
            except ZeroDivisionError:  # every naive baseline exact: nothing sold, nothing to rank
                got = {"wape_ratio_oracle": None, "wape_ratio_ensemble": None, "no_sales": True}
            got.pop("model_state_bytes_per_sku", None)
            got.pop("seconds", None)
            fams[fam] = {"skus": len(by_family[fam]), **got}
    return {
        "machine": machine(),
        "market": market,
        "skus": skus,
        "days": days,
        "eval_days": eval_days,
        "seed": seed,
        "families": fams,
        "wape_ratio_oracle": {f: v.get("wape_ratio_oracle") for f, v in fams.items()},
        "wape_ratio_ensemble": {f: v.get("wape_ratio_ensemble") for f, v in fams.items()},
        "model_state_bytes_per_sku": res.state_bytes,
        "seconds": round(res.seconds, 1),
    }
