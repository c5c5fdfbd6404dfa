"""Feature definition of the LSTM demand forecaster, shared by training and scoring (numpy only).

One feature row describes one closed window of one SKU (:data:`FEATURES`, in this order):

``log_units``        ``log1p(units sold in the window)``
``log_views``        ``log1p(product-page views in the window)``
``log_carts``        ``log1p(add_to_cart events in the window)``
``log_price_ratio``  ``log(price / reference_price)``; the reference price is the SKU's catalog
                     ``base_price`` (training from ClickHouse: the SKU's first observed price)
``hour_sin``         ``sin(2π · h / 24)`` with ``h`` the fractional UTC hour of the window start
``hour_cos``         ``cos(2π · h / 24)``

Model input layout (``x``, float32, shape ``(B, SEQ_LEN, len(FEATURES))``), raw i.e. unnormalised:

* rows ``0 .. SEQ_LEN-2``: the ``SEQ_LEN-1`` closed windows preceding the target window, oldest
  first. A history shorter than that is left-padded by repeating its *first* (oldest) row;
* row ``SEQ_LEN-1``: the *target* window (the one being forecast) with the count features
  (:data:`TARGET_MASKED`) set to 0 and ``log_price_ratio`` / ``hour_*`` set from the candidate
  price and the target window's start.

The scorer normalises ``(x - mean) / std`` with the per-feature constants stored in the model
metadata (computed on the training windows) *after* masking, exactly as training does. The model
output is the expected units of the target window at the candidate price.

**Scale-free models** (metadata ``"scale": "level"``, format ``repricer.demand_lstm/2``). A
model trained on raw counts has learned the scale of its training SKUs: on a SKU selling a few
units a *day* it sees a history of zeros and forecasts what a busy SKU sells after a quiet
spell. A scale-free model sees every count divided by the SKU's own level ``L`` (its long-run
units per window, :func:`causal_levels` in training, ``models.calibration.sku_levels`` when
scoring): the count features become ``log1p(count / L)`` (:func:`scale_counts`) and the model's
output is a *multiple* of ``L``, so the scorer returns ``L · output``. Views divided by the units
level are views per unit sold, a conversion-like quantity that does not depend on the SKU's
scale either. ``L`` is floored at :data:`LEVEL_FLOOR`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FEATURES: tuple[str, ...] = (
    "log_units",
    "log_views",
    "log_carts",
    "log_price_ratio",
    "hour_sin",
    "hour_cos",
)
N_FEATURES = len(FEATURES)
SEQ_LEN = 24
# Count features unknown for the target window: zeroed (raw space) in its row.
TARGET_MASKED: tuple[str, ...] = ("log_units", "log_views", "log_carts")
TARGET_MASKED_IDX: tuple[int, ...] = tuple(FEATURES.index(f) for f in TARGET_MASKED)
PRICE_IDX = FEATURES.index("log_price_ratio")

# scale-free models: the SKU's level (units per window) is floored here (0.14 units a day) and
# tracked as in models.calibration (which takes these constants from here, so training's level
# and scoring's are one formula): labels discounted by LEVEL_FORGET per window, plus the
# engine's units EWMA (alpha LEVEL_EWMA_ALPHA, the engine's own: streams.engine.close) worth
# LEVEL_EWMA_WEIGHT labels
LEVEL_FLOOR = 1e-4
LEVEL_FORGET = 0.995
LEVEL_EWMA_ALPHA = 0.3
LEVEL_EWMA_WEIGHT = 5.0

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000


def hour_features(window_start_ms: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sin, cos)`` of the UTC time of day of ``window_start_ms`` (epoch ms)."""
    ms = np.asarray(window_start_ms, dtype=np.int64) % MS_PER_DAY
    angle = 2.0 * np.pi * ms.astype(np.float64) / MS_PER_DAY
    return np.sin(angle), np.cos(angle)


