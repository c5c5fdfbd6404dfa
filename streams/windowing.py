"""Per-SKU event-time tumbling windows and the decision step at window close.

``WindowEngine.handle`` is the whole per-partition state machine, written against two plain
mutable mappings (in the worker they are changelog-backed Faust tables; in unit tests, dicts):

* ``skus[sku]``: the SKU's open windows, catalog, current price, demand averages, control flags
  and the offset of the last envelope applied to it (so a replay after a crash is skipped);
* ``meta[str(partition)]``: the partition's watermark and global freeze flag.

A model never stops windows from closing: if the decider raises while learning, that tick's
learning is skipped (never retried, so no label is learned twice) and the failure logged and
counted (``Outputs.model_errors``); if it raises while deciding, every SKU of the tick holds
its price (the guardrails' fallback), and the windows close and emit as usual.

A window ``[s, s+W)`` closes when the partition watermark (highest forwarded event time minus the
allowed lateness) reaches ``s+W``. Only windows that hold events are emitted as rows (storage
grows with activity, not with SKUs x windows); a run of quiet windows is a zero-demand gap that
the SKU's state folds in without materialising it (the demand averages decay as if each quiet
window had been closed one by one, the LSTM history gets the last ``history_len`` of them, and a
pending forecast whose window was quiet is labelled 0). A watermark step of any length closes
every window before it, in order, exactly once: no cap ever deletes a window. Events for an
already-closed window are *late*: counted in the next emitted window's ``late_events`` and
returned to the caller for the dead-letter topic.

Conservation: every event the engine accepts is, at any moment, in exactly one of an emitted
window, an open window, or the dead-letter topic (late, or a duplicate order id). Each SKU keeps
cumulative counts of what it accepted (open record) and emitted (state record); every tick sums
them per partition into the partition record (``Accounting``): ``unaccounted`` is what is in
none of the places, and must be 0 (a non-zero value is logged as an error and fails ``/health``).

An order id is counted once per SKU window: each open window remembers short hashes of the order
ids folded into it (at most ``ORDER_IDS_PER_WINDOW``), so the same order sent twice -- a producer
retry, a resend at another offset -- adds nothing the second time; it goes to the dead-letter
topic as ``duplicate_order``.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import logging
import math
from collections import Counter
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.base import SkuView
from models.decider import Decider, Proposal, default_decider
from models.guardrails import Bounds, GuardrailConfig, apply_guardrails
from models.lstm_features import window_features
from schemas.events import ClicksWindow, Forecast, ForecastRow, PriceChange, PriceState, SalesWindow
from streams.envelope import (
    BatchEnv,
    CatalogEnv,
    ClickEnv,
    ControlEnv,
    CountsEnv,
    Envelope,
    EventEnv,
    OrderEnv,
    WatermarkEnv,
)

log = logging.getLogger(__name__)

State = dict[str, Any]
EWMA_ALPHA = 0.3
# quiet windows decayed one by one (bit for bit what closing them one by one gave); longer gaps
# in closed form
EXACT_DECAY_WINDOWS = 64
# Order ids remembered per open SKU window (48-bit hashes: ~15 bytes each in the changelog).
# Beyond this many orders of one SKU in one window, further ids are counted without dedup.
ORDER_IDS_PER_WINDOW = 4096


@dataclass
class Outputs:
    """What one envelope produced; the agent publishes these."""

    sales: list[SalesWindow] = field(default_factory=list)
    clicks: list[ClicksWindow] = field(default_factory=list)
    changes: list[PriceChange] = field(default_factory=list)
    prices: list[PriceState] = field(default_factory=list)
    late: list[EventEnv] = field(default_factory=list)
    duplicates: list[OrderEnv] = field(default_factory=list)  # dead-lettered as duplicate_order
    forecasts: list[ForecastRow] = field(default_factory=list)
    windows_closed: int = 0  # windows emitted (they held events or carry late counts)
    quiet_windows: int = 0  # windows closed without a row: no event in them
    decisions: int = 0
    labels: int = 0
    folded: int = 0  # events folded into open windows
    skipped_replay: bool = False
    # phase 1 of a tick: the partition record (shared model, learned_upto, closing) that must be
    # durable before any SKU record of the tick, while the final one (closing done, offset) must
    # come after them; a caller staging writes publishes this one first (agents/windows.py)
    tick_meta: tuple[str, State] | None = None
    # the partition's conservation counts after a tick (None when no tick ran)
    accounting: Accounting | None = None
    # decider calls that raised, by stage (learn_pooled, learn_local_batch, propose, predict_at):
    # the tick went on without them (see the module docstring)
    model_errors: Counter[str] = field(default_factory=Counter)

    @property
    def duplicate_orders(self) -> int:
        return len(self.duplicates)


def decision_id(sku: str, window_start: int, old: float, new: float, policy: str) -> str:
    """Deterministic PriceChange id: the same decision always gets the same id."""
    raw = f"{sku}|{window_start}|{old:.6f}|{new:.6f}|{policy}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def advance_idle_sources(
    forwarded: dict[str, int],
    last_event: dict[str, float],
    now: float,
    idle_s: float,
    caught_up: set[str] | None = None,
    *,
    targets: dict[str, int] | None = None,
) -> list[str]:
    """Move source partitions quiet for ``idle_s`` (wall clock) up to the newest event time.

    A quiet partition (no orders for a while, or no producer at all) would otherwise hold every
    window open. Only partitions in ``caught_up`` (nothing left to read: a partition with a
    backlog is slow, not idle) are moved; ``None`` means all. ``targets`` caps how far each may
    move (ingest: the event time forwarded elsewhere before that partition's own latest empty
    fetch). Returns the sources moved.

    >>> fwd = {"orders/0": 100, "orders/1": 500}
    >>> advance_idle_sources(fwd, {"orders/0": 0.0, "orders/1": 9.0}, now=10.0, idle_s=5.0)
    ['orders/0']
    >>> fwd
    {'orders/0': 500, 'orders/1': 500}
    """
    if not forwarded:
        return []
    frontier = max(forwarded.values())
    moved = []
    for src, ts in forwarded.items():
        if caught_up is not None and src not in caught_up:
            continue
        to = frontier if targets is None else min(frontier, targets.get(src, 0))
        if ts < to and now - last_event.get(src, now) >= idle_s:
            forwarded[src] = to
            moved.append(src)
    return moved


_CLICK_SLOT = {"view": 3, "add_to_cart": 4, "remove_from_cart": 5}


def order_key(order_id: str) -> int:
    """The 48-bit hash of an order id a window remembers (a collision among one window's few
    thousand orders is about 1e-7 likely; it would drop one order)."""
    return int.from_bytes(hashlib.blake2b(order_id.encode(), digest_size=6).digest(), "big")


def _first_time(op: State, window: str, order_id: str) -> bool:
    """Record ``order_id`` in ``window`` of the SKU's open record; False if it was there."""
    ids = op.setdefault("ids", {}).setdefault(window, [])
    key = order_key(order_id)
    if key in ids:
        return False
    if len(ids) < ORDER_IDS_PER_WINDOW:
        ids.append(key)
    return True


