"""Closing a SKU's windows: rows for the windows with events, quiet gaps folded into its state,
labels for its pending forecast, LSTM history rows, and the conservation counts.

Only windows that hold events are emitted as rows (storage grows with activity, not with SKUs x
windows); a run of quiet windows is a zero-demand gap that the SKU's state folds in without
materialising it (the demand averages decay as if each quiet window had been closed one by one,
the LSTM history gets the last ``history_len`` of them, and a pending forecast whose window was
quiet is labelled 0). A watermark step of any length closes every window before it, in order,
exactly once: no cap ever deletes a window.

Conservation: every event the engine accepts is, at any moment, in exactly one of an emitted
window, an open window, or the dead-letter topic (late, or a duplicate order id). Each SKU keeps
cumulative counts of what it accepted (open record) and emitted (state record); every tick sums
them per partition into the partition record (``Accounting``): ``unaccounted`` is what is in none
of the places, and must be 0 (a non-zero value is logged as an error and fails ``/health``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from repricer.models.base import SkuView
from repricer.models.lstm_features import LEVEL_EWMA_ALPHA, window_features
from repricer.schemas.events import ClicksWindow, ForecastRow, SalesWindow
from repricer.streams.engine.config import EngineConfig
from repricer.streams.engine.outputs import Outputs
from repricer.streams.engine.state import (
    Accounting,
    OpenWindows,
    Pending,
    SkuState,
    WindowCounts,
)

log = logging.getLogger(__name__)

# the units and views EWMA per closed window; the LSTM's trainer replays it to compute a SKU's
# level as scoring does (models.lstm_features), so both read this one constant
EWMA_ALPHA = LEVEL_EWMA_ALPHA
# quiet windows decayed one by one (bit for bit what closing them one by one gave); longer gaps
# in closed form
EXACT_DECAY_WINDOWS = 64


@dataclass(frozen=True, slots=True)
class LastWindow:
    """The last window a SKU closed in a step: the view it is decided from is as of it."""

    start: int
    units: int
    views: int


@dataclass(slots=True)
class HistRow:
    """A closed window's LSTM inputs, appended to its SKU's history after the step."""

    history: list[list[float]]
    units: int
    views: int
    carts: int
    price: float
    base_price: float
    start: int


@dataclass
class StepWork:
    """What a step's windows leave to be done for all SKUs at once after closing them."""

    labels: list[tuple[SkuView, Pending, float]] = field(default_factory=list)
    rows: list[HistRow] = field(default_factory=list)


def saved_view(st: SkuState, pend: Pending) -> SkuView:
    """The view a forecast was made from, rebuilt from what the decision saved."""
    cat = st.catalog
    return SkuView(
        sku=pend.sku,
        price=pend.price,
        ref_price=cat.base_price if cat is not None else pend.price,
        cost=cat.cost if cat is not None else 0.0,
        next_window_start=pend.window_start,
        units_ewma=pend.units_ewma,
        views_ewma=pend.views_ewma,
        last_units=pend.last_units,
        last_views=pend.last_views,
        windows_seen=pend.windows_seen,
        state=st.model_state,
        stock=st.stock_left(),
    )


def close_until(
    cfg: EngineConfig, sku: str, st: SkuState, op: OpenWindows, b: int, out: Outputs, work: StepWork
) -> LastWindow:
    """Close every window of ``sku`` that starts before ``b``, in order, exactly once; returns
    the last closed.

    Windows holding events are emitted as rows; the quiet ones between them are folded into the
    SKU's state without a row (``close_quiet``). Work is per window with events plus one step
    per gap, whatever the gap's length. The label of the SKU's pending forecast and the windows'
    LSTM feature rows are left in ``work`` for the caller to learn and append for all SKUs at
    once.
    """
    W = cfg.window_ms
    wins = op.windows
    if st.next_window is not None:
        for k in [k for k in wins if k < st.next_window]:
            del wins[k]  # left over from a crash between the two writes of a close: emitted
    starts = sorted(k for k in wins if k < b)
    if st.next_window is None:
        st.next_window = starts[0] if starts else b
    price = st.price or 0.0
    cat = st.catalog
    last = LastWindow(b - W, 0, 0)
    if op.late and not starts:
        starts = [b - W]  # late events are counted on a row: here the tick's last window
    for ws in starts:
        close_quiet(cfg, sku, st, ws, out, work)
        w = wins.pop(ws, None) or WindowCounts()
        out.sales.append(
            SalesWindow(
                sku=sku,
                window_start=ws,
                window_end=ws + W,
                orders=w.orders,
                units=w.units,
                revenue=round(w.revenue, 6),
                price=price,
                late_events=op.late,
                cost=cat.cost if cat is not None else 0.0,
            )
        )
        out.clicks.append(
            ClicksWindow(
                sku=sku,
                window_start=ws,
                window_end=ws + W,
                views=w.views,
                add_to_cart=w.carts,
                remove_from_cart=w.removes,
            )
        )
        op.late = 0
        st.emitted.add(*w.counts())
        score_pending(sku, st, ws, w.units, out, work)
        st.sold += w.units
        if cat is not None and cfg.history_len > 0:
            work.rows.append(
                HistRow(st.history, w.units, w.views, w.carts, price, cat.base_price, ws)
            )
        update_averages(st, w.units, w.views)
        last = LastWindow(ws, w.units, w.views)
        st.next_window = ws + W
        out.windows_closed += 1
    if last.start != b - W:  # the last window closed is quiet: the SKU's view is as of it
        last = LastWindow(b - W, 0, 0)
    close_quiet(cfg, sku, st, b, out, work)
    nxt = st.next_window
    for k in [k for k in op.order_ids if k < nxt]:
        del op.order_ids[k]  # closed windows forget their order ids
    return last


