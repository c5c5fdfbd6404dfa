"""Folding events into a SKU's open windows, and applying catalog and control records.

Replays are harmless: an event is dropped if its source partition offset (the ingest hop's
replay) or, for a lone envelope, its SKU-topic offset was applied before. Events for an
already-closed window are *late*: counted in the next emitted window's ``late_events`` and
returned for the dead-letter topic. An order id is counted once per SKU window: each open window
remembers short hashes of the order ids folded into it (at most ``ORDER_IDS_PER_WINDOW``), so the
same order sent twice (a producer retry, a resend at another offset) adds nothing the second
time; it goes to the dead-letter topic as ``duplicate_order``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import MutableMapping

from repricer.schemas.events import PriceState
from repricer.streams.engine.clock import Clock
from repricer.streams.engine.outputs import Outputs
from repricer.streams.engine.state import (
    Catalog,
    OpenWindows,
    PartitionState,
    SkuState,
    WindowCounts,
)
from repricer.streams.envelope import CatalogEnv, ControlEnv, CountsEnv, EventEnv, OrderEnv

log = logging.getLogger(__name__)

# Order ids remembered per open SKU window (48-bit hashes: ~15 bytes each in the changelog).
# Beyond this many orders of one SKU in one window, further ids are counted without dedup.
ORDER_IDS_PER_WINDOW = 4096


def order_key(order_id: str) -> int:
    """The 48-bit hash of an order id a window remembers (a collision among one window's few
    thousand orders is about 1e-7 likely; it would drop one order)."""
    return int.from_bytes(hashlib.blake2b(order_id.encode(), digest_size=6).digest(), "big")


def first_time(op: OpenWindows, window: int, order_id: str) -> bool:
    """Record ``order_id`` in ``window`` of the SKU's open record; False if it was there."""
    ids = op.order_ids.setdefault(window, [])
    key = order_key(order_id)
    if key in ids:
        return False
    if len(ids) < ORDER_IDS_PER_WINDOW:
        ids.append(key)
    return True


def counts_of(env: EventEnv) -> tuple[int, int]:
    """(events, units) an envelope stands for: a window's count of events is its orders plus
    its clicks, so a ``CountsEnv`` stands for as many events as it counts."""
    if isinstance(env, OrderEnv):
        return 1, env.qty
    if isinstance(env, CountsEnv):
        return env.orders + env.views + env.carts + env.removes, env.units
    return 1, 0


def fold_event(
    env: EventEnv,
    *,
    clock: Clock,
    dedupe: bool,
    partition: int,
    offset: int,
    pm: PartitionState,
    skus: MutableMapping[str, SkuState],
    opens: MutableMapping[str, OpenWindows],
    out: Outputs,
    batched: bool = False,
) -> None:
    """Fold one order, click or window count into its SKU's open window.

    Replays are dropped by the event's source partition offset (and, for a lone envelope, by its
    SKU-topic offset; the events of one batch share that offset)."""
    new = env.sku not in skus  # its windows start at its earliest on-time event
    # the hot path: only the SKU's small record of open windows is written
    op = opens.get(env.sku) or OpenWindows()
    if dedupe and ((not batched and offset <= op.offset) or env.off <= op.sources.get(env.src, -1)):
        out.skipped_replay = True  # a replay of the SKU topic or of the ingest hop
        if new:
            # a crash kept the open record of the SKU's first envelope but not its state record
            # (two changelog topics, unordered until flushed): without a state the SKU's windows
            # would never close, nor its counts be summed
            skus[env.sku] = SkuState(partition=partition)
        return
    op.sources[env.src] = env.off
    op.offset = offset
    ws = clock.window_of(env.ts)
    n_events, n_units = counts_of(env)
    b = pm.boundary  # every window before the partition's boundary is closed, for every SKU
    if b is not None and ws < b:
        op.late += 1
        op.late_counts.add(n_events, n_units)
        out.late.append(env)
    elif isinstance(env, OrderEnv) and dedupe and not first_time(op, ws, env.order_id):
        op.duplicates.add(n_events, n_units)  # the same order again: counted once
        out.duplicates.append(env)
    else:
        op.accepted.add(n_events, n_units)
        w = op.windows.get(ws)
        if w is None:
            w = op.windows[ws] = WindowCounts()
        if isinstance(env, OrderEnv):
            w.orders += 1
            w.units += env.qty
            w.revenue += env.qty * env.price
        elif isinstance(env, CountsEnv):
            w.orders += env.orders
            w.units += env.units
            w.revenue += env.revenue
            w.views += env.views
            w.carts += env.carts
            w.removes += env.removes
        elif env.kind == "view":
            w.views += 1
        elif env.kind == "add_to_cart":
            w.carts += 1
        elif env.kind == "remove_from_cart":
            w.removes += 1
        else:
            raise KeyError(env.kind)
    if new:
        skus[env.sku] = SkuState(partition=partition)
    opens[env.sku] = op
    out.folded += 1


def apply_record(
    env: CatalogEnv | ControlEnv,
    *,
    dedupe: bool,
    partition: int,
    offset: int,
    pm: PartitionState,
    skus: MutableMapping[str, SkuState],
    out: Outputs,
) -> None:
    """Apply a SKU's catalog or control record to its state."""
    st = skus.get(env.sku)
    if st is None:
        st = SkuState(partition=partition, next_window=pm.boundary)
    elif offset <= st.offset:
        out.skipped_replay = True
        return
    seen = st.source_offsets  # source offset of the latest catalog/control record
    if dedupe and env.src and env.off <= seen.get(env.src, -1):
        out.skipped_replay = True  # forwarded again by ingest after a restart
        return
    if env.src:
        seen[env.src] = env.off
    if isinstance(env, CatalogEnv):
        st.catalog = Catalog(
            cost=env.cost,
            base_price=env.base_price,
            min_price=env.min_price,
            max_price=env.max_price,
            currency=env.currency,
            stock=env.stock,
        )
        st.sold = 0  # units sold since this catalog record (its stock is the count then)
        if st.price is None:
            st.price = env.base_price
            st.since = pm.watermark or 0
            out.prices.append(
                PriceState(
                    sku=env.sku,
                    price=env.base_price,
                    currency=env.currency,
                    since=st.since,
                    version=0,
                )
            )
    elif env.action in ("freeze", "unfreeze"):
        st.frozen = env.action == "freeze"
    elif env.action == "override":
        st.override = env.price
    elif env.action == "clear_override":
        st.override = None
    st.offset = offset
    skus[env.sku] = st


def apply_partition_control(env: ControlEnv, pm: PartitionState) -> None:
    """A control record for every SKU (``sku == "*"``): the partition's kill switch."""
    if env.action in ("freeze", "unfreeze"):
        pm.frozen_all = env.action == "freeze"
    else:
        log.warning("ignoring %s for '*': overrides are per SKU", env.action)
