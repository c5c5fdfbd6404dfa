"""Train the LSTM demand forecaster and export it to ONNX (the only module that needs PyTorch).

``torch`` is imported lazily, inside the functions that need it, so the data helpers
(:func:`generate_training_windows`, :func:`windows_from_clickhouse`, :func:`gather_sequences`)
work without it. Runtime scoring (``models.onnx_scorer``) never imports this module.

Data: closed 1-minute windows of many SKUs (:class:`WindowSet`), either simulated with
:class:`streams.tools.simulator.market.Market` (with random price moves so the model sees price variation) or
read from the ClickHouse sink (``sales_1m`` / ``clicks_1m``).

Model (:func:`build_model`): ``LSTM(len(FEATURES) -> hidden, 1 layer)`` over the normalised
sequence (layout in :mod:`models.lstm_features`), ``Linear(hidden -> 1)`` on the last hidden state
gives ``z`` = log of the expected units of the target window; the graph returns
``units = exp(clip(z, -15, 12))`` (≥ 0; identical to ``expm1(softplus(z))``). Training minimises
the Poisson negative log-likelihood of the observed units, so ``units`` is a forecast of the
*mean* units of the target window at the candidate price.

CLI: ``python -m models.lstm_train --source simulator --out models/artifacts/demand_lstm.onnx``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from infra.clickhouse.tables import CLICKS_1M, SALES_1M
from models.lstm_features import (
    FEATURES,
    N_FEATURES,
    SEQ_LEN,
    TARGET_MASKED,
    TARGET_MASKED_IDX,
    window_features,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEFAULT_OUT = Path(__file__).resolve().parent / "artifacts" / "demand_lstm.onnx"
DEFAULT_START_MS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
WINDOW_MS = 60_000
OPSET = 17
LOG_RATE_CLIP = (-15.0, 12.0)
INPUT_LAYOUT = (
    "x: float32 (batch, seq_len, n_features), raw features in FEATURES order, normalised by the "
    "scorer as (x - norm.mean) / norm.std. Rows 0..seq_len-2: the seq_len-1 closed windows before "
    "the target window, oldest first; a shorter history is left-padded by repeating its first "
    "(oldest) row. Row seq_len-1: the target window, with log_units/log_views/log_carts = 0 (raw, "
    "before normalisation), log_price_ratio = log(candidate_price / ref_price) and hour_sin/hour_cos "
    "of the target window start (UTC). ref_price = the SKU's catalog base_price."
)
OUTPUT_LAYOUT = (
    "units: float32 (batch, 1), expected units sold in the target window at the candidate price "
    "(= exp(clip(z, -15, 12)) of the linear head, trained with a Poisson likelihood); >= 0."
)


# --------------------------------------------------------------------------------- the data


@dataclass
class WindowSet:
    """Closed windows of many SKUs, flat and grouped in contiguous per-SKU segments.

    Segment ``i`` covers rows ``offsets[i]:offsets[i+1]`` (consecutive windows of ``skus[i]``,
    oldest first, ``window_ms`` apart). ``expected_units`` is the simulator's true mean (or None).
    """

    skus: list[str]
    ref_price: np.ndarray  # (S,) reference price per segment
    offsets: np.ndarray  # (S+1,) int64
    window_start_ms: np.ndarray  # (N,) int64
    units: np.ndarray  # (N,) float64
    views: np.ndarray  # (N,)
    carts: np.ndarray  # (N,)
    price: np.ndarray  # (N,)
    window_ms: int = WINDOW_MS
    source: str = "simulator"
    expected_units: np.ndarray | None = None
    elasticity: np.ndarray | None = None  # (S,) true elasticity per segment (simulator)

    @property
    def n_windows(self) -> int:
        return int(self.offsets[-1])

    def segment_of_row(self) -> np.ndarray:
        """Segment index of every row, (N,)."""
        return np.repeat(np.arange(len(self.skus)), np.diff(self.offsets))

    def features(self) -> np.ndarray:
        """Raw feature rows (N, len(FEATURES)), float32."""
        ref = self.ref_price[self.segment_of_row()]
        return window_features(
            self.units, self.views, self.carts, self.price, ref, self.window_start_ms
        )


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


def generate_training_windows(
    n_skus: int = 200,
    minutes: int = 3 * 1440,
    seed: int = 7,
    *,
    start_ms: int = DEFAULT_START_MS,
    move_every: tuple[int, int] = (30, 120),
    max_move: float = 0.25,
    exact_events: bool = False,
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
    """
    from streams.tools.simulator.market import Market
    from streams.tools.simulator.truth import MAX_CONVERSION, MIN_PER_DAY, QTY_PROBS

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


# ----------------------------------------------------------------------------- sequences


