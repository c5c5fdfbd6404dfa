"""``repricer bench decisions`` and ``memory``: the worker's engine (``streams.build``) in
process over the market simulator: SKUs decided per second in the tick that closes a window
for every SKU, and bytes of table state per SKU."""

from __future__ import annotations

import json
import statistics
import time
import tracemalloc
from typing import TYPE_CHECKING, Any

from repricer.streams.tools.bench.common import (
    MIN_MS,
    T0,
    Progress,
    machine,
    median_and_range,
    mmm,
    p99,
    say,
)

if TYPE_CHECKING:
    from repricer.streams.engine import WindowEngine


def _engine() -> WindowEngine:
    """The worker's engine (``streams.build``) from the environment's settings, for a feed that
    closes each window itself (no allowed lateness)."""
    from repricer.streams.build import build_engine
    from repricer.streams.settings import Settings

    return build_engine(Settings().model_copy(update={"lateness_s": 0}))


class _InProcess:
    """One partition of the real engine over dict tables, fed from the market simulator."""

    def __init__(self, skus: int, seed: int = 7) -> None:
        from repricer.streams.tools.backtest import EngineFeed
        from repricer.streams.tools.simulator.market import Market

        self.feed = EngineFeed(_engine())
        self.market = Market(n_skus=skus, seed=seed, start_ms=T0)
        self.w = 0
        self.feed.catalog(self.market)

    def window(self) -> tuple[float, Any]:
        """Fold one window of counts for every SKU, then time the watermark that closes it."""
        t0 = T0 + self.w * MIN_MS
        self.w += 1
        self.feed.counts(t0, self.market.step_counts(t0, t0 + MIN_MS))
        t = time.perf_counter()
        out = self.feed.close(t0 + MIN_MS)
        dt = time.perf_counter() - t
        for ch in out.changes:
            self.market.apply_price(ch.sku, ch.new_price, t0 + MIN_MS)
        return dt, out


def decisions(quick: bool = False, progress: Progress = None) -> dict[str, Any]:
    """SKUs decided per second in the tick that closes a window for every SKU at once."""
    n = 2_000 if quick else 10_000
    warmup, repeats = (1, 2) if quick else (2, 3)
    ip = _InProcess(n)
    members = [m.name for m in ip.feed.engine.decider.models()]
    say(
        progress,
        f"[bench decisions] {n} SKUs, the worker's policy ({' + '.join(members)}), "
        f"{warmup} warm-up windows",
    )
    for _ in range(warmup):
        ip.window()
    ticks, rates, decided, changes = [], [], [], []
    for i in range(repeats):
        dt, out = ip.window()
        ticks.append(dt)
        decided.append(out.decisions)
        changes.append(len(out.changes))
        rates.append(out.decisions / dt)
        say(progress, f"[bench decisions] window {i + 1}: {out.decisions} decided in {dt:.2f} s")
    return {
        "machine": machine(),
        "decision_skus": n,
        "decision_windows_timed": repeats,
        "decision_warmup_windows": warmup,
        "decision_models": members,
        **median_and_range("decisions_per_s", rates, 0),
        "decision_p99_s": round(p99(ticks), 3),
        "decision_tick_s_min_median_max": mmm(ticks),
        "decisions_per_tick": decided,
        "price_changes_per_tick": changes,
        "decision_note": (
            f"{n} SKUs per tick{' (--quick; the full run has 10000)' if quick else ''}; "
            "the worker's engine (streams.build.build_engine, the settings from the environment "
            "with no allowed lateness), "
            "in process, one partition, dict tables: seconds of the WatermarkEnv that closes the "
            "window for every SKU at once (window close -> all price changes ready, before any "
            "Kafka send); p99 over only the timed windows (so effectively their max)"
        ),
    }


def _json_bytes(table: dict[str, Any]) -> int:
    # each record's changelog value (Record.__json__), spaced as json.dumps spaces it
    return sum(len(json.dumps(k)) + len(json.dumps(v.__json__())) for k, v in table.items())


def _state_at(n: int, windows: int, history_len: int) -> dict[str, float]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    ip = _InProcess(n, seed=3)
    for _ in range(windows):
        ip.window()
    feed = ip.feed
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sizes = {name: _json_bytes(t) for name, t in (("skus", feed.skus), ("opens", feed.opens))}
    sizes["meta"] = _json_bytes(feed.meta)
    total = sum(sizes.values())
    hist_rows = [len(st.history) for st in feed.skus.values()]
    row_bytes = [
        len(json.dumps(r)) + 1 for st in list(feed.skus.values())[:200] for r in st.history
    ]
    per_row = statistics.mean(row_bytes) if row_bytes else 0.0
    missing = max(0.0, history_len - statistics.mean(hist_rows)) if hist_rows else 0.0
    return {
        "json_bytes_per_sku": total / n,
        "json_bytes_per_sku_skus": sizes["skus"] / n,
        "json_bytes_per_sku_opens": sizes["opens"] / n,
        "json_bytes_meta_total": sizes["meta"],
        "json_bytes_per_sku_full_history_est": total / n + missing * per_row,
        "tracemalloc_peak_bytes_per_sku": (peak - base) / n,
        "tracemalloc_retained_bytes_per_sku": (current - base) / n,
    }


def memory(quick: bool = False, progress: Progress = None) -> dict[str, Any]:
    """Bytes of table state per SKU at two SKU counts, and how linear it is."""
    small, large = (1_000, 5_000) if quick else (10_000, 100_000)
    windows = 3
    history_len = _engine().history_len
    res = {}
    for n in (small, large):
        say(progress, f"[bench memory] {n} SKUs x {windows} windows (tracemalloc on)")
        res[n] = _state_at(n, windows, history_len)
    s, lg = res[small], res[large]
    return {
        "machine": machine(),
        "memory_skus": [small, large],
        "memory_windows": windows,
        "state_bytes_per_sku": round(lg["json_bytes_per_sku"]),
        "state_bytes_per_sku_small": round(s["json_bytes_per_sku"]),
        "state_bytes_per_sku_by_table": {
            "skus": round(lg["json_bytes_per_sku_skus"]),
            "opens": round(lg["json_bytes_per_sku_opens"]),
            "meta_total_bytes": lg["json_bytes_meta_total"],
        },
        "state_bytes_per_sku_full_history_est": round(lg["json_bytes_per_sku_full_history_est"]),
        "state_linearity_large_over_small": round(
            lg["json_bytes_per_sku"] / s["json_bytes_per_sku"], 3
        ),
        "tracemalloc_peak_bytes_per_sku": [
            round(s["tracemalloc_peak_bytes_per_sku"]),
            round(lg["tracemalloc_peak_bytes_per_sku"]),
        ],
        "tracemalloc_retained_bytes_per_sku": [
            round(s["tracemalloc_retained_bytes_per_sku"]),
            round(lg["tracemalloc_retained_bytes_per_sku"]),
        ],
        "tracemalloc_linearity_large_over_small": round(
            lg["tracemalloc_peak_bytes_per_sku"] / s["tracemalloc_peak_bytes_per_sku"], 3
        ),
        "memory_note": (
            f"JSON changelog bytes (key + value) of skus + opens + meta after {windows} closed "
            f"windows, / SKUs; the per-SKU LSTM history grows to {history_len} rows, so "
            "*_full_history_est adds the missing rows at the measured bytes per row; "
            "tracemalloc pairs are [small, large] and include the engine's transient "
            "allocations during the window ticks (peak) and the Market simulator (retained)"
        ),
    }
