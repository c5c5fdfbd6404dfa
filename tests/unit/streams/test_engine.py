"""The window engine without Kafka: folding, watermarks, empty and late windows, replays."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from repricer.models.decider import ModelDecider
from repricer.models.guardrails import GuardrailConfig
from repricer.models.river_model import RiverDemand
from repricer.streams.engine import (
    OpenWindows,
    Outputs,
    PartitionState,
    SkuState,
    WindowEngine,
)
from repricer.streams.engine.fold import ORDER_IDS_PER_WINDOW
from repricer.streams.engine.state import Record, decode, encode
from repricer.streams.envelope import (
    BatchEnv,
    CatalogEnv,
    ClickEnv,
    ControlEnv,
    OrderEnv,
    WatermarkEnv,
)
from repricer.streams.tools.testing import FixedDecider

T0 = 1_767_225_600_000
W = 60_000
L = 5_000


class Harness:
    """One partition of the engine with dict tables and a running offset."""

    def __init__(self, **kw: Any) -> None:
        cfg = GuardrailConfig(cooldown_ms=0, min_change=0.0)
        kw.setdefault("decider", FixedDecider())
        self.engine = WindowEngine(window_ms=W, lateness_ms=L, guardrails=cfg, **kw)
        self.skus: dict[str, SkuState] = {}
        self.meta: dict[str, PartitionState] = {}
        self.opens: dict[str, OpenWindows] = {}
        self.offset = 0
        self.src_off: dict[str, int] = {}

    def send(self, env: Any, *, offset: int | None = None) -> Outputs:
        if offset is None:
            self.offset += 1
            offset = self.offset
        return self.engine.handle(
            env, partition=0, offset=offset, skus=self.skus, meta=self.meta, opens=self.opens
        )

    def order(
        self,
        sku: str,
        ts: int,
        qty: int = 1,
        price: float = 10.0,
        src: str = "orders/0",
        order_id: str | None = None,
    ) -> Outputs:
        off = self.src_off[src] = self.src_off.get(src, -1) + 1
        oid = order_id or f"{src}@{off}"
        return self.send(
            OrderEnv(sku=sku, ts=ts, qty=qty, price=price, order_id=oid, src=src, off=off)
        )

    def click(self, sku: str, ts: int, kind: str = "view", src: str = "clickstream/0") -> Outputs:
        off = self.src_off[src] = self.src_off.get(src, -1) + 1
        return self.send(ClickEnv(sku=sku, ts=ts, kind=kind, src=src, off=off))

    def mark(self, ts: int, src: str = "clickstream/0") -> Outputs:
        return self.send(WatermarkEnv(src=src, ts=ts))

    def catalog(
        self, sku: str, cost: float = 5.0, base: float = 10.0, stock: int | None = None
    ) -> Outputs:
        return self.send(
            CatalogEnv(
                sku=sku,
                cost=cost,
                base_price=base,
                min_price=cost * 1.1,
                max_price=cost * 5,
                currency="EUR",
                stock=stock,
            )
        )


def test_window_closes_only_after_watermark_passes_end_plus_lateness() -> None:
    h = Harness()
    h.order("A", T0 + 1_000, qty=2, price=10.0)
    h.order("A", T0 + 59_000, qty=1, price=12.0)
    assert h.mark(T0 + W + L - 1).sales == []  # lateness not yet over
    out = h.mark(T0 + W + L)
    assert [(r.sku, r.window_start, r.orders, r.units, r.revenue) for r in out.sales] == [
        ("A", T0, 2, 3, 32.0)
    ]
    assert out.windows_closed == 1


def test_quiet_windows_close_without_rows_but_count_as_zero_demand() -> None:
    h = Harness()
    h.catalog("A")
    h.order("A", T0 + 1_000)
    h.click("A", T0 + 2_000)
    out = h.mark(T0 + 4 * W + L)
    assert [(r.window_start, r.units) for r in out.sales] == [(T0, 1)]
    assert [c.views for c in out.clicks] == [1]
    assert (out.windows_closed, out.quiet_windows) == (1, 3)
    st = h.skus["A"]
    assert st.next_window == T0 + 4 * W and st.windows_seen == 4  # four seen, three of them quiet
    assert st.units_ewma == pytest.approx(1.0 * 0.7**3)  # decayed once per quiet window
    assert len(st.history) == 4  # the LSTM history has the quiet windows too


def test_catalog_only_sku_closes_quiet_windows_from_the_current_boundary() -> None:
    h = Harness()
    h.click("B", T0)
    h.mark(T0 + W + L)  # boundary T0 + W
    h.catalog("A")
    out = h.mark(T0 + 3 * W + L)
    assert [r for r in out.sales if r.sku == "A"] == []
    assert h.skus["A"].next_window == T0 + 3 * W and h.skus["A"].windows_seen == 2


def test_late_events_are_counted_and_returned_not_folded() -> None:
    h = Harness()
    h.order("A", T0 + 1_000)
    h.mark(T0 + W + L)
    late = h.order("A", T0 + 30_000, qty=5)
    assert len(late.late) == 1 and late.late[0].qty == 5
    out = h.mark(T0 + 2 * W + L)
    (row,) = out.sales
    assert row.window_start == T0 + W and row.units == 0 and row.late_events == 1


def test_sales_rows_carry_the_catalog_cost_the_engine_knew() -> None:
    h = Harness()
    h.order("B", T0 + 1_000)  # no catalog record yet: cost unknown, 0
    h.catalog("A", cost=4.0)
    h.order("A", T0 + 1_000)
    out = h.mark(T0 + W + L)
    assert {r.sku: r.cost for r in out.sales} == {"A": 4.0, "B": 0.0}
    h.catalog("A", cost=4.5)  # a new cost: the next windows carry it
    h.order("A", T0 + W + 1_000)
    out = h.mark(T0 + 2 * W + L)
    assert [r.cost for r in out.sales if r.sku == "A"] == [4.5]


def test_watermark_is_the_minimum_over_sources() -> None:
    h = Harness()
    h.mark(T0, src="orders/0")
    h.mark(T0, src="clickstream/0")
    h.order("A", T0 + 1_000)
    assert h.mark(T0 + 2 * W + L, src="orders/0").sales == []  # clickstream/0 still at T0
    assert len(h.mark(T0 + W + L, src="clickstream/0").sales) == 1
    out = h.mark(T0 + 5 * W, src="clickstream/0")
    assert out.quiet_windows == 1  # window T0 + W closed: now orders/0 is the minimum
    assert h.skus["A"].next_window == T0 + 2 * W


def test_replayed_envelopes_are_skipped() -> None:
    h = Harness()
    env = OrderEnv(sku="A", ts=T0 + 1, qty=1, price=10.0, order_id="o1", src="orders/0", off=7)
    h.send(env, offset=100)
    assert h.send(env, offset=100).skipped_replay  # replay of the SKU topic
    assert h.send(env, offset=101).skipped_replay  # replay of the ingest hop (same source offset)
    (row,) = h.mark(T0 + W + L).sales
    assert row.units == 1


def test_batches_fold_every_event_once_however_replays_cut_them() -> None:
    """Ingest sends many events per message; a replay after a crash may cut the batches
    differently (and arrive at new SKU-topic offsets): each event still counts exactly once."""

    def order(sku: str, off: int, qty: int) -> OrderEnv:
        ts = T0 + 1000 + off
        return OrderEnv(sku=sku, ts=ts, qty=qty, price=2.0, order_id=f"o{off}", src="o/0", off=off)

    events = [order("A" if i % 3 else "B", i, i + 1) for i in range(12)]
    h = Harness()
    h.send(BatchEnv(events=events[:5]))
    h.send(BatchEnv(events=events[5:8]))
    # crash: ingest replays from offset 3, cut into different batches, some already folded
    h.send(BatchEnv(events=events[3:10]))
    h.send(BatchEnv(events=events[5:8]), offset=2)  # and a replay of the SKU topic itself
    h.send(BatchEnv(events=events[10:]))
    rows = {r.sku: r for r in h.mark(T0 + W + L).sales}
    for sku in ("A", "B"):
        mine = [e for e in events if e.sku == sku]
        assert (rows[sku].orders, rows[sku].units) == (len(mine), sum(e.qty for e in mine))
        assert rows[sku].revenue == sum(e.qty * e.price for e in mine)


def test_decision_publishes_guarded_change_and_price_state() -> None:
    h = Harness()
    h.catalog("A", cost=5.0, base=6.0)  # the fixed decider proposes +5% every time
    for w in range(5):
        h.order("A", T0 + w * W + 1)
        out = h.mark(T0 + (w + 1) * W + L)
    changes = [c for c in out.changes]
    assert changes, "a change is expected at the last close"
    c = changes[-1]
    assert c.new_price > c.old_price and c.new_price <= c.old_price * 1.05 + 1e-9
    assert out.prices[-1].price == c.new_price and out.prices[-1].version >= 1
    assert h.skus["A"].price == c.new_price


def test_freeze_stops_changes_and_unfreeze_resumes() -> None:
    h = Harness()
    h.catalog("A", cost=5.0, base=6.0)
    h.send(ControlEnv(sku="A", action="freeze", price=None, who="ops", why="test"))
    changes = []
    for w in range(5):
        h.order("A", T0 + w * W + 1)
        changes += h.mark(T0 + (w + 1) * W + L).changes
    assert changes == []
    h.send(ControlEnv(sku="A", action="unfreeze", price=None, who="ops", why="test"))
    h.order("A", T0 + 5 * W + 1)
    assert h.mark(T0 + 6 * W + L).changes


def test_global_kill_switch_and_override() -> None:
    h = Harness()
    h.catalog("A", cost=5.0, base=6.0)
    h.send(ControlEnv(sku="*", action="freeze", price=None, who="ops", why="incident"))
    h.order("A", T0 + 1)
    assert h.mark(T0 + W + L).changes == []
    h.send(ControlEnv(sku="*", action="unfreeze", price=None, who="ops", why="ok"))
    h.send(ControlEnv(sku="A", action="override", price=20.0, who="ops", why="promo"))
    (c,) = h.mark(T0 + 2 * W + L).changes
    assert c.new_price == 20.0 and c.reasons == ["manual_override"] and "override" in c.guardrails


def test_event_ids_are_deterministic() -> None:
    def run() -> list[str]:
        h = Harness()
        h.catalog("A", cost=5.0, base=6.0)
        ids = []
        for w in range(6):
            h.order("A", T0 + w * W + 1)
            ids += [c.event_id for c in h.mark(T0 + (w + 1) * W + L).changes]
        return ids

    first = run()
    assert first and first == run()


def persisted(table: dict[str, Any]) -> dict[str, Any]:
    """What a changelog holds of ``table``: each record through its wire format."""
    return {k: _wire(v) for k, v in table.items()}


def _wire(record: Record) -> Any:
    return decode(type(record), encode(record))


class CrashingDict(dict):  # type: ignore[type-arg]
    """A table that dies once the shared write ``budget`` is spent; ``persisted`` is what its
    changelog holds at that moment."""

    def __init__(self, data: dict, budget: list[int]) -> None:  # type: ignore[type-arg]
        super().__init__(persisted(data))
        self.persisted = persisted(data)
        self.budget = budget
        self.writes = 0

    def __setitem__(self, key: object, value: object) -> None:
        if self.budget[0] <= 0:
            raise RuntimeError("crash")
        self.budget[0] -= 1
        self.writes += 1
        super().__setitem__(key, value)
        self.persisted[key] = _wire(value)  # type: ignore[arg-type]


def crash_and_restart(
    h: Harness,
    tables: tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
    mark: WatermarkEnv,
    crash_after: int,
    decider: Callable[[], Any],
) -> tuple[Harness, bool]:
    """``h``'s engine handles ``mark`` on ``tables`` (skus, meta, opens: what their changelogs
    hold) and dies after ``crash_after`` table writes; then a new engine (empty memory, a ``decider()``
    of its own) handles ``mark`` again on what the changelogs held. Returns the restarted harness
    and whether the first run crashed."""
    budget = [crash_after]
    table, meta, opens = (CrashingDict(t, budget) for t in tables)
    try:
        h.engine.handle(mark, partition=0, offset=999, skus=table, meta=meta, opens=opens)
        crashed = False
    except RuntimeError:
        crashed = True
    h2 = Harness(decider=decider())
    h2.skus, h2.meta, h2.opens = table.persisted, meta.persisted, opens.persisted
    h2.engine.handle(mark, partition=0, offset=999, skus=h2.skus, meta=h2.meta, opens=h2.opens)
    return h2, crashed


def _tick_pending(skus: list[str]) -> Harness:
    """Three closed windows of orders for ``skus`` and window 3's orders folded: the next
    watermark (window 3's close) is a tick that learns labels and decides."""
    h = Harness()
    for s in skus:
        h.catalog(s)
    for w in range(3):
        for s in skus:
            h.order(s, T0 + w * W + 1, qty=w + 1)
        h.mark(T0 + (w + 1) * W + L)
    for s in skus:
        h.order(s, T0 + 3 * W + 1, qty=7)
    return h


def test_each_label_is_learned_exactly_once_across_a_crash_mid_tick() -> None:
    skus = ["A", "B", "C", "D"]
    for crash_after in range(0, 12):
        h = _tick_pending(skus)
        # the next tick (labels for window 2) crashes after `crash_after` table writes
        persisted_meta = persisted(h.meta)
        persisted_skus = persisted(h.skus)
        mark = WatermarkEnv(src="clickstream/0", ts=T0 + 4 * W + L)
        # restart: a new engine (empty memory) on what the changelog held, replaying the mark
        h2, crashed = crash_and_restart(
            h, (persisted_skus, persisted_meta, h.opens), mark, crash_after, FixedDecider
        )
        # what the shared model's changelog holds after the restart is what counts
        decider = FixedDecider()
        decider.restore(h2.meta["0"].model)  # type: ignore[arg-type]
        learned = [(s, ws) for s, ws, _ in decider.pooled]
        assert len(learned) == len(set(learned)), (
            crash_after,
            crashed,
            "a label was learned twice",
        )
        # labels of windows 1, 2 and 3 (decisions made at closes 1..3) per SKU, each once
        assert sorted(learned) == sorted((s, T0 + w * W) for s in skus for w in (1, 2, 3)), (
            crash_after
        )
        assert all(h2.skus[s].model_state["local"] == 3 for s in skus), crash_after


def test_an_order_id_counts_once_per_sku_window() -> None:
    h = Harness()
    h.order("A", T0 + 1_000, qty=2, order_id="dup")
    # the same order again: at a later offset of the same source, from another source partition
    # (a resend by a producer with another key), and with another timestamp in the same window
    assert h.order("A", T0 + 1_000, qty=2, order_id="dup").duplicate_orders == 1
    assert h.order("A", T0 + 1_000, qty=2, order_id="dup", src="orders/1").duplicate_orders == 1
    assert h.order("A", T0 + 30_000, qty=2, order_id="dup").duplicate_orders == 1
    h.order("A", T0 + 2_000, qty=1, order_id="other")
    h.order("B", T0 + 1_000, qty=5, order_id="dup")  # per SKU: another SKU's line counts
    out = h.mark(T0 + W + L, src="orders/0")
    out.sales += h.mark(T0 + W + L, src="orders/1").sales
    out.sales += h.mark(T0 + W + L).sales
    got = {(r.sku, r.orders, r.units) for r in out.sales if r.window_start == T0}
    assert got == {("A", 2, 3), ("B", 1, 5)}
    # a closed window forgets its ids: the open record stays small
    assert h.opens["A"].order_ids == {} and h.opens["B"].order_ids == {}


def test_order_ids_remembered_per_window_are_bounded() -> None:
    h = Harness()
    for i in range(ORDER_IDS_PER_WINDOW + 10):
        h.order("A", T0 + 1_000, order_id=f"o{i}")
    assert len(h.opens["A"].order_ids[T0]) == ORDER_IDS_PER_WINDOW
    assert h.opens["A"].windows[T0].orders == ORDER_IDS_PER_WINDOW + 10  # all counted
    assert h.order("A", T0 + 1_000, order_id="o0").duplicate_orders == 1
    assert _wire(h.opens["A"]) == h.opens["A"]  # changelog-serialisable


def test_without_dedup_a_duplicate_order_counts_twice() -> None:
    """The fault-injection switch turns this off too, so the checkers' negative control fails."""
    h = Harness(dedupe=False)
    h.order("A", T0 + 1_000, order_id="dup")
    h.order("A", T0 + 1_000, order_id="dup")
    [row] = h.mark(T0 + W + L).sales
    assert row.orders == 2


def test_real_decider_state_after_a_crash_mid_tick_equals_an_uncrashed_run() -> None:
    """Per-SKU elasticity and the pooled prior: each label learned once, whatever the crash."""
    skus = ["A", "B", "C"]

    def run(crash_after: int) -> tuple[dict[str, Any], dict[str, Any]]:
        h = Harness(decider=ModelDecider(members=[RiverDemand()]))
        for s in skus:
            h.catalog(s)
        for w in range(4):
            for i, s in enumerate(skus):
                for k in range(3 + i):
                    h.click(s, T0 + w * W + 10 + k)
                h.order(s, T0 + w * W + 100, qty=1 + (w + i) % 3)
            h.mark(T0 + (w + 1) * W + L)
        persisted_meta = persisted(h.meta)
        for s in skus:
            h.order(s, T0 + 4 * W + 1, qty=2)
        persisted_skus = persisted(h.skus)
        mark = WatermarkEnv(src="clickstream/0", ts=T0 + 5 * W + L)
        h2, _ = crash_and_restart(
            h,
            (persisted_skus, persisted_meta, h.opens),
            mark,
            crash_after,
            lambda: ModelDecider(members=[RiverDemand()]),
        )
        pooled = json.loads(json.loads(h2.meta["0"].model or "")["_elasticity"])
        return {s: h2.skus[s].model_state["el"] for s in skus}, pooled

    clean = run(10_000)
    assert all(len(v) == 5 for v in clean[0].values())
    for crash_after in range(0, 10):
        assert run(crash_after) == clean, crash_after


class _SeeingDecider(FixedDecider):
    """Records the stock every decision saw."""

    def __init__(self) -> None:
        super().__init__(factor=1.0)
        self.seen: list[float | None] = []

    def propose(self, views: Any, bounds: Any, min_margin: float) -> Any:
        self.seen.extend(v.stock for v in views)
        return super().propose(views, bounds, min_margin)


def test_decisions_see_catalog_stock_minus_units_sold_since() -> None:
    d = _SeeingDecider()
    h = Harness(decider=d)
    h.catalog("A", stock=10)
    h.order("A", T0 + 1, qty=3)
    h.mark(T0 + W + L)
    h.order("A", T0 + W + 1, qty=4)
    h.mark(T0 + 2 * W + L)
    h.catalog("A", stock=50)  # a restock: the catalog's count replaces ours
    h.order("A", T0 + 2 * W + 1, qty=60)
    h.mark(T0 + 3 * W + L)
    h.catalog("B")
    h.mark(T0 + 4 * W + L)
    assert d.seen[:3] == [7.0, 3.0, 0.0] and d.seen[-1] is None


def test_the_window_agents_write_order_learns_each_label_once_across_a_crash() -> None:
    """The agent stages a tick's writes and makes them durable step by step (agents/windows.py):
    wherever a crash cuts that sequence, replaying the envelope and carrying on learns every
    label into the shared model exactly once."""
    from repricer.agents.windows import Staged, durable_steps

    def agent_handle(engine: WindowEngine, env: Any, offset: int, *tables: dict) -> None:  # type: ignore[type-arg]
        skus_t, meta_t, opens_t = tables
        s_skus, s_meta = Staged(skus_t, SkuState), Staged(meta_t, PartitionState)
        s_opens = Staged(opens_t, OpenWindows)
        out = engine.handle(
            env, partition=0, offset=offset, skus=s_skus, meta=s_meta, opens=s_opens
        )
        for step in durable_steps(out, s_meta, s_skus, s_opens, meta_t):
            before = [getattr(t, "writes", 0) for t in tables]
            step()
            changed = [getattr(t, "writes", 0) > b for t, b in zip(tables, before, strict=True)]
            # different changelog topics are only ordered by a flush, i.e. between steps
            assert sum(changed) <= 1, "a step writes to more than one table"

    skus = ["A", "B", "C", "D"]
    for crash_after in range(0, 14):
        h = _tick_pending(skus)
        budget = [crash_after]
        tables = [CrashingDict(t, budget) for t in (h.skus, h.meta, h.opens)]
        mark = WatermarkEnv(src="clickstream/0", ts=T0 + 4 * W + L)
        try:
            agent_handle(h.engine, mark, 999, *tables)
        except RuntimeError:
            pass
        # restart on what the changelogs held: the mark again, then the next window's mark
        h2 = Harness(decider=FixedDecider())
        durable = [t.persisted for t in tables]
        agent_handle(h2.engine, mark, 999, *durable)
        agent_handle(
            h2.engine, WatermarkEnv(src="clickstream/0", ts=T0 + 5 * W + L), 1000, *durable
        )
        decider = FixedDecider()
        decider.restore(durable[1]["0"].model)
        learned = sorted((s, ws) for s, ws, _ in decider.pooled)
        assert learned == sorted((s, T0 + w * W) for s in skus for w in (1, 2, 3, 4)), crash_after


def test_catalog_forwarded_again_by_a_restarted_ingest_changes_nothing() -> None:
    """Ingest replays records it forwarded but had not committed; a catalog record seen again
    (same source partition and offset, new SKU-topic offset) must not reset the units sold
    since it, nor publish the base price again. A new catalog record does apply."""
    h = Harness()

    def cat(off: int, stock: int) -> CatalogEnv:
        return CatalogEnv(
            sku="A", cost=5.0, base_price=10.0, min_price=5.5, max_price=25.0, currency="EUR",
            stock=stock, src="catalog/0", off=off,
        )  # fmt: skip

    assert len(h.send(cat(7, stock=100)).prices) == 1
    h.order("A", T0 + 1_000, qty=3)
    h.mark(T0 + W + L)
    assert h.skus["A"].sold == 3
    again = h.send(cat(7, stock=100))
    assert again.skipped_replay and again.prices == []
    assert h.skus["A"].sold == 3
    h.send(cat(8, stock=50))  # a restock: the new record counts from zero
    cat = h.skus["A"].catalog
    assert h.skus["A"].sold == 0 and cat is not None and cat.stock == 50
    h.send(ControlEnv(sku="A", action="freeze", price=None, who="t", why="", src="c/0", off=4))
    h.send(ControlEnv(sku="A", action="unfreeze", price=None, who="t", why="", src="c/0", off=5))
    h.send(ControlEnv(sku="A", action="freeze", price=None, who="t", why="", src="c/0", off=4))
    assert h.skus["A"].frozen is False  # the old freeze, forwarded again, is dropped


class _FailingDecider(FixedDecider):
    """A :class:`FixedDecider` whose calls named in ``fail`` raise (``learn_pooled`` after
    half-learning its batch, as a model failing midway would)."""

    def __init__(self, *fail: str) -> None:
        super().__init__(factor=1.05)
        self.fail = set(fail)

    def learn_pooled(self, views: Any, prices: Any, units: Any) -> None:
        if "learn_pooled" in self.fail:
            super().learn_pooled(views[: len(views) // 2], prices, units[: len(views) // 2])
            raise np.linalg.LinAlgError("Singular matrix")
        super().learn_pooled(views, prices, units)

    def learn_local_batch(self, views: Any, saveds: Any, units: Any) -> None:
        if "learn_local_batch" in self.fail:
            raise FloatingPointError("overflow")
        super().learn_local_batch(views, saveds, units)

    def propose(self, views: Any, bounds: Any, min_margin: float) -> Any:
        if "propose" in self.fail:
            raise ValueError("model exploded")
        return super().propose(views, bounds, min_margin)

    def predict_at(self, views: Any, prices: Any) -> Any:
        if "predict_at" in self.fail:
            raise ValueError("model exploded")
        return super().predict_at(views, prices)


def test_a_decider_whose_learning_raises_does_not_stop_windows_closing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    skus = ["A", "B", "C", "D"]
    h = _tick_pending(skus)  # labels of windows 1 and 2 learned, window 3's decided
    h.engine.decider = d = _FailingDecider("learn_pooled", "learn_local_batch")
    d.restore(h.meta["0"].model)  # type: ignore[arg-type]
    before = list(d.pooled)
    with caplog.at_level(logging.ERROR, logger="repricer.streams.engine"):
        out = h.mark(T0 + 4 * W + L)
    # the windows closed and their aggregates are out, the tick is done
    assert sorted((r.sku, r.window_start, r.units) for r in out.sales) == [
        (s, T0 + 3 * W, 7) for s in skus
    ]
    assert len(out.clicks) == len(skus) and out.windows_closed == len(skus)
    assert all(h.skus[s].next_window == T0 + 4 * W for s in skus)
    assert h.meta["0"].closing is False and h.meta["0"].learned_upto == T0 + 4 * W
    # the failure is logged with its exception, once per stage, and counted
    assert out.model_errors == {"learn_pooled": 1, "learn_local_batch": 1}
    logged = [r for r in caplog.records if r.exc_info]
    assert [r.exc_info[0] for r in logged if r.exc_info] == [
        np.linalg.LinAlgError,
        FloatingPointError,
    ]
    # the shared model is back where it was (not half-learned), the skipped labels recorded
    assert d.pooled == before and json.loads(h.meta["0"].model or "") == [list(x) for x in before]
    assert h.meta["0"].skipped == len(skus)
    # decisions still made, and the next tick learns again, not the skipped labels
    assert out.decisions == len(skus)
    d.fail.clear()
    out = h.mark(T0 + 5 * W + L)
    assert out.model_errors == {} and out.quiet_windows == len(skus)
    learned = sorted((s, ws) for s, ws, _ in d.pooled)
    assert learned == sorted((s, T0 + w * W) for s in skus for w in (1, 2, 4))


def test_a_decider_that_raises_when_deciding_holds_prices_within_guardrails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from repricer.models.guardrails import Bounds, check_price

    h = Harness(decider=_FailingDecider("propose", "predict_at"))
    h.catalog("A", cost=5.0, base=6.0)
    h.catalog("B", cost=5.0, base=6.0)
    h.send(ControlEnv(sku="B", action="override", price=7.0, who="ops", why="promo"))
    with caplog.at_level(logging.ERROR, logger="repricer.streams.engine"):
        for w in range(3):
            h.order("A", T0 + w * W + 1)
            h.order("B", T0 + w * W + 2)
            out = h.mark(T0 + (w + 1) * W + L)
            assert out.windows_closed == 2 and len(out.sales) == 2
            assert out.decisions == 2
            assert out.model_errors == {"propose": 1, "predict_at": 1}
            # A holds its price; B still follows the manual override (guardrails' own rule)
            assert [c.sku for c in out.changes] == (["B"] if w == 0 else [])
    assert h.skus["A"].price == 6.0 and h.skus["B"].price == 7.0
    for s in ("A", "B"):
        st = h.skus[s]
        cat = st.catalog
        assert cat is not None and st.price is not None and st.pending is not None
        bounds = Bounds(cost=cat.cost, min_price=cat.min_price, max_price=cat.max_price)
        assert check_price(st.price, bounds=bounds, cfg=h.engine.guardrails) == []
        assert st.pending.predictions == {}  # no forecast saved to score
    assert sum(1 for r in caplog.records if r.exc_info) == 6
    # the model back: the next window is decided by it again
    h.engine.decider.fail.clear()  # type: ignore[attr-defined]
    h.order("A", T0 + 3 * W + 1)
    (c,) = h.mark(T0 + 4 * W + L).changes
    assert c.sku == "A" and c.new_price > 6.0 and "fallback" not in c.reasons


def test_a_failed_shared_learn_and_a_crash_mid_tick_never_learn_a_label_twice() -> None:
    """The failing tick counts as learned: a replay after a crash skips it when its partition
    record was durable, and learns it (once) with the restarted model when it was not."""
    skus = ["A", "B", "C", "D"]
    for crash_after in range(0, 12):
        h = _tick_pending(skus)
        h.engine.decider = d = _FailingDecider("learn_pooled")
        d.restore(h.meta["0"].model)  # type: ignore[arg-type]
        mark = WatermarkEnv(src="clickstream/0", ts=T0 + 4 * W + L)
        h2, _ = crash_and_restart(h, (h.skus, h.meta, h.opens), mark, crash_after, FixedDecider)
        decider = FixedDecider()
        decider.restore(h2.meta["0"].model)  # type: ignore[arg-type]
        learned = sorted((s, ws) for s, ws, _ in decider.pooled)
        skipped = h2.meta["0"].skipped
        window_3 = [] if skipped else [(s, T0 + 3 * W) for s in skus]
        assert learned == sorted([(s, T0 + w * W) for s in skus for w in (1, 2)] + window_3), (
            crash_after
        )
        assert skipped in (0, len(skus)), crash_after
        assert all(h2.skus[s].model_state["local"] == 3 for s in skus), crash_after
        assert all(h2.skus[s].next_window == T0 + 4 * W for s in skus), crash_after


def test_a_catch_up_forecasts_and_learns_every_window_before_its_label() -> None:
    """A watermark step over many windows (a backlog, a history import) is walked window by
    window where the partition has events: each of the SKU's windows gets a forecast made from
    the windows before it only (prequential), then its label is learned; the price is decided
    once, at the end. A stretch where the whole partition is quiet is one step."""
    h = Harness()
    h.catalog("A")
    h.catalog("B")
    units = {0: 3, 1: 1, 2: 4, 3: 0, 4: 2}  # window 3 quiet for A; B sells in window 3 only
    for w, u in units.items():
        if u:
            h.order("A", T0 + w * W + 10, qty=u)
    h.order("B", T0 + 3 * W + 10, qty=5)
    day_later = T0 + 24 * 60 * W  # then a day of nothing, then one more order of A
    h.order("A", day_later + 10, qty=7)
    out = h.mark(day_later + W + L)  # one step: the whole backlog
    a_rows = sorted((f.window_start, f.predicted, f.actual) for f in out.forecasts if f.sku == "A")
    # FixedDecider forecasts the SKU's demand average: the forecast of window j is the average
    # over windows < j, so a match proves it was made before window j's units were folded
    ewma, expected = None, []
    for w in range(5):
        if ewma is not None:
            expected.append((T0 + w * W, round(ewma, 6), float(units[w])))
        ewma = float(units[w]) if ewma is None else ewma + 0.3 * (units[w] - ewma)
    # the quiet day: one step, its first window forecast (and labelled 0) with the rest decayed
    expected.append((T0 + 5 * W, round(ewma, 6), 0.0))
    got = [(ws, round(p, 6), a) for ws, p, a in a_rows[: len(expected)]]
    assert got == [(ws, round(p, 6), a) for ws, p, a in expected]
    # and the window of the last order: forecast after the quiet day, labelled with its units
    assert (day_later, 7.0) in [(ws, a) for ws, _, a in a_rows]
    # every forecast made was labelled and learned once; the price was decided once per SKU
    assert out.labels == len(out.forecasts)
    learned = [(sku, ws) for sku, ws, _ in h.engine.decider.pooled]  # type: ignore[attr-defined]
    assert len(learned) == len(set(learned)) == out.labels
    assert out.decisions == 2
    assert h.skus["A"].labels == len(a_rows)