def gather_sequences(
    feats: np.ndarray, targets: np.ndarray, hist_len: np.ndarray, seq_len: int = SEQ_LEN
) -> np.ndarray:
    """Raw model inputs (n, seq_len, F) for target rows ``targets`` of the flat feature array.

    ``hist_len[i]`` (1..seq_len-1) rows before the target are used as history; older positions
    repeat the first history row (left edge padding). The target row keeps its price/hour and
    gets its :data:`TARGET_MASKED` features zeroed: the layout of :mod:`models.lstm_features`.
    """
    rel = np.arange(-(seq_len - 1), 1, dtype=np.int64)
    idx = targets[:, None] + rel[None, :]
    idx = np.maximum(idx, (targets - hist_len)[:, None])
    idx[:, -1] = targets
    x = feats[idx]
    x[:, -1, list(TARGET_MASKED_IDX)] = 0.0
    return x


def _targets(ws: WindowSet, split_ms: int, seq_len: int) -> tuple[np.ndarray, ...]:
    """Train targets (+ max history length) and validation targets (full history only)."""
    seg = ws.segment_of_row()
    pos = np.arange(ws.n_windows, dtype=np.int64) - ws.offsets[seg]
    is_train = ws.window_start_ms < split_ms
    tr = np.flatnonzero(is_train & (pos >= 1))
    va = np.flatnonzero(~is_train & (pos >= max(seq_len - 1, 10)))
    return tr, np.minimum(pos[tr], seq_len - 1), va


def wape(y: np.ndarray, yhat: np.ndarray) -> float:
    """Weighted absolute percentage error ``Σ|y - ŷ| / Σ|y|``."""
    return float(np.abs(y - yhat).sum() / max(np.abs(y).sum(), 1e-12))


# --------------------------------------------------------------------------------- the model

_MODEL_CLASS: Any = None


def _model_class() -> Any:
    global _MODEL_CLASS
    if _MODEL_CLASS is None:
        import torch
        from torch import nn

        class DemandLSTM(nn.Module):
            """LSTM -> Linear -> log rate; ``forward`` returns expected units (B, 1)."""

            def __init__(self, n_features: int, hidden: int) -> None:
                super().__init__()
                self.lstm = nn.LSTM(n_features, hidden, num_layers=1, batch_first=True)
                self.head = nn.Linear(hidden, 1)

            def log_rate(self, x: torch.Tensor) -> torch.Tensor:
                h, _ = self.lstm(x)
                z = self.head(h[:, -1, :])
                return torch.clamp(z, LOG_RATE_CLIP[0], LOG_RATE_CLIP[1])

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.exp(self.log_rate(x))

        _MODEL_CLASS = DemandLSTM
    return _MODEL_CLASS


def build_model(
    n_features: int = N_FEATURES, hidden: int = 32, *, seed: int = 0, init_units: float = 1.0
) -> torch.nn.Module:
    """A fresh (untrained) model, deterministic for ``seed``; output bias = log(init_units)."""
    import torch

    torch.manual_seed(seed)
    model = _model_class()(n_features, hidden)
    with torch.no_grad():
        model.head.bias.fill_(math.log(max(init_units, 1e-3)))
    return model


