"""``repricer bench``: each benchmark by name, or ``all`` of them merged into one report.

Absolute numbers depend on the machine and on whatever else it is doing; ratios of two things
measured in the same run, on the same data, are what to compare across machines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from repricer.streams.tools.bench.common import Progress, machine, say
from repricer.streams.tools.bench.decisions import decisions, memory
from repricer.streams.tools.bench.forecast import forecast
from repricer.streams.tools.bench.ingest import ingest
from repricer.streams.tools.bench.recovery import recovery
from repricer.streams.tools.bench.scaleout import scaleout
from repricer.streams.tools.bench.sink import sink

# the pipeline benchmarks (``all`` runs ``forecast`` first, then these in this order)
BENCHES: dict[str, Callable[..., dict[str, Any]]] = {
    "ingest": ingest,
    "scaleout": scaleout,
    "decisions": decisions,
    "sink": sink,
    "memory": memory,
    "recovery": recovery,
}


def run_pipeline_bench(what: str, quick: bool = False, progress: Progress = None) -> dict[str, Any]:
    """One pipeline benchmark by name, or ``all`` of them merged into one dict."""
    if what in BENCHES:
        return BENCHES[what](quick=quick, progress=progress)
    if what != "all":
        raise ValueError(f"unknown pipeline benchmark {what!r}")
    report: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, fn in BENCHES.items():
        t = time.monotonic()
        try:
            report.update(fn(quick=quick, progress=progress))
        except Exception as exc:  # one failing bench must not hide the others' numbers
            errors[name] = f"{type(exc).__name__}: {str(exc)[:500]}"
            say(progress, f"[bench {name}] FAILED: {errors[name]}")
        report.setdefault("bench_seconds", {})[name] = round(time.monotonic() - t, 1)
    if errors:
        report["errors"] = errors
    return report


def run_bench(what: str, *, quick: bool = False, progress: Progress = None) -> dict[str, Any]:
    if what == "forecast":
        return forecast(quick=quick, progress=progress)
    if what in BENCHES:
        return run_pipeline_bench(what, quick=quick, progress=progress)
    if what == "all":
        report: dict[str, Any] = {"machine": machine()}
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