def _new_open() -> State:
    """A SKU's open windows ``{start: [orders, units, revenue, views, carts, removes]}``, its
    late-event count, and the offsets that make replays harmless. Conservation counts, each
    ``[events, units]`` ever: ``a`` accepted into a window, ``lt`` late, ``dp`` duplicate orders
    (the SKU state keeps ``em``, emitted in closed windows)."""
    return {"w": {}, "late": 0, "src": {}, "off": -1}


def _counts_of(env: EventEnv) -> tuple[int, int]:
    """(events, units) an envelope stands for: a window's count of events is its orders plus
    its clicks, so a ``CountsEnv`` stands for as many events as it counts."""
    if isinstance(env, OrderEnv):
        return 1, env.qty
    if isinstance(env, CountsEnv):
        return env.orders + env.views + env.carts + env.removes, env.units
    return 1, 0


def _add(rec: State, key: str, events: int, units: int) -> None:
    c = rec.get(key)
    if c is None:
        rec[key] = [events, units]
    else:
        c[0] += events
        c[1] += units


def _window_counts(w: list[Any]) -> tuple[int, int]:
    """(events, units) held by an open window ``[orders, units, revenue, views, carts, removes]``."""
    return int(w[0] + w[3] + w[4] + w[5]), int(w[1])


