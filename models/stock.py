"""The stock clock: how many windows a SKU's stock on hand still has to last.

With finite stock and no replenishment, the policy prices so that the stock lasts a stated
horizon (``restock_windows``, from ``REPRICER_RESTOCK_S``) counted from when the stock arrived:
the first label the SKU learned with known stock, or the last time its stock went *up* (a
restock: the catalog's stock was raised). The clock counts down, so the stock is priced to sell
out at the end of the horizon and not merely to last another ``restock_windows`` from every
decision (a receding horizon that never ends sells only ``1 - 1/e`` of the stock in the same time).
Past the end of the horizon the clock keeps one window, so what is left is priced to clear but,
at the default salvage value, never below the profit optimum.

The demand the stock must cover is the SKU's own sales rate since its stock arrived (a running
mean, then an exponentially weighted one over about a day), moved to the price in force by the
elasticity: the next window's forecast would swing the price with the time of day.

Each SKU keeps five floats in ``SkuView.state["sk"]``: the start of the window its stock arrived
(epoch ms), the stock it last saw, the labels since, and the mean units and mean log price of
those labels. They are written only while learning a label, so they move atomically with the
SKU's record, like every other per-SKU state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from repricer.models.base import SkuView

KEY = "sk"
_N = 5
DAY_RATE = 1.0 / 1440.0  # weight of the newest label in the sales rate, once past a day's labels
MIN_LABELS = 60  # labels of the running mean before it replaces the next window's forecast


def mark(view: SkuView, price: float, units: float, rate: float = DAY_RATE) -> None:
    """Start (or restart, after a restock) the SKU's stock clock and learn its sales rate from
    one label (``units`` sold at ``price``)."""
    if view.stock is None:
        view.state.pop(KEY, None)
        return
    got = view.state.get(KEY)
    if not got or len(got) != _N or view.stock > float(got[1]):
        got = [float(view.next_window_start), float(view.stock), 0.0, 0.0, 0.0]
    t0, _, n, mu, mlp = (float(x) for x in got)
    if math.isfinite(price) and price > 0 and math.isfinite(units) and units >= 0:
        n += 1.0
        w = max(1.0 / n, rate)
        mu += w * (units - mu)
        mlp += w * (math.log(price) - mlp)
    view.state[KEY] = [t0, float(view.stock), n, float(f"{mu:.8g}"), float(f"{mlp:.8g}")]


def demand_per_window(views: Sequence[SkuView], e: np.ndarray, level: np.ndarray) -> np.ndarray:
    """(N,) expected units a window at the price in force: the SKU's sales rate since its stock
    arrived moved to this price by elasticity ``e``; ``level`` (the next window's forecast)
    until it has ``MIN_LABELS`` labels."""
    out = np.asarray(level, dtype=np.float64).copy()
    for i, v in enumerate(views):
        got = v.state.get(KEY)
        if got and len(got) == _N and got[2] >= MIN_LABELS and v.price > 0:
            out[i] = float(got[3]) * math.exp(float(e[i]) * (math.log(v.price) - float(got[4])))
    return out


def windows_left(views: Sequence[SkuView], horizon: float, window_ms: float) -> np.ndarray:
    """(N,) windows each SKU's stock still has to last: ``horizon`` minus the windows since its
    stock arrived, at least one (a SKU whose clock has not started has the whole horizon)."""
    out = np.full(len(views), float(horizon))
    for i, v in enumerate(views):
        got = v.state.get(KEY)
        if got and len(got) == _N:
            out[i] = horizon - (v.next_window_start - float(got[0])) / max(window_ms, 1.0)
    return np.maximum(out, 1.0)
