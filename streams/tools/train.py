"""``repricer train``: build the LSTM's training windows and run the trainer.

The windows come from the simulator (:class:`streams.tools.simulator.market.Market`, with random price moves
so the model sees price variation) or from the ClickHouse sink (``sales_1m`` / ``clicks_1m``);
training on them and the ONNX export are ``models.lstm_train`` (which needs PyTorch).

CLI: ``repricer train --source simulator --out models/artifacts/demand_lstm.onnx`` (or
``python -m repricer.streams.tools.train ...``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from repricer.infra.clickhouse import connect, mask_url
from repricer.infra.clickhouse.tables import CLICKS_1M, SALES_1M
from repricer.models.lstm_features import FEATURES, SEQ_LEN
from repricer.models.lstm_train import DEFAULT_OUT, WINDOW_MS, WindowSet, export_onnx, train
from repricer.streams.tools.simulator.market import Market
from repricer.streams.tools.simulator.truth import MAX_CONVERSION, MIN_PER_DAY, QTY_PROBS

DEFAULT_START_MS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)


# --------------------------------------------------------------------------------- the data


def _price_schedule(
    rng: np.random.Generator,
    base: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    minutes: int,
    move_every: tuple[int, int],
    max_move: float,
    pull: float = 0.2,
) -> np.ndarray:
    """(S, minutes) price in force per minute: a move every U[move_every] minutes per SKU.

    A move multiplies the price by ``exp(U(-log(1+max_move), log(1+max_move)))`` (log-uniform
    ±25% by default) and pulls it ``pull`` of the way (in log space) back toward the base price so
    the walk does not drift to a bound; the result is clipped to ``[min_price, max_price]``.
    """
    n = base.size
    price = base.astype(np.float64).copy()
    out = np.empty((n, minutes), dtype=np.float64)
    nxt = rng.integers(move_every[0], move_every[1] + 1, n)
    width = math.log1p(max_move)
    for m in range(minutes):
        due = np.flatnonzero(nxt == m)
        if due.size:
            step = rng.uniform(-width, width, due.size)
            logp = np.log(price[due]) + step
            logp += pull * (np.log(base[due]) - logp)
            price[due] = np.clip(np.round(np.exp(logp), 2), lo[due], hi[due])
            nxt[due] = m + rng.integers(move_every[0], move_every[1] + 1, due.size)
        out[:, m] = price
    return out


SPARSE_SCALE = (3e-5, 1e-2)  # views x this: 0.5-4 units a minute become ~0.02-60 a day


def generate_training_windows(
    n_skus: int = 200,
    minutes: int = 3 * 1440,
    seed: int = 7,
    *,
    start_ms: int = DEFAULT_START_MS,
    move_every: tuple[int, int] = (30, 120),
    max_move: float = 0.25,
    exact_events: bool = False,
    sparse_share: float = 0.0,
) -> WindowSet:
    """Simulated 1-minute windows of ``n_skus`` SKUs over ``minutes`` minutes.

    The SKU truths come from ``Market(n_skus=..., seed=seed, stocked_fraction=0)`` (no stock-outs:
    those are the guardrails' business, not demand). Prices follow :func:`_price_schedule`.

    ``exact_events=False`` (default, fast, vectorised) samples the per-minute aggregates with the
    distribution ``Market.step`` realises for 1-minute steps: views ~ Poisson(views_per_min ·
    season(mid-minute)), carts ~ Binomial(views, cart(p)), orders ~ Binomial(carts, conv(p)/cart(p)),
    units = Σ qty over orders (qty 1/2/3 with QTY_PROBS). ``exact_events=True`` applies the prices
    with ``Market.apply_price`` and aggregates the events of ``Market.step`` minute by minute
    (slow: for checks on small sizes).

    ``sparse_share``: that share of the SKUs (the last ones) get their views scaled down by a
    log-uniform factor in :data:`SPARSE_SCALE`, so they sell from about 0.02 to 60 units a
    *day* (a long tail for a scale-free model to learn from; vectorised sampling only).
    """
    if n_skus < 1 or minutes < 2:
        raise ValueError("need n_skus >= 1 and minutes >= 2")
    market = Market(n_skus=n_skus, seed=seed, start_ms=start_ms, stocked_fraction=0.0)
    truths = list(market.truths.values())
    base = np.array([t.base_price for t in truths])
    lo = np.array([t.min_price for t in truths])
    hi = np.array([t.max_price for t in truths])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    prices = _price_schedule(rng, base, lo, hi, minutes, move_every, max_move)

    col = lambda name: np.array([getattr(t, name) for t in truths])[:, None]  # noqa: E731
    vpm, conv0, cart_rate = col("views_per_min"), col("conversion_at_base"), col("cart_rate")
    n_sparse = round(n_skus * min(max(sparse_share, 0.0), 1.0))
    if n_sparse:
        if exact_events:
            raise ValueError("sparse_share needs the vectorised sampler (exact_events=False)")
        lo_s, hi_s = np.log(SPARSE_SCALE[0]), np.log(SPARSE_SCALE[1])
        scale = np.ones((n_skus, 1))
        scale[n_skus - n_sparse :, 0] = np.exp(rng.uniform(lo_s, hi_s, n_sparse))
        vpm = vpm * scale
    elast, amp, phase = col("elasticity"), col("season_amp"), col("season_phase")
    t0 = start_ms + np.arange(minutes, dtype=np.int64) * WINDOW_MS
    mid_minute = ((t0 + WINDOW_MS // 2) % 86_400_000) / WINDOW_MS
    season = 1.0 + amp * np.sin(2.0 * np.pi * mid_minute[None, :] / MIN_PER_DAY + phase)
    conv = np.minimum(MAX_CONVERSION, conv0 * (prices / base[:, None]) ** elast)
    cart_p = np.minimum(1.0, conv * (cart_rate / conv0))
    expected = vpm * season * conv * float(np.dot((1, 2, 3), QTY_PROBS))

    if not exact_events:
        views = rng.poisson(vpm * season)
        carts = rng.binomial(views, cart_p)
        orders = rng.binomial(carts, np.clip(conv / cart_p, 0.0, 1.0))
        q1, q2, q3 = QTY_PROBS
        n2 = rng.binomial(orders, q2)
        n3 = rng.binomial(orders - n2, q3 / (q1 + q3))
        units = orders + n2 + 2 * n3
    else:
        sku_idx = {t.sku: i for i, t in enumerate(truths)}
        views = np.zeros((n_skus, minutes), dtype=np.int64)
        carts = np.zeros_like(views)
        units = np.zeros_like(views)
        for m in range(minutes):
            ts = int(t0[m])
            if m > 0:
                for i in np.flatnonzero(prices[:, m] != prices[:, m - 1]).tolist():
                    market.apply_price(truths[i].sku, float(prices[i, m]), ts)
            for ev in market.step(ts, ts + WINDOW_MS):
                i = sku_idx[ev.sku]
                kind = getattr(ev, "type", None)
                if kind is None:
                    units[i, m] += ev.qty  # type: ignore[union-attr]
                elif kind == "view":
                    views[i, m] += 1
                elif kind == "add_to_cart":
                    carts[i, m] += 1

    return WindowSet(
        skus=[t.sku for t in truths],
        ref_price=base,
        offsets=np.arange(n_skus + 1, dtype=np.int64) * minutes,
        window_start_ms=np.tile(t0, n_skus),
        units=units.reshape(-1).astype(np.float64),
        views=views.reshape(-1).astype(np.float64),
        carts=carts.reshape(-1).astype(np.float64),
        price=prices.reshape(-1),
        window_ms=WINDOW_MS,
        source="simulator",
        expected_units=expected.reshape(-1),
        elasticity=elast[:, 0].copy(),
    )


def _to_ms(value: Any) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # the backends return aware UTC; be lenient anyway
            value = value.replace(tzinfo=UTC)
        return round(value.timestamp() * 1000)
    return int(value) * 1000  # DateTime as epoch seconds


def windows_from_clickhouse(
    backend: Any, database: str = "repricer", *, window_ms: int = WINDOW_MS
) -> WindowSet:
    """Windows from the ClickHouse sink: ``sales_1m FINAL`` joined with ``clicks_1m FINAL``.

    ``backend`` is anything with ``query(sql) -> list[tuple]`` (``infra.clickhouse.connect(url)``).
    Per SKU, windows are joined on ``window_start``; a window missing from ``clicks_1m`` has 0
    views / carts; a missing or non-positive price is forward-filled from the SKU's previous
    window (windows before the first known price are dropped). The sink stores only windows that
    held events, so a gap between two of a SKU's windows is quiet windows: they are filled in as
    zero demand at the price in force (zero is a label too).
    Reference price per SKU: its first observed price.
    """
    sales_cols = SALES_1M.pick("sku", "window_start", "units", "price")
    clicks_cols = CLICKS_1M.pick("sku", "window_start", "views", "add_to_cart")
    sales = backend.query(
        f"SELECT {', '.join(sales_cols)} FROM {SALES_1M.at(database)} FINAL "
        "ORDER BY sku, window_start"
    )
    clicks = backend.query(
        f"SELECT {', '.join(clicks_cols)} FROM {CLICKS_1M.at(database)} FINAL "
        "ORDER BY sku, window_start"
    )
    rows: dict[str, dict[int, list[float]]] = {}
    for sku, ws, units, price in sales:
        rows.setdefault(str(sku), {})[_to_ms(ws)] = [float(units), float(price or 0.0), 0.0, 0.0]
    for sku, ws, views, add_to_cart in clicks:
        r = rows.setdefault(str(sku), {}).setdefault(_to_ms(ws), [0.0, 0.0, 0.0, 0.0])
        r[2], r[3] = float(views), float(add_to_cart)

    skus: list[str] = []
    refs: list[float] = []
    offsets = [0]
    cols: list[list[float]] = [[], [], [], [], []]  # ws, units, views, carts, price
    for sku in sorted(rows):
        last_price = 0.0
        ref = 0.0
        prev_ws: int | None = None
        seg_len = 0
        for ws in sorted(rows[sku]):
            units, price, views, carts = rows[sku][ws]
            if price > 0 and math.isfinite(price):
                last_price = price
            if last_price <= 0:
                continue
            if ref <= 0:
                ref = last_price
            if prev_ws is not None and seg_len:
                for quiet in range(prev_ws + window_ms, ws, window_ms):
                    for c, v in zip(cols, (quiet, 0.0, 0.0, 0.0, cols[4][-1]), strict=True):
                        c.append(v)
                    seg_len += 1
            for c, v in zip(cols, (ws, units, views, carts, last_price), strict=True):
                c.append(v)
            seg_len += 1
            prev_ws = ws
        if seg_len:
            skus.append(sku)
            refs.append(ref)
            offsets.append(offsets[-1] + seg_len)
    return WindowSet(
        skus=skus,
        ref_price=np.asarray(refs, dtype=np.float64),
        offsets=np.asarray(offsets, dtype=np.int64),
        window_start_ms=np.asarray(cols[0], dtype=np.int64),
        units=np.asarray(cols[1], dtype=np.float64),
        views=np.asarray(cols[2], dtype=np.float64),
        carts=np.asarray(cols[3], dtype=np.float64),
        price=np.asarray(cols[4], dtype=np.float64),
        window_ms=window_ms,
        source="clickhouse",
    )


# ----------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The trainer's command line (``repricer train ...``)."""
    ap = argparse.ArgumentParser(
        prog="repricer train", description="Train the LSTM demand forecaster and export ONNX."
    )
    ap.add_argument("--source", choices=("simulator", "clickhouse"), default="simulator")
    ap.add_argument("--clickhouse-url", default=os.environ.get("REPRICER_CLICKHOUSE_URL"))
    ap.add_argument("--database", default="repricer")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--skus", type=int, default=200, help="simulator: number of SKUs")
    ap.add_argument("--minutes", type=int, default=3 * 1440, help="simulator: minutes simulated")
    ap.add_argument("--steps", type=int, default=8000, help="optimiser steps")
    ap.add_argument(
        "--epochs",
        type=float,
        default=None,
        help="passes over the training targets (overrides --steps)",
    )
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=8e-3)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=SEQ_LEN)
    ap.add_argument("--val-frac", type=float, default=0.2)
    ap.add_argument("--max-seconds", type=float, default=170.0, help="training time budget")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--sparse-share",
        type=float,
        default=0.3,
        help="simulator: share of SKUs scaled down to 0.02-60 units a day (the long tail)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: the CPUs, at most 4; 1 is faster on a busy machine)",
    )
    ap.add_argument(
        "--raw-counts",
        action="store_true",
        help="train on raw counts (the old, not scale-free model) instead of counts / the "
        "SKU's level",
    )
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    if args.source == "simulator":
        print(f"[lstm_train] simulating {args.skus} SKUs x {args.minutes} min", flush=True)
        ws = generate_training_windows(
            args.skus, args.minutes, args.seed, sparse_share=args.sparse_share
        )
    else:
        if not args.clickhouse_url:
            ap.error("--clickhouse-url (or REPRICER_CLICKHOUSE_URL) is required")
        print(f"[lstm_train] reading windows from {mask_url(args.clickhouse_url)}", flush=True)
        backend = connect(args.clickhouse_url)
        try:
            ws = windows_from_clickhouse(backend, args.database)
        finally:
            backend.close()
    print(
        f"[lstm_train] {ws.n_windows} windows, {len(ws.skus)} segments ({time.monotonic() - t0:.1f}s)",
        flush=True,
    )
    steps = args.steps
    if args.epochs is not None:
        n_train = int(ws.n_windows * (1.0 - args.val_frac))
        steps = max(1, math.ceil(args.epochs * n_train / args.batch_size))
    model, summary = train(
        ws,
        seq_len=args.seq_len,
        hidden=args.hidden,
        steps=steps,
        batch_size=args.batch_size,
        lr=args.lr,
        val_frac=args.val_frac,
        seed=args.seed,
        max_seconds=args.max_seconds,
        scale_free=not args.raw_counts,
        threads=args.threads,
    )
    norm = summary.pop("norm")
    meta = {
        "features": list(FEATURES),
        "seq_len": args.seq_len,
        "window_ms": ws.window_ms,
        "hidden": args.hidden,
        "norm": norm,
        **({} if args.raw_counts else {"scale": "level"}),
        "reference_price": "catalog base_price"
        if ws.source == "simulator"
        else "first observed price of the SKU (training); catalog base_price when scoring",
        "training": summary,
    }
    full = export_onnx(model, args.out, meta)
    size = Path(args.out).stat().st_size
    print(
        f"[lstm_train] wrote {args.out} ({size} bytes, version {full['version']}) and "
        f"{Path(args.out).with_suffix('.json').name} in {time.monotonic() - t0:.1f}s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
