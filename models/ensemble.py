"""Combine member forecasts per SKU, weighted by each member's recent error on that SKU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from models.base import SkuView

ERR_ALPHA = 0.1  # EWMA of absolute errors: about the last 10 windows
ERR_FLOOR = 0.05
PRIOR_ERR = 1.0


def member_errors(v: SkuView, names: Sequence[str]) -> np.ndarray:
    errs = v.state.get("err") or {}
    return np.array([float(errs.get(n, PRIOR_ERR)) for n in names])


def combine(views: Sequence[SkuView], forecasts: Mapping[str, np.ndarray]) -> np.ndarray:
    """Inverse-squared-error weighted mean per SKU; members returning ``nan`` are left out."""
    names = list(forecasts)
    stack = np.stack([forecasts[n] for n in names])  # (M, N, K)
    errs = np.stack([member_errors(v, names) for v in views], axis=1)  # (M, N)
    w = 1.0 / np.maximum(errs, ERR_FLOOR) ** 2
    w = np.broadcast_to(w.reshape(w.shape + (1,) * (stack.ndim - 2)), stack.shape)
    ok = np.isfinite(stack)
    w = np.where(ok, w, 0.0)
    total = w.sum(axis=0)
    with np.errstate(invalid="ignore"):
        out = np.where(
            total > 0,
            (w * np.where(ok, stack, 0.0)).sum(axis=0) / np.where(total > 0, total, 1),
            np.nan,
        )
    return out


def update_errors(v: SkuView, predicted: Mapping[str, float], actual: float) -> None:
    """Fold one labelled window into the SKU's per-member error averages (in ``v.state``)."""
    errs = dict(v.state.get("err") or {})
    for name, pred in predicted.items():
        if pred is None or not np.isfinite(pred):
            continue
        e = abs(float(pred) - actual)
        errs[name] = round(
            float(errs.get(name, PRIOR_ERR)) + ERR_ALPHA * (e - float(errs.get(name, PRIOR_ERR))), 6
        )
    v.state["err"] = errs
