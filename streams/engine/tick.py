"""A tick: what a watermark that moves the partition's boundary does.

Every SKU of the partition with windows before the boundary closes them; the step's labels are
learned (the shared model once per tick, then each SKU's own), the closed windows' LSTM rows
appended, and every SKU with a catalog record decided (``decide.py``). A watermark step of more
than one window (a catch-up, a history import) is walked per SKU, from window with events to
window with events: at the start of each, the quiet stretch before it closes (its first window's
forecast labelled 0) and the window is forecast from what came before it; at its end its label
is learned (prequential). The price is decided once, at the last step, for every SKU. Work grows
with the windows that hold events, not with SKUs x windows. A crash replays the whole walk: the
shared model's steps are skipped (``learned_upto``), the SKUs' are redone from their records.
"""

from __future__ import annotations

import copy
import gc
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

from repricer.streams.engine.close import StepWork, account, append_history, close_until
from repricer.streams.engine.config import EngineConfig
from repricer.streams.engine.decide import Deciding, decide, forecast_only
from repricer.streams.engine.learn import Closing, PooledLearner, learn_local
from repricer.streams.engine.outputs import Outputs
from repricer.streams.engine.state import OpenWindows, PartitionState, SkuState


def run_tick(
    cfg: EngineConfig,
    learner: PooledLearner,
    pm: PartitionState,
    partition: int,
    skus: MutableMapping[str, SkuState],
    meta: MutableMapping[str, PartitionState],
    opens: MutableMapping[str, OpenWindows],
    out: Outputs,
) -> None:
    """Close every window of the partition before its boundary ``pm.boundary``, learn, decide."""
    b = pm.boundary
    assert b is not None
    closing: Closing = []
    members: list[str] = []
    for sku, st in list(skus.items()):
        if st.partition != partition:
            continue
        members.append(sku)
        nxt = st.next_window
        if nxt is not None and nxt < b:
            closing.append((sku, st, opens.get(sku) or OpenWindows()))
        elif nxt is None:
            op = opens.get(sku)
            if op is not None and any(k < b for k in op.windows):
                closing.append((sku, st, op))  # its first windows close now
            else:  # catalog only so far: its zero-demand windows start here
                st.next_window = b
                skus[sku] = st
    W = cfg.window_ms
    at: dict[int, dict[str, tuple[str, SkuState, OpenWindows]]] = {}
    for item in closing:
        sku, st, op = item
        for k in op.windows:
            if st.next_window is None or k >= st.next_window:
                for end in (k, k + W):  # once per SKU: one window's end is the next one's start
                    if end < b:
                        at.setdefault(end, {})[sku] = item
    learned = False
    for e in [*sorted(at), b]:
        final = e == b
        step = [
            (sku, st, op)
            for sku, st, op in (closing if final else at[e].values())
            if (st.next_window if st.next_window is not None else min(op.windows)) < e
        ]
        if step:
            learned |= learner.learn_once(cfg, step, e, pm, partition, meta, out)
            run_step(cfg, step, e, pm, partition, out, final=final)
    if learned:
        out.tick_meta = (str(partition), copy.deepcopy(pm))
    # state before open windows: a crash in between leaves stale closed windows in the open
    # record (ignored and pruned), never a closed window that could close twice
    for sku, st, op in closing:
        skus[sku] = st
        opens[sku] = op
    pm.closing = False
    pm.accounting = account(members, partition, b, skus, opens, out)


def run_step(
    cfg: EngineConfig,
    step: Closing,
    e: int,
    pm: PartitionState,
    partition: int,
    out: Outputs,
    *,
    final: bool,
) -> None:
    """Close the windows of ``step``'s SKUs before ``e``, learn their labels, and decide
    (``final``) or only forecast their next window (a catch-up's intermediate step)."""
    deciding: Deciding = []
    work = StepWork()
    for sku, st, op in step:
        last = close_until(cfg, sku, st, op, e, out, work)
        if st.catalog is not None:
            deciding.append((sku, st, last))
    # phase 2 as arrays: the step's labels learned in one call, the closed windows' LSTM feature
    # rows in one; both only change the SKU records written at the end of the tick
    learn_local(cfg, work, partition, e, out)
    append_history(work.rows, cfg.history_len)
    if final:
        decide(cfg, deciding, pm, partition, out)
    else:
        forecast_only(cfg, deciding, pm, partition, out)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No automatic cyclic garbage collection during a tick.

    A tick allocates a few hundred thousand short-lived containers (views, rows, forecasts),
    freed by reference counting; they make the collector run hundreds of times per tick, and its
    older-generation passes walk every SKU's state each time (measured at 10k SKUs: 0.3-0.5 s
    of a 1 s tick). Paused, the collector runs after the tick on far fewer pending objects.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