def close_quiet(
    cfg: EngineConfig, sku: str, st: SkuState, until: int, out: Outputs, work: StepWork
) -> None:
    """Close the SKU's quiet windows from its next window up to ``until`` without rows.

    Each is a zero-demand window to the state, exactly as if closed one by one: the pending
    forecast of one of them is labelled 0, the last ``history_len`` of them join the LSTM
    history, and the demand averages decay once per window (in closed form past
    ``EXACT_DECAY_WINDOWS``).
    """
    W = cfg.window_ms
    assert st.next_window is not None
    g = (until - st.next_window) // W
    if g <= 0:
        return
    pend = st.pending
    if pend and st.next_window <= pend.window_start < until:
        score_pending(sku, st, pend.window_start, 0, out, work)
    cat = st.catalog
    if cat is not None and cfg.history_len > 0:
        price = st.price or 0.0
        for ws in range(until - min(g, cfg.history_len) * W, until, W):
            work.rows.append(HistRow(st.history, 0, 0, 0, price, cat.base_price, ws))
    if g <= EXACT_DECAY_WINDOWS:
        for _ in range(g):
            update_averages(st, 0, 0)
    else:
        if st.windows_seen == 0:
            st.units_ewma = st.views_ewma = 0.0
        else:
            keep = (1.0 - EWMA_ALPHA) ** g
            st.units_ewma *= keep
            st.views_ewma *= keep
        st.windows_seen += g
    st.next_window = until
    out.quiet_windows += g


def score_pending(
    sku: str, st: SkuState, ws: int, units: int, out: Outputs, work: StepWork
) -> None:
    """A label for the SKU's pending forecast if it is for window ``ws``: the forecast rows, and
    the label queued for per-SKU learning (its view is taken now: stock left is before this
    window's units)."""
    pend = st.pending
    if not pend or pend.window_start != ws:
        return
    work.labels.append((saved_view(st, pend), pend, float(units)))
    st.labels += 1  # labels learned, ever (fault-test audit)
    for model, predicted in pend.predictions.items():
        if not model.startswith("_"):
            out.forecasts.append(
                ForecastRow(
                    sku=sku,
                    window_start=ws,
                    model=model,
                    predicted=predicted,
                    actual=float(units),
                )
            )
    out.labels += 1
    st.pending = None


def append_history(rows: list[HistRow], history_len: int) -> None:
    """Append each closed window's LSTM feature row to its SKU's history, in close order."""
    if not rows:
        return
    cols = np.array(
        [(r.units, r.views, r.carts, r.price, r.base_price) for r in rows], dtype=np.float64
    )
    feats = window_features(
        cols[:, 0],
        cols[:, 1],
        cols[:, 2],
        cols[:, 3],
        cols[:, 4],
        np.array([r.start for r in rows], dtype=np.int64),
    )
    for r, row in zip(rows, feats.astype(np.float64).tolist(), strict=True):
        hist = r.history
        hist.append([round(x, 5) for x in row])
        del hist[:-history_len]


def update_averages(st: SkuState, units: int, views: int) -> None:
    if st.windows_seen == 0:
        st.units_ewma, st.views_ewma = float(units), float(views)
    else:
        st.units_ewma += EWMA_ALPHA * (units - st.units_ewma)
        st.views_ewma += EWMA_ALPHA * (views - st.views_ewma)
    st.windows_seen += 1


def account_sku(acct: Accounting, sku: str, st: SkuState | None, op: OpenWindows | None) -> None:
    """Add one SKU's counts to ``acct``: its open windows are those at or after the SKU's next
    window (older ones are left over from a crash between a close's two writes: emitted)."""
    op = op or OpenWindows()
    nxt = None if st is None else st.next_window
    acc = op.accepted
    em_e, em_u = (st.emitted.events, st.emitted.units) if st is not None else (0, 0)
    open_e = open_u = 0
    for k, w in op.windows.items():
        if nxt is None or k >= nxt:
            e, u = w.counts()
            open_e += e
            open_u += u
    lt, dp = op.late_counts, op.duplicates
    acct.accepted[0] += acc.events + lt.events + dp.events
    acct.accepted[1] += acc.units + lt.units + dp.units
    acct.emitted[0] += em_e
    acct.emitted[1] += em_u
    acct.late[0] += lt.events
    acct.late[1] += lt.units
    acct.duplicate[0] += dp.events
    acct.duplicate[1] += dp.units
    acct.open[0] += open_e
    acct.open[1] += open_u
    acct.skus += 1
    if (acc.events != em_e + open_e or acc.units != em_u + open_u) and len(acct.bad_skus) < 10:
        acct.bad_skus.append(sku)


def account(
    members: list[str],
    partition: int,
    b: int,
    skus: Mapping[str, SkuState],
    opens: Mapping[str, OpenWindows],
    out: Outputs,
) -> Accounting:
    """The partition's conservation counts after a tick; an imbalance is logged as an error."""
    acct = Accounting()
    for sku in members:
        account_sku(acct, sku, skus.get(sku), opens.get(sku))
    acct.balance()
    out.accounting = acct
    if any(acct.unaccounted):
        log.error(
            "partition %s: %d events (%d units) accepted but in no emitted window, open "
            "window or dead letter after the tick closing before %s (SKUs %s)",
            partition,
            acct.unaccounted[0],
            acct.unaccounted[1],
            b,
            acct.bad_skus,
        )
    return acct