def _predict(model: Any, x: np.ndarray, batch: int = 16384) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(model(torch.from_numpy(x[i : i + batch])).numpy()[:, 0])
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def train(
    ws: WindowSet,
    *,
    seq_len: int = SEQ_LEN,
    hidden: int = 32,
    steps: int = 8000,
    batch_size: int = 512,
    lr: float = 8e-3,
    val_frac: float = 0.2,
    short_history_frac: float = 0.15,
    seed: int = 7,
    max_seconds: float = 170.0,
    log_every: int = 100,
) -> tuple[Any, dict[str, Any]]:
    """Train on the first ``1 - val_frac`` of the time span, validate on the rest.

    Returns ``(model, summary)``; the summary holds the normalisation constants (under
    ``"norm"``) and the validation WAPE of the model and of the naive baselines.
    """
    import torch

    t_start = time.monotonic()
    torch.set_num_threads(max(1, min(os.cpu_count() or 1, 4)))
    feats = ws.features()
    lo_ms, hi_ms = int(ws.window_start_ms.min()), int(ws.window_start_ms.max())
    split_ms = lo_ms + int((hi_ms - lo_ms) * (1.0 - val_frac))
    split_ms -= (split_ms - lo_ms) % ws.window_ms
    tr, tr_hist, va = _targets(ws, split_ms, seq_len)
    if tr.size == 0 or va.size == 0:
        raise ValueError("not enough windows for a train/validation split")
    train_rows = ws.window_start_ms < split_ms
    finite = np.isfinite(feats).all(axis=1)
    mean = feats[train_rows & finite].mean(axis=0).astype(np.float64)
    std = feats[train_rows & finite].std(axis=0).astype(np.float64)
    std = np.where(std < 1e-6, 1.0, std)
    m32, s32 = mean.astype(np.float32), std.astype(np.float32)
    keep = finite[tr]
    tr, tr_hist = tr[keep], tr_hist[keep]
    va = va[finite[va]]
    print(
        f"[lstm_train] windows={ws.n_windows} segments={len(ws.skus)} train_targets={tr.size} "
        f"val_targets={va.size} split={datetime.fromtimestamp(split_ms / 1000, UTC).isoformat()}",
        flush=True,
    )

    # targets whose history (or the target itself) saw a price move carry the price-response
    # signal; half of every batch is drawn from them (the conditional law of y | x is unchanged)
    log_p = np.log(np.where(ws.price > 0, ws.price, 1.0))
    moved = np.zeros(tr.size, dtype=bool)
    for k in range(1, seq_len):
        ok = tr_hist >= k
        moved[ok] |= np.abs(log_p[tr[ok]] - log_p[tr[ok] - k]) > 1e-9
    moved_idx = np.flatnonzero(moved)
    print(f"[lstm_train] targets with a price move in view: {moved_idx.size}", flush=True)

    rng = np.random.default_rng(seed)
    model = build_model(len(FEATURES), hidden, seed=seed, init_units=float(ws.units.mean()))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.05)
    units_t = ws.units
    done = 0
    run_loss = 0.0
    model.train()
    for step in range(1, steps + 1):
        pick = rng.integers(0, tr.size, batch_size)
        if moved_idx.size:
            half = batch_size // 2
            pick[:half] = moved_idx[rng.integers(0, moved_idx.size, half)]
        tgt, full = tr[pick], tr_hist[pick]
        short = rng.random(batch_size) < short_history_frac
        hist = np.where(short, 1 + (rng.random(batch_size) * full).astype(np.int64), full)
        x = (gather_sequences(feats, tgt, hist, seq_len) - m32) / s32
        y = torch.from_numpy(units_t[tgt].astype(np.float32))[:, None]
        z = model.log_rate(torch.from_numpy(x.astype(np.float32)))  # type: ignore[operator]
        loss = torch.nn.functional.poisson_nll_loss(z, y, log_input=True, full=False)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        run_loss += loss.item()
        done = step
        if step % log_every == 0:
            print(
                f"[lstm_train] step {step}/{steps} loss={run_loss / log_every:.4f} "
                f"lr={sched.get_last_lr()[0]:.2e} t={time.monotonic() - t_start:.0f}s",
                flush=True,
            )
            run_loss = 0.0
        if time.monotonic() - t_start > max_seconds:
            print(f"[lstm_train] time budget reached after {step} steps", flush=True)
            break
    model.eval()

    # ---- validation: model vs naive baselines on the held-out (later) windows
    full_hist = np.full(va.size, seq_len - 1, dtype=np.int64)
    xv = ((gather_sequences(feats, va, full_hist, seq_len) - m32) / s32).astype(np.float32)
    y = units_t[va]
    pred = _predict(model, xv)
    last = units_t[va - 1]
    ma10 = np.mean(np.stack([units_t[va - k] for k in range(1, 11)]), axis=0)
    summary: dict[str, Any] = {
        "source": ws.source,
        "windows": ws.n_windows,
        "segments": len(ws.skus),
        "train_targets": int(tr.size),
        "val_targets": int(va.size),
        "split_at": datetime.fromtimestamp(split_ms / 1000, UTC).isoformat(),
        "steps": done,
        "batch_size": batch_size,
        "seconds": round(time.monotonic() - t_start, 1),
        "val_wape": round(wape(y, pred), 4),
        "val_wape_last_window": round(wape(y, last), 4),
        "val_wape_moving_avg_10": round(wape(y, ma10), 4),
        "val_mean_units": round(float(y.mean()), 4),
        "val_mean_forecast": round(float(pred.mean()), 4),
    }
    if ws.expected_units is not None:
        summary["val_wape_true_mean"] = round(wape(y, ws.expected_units[va]), 4)
    # implied elasticity: forecast at +30% candidate price vs at the actual price
    sub = va[rng.permutation(va.size)[: min(va.size, 20000)]]
    xs = gather_sequences(feats, sub, np.full(sub.size, seq_len - 1, dtype=np.int64), seq_len)
    xs_up = xs.copy()
    xs_up[:, -1, FEATURES.index("log_price_ratio")] += math.log(1.3)
    p0 = _predict(model, ((xs - m32) / s32).astype(np.float32))
    p1 = _predict(model, ((xs_up - m32) / s32).astype(np.float32))
    summary["implied_elasticity_mean"] = round(
        float(np.mean(np.log(np.maximum(p1, 1e-9) / np.maximum(p0, 1e-9))) / math.log(1.3)), 3
    )
    if ws.elasticity is not None:
        summary["true_elasticity_mean"] = round(float(np.mean(ws.elasticity)), 3)
    summary["norm"] = {"mean": mean.tolist(), "std": std.tolist()}
    print(
        "[lstm_train] validation WAPE: model={val_wape} last_window={val_wape_last_window} "
        "moving_avg_10={val_wape_moving_avg_10}".format(**summary)
        + (f" true_mean={summary['val_wape_true_mean']}" if "val_wape_true_mean" in summary else "")
        + f" implied_elasticity={summary['implied_elasticity_mean']}",
        flush=True,
    )
    return model, summary


