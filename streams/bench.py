"""``repricer bench``: benchmarks that print ratios measured side by side in one run.

Absolute numbers depend on the machine and on whatever else it is doing; ratios of two things
measured in the same run, on the same data, are what to compare across machines.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from streams.settings import Settings

Progress = Callable[[str], None] | None


def _machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def lstm_batching(repeats: int = 5, rows: int = 4096) -> dict[str, Any]:
    """Rows/s of the ONNX LSTM at batch 256 ÷ batch 1, on the provider actually selected."""
    from models.lstm_features import N_FEATURES
    from models.onnx_scorer import LstmScorer

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
    from streams.backtest import forecast_bench

    skus, days, eval_days = (40, 1.25, 0.25) if quick else (100, 3.0, 1.0)
    base = Settings()
    report: dict[str, Any] = {
        "machine": _machine(),
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
        res = forecast_bench(skus=skus, days=days, seed=11, settings=s, eval_days=eval_days)
        by_regressor[reg] = res
    chosen = base.river_regressor
    report.update(by_regressor[chosen])
    report["river_regressor"] = chosen
    report["wape_ratio_river_by_regressor"] = {
        r: v.get("wape_ratio_river") for r, v in by_regressor.items()
    }
    if "wape_seasonal" not in report and not quick:
        # the seasonal Poisson model, not (yet) in default_decider: the same run with it added
        from models.seasonal_model import SeasonalPoisson

        if progress:
            progress(
                f"[bench forecast] candidate: + seasonal Poisson model, {skus} SKUs x {days} days"
            )
        cand = forecast_bench(
            skus=skus,
            days=days,
            seed=11,
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


def run_bench(what: str, *, quick: bool = False, progress: Progress = None) -> dict[str, Any]:
    from streams.bench_pipeline import BENCHES, run_pipeline_bench

    if what == "forecast":
        return forecast(quick=quick, progress=progress)
    if what in BENCHES:
        return run_pipeline_bench(what, quick=quick, progress=progress)
    if what == "all":
        report: dict[str, Any] = {"machine": _machine()}
        report.update(forecast(quick=quick, progress=progress))
        report.update(run_pipeline_bench("all", quick=quick, progress=progress))
        for key in (
            "ingest_ratio",
            "ingest_ratio_quix",
            "scaleout_ratio",
            "decisions_per_s",
            "decision_p99_s",
            "lstm_batch_speedup",
            "sink_ratio",
            "state_bytes_per_sku",
            "recovery_s",
        ):
            report.setdefault(key, None)  # null when that benchmark failed (see "errors")
        return report
    raise ValueError(f"unknown benchmark {what!r}")


if __name__ == "__main__":
    print(json.dumps(run_bench("forecast", quick=True)))
