"""Scale-free LSTM inputs: the SKU's level (as training computes it) and counts divided by it."""

from __future__ import annotations

import numpy as np

from repricer.models.lstm_features import (
    LEVEL_EWMA_ALPHA,
    LEVEL_EWMA_WEIGHT,
    LEVEL_FLOOR,
    LEVEL_FORGET,
    TARGET_MASKED_IDX,
    causal_levels,
    scale_counts,
    window_features,
)
from repricer.streams.tools.train import generate_training_windows


def _levels_by_loop(units: list[float]) -> list[float]:
    y = w = e = 0.0
    out = []
    for t, u in enumerate(units):
        out.append(0.0 if t == 0 else (y + LEVEL_EWMA_WEIGHT * e) / (w + LEVEL_EWMA_WEIGHT))
        y, w = LEVEL_FORGET * y + u, LEVEL_FORGET * w + 1.0
        e = u if t == 0 else e + LEVEL_EWMA_ALPHA * (u - e)
    return out


def test_causal_levels_per_segment_use_only_the_past():
    rng = np.random.default_rng(3)
    a = rng.poisson(2.0, 50).astype(float)
    b = (rng.random(30) < 0.05).astype(float)  # a sparse SKU
    got = causal_levels(np.concatenate([a, b]), np.array([0, 50, 80]))
    np.testing.assert_allclose(got[:50], _levels_by_loop(a.tolist()), rtol=1e-12)
    np.testing.assert_allclose(got[50:], _levels_by_loop(b.tolist()), rtol=1e-12)
    # changing a window changes no level at or before it
    a2 = a.copy()
    a2[20] += 7
    got2 = causal_levels(np.concatenate([a2, b]), np.array([0, 50, 80]))
    np.testing.assert_array_equal(got2[:21], got[:21])
    assert got2[21] > got[21]


def test_scale_counts_divides_counts_only_and_keeps_the_target_masked():
    rows = window_features(
        np.array([0.0, 3.0, 1.0]),
        np.array([40.0, 60.0, 0.0]),
        np.array([2.0, 5.0, 0.0]),
        np.array([9.0, 10.0, 11.0]),
        10.0,
        np.array([0, 60_000, 120_000]),
    )
    x = rows[None, :, :].copy()
    x[0, -1, list(TARGET_MASKED_IDX)] = 0.0
    out = scale_counts(x, 0.5)
    idx = list(TARGET_MASKED_IDX)
    np.testing.assert_allclose(
        out[0, 1, idx], np.log1p(np.array([3.0, 60.0, 5.0]) / 0.5), rtol=1e-6
    )
    np.testing.assert_array_equal(out[0, -1, idx], 0.0)
    other = [j for j in range(x.shape[2]) if j not in idx]
    np.testing.assert_array_equal(out[..., other], x[..., other])
    # a level of 0 (nothing sold yet) is floored, never a division by zero
    assert np.isfinite(scale_counts(x, 0.0)).all()
    np.testing.assert_allclose(scale_counts(x, 0.0), scale_counts(x, LEVEL_FLOOR))


def test_training_windows_with_a_long_tail():
    ws = generate_training_windows(n_skus=20, minutes=1440, seed=5, sparse_share=0.5)
    per_day = np.add.reduceat(ws.expected_units, ws.offsets[:-1])
    busy, sparse = per_day[:10], per_day[10:]
    assert busy.min() > 100  # units a day
    assert sparse.max() < 100 and sparse.min() < 5