# -------------------------------------------------------------------------------- export


def export_onnx(
    model: Any, path: str | Path, meta: dict[str, Any], *, verify: bool = True
) -> dict[str, Any]:
    """Export ``model`` to ONNX at ``path`` and write ``<path stem>.json`` metadata beside it.

    Input ``"x"`` (batch, seq_len, n_features), output ``"units"`` (batch, 1); the batch axis is
    dynamic. ``meta`` should hold ``features``, ``seq_len`` and ``norm`` (mean/std); ``version``
    (sha256 of the .onnx bytes, first 16 hex), ``created_at``, ``opset`` and the layout
    descriptions are added. Both files are written atomically (temp file + ``os.replace``), the
    .onnx first: a scorer that sees the new model before the new metadata notices the version
    mismatch and retries later. Returns the metadata written.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seq_len = int(meta.get("seq_len", SEQ_LEN))
    n_features = len(meta.get("features", FEATURES))
    model.eval()
    dummy = torch.zeros(2, seq_len, n_features)
    fd, tmp_onnx = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (dummy,),
                tmp_onnx,
                dynamo=False,
                export_params=True,
                opset_version=OPSET,
                do_constant_folding=True,
                input_names=["x"],
                output_names=["units"],
                dynamic_axes={"x": {0: "batch"}, "units": {0: "batch"}},
            )
        data = Path(tmp_onnx).read_bytes()
        if verify:
            import onnxruntime as ort

            sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
            xr = np.random.default_rng(0).normal(size=(5, seq_len, n_features)).astype(np.float32)
            with torch.no_grad():
                ref = model(torch.from_numpy(xr)).numpy()
            got = sess.run(["units"], {"x": xr})[0]
            if not np.allclose(got, ref, rtol=1e-4, atol=1e-5):
                raise RuntimeError("ONNX export does not reproduce the PyTorch outputs")
        full = dict(meta)
        full.update(
            {
                "format": "repricer.demand_lstm/1",
                "version": hashlib.sha256(data).hexdigest()[:16],
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "opset": OPSET,
                "features": list(meta.get("features", FEATURES)),
                "seq_len": seq_len,
                "input": {
                    "name": "x",
                    "shape": ["batch", seq_len, n_features],
                    "dtype": "float32",
                    "layout": INPUT_LAYOUT,
                    "target_row_masked": list(TARGET_MASKED),
                    "padding": "left, repeat first history row",
                },
                "output": {"name": "units", "shape": ["batch", 1], "meaning": OUTPUT_LAYOUT},
                "torch_version": torch.__version__,
            }
        )
        os.chmod(tmp_onnx, 0o644)  # mkstemp creates 0600
        os.replace(tmp_onnx, path)
    except BaseException:
        Path(tmp_onnx).unlink(missing_ok=True)
        raise
    meta_path = path.with_suffix(".json")
    fd, tmp_json = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(full, fh, indent=2, sort_keys=False)
        fh.write("\n")
    os.chmod(tmp_json, 0o644)
    os.replace(tmp_json, meta_path)
    return full


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
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    if args.source == "simulator":
        print(f"[lstm_train] simulating {args.skus} SKUs x {args.minutes} min", flush=True)
        ws = generate_training_windows(args.skus, args.minutes, args.seed)
    else:
        if not args.clickhouse_url:
            ap.error("--clickhouse-url (or REPRICER_CLICKHOUSE_URL) is required")
        from infra.clickhouse import connect, mask_url

        print(f"[lstm_train] reading windows from {mask_url(args.clickhouse_url)}", flush=True)
        backend = connect(args.clickhouse_url)
        try:
            ws = windows_from_clickhouse(backend, args.database)
        finally:
            backend.close()
    print(
        f"[lstm_train] {ws.n_windows} windows, {len(ws.skus)} segments "
        f"({time.monotonic() - t0:.1f}s)",
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
    )
    norm = summary.pop("norm")
    meta = {
        "features": list(FEATURES),
        "seq_len": args.seq_len,
        "window_ms": ws.window_ms,
        "hidden": args.hidden,
        "norm": norm,
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
