"""``repricer bench forecast --market …``: the forecast benchmark per demand family.

One policy run of a :class:`~streams.tools.simulator.family_market.FamilyMarket` (one family,
or ``mix``: every family in turn), its forecasts scored per family exactly as
:func:`streams.tools.bench.forecast.forecast_bench` scores a run: WAPE of every model and of the
naive baselines, each model ÷ the best naive baseline, and ``wape_ratio_oracle``, the WAPE of
the true expected demand (and of its median) ÷ the same baseline: the attainable bound.

With ``--seeds N`` (:func:`forecast_markets_seeds`), seeds ``S .. S + N - 1`` each run as above
and every ratio is reported per family as the median with its min and max over seeds (the shape
of ``repricer backtest --market``), with ``ensemble_p50_vs_bound``: the ensemble's median
forecast ÷ the bound, seed by seed (the target: at most 1.03 on every family).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from typing import Any

from repricer.streams.settings import Settings
from repricer.streams.tools.backtest import RunResult, run_market
from repricer.streams.tools.bench.common import Progress, machine
from repricer.streams.tools.bench.forecast import SEED, score_run
from repricer.streams.tools.markets import ratio, summary
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
    seed: int = SEED,
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


# the figures summarised over seeds: every ratio to the best naive baseline (the bound
# ``wape_ratio_oracle`` among them) and every model's error vs the true mean
SUMMARISED = ("wape_ratio_", "truth_error_")


def _p50_vs_bound(fam: dict[str, Any]) -> float | None:
    """The ensemble's median forecast ÷ the attainable bound, both ÷ the best naive baseline."""
    p50, bound = fam.get("wape_ratio_ensemble_p50"), fam.get("wape_ratio_oracle")
    return None if p50 is None or bound is None else ratio(p50, bound)


def _over_seeds(got: list[dict[str, Any]]) -> dict[str, Any]:
    """One family's reports, one per seed: the median [min, max] of every figure the seeds
    with sales all have (a seed whose family sold nothing counts in ``seeds_no_sales``)."""
    scored = [g for g in got if not g.get("no_sales")]
    keys = [
        k
        for k in (scored[0] if scored else {})
        if k.startswith(SUMMARISED) and all(k in g for g in scored)
    ]
    bound = [_p50_vs_bound(g) for g in got]
    return {
        "skus": got[0]["skus"],
        "seeds_no_sales": len(got) - len(scored),
        "best_naive_baseline": dict(Counter(g["best_naive_baseline"] for g in scored)),
        "ensemble_p50_vs_bound": summary(bound),
        "ensemble_p50_vs_bound_by_seed": bound,
        **{k: summary([g.get(k) for g in got]) for k in keys},
    }


def forecast_markets_seeds(
    market: str = "mix",
    *,
    seeds: int = 1,
    seed: int = SEED,
    progress: Progress = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Seeds ``seed .. seed + seeds - 1`` of :func:`forecast_markets` (``kwargs``: its sizes,
    ``quick`` and ``settings``). One seed: that seed's report, unchanged. More: per family the
    median, min and max over seeds of every ratio, and the reports of the seeds in
    ``per_seed``."""
    if seeds < 1:
        raise ValueError("seeds must be >= 1")
    if seeds == 1:
        return forecast_markets(market, seed=seed, progress=progress, **kwargs)
    t = time.monotonic()
    per_seed = []
    for k in range(seeds):
        if progress:
            progress(f"[bench forecast {market}] seed {seed + k} ({k + 1}/{seeds})")
        per_seed.append(forecast_markets(market, seed=seed + k, progress=progress, **kwargs))
    first = per_seed[0]
    fams = {
        f: _over_seeds([r["families"][f] for r in per_seed])
        for f in first["families"]
        if all(f in r["families"] for r in per_seed)
    }
    return {
        "machine": first["machine"],
        "market": market,
        "skus": first["skus"],
        "days": first["days"],
        "eval_days": first["eval_days"],
        "seeds": [r["seed"] for r in per_seed],
        "families": fams,
        "ensemble_p50_vs_bound": {f: v["ensemble_p50_vs_bound"] for f, v in fams.items()},
        "model_state_bytes_per_sku": {
            k: summary([r["model_state_bytes_per_sku"].get(k) for r in per_seed])
            for k in first["model_state_bytes_per_sku"]
        },
        "per_seed": per_seed,
        "seconds": round(time.monotonic() - t, 1),
    }
