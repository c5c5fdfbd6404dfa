"""Train the LSTM demand forecaster on arrays and export it to ONNX (the only module that needs
PyTorch).

``torch`` is imported lazily, inside the functions that need it, so the data helpers
(:class:`WindowSet`, :func:`gather_sequences`) work without it. Runtime scoring
(``models.onnx_scorer``) never imports this module.

Data: closed 1-minute windows of many SKUs (:class:`WindowSet`). Where they come from (the
simulator, or the ClickHouse sink) is not the model's business: ``streams.tools.train`` builds them
and runs the trainer (``repricer train``).

Model (:func:`build_model`): ``LSTM(len(FEATURES) -> hidden, 1 layer)`` over the normalised
sequence (layout in :mod:`models.lstm_features`), ``Linear(hidden -> 1)`` on the last hidden state
gives ``z`` = log of the expected units of the target window; the graph returns
``units = exp(clip(z, -15, 12))`` (≥ 0; identical to ``expm1(softplus(z))``). Training minimises
the Poisson negative log-likelihood of the observed units, so ``units`` is a forecast of the
*mean* units of the target window at the candidate price.

Scale-free (``train(..., scale_free=True)``, what ``repricer train`` ships): every sequence's
counts are divided by the SKU's level before the target (:func:`models.lstm_features.causal_levels`,
:func:`models.lstm_features.scale_counts`) and the Poisson rate is ``L · exp(z)``, so the graph's
output is a multiple of the level and the scorer multiplies it back. The metadata says so
(``"scale": "level"``, format ``repricer.demand_lstm/2``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from repricer.models.lstm_features import (
    FEATURES,
    LEVEL_FLOOR,
    N_FEATURES,
    SEQ_LEN,
    TARGET_MASKED,
    TARGET_MASKED_IDX,
    causal_levels,
    scale_counts,
    window_features,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEFAULT_OUT = Path(__file__).resolve().parent / "artifacts" / "demand_lstm.onnx"
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
SCALE_NOTE = (
    "scale-free: the count features are log1p(count / L) with L the SKU's level (long-run units "
    "per window, floored), and the output is a multiple of L: expected units = L * units."
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
    scale_free: bool = False,
    threads: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train on the first ``1 - val_frac`` of the time span, validate on the rest.

    ``scale_free``: counts divided by the SKU's level and the rate a multiple of it (module doc).
    ``threads``: torch's CPU threads (default: the CPUs, at most 4; 1 on a busy machine).

    Returns ``(model, summary)``; the summary holds the normalisation constants (under
    ``"norm"``) and the validation WAPE of the model and of the naive baselines.
    """
    import torch

    t_start = time.monotonic()
    torch.set_num_threads(threads or max(1, min(os.cpu_count() or 1, 4)))
    feats = ws.features()
    level = np.ones(ws.n_windows)
    if scale_free:
        level = np.maximum(causal_levels(ws.units, ws.offsets), LEVEL_FLOOR)
    lo_ms, hi_ms = int(ws.window_start_ms.min()), int(ws.window_start_ms.max())
    split_ms = lo_ms + int((hi_ms - lo_ms) * (1.0 - val_frac))
    split_ms -= (split_ms - lo_ms) % ws.window_ms
    tr, tr_hist, va = _targets(ws, split_ms, seq_len)
    if tr.size == 0 or va.size == 0:
        raise ValueError("not enough windows for a train/validation split")
    train_rows = ws.window_start_ms < split_ms
    finite = np.isfinite(feats).all(axis=1)
    rows = feats[train_rows & finite]
    if scale_free:  # the statistics of the features the model sees: each row at its own level
        rows = scale_counts(rows[:, None, :], level[train_rows & finite])[:, 0, :]
    mean = rows.mean(axis=0).astype(np.float64)
    std = rows.std(axis=0).astype(np.float64)
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
    init = 1.0 if scale_free else float(ws.units.mean())
    model = build_model(len(FEATURES), hidden, seed=seed, init_units=init)
    log_level = np.log(level).astype(np.float32)
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
        x = gather_sequences(feats, tgt, hist, seq_len)
        if scale_free:
            x = scale_counts(x, level[tgt])
        x = (x - m32) / s32
        y = torch.from_numpy(units_t[tgt].astype(np.float32))[:, None]
        z = model.log_rate(torch.from_numpy(x.astype(np.float32)))  # type: ignore[operator]
        z = z + torch.from_numpy(log_level[tgt])[:, None]
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
    xv = gather_sequences(feats, va, full_hist, seq_len)
    if scale_free:
        xv = scale_counts(xv, level[va])
    xv = ((xv - m32) / s32).astype(np.float32)
    y = units_t[va]
    pred = _predict(model, xv) * level[va]
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
    if scale_free:
        xs = scale_counts(xs, level[sub])
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
    summary["scale_free"] = scale_free
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
        scaled = full.get("scale") == "level"
        full.update(
            {
                "format": "repricer.demand_lstm/2" if scaled else "repricer.demand_lstm/1",
                "version": hashlib.sha256(data).hexdigest()[:16],
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "opset": OPSET,
                "features": list(meta.get("features", FEATURES)),
                "seq_len": seq_len,
                "input": {
                    "name": "x",
                    "shape": ["batch", seq_len, n_features],
                    "dtype": "float32",
                    "layout": INPUT_LAYOUT + (" " + SCALE_NOTE if scaled else ""),
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