def window_features(
    units: float | np.ndarray,
    views: float | np.ndarray,
    carts: float | np.ndarray,
    price: float | np.ndarray,
    ref_price: float | np.ndarray,
    window_start_ms: int | np.ndarray,
) -> np.ndarray:
    """Raw feature row(s) of closed window(s), float32.

    Scalars give shape ``(len(FEATURES),)``; arrays broadcast and give ``(..., len(FEATURES))``.
    A non-positive / non-finite price or reference price gives a ``nan`` ``log_price_ratio``
    (the scorer returns ``nan`` for such rows).
    """
    u = np.asarray(units, dtype=np.float64)
    v = np.asarray(views, dtype=np.float64)
    c = np.asarray(carts, dtype=np.float64)
    p = np.asarray(price, dtype=np.float64)
    r = np.asarray(ref_price, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.log(p / r)
    ratio = np.where((p > 0) & (r > 0) & np.isfinite(ratio), ratio, np.nan)
    hs, hc = hour_features(window_start_ms)
    cols = np.broadcast_arrays(
        np.log1p(np.maximum(u, 0.0)),
        np.log1p(np.maximum(v, 0.0)),
        np.log1p(np.maximum(c, 0.0)),
        ratio,
        hs,
        hc,
    )
    return np.stack(cols, axis=-1).astype(np.float32)


def target_row(
    candidate_price: float | np.ndarray,
    ref_price: float | np.ndarray,
    window_start_ms: int | np.ndarray,
) -> np.ndarray:
    """Feature row(s) of the target window: counts masked, candidate price and hour set."""
    return window_features(0.0, 0.0, 0.0, candidate_price, ref_price, window_start_ms)


def mask_target(x: np.ndarray) -> np.ndarray:
    """Zero the :data:`TARGET_MASKED` features of the last row of ``x`` (B, T, F), in place."""
    x[:, -1, list(TARGET_MASKED_IDX)] = 0.0
    return x


def normalise(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(x - mean) / std`` per feature (last axis), float32."""
    m = np.asarray(mean, dtype=np.float32)
    s = np.asarray(std, dtype=np.float32)
    return ((np.asarray(x, dtype=np.float32) - m) / s).astype(np.float32, copy=False)


def pad_history(history: np.ndarray, n_rows: int) -> np.ndarray:
    """The last ``n_rows`` rows of ``history`` (n, F), left-padded by repeating its first row."""
    h = np.asarray(history, dtype=np.float32)
    if h.ndim != 2 or h.shape[1] != N_FEATURES:
        raise ValueError(f"history must have shape (n, {N_FEATURES}), got {h.shape}")
    if h.shape[0] == 0:
        raise ValueError("history is empty: at least one closed window is needed")
    if h.shape[0] >= n_rows:
        return h[h.shape[0] - n_rows :]
    pad = np.repeat(h[:1], n_rows - h.shape[0], axis=0)
    return np.concatenate([pad, h], axis=0)


def scale_counts(x: np.ndarray, level: float | np.ndarray) -> np.ndarray:
    """Raw rows ``x`` (B, T, F) with the count features as ``log1p(count / level)``, float32.

    ``level`` is scalar or (B,), floored at :data:`LEVEL_FLOOR`; the masked target row (counts
    0) stays 0. Returns a new array.
    """
    arr = np.asarray(x, dtype=np.float32)
    lv = np.maximum(np.asarray(level, dtype=np.float64), LEVEL_FLOOR)
    lv = np.broadcast_to(lv, arr.shape[:1]).reshape(-1, 1, 1)
    out = arr.copy()
    idx = list(TARGET_MASKED_IDX)
    with np.errstate(invalid="ignore", over="ignore"):  # a nan row stays nan (scored as nan)
        counts = np.expm1(arr[..., idx].astype(np.float64))
        out[..., idx] = np.log1p(counts / lv).astype(np.float32)
    return out


def causal_levels(units: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(N,) level of every row's SKU from the windows *before* the row (training's ``L``).

    Per contiguous segment ``offsets[i]:offsets[i+1]``: ``(Y + k · E) / (W + k)`` with ``Y``,
    ``W`` the units and window counts discounted by :data:`LEVEL_FORGET`, ``E`` the units EWMA
    (started at the first window, as the engine does) and ``k`` = :data:`LEVEL_EWMA_WEIGHT`;
    the first window of a segment has level 0 (nothing seen yet; floored when used).
    """
    u = np.asarray(units, dtype=np.float64)
    off = np.asarray(offsets, dtype=np.int64)
    out = np.zeros(u.shape[0], dtype=np.float64)
    lengths = np.diff(off)
    if lengths.size == 0:
        return out
    k = LEVEL_EWMA_WEIGHT
    y = np.zeros(lengths.size)
    w = np.zeros(lengths.size)
    e = np.zeros(lengths.size)
    for t in range(int(lengths.max())):  # vectorised over segments, sequential in time
        live = np.flatnonzero(lengths > t)
        rows = off[live] + t
        if t > 0:
            out[rows] = (y[live] + k * e[live]) / (w[live] + k)
        ut = u[rows]
        y[live] = LEVEL_FORGET * y[live] + ut
        w[live] = LEVEL_FORGET * w[live] + 1.0
        e[live] = ut if t == 0 else e[live] + LEVEL_EWMA_ALPHA * (ut - e[live])
    return out