@dataclass
class Accounting:
    """Where a partition's accepted events are, as counted at the end of its latest tick.

    ``accepted`` is every event folded on time, late, or as a duplicate (each once: replays are
    not accepted again); ``emitted`` is in closed windows (rows sent downstream), ``open`` in
    windows still open, ``late`` and ``duplicate`` in the dead-letter topic. Each is
    ``[events, units]``; ``unaccounted = accepted - emitted - open - late - duplicate`` must be
    zero in both.
    """

    accepted: list[int] = field(default_factory=lambda: [0, 0])
    emitted: list[int] = field(default_factory=lambda: [0, 0])
    open: list[int] = field(default_factory=lambda: [0, 0])
    late: list[int] = field(default_factory=lambda: [0, 0])
    duplicate: list[int] = field(default_factory=lambda: [0, 0])
    skus: int = 0
    bad_skus: list[str] = field(default_factory=list)  # a few SKUs whose counts do not balance

    @property
    def unaccounted(self) -> list[int]:
        return [
            self.accepted[i] - self.emitted[i] - self.open[i] - self.late[i] - self.duplicate[i]
            for i in range(2)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "emitted": self.emitted,
            "open": self.open,
            "late": self.late,
            "duplicate": self.duplicate,
            "unaccounted": self.unaccounted,
            "skus": self.skus,
            "bad_skus": self.bad_skus,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Accounting:
        return cls(
            accepted=list(d["accepted"]),
            emitted=list(d["emitted"]),
            open=list(d["open"]),
            late=list(d["late"]),
            duplicate=list(d["duplicate"]),
            skus=int(d.get("skus", 0)),
            bad_skus=list(d.get("bad_skus", [])),
        )


def account_sku(acct: Accounting, sku: str, st: State | None, op: State | None) -> None:
    """Add one SKU's counts to ``acct``: its open windows are those at or after the SKU's next
    window (older ones are left over from a crash between a close's two writes: emitted)."""
    op = op or {}
    nxt = None if st is None else st.get("next")
    acc = op.get("a") or [0, 0]
    em = (st or {}).get("em") or [0, 0]
    open_e = open_u = 0
    for k, w in (op.get("w") or {}).items():
        if nxt is None or int(k) >= nxt:
            e, u = _window_counts(w)
            open_e += e
            open_u += u
    lt, dp = op.get("lt") or [0, 0], op.get("dp") or [0, 0]
    for i, n in enumerate((acc[0] + lt[0] + dp[0], acc[1] + lt[1] + dp[1])):
        acct.accepted[i] += n
    for i in range(2):
        acct.emitted[i] += em[i]
        acct.late[i] += lt[i]
        acct.duplicate[i] += dp[i]
    acct.open[0] += open_e
    acct.open[1] += open_u
    acct.skus += 1
    if (acc[0] != em[0] + open_e or acc[1] != em[1] + open_u) and len(acct.bad_skus) < 10:
        acct.bad_skus.append(sku)


def _new_state(partition: int) -> State:
    return {
        "p": partition,
        "cat": None,
        "price": None,
        "since": 0,
        "ver": 0,
        "last_change": None,
        "next": None,
        "ue": 0.0,
        "ve": 0.0,
        "n": 0,
        "frozen": False,
        "override": None,
        "off": -1,
        "hist": [],
        "m": {},
        "pend": None,
    }


class WindowEngine:
    """Folds envelopes into per-SKU windows and decides prices when windows close."""

    def __init__(
        self,
        *,
        window_ms: int,
        lateness_ms: int,
        guardrails: GuardrailConfig,
        decider: Decider | None = None,
        policy_version: str = "model-v2",
        rate_limit_per_tick: int = 10_000,
        history_len: int = 23,
        dedupe: bool = True,
    ) -> None:
        self.window_ms = window_ms
        self.lateness_ms = lateness_ms
        self.guardrails = guardrails
        self.decider: Decider = (
            decider if decider is not None else default_decider(max_step=guardrails.max_step)
        )
        self.policy_version = policy_version
        self.history_len = history_len
        self.dedupe = dedupe  # False only to prove the fault tests can fail
        self._pooled_upto: dict[int, int | None] = {}
        self.rate_limit_per_tick = rate_limit_per_tick

    # -- helpers -------------------------------------------------------------------
    def window_of(self, ts: int) -> int:
        return ts - ts % self.window_ms

    def boundary(self, watermark: int | None) -> int | None:
        """Windows starting before this are closed."""
        if watermark is None:
            return None
        return self.window_of(watermark - self.lateness_ms)

    # -- main entry ------------------------------------------------------------------
    def handle(
        self,
        env: Envelope,
        *,
        partition: int,
        offset: int,
        skus: MutableMapping[str, State],
        meta: MutableMapping[str, State],
        opens: MutableMapping[str, State],
    ) -> Outputs:
        """Apply one envelope of ``partition`` at ``offset``; returns what to publish.

        ``skus`` holds each SKU's state (written at window close, catalog and control), ``opens``
        each SKU's open windows (written per event: small on purpose), ``meta`` each partition's
        watermark and shared-model snapshot.
        """
        out = Outputs()
        pkey = str(partition)
        pm = meta.get(pkey) or {"srcs": {}, "wm": None, "b": None, "off": -1, "frozen_all": False}
        if isinstance(env, WatermarkEnv) or (isinstance(env, ControlEnv) and env.sku == "*"):
            if offset <= pm["off"]:
                out.skipped_replay = True
                return out
            if isinstance(env, WatermarkEnv):
                with _gc_paused():
                    self._on_watermark(env, pm, partition, skus, meta, opens, out)
            else:
                if env.action in ("freeze", "unfreeze"):
                    pm["frozen_all"] = env.action == "freeze"
                else:
                    log.warning("ignoring %s for '*': overrides are per SKU", env.action)
            pm["off"] = offset
            meta[pkey] = pm
            return out

        if isinstance(env, BatchEnv):
            for ev in env.events:
                self._fold(ev, partition, offset, pm, skus, opens, out, batched=True)
            return out
        if isinstance(env, OrderEnv | ClickEnv | CountsEnv):
            self._fold(env, partition, offset, pm, skus, opens, out)
            return out
        st = skus.get(env.sku)
        new = st is None
        if st is None:
            st = _new_state(partition)
            st["next"] = pm.get("b")
        if not new and offset <= st["off"]:
            out.skipped_replay = True
            return out
        seen = st.setdefault("at", {})  # source offset of the latest catalog/control record
        if self.dedupe and env.src and env.off <= seen.get(env.src, -1):
            out.skipped_replay = True  # forwarded again by ingest after a restart
            return out
        if env.src:
            seen[env.src] = env.off
        if isinstance(env, CatalogEnv):
            st["cat"] = {
                "cost": env.cost,
                "base_price": env.base_price,
                "min_price": env.min_price,
                "max_price": env.max_price,
                "currency": env.currency,
                "stock": env.stock,
            }
            st["sold"] = 0  # units sold since this catalog record (its stock is the count then)
            if st["price"] is None:
                st["price"] = env.base_price
                st["since"] = pm["wm"] or 0
                out.prices.append(
                    PriceState(
                        sku=env.sku,
                        price=env.base_price,
                        currency=env.currency,
                        since=st["since"],
                        version=0,
                    )
                )
        elif isinstance(env, ControlEnv):
            if env.action in ("freeze", "unfreeze"):
                st["frozen"] = env.action == "freeze"
            elif env.action == "override":
                st["override"] = env.price
            elif env.action == "clear_override":
                st["override"] = None
        st["off"] = offset
        skus[env.sku] = st
        return out

    def _fold(
        self,
        env: EventEnv,
        partition: int,
        offset: int,
        pm: State,
        skus: MutableMapping[str, State],
        opens: MutableMapping[str, State],
        out: Outputs,
        *,
        batched: bool = False,
    ) -> None:
        """Fold one order, click or window count into its SKU's open window.

        Replays are dropped by the event's source partition offset (and, for a lone envelope,
        by its SKU-topic offset; the events of one batch share that offset)."""
        st = skus.get(env.sku)
        new = st is None
        if st is None:
            st = _new_state(partition)  # its windows start at its earliest on-time event
        # the hot path: only the SKU's small record of open windows is written
        op = opens.get(env.sku) or _new_open()
        if self.dedupe and (
            (not batched and offset <= op["off"]) or env.off <= op["src"].get(env.src, -1)
        ):
            out.skipped_replay = True  # a replay of the SKU topic or of the ingest hop
            if new:
                # a crash kept the open record of the SKU's first envelope but not its state
                # record (two changelog topics, unordered until flushed): without a state the
                # SKU's windows would never close, nor its counts be summed
                skus[env.sku] = st
            return
        op["src"][env.src] = env.off
        op["off"] = offset
        ws = self.window_of(env.ts)
        n_events, n_units = _counts_of(env)
        b = pm.get("b")  # every window before the partition's boundary is closed, for every SKU
        if b is not None and ws < b:
            op["late"] += 1
            _add(op, "lt", n_events, n_units)
            out.late.append(env)
        elif (
            isinstance(env, OrderEnv) and self.dedupe and not _first_time(op, str(ws), env.order_id)
        ):
            _add(op, "dp", n_events, n_units)  # the same order again: counted once
            out.duplicates.append(env)
        else:
            _add(op, "a", n_events, n_units)
            w = op["w"].setdefault(str(ws), [0, 0, 0.0, 0, 0, 0])
            if isinstance(env, OrderEnv):
                w[0] += 1
                w[1] += env.qty
                w[2] += env.qty * env.price
            elif isinstance(env, CountsEnv):
                for i, n in enumerate(
                    (env.orders, env.units, env.revenue, env.views, env.carts, env.removes)
                ):
                    w[i] += n
            else:
                w[_CLICK_SLOT[env.kind]] += 1
        if new:
            skus[env.sku] = st
        opens[env.sku] = op
        out.folded += 1

    # -- closing -------------------------------------------------------------------------
    @staticmethod
    def watermark(srcs: dict[str, int]) -> int | None:
        """Event time up to which every source partition has forwarded its events (the minimum).

        Every source partition assigned to an ingest agent is announced (with 0 until it
        forwards something), so windows never close on a subset of sources. Idle ones do not
        hold this back forever: ingest advances a caught-up, quiet source to its frontier
        (``advance_idle_sources``).
        """
        low = min(srcs.values()) if srcs else 0
        return low if low > 0 else None  # a known source that forwarded nothing yet holds all

    def _on_watermark(
        self,
        env: WatermarkEnv,
        pm: State,
        partition: int,
        skus: MutableMapping[str, State],
        meta: MutableMapping[str, State],
        opens: MutableMapping[str, State],
        out: Outputs,
    ) -> None:
        srcs = pm.setdefault("srcs", {})
        if env.ts > srcs.get(env.src, -1):
            srcs[env.src] = env.ts
            ts = self.watermark(srcs)
            if ts is not None and (pm["wm"] is None or ts > pm["wm"]):
                pm["wm"] = ts
                b_new = self.boundary(ts)
                if b_new is not None and (pm["b"] is None or b_new > pm["b"]):
                    pm["b"] = b_new
                    pm["closing"] = True
        # A tick runs while "closing" is set; it is cleared only when the tick finished, so a
        # tick cut short by a crash is completed by the replay (or the next watermark).
        if not pm.get("closing"):
            return
        b = pm["b"]
        closing: list[tuple[str, State, State]] = []
        members: list[str] = []
        for sku, st in list(skus.items()):
            if st.get("p") != partition:
                continue
            members.append(sku)
            nxt = st["next"]
            if nxt is not None and nxt < b:
                closing.append((sku, st, opens.get(sku) or _new_open()))
            elif nxt is None:
                op = opens.get(sku)
                if op is not None and any(int(k) < b for k in op["w"]):
                    closing.append((sku, st, op))  # its first windows close now
                else:  # catalog only so far: its zero-demand windows start here
                    st["next"] = b
                    skus[sku] = st
        # A step of more than one window (a catch-up, a history import) is walked per SKU, from
        # window with events to window with events: at the start of each, the quiet stretch
        # before it closes (its first window's forecast labelled 0) and the window is forecast
        # from what came before it; at its end its label is learned (prequential). The price is
        # decided once, at the last step, for every SKU. Work grows with the windows that hold
        # events, not with SKUs x windows. A crash replays the whole walk: the shared model's
        # steps are skipped (``learned_upto``), the SKUs' are redone from their records.
        W = self.window_ms
        at: dict[int, dict[str, tuple[str, State, State]]] = {}
        for item in closing:
            sku, st, op = item
            for k in op["w"]:
                if st["next"] is None or int(k) >= st["next"]:
                    for end in (int(k), int(k) + W):  # once per SKU: one window's end is the
                        if end < b:  # next one's start
                            at.setdefault(end, {})[sku] = item
        learned = False
        for e in [*sorted(at), b]:
            final = e == b
            step = [
                (sku, st, op)
                for sku, st, op in (closing if final else at[e].values())
                if (st["next"] if st["next"] is not None else min(map(int, op["w"]))) < e
            ]
            if step:
                learned |= self._learn_pooled_once(step, e, pm, partition, meta, out)
                self._step(step, e, pm, partition, out, final=final)
        if learned:
            out.tick_meta = (str(partition), copy.deepcopy(pm))
        # state before open windows: a crash in between leaves stale closed windows in the open
        # record (ignored and pruned), never a closed window that could close twice
        for sku, st, op in closing:
            skus[sku] = st
            opens[sku] = op
        pm["closing"] = False
        pm["acct"] = self._account(members, partition, b, skus, opens, out).to_dict()

    def _step(
        self,
        step: list[tuple[str, State, State]],
        e: int,
        pm: State,
        partition: int,
        out: Outputs,
        *,
        final: bool,
    ) -> None:
        """Close the windows of ``step``'s SKUs before ``e``, learn their labels, and decide
        (``final``) or only forecast their next window (a catch-up's intermediate step)."""
        deciding: list[tuple[str, State, tuple[int, int, int]]] = []
        tick = _Tick()
        for sku, st, op in step:
            last = self._close_until(sku, st, op, e, out, tick)
            if st["cat"] is not None:
                deciding.append((sku, st, last))
        # phase 2 as arrays: the step's labels (at most one per SKU) learned in one call, and
        # the closed windows' LSTM feature rows in one; both only change the SKU records
        # written at the end of the tick, so a crash before those writes replays the whole of it
        if tick.labels:
            try:
                self.decider.learn_local_batch(
                    [v for v, _, _ in tick.labels],
                    [pend for _, pend, _ in tick.labels],
                    np.array([u for _, _, u in tick.labels], dtype=np.float64),
                )
            except Exception:
                # skipped, not retried: whatever the decider wrote to SKU states before it
                # raised stays (written once, with the SKU records)
                _model_failed("learn_local_batch", partition, e, len(tick.labels), out)
        self._append_history(tick.rows)
        if final:
            self._decide(deciding, pm, partition, out)
        elif deciding:
            views = [self._view(sku, st, last) for sku, st, last in deciding]
            self._forecast_next(deciding, views, [st["price"] for _, st, _ in deciding], pm,
                                partition, out)  # fmt: skip

    @staticmethod
    def _account(
        members: list[str],
        partition: int,
        b: int,
        skus: MutableMapping[str, State],
        opens: MutableMapping[str, State],
        out: Outputs,
    ) -> Accounting:
        """The partition's conservation counts after a tick; an imbalance is logged as an error."""
        acct = Accounting()
        for sku in members:
            account_sku(acct, sku, skus.get(sku), opens.get(sku))
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

    def _learn_pooled_once(
        self,
        closing: list[tuple[str, State, State]],
        b: int,
        pm: State,
        partition: int,
        meta: MutableMapping[str, State],
        out: Outputs,
    ) -> bool:
        """Phase 1 of a tick: the shared (pooled) model learns this tick's labels exactly once
        (returns whether it did: the partition record then has to be made durable first).

        Its snapshot and the tick it covers are written to the partition record *before* any SKU
        record of the tick, so a replay after a crash skips it, while SKUs closed before the crash
        skip their windows (their ``next`` moved on) and the rest do their per-SKU part.

        If the decider raises, the shared model goes back to its snapshot before the tick and the
        tick counts as done all the same: its labels are skipped (``skipped`` in the partition
        record), never learned twice.
        """
        cached = self._pooled_upto.get(partition)
        if cached != pm.get("learned_upto"):
            if pm.get("model"):
                self.decider.restore(pm["model"])
            self._pooled_upto[partition] = pm.get("learned_upto")
        if (pm.get("learned_upto") or -1) >= b:
            return False
        labelled = [
            (st, op, pend) for _, st, op in closing if (pend := st.get("pend")) and pend["ws"] < b
        ]
        synced = True  # the model in memory is the one the partition record will hold
        if labelled:
            views = [self._saved_view(sku_st, pend) for sku_st, _, pend in labelled]
            prices = np.array([pend["price"] for _, _, pend in labelled])
            units = np.array(
                [self._units_of(op, pend["ws"]) for _, op, pend in labelled], dtype=np.float64
            )
            # the model as it was, to go back to if learning fails (pm["model"] when there is one)
            before = pm.get("model") or self.decider.snapshot()
            try:
                self.decider.learn_pooled(views, prices, units)
                out_model = self.decider.snapshot()
            except Exception:
                _model_failed("learn_pooled", partition, b, len(labelled), out)
                pm["skipped"] = int(pm.get("skipped", 0)) + len(labelled)
                synced = self._roll_back(partition, before)
            else:
                pm["labels"] = int(pm.get("labels", 0)) + len(labelled)  # ever (fault-test audit)
                if out_model is not None:
                    pm["model"] = out_model
        pm["learned_upto"] = b
        self._pooled_upto[partition] = b if synced else _STALE
        meta[str(partition)] = pm
        return True

    def _roll_back(self, partition: int, snapshot: str | None) -> bool:
        """The shared model back to ``snapshot`` after a failed update; False if it is not."""
        if snapshot is None:
            return True
        try:
            self.decider.restore(snapshot)
        except Exception:  # the next tick restores from the partition record
            log.exception("could not restore the shared model of partition %s", partition)
            return False
        return True

    def _units_of(self, op: State, ws: int) -> float:
        w = op["w"].get(str(ws))
        return float(w[1]) if w else 0.0

    @staticmethod
    def _saved_view(st: State, pend: dict[str, Any]) -> SkuView:
        """The view a forecast was made from, rebuilt from what the decision saved."""
        cat = st["cat"] or {}
        return SkuView(
            sku=pend["sku"],
            price=pend["price"],
            ref_price=cat.get("base_price", pend["price"]),
            cost=cat.get("cost", 0.0),
            next_window_start=pend["ws"],
            units_ewma=pend["ue"],
            views_ewma=pend["ve"],
            last_units=pend["lu"],
            last_views=pend["lv"],
            windows_seen=pend["n"],
            state=st.setdefault("m", {}),
            stock=_stock_left(st),
        )

    def _close_until(
        self, sku: str, st: State, op: State, b: int, out: Outputs, tick: _Tick
    ) -> tuple[int, int, int]:
        """Close every window of ``sku`` that starts before ``b``, in order, exactly once; returns
        the last closed (start, units, views).

        Windows holding events are emitted as rows; the quiet ones between them are folded into
        the SKU's state without a row (``_quiet``). Work is per window with events plus one
        step per gap, whatever the gap's length. The label of the SKU's pending forecast and the
        windows' LSTM feature rows are left in ``tick`` for the caller to learn and append for
        all SKUs at once.
        """
        W = self.window_ms
        wins = op["w"]
        if st["next"] is not None:
            for k in [k for k in wins if int(k) < st["next"]]:
                del wins[k]  # left over from a crash between the two writes of a close: emitted
        starts = sorted(int(k) for k in wins if int(k) < b)
        if st["next"] is None:
            st["next"] = starts[0] if starts else b
        price = st["price"] or 0.0
        cat = st["cat"]
        last = (b - W, 0, 0)
        if op["late"] and not starts:
            starts = [b - W]  # late events are counted on a row: here the tick's last window
        for ws in starts:
            self._quiet(sku, st, ws, out, tick)
            w = wins.pop(str(ws), [0, 0, 0.0, 0, 0, 0])
            orders, units, revenue, views, carts, removes = w
            out.sales.append(
                SalesWindow(
                    sku=sku,
                    window_start=ws,
                    window_end=ws + W,
                    orders=orders,
                    units=units,
                    revenue=round(revenue, 6),
                    price=price,
                    late_events=op["late"],
                )
            )
            out.clicks.append(
                ClicksWindow(
                    sku=sku,
                    window_start=ws,
                    window_end=ws + W,
                    views=views,
                    add_to_cart=carts,
                    remove_from_cart=removes,
                )
            )
            op["late"] = 0
            _add(st, "em", *_window_counts(w))
            self._score_pending(sku, st, ws, units, out, tick)
            st["sold"] = st.get("sold", 0) + units
            if cat is not None and self.history_len > 0:
                hist = st.setdefault("hist", [])
                tick.rows.append((hist, units, views, carts, price, cat["base_price"], ws))
            self._update_averages(st, units, views)
            last = (ws, units, views)
            st["next"] = ws + W
            out.windows_closed += 1
        if last[0] != b - W:  # the last window closed is quiet: the SKU's view is as of it
            last = (b - W, 0, 0)
        self._quiet(sku, st, b, out, tick)
        ids = op.get("ids") or {}
        for k in [k for k in ids if int(k) < st["next"]]:
            del ids[k]  # closed windows forget their order ids
        return last

    def _quiet(self, sku: str, st: State, until: int, out: Outputs, tick: _Tick) -> None:
        """Close the SKU's quiet windows from its next window up to ``until`` without rows.

        Each is a zero-demand window to the state, exactly as if closed one by one: the pending
        forecast of one of them is labelled 0, the last ``history_len`` of them join the LSTM
        history, and the demand averages decay once per window (in closed form past
        ``EXACT_DECAY_WINDOWS``).
        """
        W = self.window_ms
        g = (until - st["next"]) // W
        if g <= 0:
            return
        pend = st.get("pend")
        if pend and st["next"] <= pend["ws"] < until:
            self._score_pending(sku, st, pend["ws"], 0, out, tick)
        cat = st["cat"]
        if cat is not None and self.history_len > 0:
            hist = st.setdefault("hist", [])
            price = st["price"] or 0.0
            for ws in range(until - min(g, self.history_len) * W, until, W):
                tick.rows.append((hist, 0, 0, 0, price, cat["base_price"], ws))
        if g <= EXACT_DECAY_WINDOWS:
            for _ in range(g):
                self._update_averages(st, 0, 0)
        else:
            if st["n"] == 0:
                st["ue"] = st["ve"] = 0.0
            else:
                keep = (1.0 - EWMA_ALPHA) ** g
                st["ue"] *= keep
                st["ve"] *= keep
            st["n"] += g
        st["next"] = until
        out.quiet_windows += g

    def _score_pending(
        self, sku: str, st: State, ws: int, units: int, out: Outputs, tick: _Tick
    ) -> None:
        """Phase 2 for one label: the forecast rows, and the label queued for per-SKU learning
        (its view is taken now: stock left is before this window's units)."""
        pend = st.get("pend")
        if not pend or pend["ws"] != ws:
            return
        tick.labels.append((self._saved_view(st, pend), pend, float(units)))
        st["labels"] = int(st.get("labels", 0)) + 1  # labels learned, ever (fault-test audit)
        for model, predicted in pend["pred"].items():
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
        st["pend"] = None

    def _append_history(self, rows: list[_HistRow]) -> None:
        """Append each closed window's LSTM feature row to its SKU's history, in close order."""
        if not rows:
            return
        cols = np.array([r[1:6] for r in rows], dtype=np.float64)
        feats = window_features(
            cols[:, 0],
            cols[:, 1],
            cols[:, 2],
            cols[:, 3],
            cols[:, 4],
            np.array([r[6] for r in rows], dtype=np.int64),
        )
        for r, row in zip(rows, feats.astype(np.float64).tolist(), strict=True):
            hist = r[0]
            hist.append([round(x, 5) for x in row])
            del hist[: -self.history_len]

    @staticmethod
    def _update_averages(st: State, units: int, views: int) -> None:
        if st["n"] == 0:
            st["ue"], st["ve"] = float(units), float(views)
        else:
            st["ue"] += EWMA_ALPHA * (units - st["ue"])
            st["ve"] += EWMA_ALPHA * (views - st["ve"])
        st["n"] += 1

    def _view(self, sku: str, st: State, last: tuple[int, int, int]) -> SkuView:
        cat = st["cat"]
        return SkuView(
            sku=sku,
            price=st["price"],
            ref_price=cat["base_price"],
            cost=cat["cost"],
            next_window_start=last[0] + self.window_ms,
            units_ewma=st["ue"],
            views_ewma=st["ve"],
            last_units=float(last[1]),
            last_views=float(last[2]),
            windows_seen=st["n"],
            history=st.get("hist") or (),
            state=st.setdefault("m", {}),
            stock=_stock_left(st),
        )

    def _decide(
        self,
        deciding: list[tuple[str, State, tuple[int, int, int]]],
        pm: State,
        partition: int,
        out: Outputs,
    ) -> None:
        """Phase 3: one batch of forecasts for every SKU closing now, then guardrails per SKU.

        If the decider raises, every SKU gets a ``model_unavailable`` proposal, which the
        guardrails turn into holding the price (or into bringing it back inside its bounds, or
        to a manual override), and no forecast is saved for the next label.
        """
        if not deciding:
            return
        views = [self._view(sku, st, last) for sku, st, last in deciding]
        bounds = [
            Bounds(
                cost=st["cat"]["cost"],
                min_price=st["cat"]["min_price"],
                max_price=st["cat"]["max_price"],
            )
            for _, st, _ in deciding
        ]
        try:
            proposals = self.decider.propose(views, bounds, self.guardrails.min_margin)
        except Exception:
            _model_failed("propose", partition, pm["b"], len(views), out)
            proposals = [_UNAVAILABLE] * len(views)
        changes_left = self.rate_limit_per_tick
        finals = []
        for (sku, st, last), v, bd, prop in zip(deciding, views, bounds, proposals, strict=True):
            now = v.next_window_start
            g = apply_guardrails(
                current=st["price"],
                proposed=prop.price,
                bounds=bd,
                cfg=self.guardrails,
                now_ms=now,
                last_change_ms=st["last_change"],
                frozen=st["frozen"] or pm.get("frozen_all", False),
                override=st["override"],
                rate_ok=changes_left > 0,
            )
            out.decisions += 1
            if g.changed:
                changes_left -= 1
                self._publish(sku, st, last[0], g, prop, now, out)
            finals.append(st["price"])
        self._forecast_next(deciding, views, finals, pm, partition, out)

    def _forecast_next(
        self,
        deciding: list[tuple[str, State, tuple[int, int, int]]],
        views: list[SkuView],
        finals: list[float],
        pm: State,
        partition: int,
        out: Outputs,
    ) -> None:
        """Forecast each SKU's next window at its price ``finals[i]``: the pending forecast its
        close labels (and the models learn from)."""
        try:
            preds = self.decider.predict_at(views, np.array(finals, dtype=np.float64))
            cols = [(k, np.asarray(a, dtype=np.float64).tolist()) for k, a in preds.items()]
        except Exception:
            _model_failed("predict_at", partition, pm["b"], len(views), out)
            cols = []
        for i, ((sku, st, _), v) in enumerate(zip(deciding, views, strict=True)):
            st["m"]["nd"] = int(st["m"].get("nd", 0)) + 1  # forecasts awaiting a label, ever
            st["pend"] = {
                "sku": sku,
                "ws": v.next_window_start,
                "price": finals[i],
                "ue": v.units_ewma,
                "ve": v.views_ewma,
                "lu": v.last_units,
                "lv": v.last_views,
                "n": v.windows_seen,
                "pred": {k: round(a[i], 6) for k, a in cols if math.isfinite(a[i])},
            }

    def _publish(
        self, sku: str, st: State, ws: int, g: Any, prop: Proposal, now: int, out: Outputs
    ) -> None:
        old, cat = st["price"], st["cat"]
        reasons = ["manual_override"] if st["override"] is not None else list(prop.reasons)
        if not math.isfinite(prop.price):
            reasons.append("fallback")
        at_new = prop.forecast_at_new
        if (
            math.isfinite(prop.forecast_at_old)
            and math.isfinite(prop.elasticity)
            and prop.price != g.price
        ):
            at_new = prop.forecast_at_old * (g.price / old) ** prop.elasticity
        out.changes.append(
            PriceChange(
                event_id=decision_id(sku, ws, old, g.price, self.policy_version),
                sku=sku,
                old_price=old,
                new_price=g.price,
                currency=cat["currency"],
                decided_at=now,
                effective_at=now,
                window_start=ws,
                reasons=reasons,
                forecast=Forecast(
                    units_at_old=_finite(prop.forecast_at_old), units_at_new=_finite(at_new)
                ),
                elasticity=_finite(prop.elasticity),
                model_versions=prop.model_versions,
                guardrails=list(g.applied),
                policy_version=self.policy_version,
            )
        )
        st["price"], st["since"], st["last_change"] = g.price, now, now
        st["ver"] += 1
        out.prices.append(
            PriceState(
                sku=sku, price=g.price, currency=cat["currency"], since=now, version=st["ver"]
            )
        )


# the proposal of a decider that raised: no price, so the guardrails hold the current one
_UNAVAILABLE = Proposal(math.nan, ("model_unavailable",), math.nan, math.nan, math.nan)
_STALE = -2  # a cached "learned up to" no partition record has: forces a restore


def _model_failed(stage: str, partition: int, b: int | None, n: int, out: Outputs) -> None:
    """Log the decider's exception (once per stage and tick) and count it."""
    log.exception(
        "decider failed in %s (partition %s, tick closing before %s, %d SKUs): skipped, the "
        "windows still close",
        stage,
        partition,
        b,
        n,
    )
    out.model_errors[stage] += 1


# a closed window's LSTM inputs: (its SKU's history, units, views, carts, price, base price, start)
_HistRow = tuple[list[list[float]], int, int, int, float, float, int]


@dataclass
class _Tick:
    """What a tick's windows leave to be done for all SKUs at once after closing them."""

    labels: list[tuple[SkuView, dict[str, Any], float]] = field(default_factory=list)
    rows: list[_HistRow] = field(default_factory=list)


@contextmanager
def _gc_paused() -> Iterator[None]:
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


def _stock_left(st: State) -> float | None:
    stock = (st["cat"] or {}).get("stock")
    return None if stock is None else float(max(stock - st.get("sold", 0), 0))


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else 0.0
