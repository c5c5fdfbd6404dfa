"""``repricer bench forecast``: WAPE of every demand model on a policy run of the market
simulator (:func:`streams.tools.backtest.run_market`), ÷ the best naive baseline, with the
attainable bound from the simulator's hidden truth; and the ONNX LSTM's batching speed-up."""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from repricer.models.base import DemandModel
from repricer.models.quantiles import count_quantile, dispersion, update_dispersion
from repricer.streams.settings import Settings
from repricer.streams.tools.backtest import DAY_MS, RunResult, run_market
from repricer.streams.tools.bench.common import Progress, machine
from repricer.streams.tools.simulator.truth import MEAN_QTY, QTY_PROBS, QTY_VALUES

SEED = 11  # the forecast benchmark's market seed (`bench forecast --market`: its first seed)


def lstm_batching(repeats: int = 5, rows: int = 4096) -> dict[str, Any]:
    """Rows/s of the ONNX LSTM at batch 256 ÷ batch 1, on the provider actually selected."""
    from repricer.models.lstm_features import N_FEATURES
    from repricer.models.onnx_scorer import LstmScorer

    scorer = LstmScorer()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, scorer.seq_len, N_FEATURES)).astype(np.float32)
    speedups, r1s, r256s = [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(rows // 8):
            scorer.score(x[i : i + 1])
        r1 = (rows // 8) / (time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(0, rows, 256):
            scorer.score(x[i : i + 256])
        r256 = rows / (time.perf_counter() - t)
        speedups.append(r256 / r1)
        r1s.append(r1)
        r256s.append(r256)
    return {
        "provider": scorer.provider,
        "lstm_batch_speedup": round(statistics.median(speedups), 2),
        "lstm_batch_speedup_min_median_max": [
            round(min(speedups), 2),
            round(statistics.median(speedups), 2),
            round(max(speedups), 2),
        ],
        "lstm_rows_per_s_batch1": round(statistics.median(r1s)),
        "lstm_rows_per_s_batch256": round(statistics.median(r256s)),
    }


def forecast(quick: bool = False, progress: Progress = None) -> dict[str, Any]:
    """WAPE of each model and the ensemble ÷ the best naive baseline, plus candidates.

    Candidates (not with ``quick``): the three pooled River regressors, and the default members
    plus the seasonal Poisson model (``candidate_with_seasonal``) while it is not a default
    member. Besides the
    recorded forecasts (expected units), each model's median point forecast (``_p50``) and the
    attainable bound (``wape_ratio_oracle``, from the simulator's hidden truth) are reported.
    """
    skus, days, eval_days = (40, 1.25, 0.25) if quick else (100, 3.0, 1.0)
    base = Settings()
    report: dict[str, Any] = {
        "machine": machine(),
        "skus": skus,
        "days": days,
        "eval_days": eval_days,
    }
    by_regressor = {}
    # --quick: only the configured regressor and no candidates (each is another full run)
    for reg in (base.river_regressor,) if quick else ("bayes", "linear", "pa"):
        if progress:
            progress(f"[bench forecast] River pooled regressor {reg!r}: {skus} SKUs x {days} days")
        s = base.model_copy(update={"river_regressor": reg})
        res = forecast_bench(skus=skus, days=days, seed=SEED, settings=s, eval_days=eval_days)
        by_regressor[reg] = res
    chosen = base.river_regressor
    report.update(by_regressor[chosen])
    report["river_regressor"] = chosen
    report["wape_ratio_river_by_regressor"] = {
        r: v.get("wape_ratio_river") for r, v in by_regressor.items()
    }
    if "wape_seasonal" not in report and not quick:
        # the seasonal Poisson model, not (yet) in default_decider: the same run with it added
        from repricer.models.seasonal_model import SeasonalPoisson

        if progress:
            progress(
                f"[bench forecast] candidate: + seasonal Poisson model, {skus} SKUs x {days} days"
            )
        cand = forecast_bench(
            skus=skus,
            days=days,
            seed=SEED,
            settings=base,
            eval_days=eval_days,
            extra_members=(SeasonalPoisson,),
        )
        report["candidate_with_seasonal"] = {
            k: v
            for k, v in cand.items()
            if k.startswith(("wape_ratio_", "truth_error_", "model_state_")) or k == "seconds"
        }
    if progress:
        progress("[bench forecast] LSTM batch 1 vs 256")
    report.update(lstm_batching(repeats=3 if quick else 5))
    return report


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
    return score_run(res, settings=settings, days=days, eval_days=eval_days)


def score_run(
    res: RunResult, *, settings: Settings, days: float, eval_days: float
) -> dict[str, Any]:
    """The scores of :func:`forecast_bench` for a policy run kept with its forecasts."""
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
