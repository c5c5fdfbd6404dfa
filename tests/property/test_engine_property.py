"""Every accepted event is counted exactly once, whatever the traffic and wherever a crash cuts.

Hypothesis drives one partition of the window engine through the window agent's own write path
(``Staged`` tables made durable step by step, ``durable_steps``) with traffic shaped like real
shops rather than the simulator: SKUs that sell once in days beside bursty ones, event times
spread over up to weeks, out of order across source partitions, sources that go idle, batch cuts
of any size, watermark steps of any length, duplicate order ids, replays of the ingest hop and
crashes after any table write (the restarted engine sees what the changelogs held and replays
the envelopes since the last committed offset).

At the end (an end-of-input watermark past every event) it checks, per SKU and window, that the
emitted rows hold exactly the input that was neither late nor a duplicate; that every input
event is in exactly one place (an emitted window, the late dead letters, the duplicate dead
letters); and that the engine's own accounting balances with nothing left open.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from faust.serializers import codecs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repricer.agents.windows import Staged, durable_steps
from repricer.models.guardrails import GuardrailConfig
from repricer.streams.engine import OpenWindows, PartitionState, SkuState, WindowEngine
from repricer.streams.engine.state import load
from repricer.streams.envelope import BatchEnv, CatalogEnv, ClickEnv, OrderEnv, WatermarkEnv
from repricer.streams.tools.testing import FixedDecider

T0 = 1_767_225_600_000
W = 60_000
L = 5_000
DAY = 86_400_000
SOURCES = ("orders/0", "orders/1", "clickstream/0")


class Crash(Exception):
    pass


class Table(dict):  # type: ignore[type-arg]
    """A changelog-backed table: ``persisted`` is what survives a crash; writes past the
    shared ``budget`` crash the worker."""

    def __init__(self, budget: list[int]) -> None:
        super().__init__()
        self.persisted: dict[str, Any] = {}
        self.budget = budget

    def __setitem__(self, key: str, value: Any) -> None:
        if self.budget[0] == 0:
            raise Crash
        self.budget[0] -= 1
        super().__setitem__(key, value)
        # the changelog record, written by Faust's JSON codec as the worker's tables write it
        self.persisted[key] = codecs.dumps("json", value)

    def restart(self) -> None:
        """Recovery: the table holds the changelog's JSON values (the agent reads them as
        records at the table boundary)."""
        self.clear()
        dict.update(self, {k: json.loads(v) for k, v in self.persisted.items()})


@st.composite
def traffic(draw: st.DrawFn) -> dict[str, Any]:
    n_skus = draw(st.integers(1, 6))
    skus = [f"S{i}" for i in range(n_skus)]
    # event times: clusters (bursts) separated by gaps of minutes to weeks
    times: list[int] = []
    t = T0
    for _ in range(draw(st.integers(1, 6))):
        t += draw(st.sampled_from([0, W, 7 * W, 3_600_000, DAY, 3 * DAY, 14 * DAY]))
        t += draw(st.integers(0, W))
        times.extend(t + draw(st.integers(0, 5 * W)) for _ in range(draw(st.integers(1, 12))))
    events: list[tuple[str, Any]] = []
    src_off: dict[str, int] = defaultdict(lambda: -1)
    for i, ts in enumerate(times):
        # long-tail: SKU 0 takes most traffic, the others a little
        sku = skus[min(draw(st.integers(0, 2 * n_skus)), n_skus - 1) if n_skus > 1 else 0]
        src = draw(st.sampled_from(SOURCES))
        src_off[src] += 1
        off = src_off[src]
        if src.startswith("orders"):
            dup = i > 0 and draw(st.integers(0, 9)) == 0  # the same order id sent again
            oid = f"o{i - 1}" if dup else f"o{i}"
            qty = draw(st.integers(1, 5))
            events.append(
                (src, OrderEnv(sku=sku, ts=ts, qty=qty, price=2.5, order_id=oid, src=src, off=off))
            )
        else:
            kind = draw(st.sampled_from(["view", "add_to_cart", "remove_from_cart"]))
            events.append((src, ClickEnv(sku=sku, ts=ts, kind=kind, src=src, off=off)))
    return {
        "skus": skus,
        "events": events,
        "cuts": draw(st.lists(st.integers(1, 8), min_size=1, max_size=30)),
        "idle": draw(st.lists(st.booleans(), min_size=len(SOURCES), max_size=len(SOURCES))),
        "crashes": draw(st.lists(st.integers(0, 40), max_size=3)),
        "commit_every": draw(st.integers(1, 5)),
        "replay_hop": draw(st.booleans()),
        "unordered": draw(st.booleans()),
        "catalogued": draw(st.lists(st.booleans(), min_size=n_skus, max_size=n_skus)),
    }


class Worker:
    """One partition: the engine, its three tables, and the agent's write path."""

    def __init__(self, budget: list[int], unordered: bool) -> None:
        self.budget = budget
        self.unordered = unordered
        self.tables = {k: Table(budget) for k in ("skus", "meta", "opens")}
        self.engine = self._engine()

    @staticmethod
    def _engine() -> WindowEngine:
        cfg = GuardrailConfig(cooldown_ms=0, min_change=0.0)
        return WindowEngine(window_ms=W, lateness_ms=L, guardrails=cfg, decider=FixedDecider())

    def restart(self) -> None:
        for t in self.tables.values():
            t.restart()
        self.engine = self._engine()

    def handle(self, env: Any, offset: int, publish: Callable[[Any], None]) -> None:
        """As the window agent: outputs published (acknowledged) first, then the table writes."""
        skus, meta, opens = self.tables["skus"], self.tables["meta"], self.tables["opens"]
        s_skus, s_meta = Staged(skus, SkuState), Staged(meta, PartitionState)
        s_opens = Staged(opens, OpenWindows)
        out = self.engine.handle(
            env, partition=0, offset=offset, skus=s_skus, meta=s_meta, opens=s_opens
        )
        publish(out)
        tick = bool(s_meta.writes and (s_skus.writes or s_opens.writes))
        steps = durable_steps(out, s_meta, s_skus, s_opens, meta)
        if not tick and self.unordered:
            # without a flush between them, writes to different changelog topics reach the
            # broker in any order: a crash may keep a later table's write and lose an earlier
            steps = steps[::-1]
        for step in steps:
            step()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traffic())
def test_every_accepted_event_is_in_exactly_one_place(tr: dict[str, Any]) -> None:
    # the SKU topic as ingest would write it: catalog first, then batches cut anywhere, each
    # followed by watermarks of the sources it advanced; idle sources join the frontier
    log: list[Any] = [
        CatalogEnv(
            sku=s,
            cost=1.0,
            base_price=2.5,
            min_price=1.1,
            max_price=9.0,
            currency="EUR",
            stock=None,
            src="catalog/0",
            off=i,
        )
        for i, s in enumerate(tr["skus"])
        if tr["catalogued"][i]  # events may come for a SKU the catalog has not sent
    ]
    pending = list(tr["events"])
    forwarded: dict[str, int] = {}
    cuts = tr["cuts"]
    i = 0
    while pending:
        n = cuts[i % len(cuts)]
        i += 1
        batch, pending = pending[:n], pending[n:]
        log.append(BatchEnv(events=[e for _, e in batch]))
        if tr["replay_hop"] and i % 3 == 0:
            log.append(BatchEnv(events=[e for _, e in batch]))  # ingest forwarded it again
        for src, e in batch:
            forwarded[src] = max(forwarded.get(src, 0), e.ts)
        frontier = max(forwarded.values())
        for src, idle in zip(SOURCES, tr["idle"], strict=True):
            if idle and not any(s == src for s, _ in pending):
                forwarded[src] = max(forwarded.get(src, 0), frontier)
        log.extend(WatermarkEnv(src=src, ts=ts) for src, ts in sorted(forwarded.items()))
    end = max(e.ts for _, e in tr["events"]) + W + L + 1  # end of input
    log.extend(WatermarkEnv(src=src, ts=end) for src in SOURCES)

    # run it, crashing after the given numbers of table writes and replaying from the commit
    crashes = list(tr["crashes"])
    budget = [crashes.pop(0) if crashes else -1]
    worker = Worker(budget, tr["unordered"])
    rows: dict[tuple[str, int], tuple[int, int, float, int, int, int]] = {}
    late: dict[tuple[str, int], Any] = {}
    dups: dict[tuple[str, int], Any] = {}
    committed = 0
    pos = 0

    def publish(out: Any) -> None:
        sales = {(r.sku, r.window_start): (r.orders, r.units, r.revenue) for r in out.sales}
        for c in out.clicks:
            row = (*sales.pop((c.sku, c.window_start)), c.views, c.add_to_cart, c.remove_from_cart)
            # emitted again after a crash: the same row (the sink keeps one per key)
            assert rows.setdefault((c.sku, c.window_start), row) == row  # type: ignore[arg-type]
        assert not sales, "a sales row without its clicks row"
        for e in out.late:
            late[(e.src, e.off)] = e
        for e in out.duplicates:
            dups[(e.src, e.off)] = e

    steps = 0
    while pos < len(log):
        steps += 1
        assert steps < 10 * len(log) + 100
        try:
            worker.handle(log[pos], pos, publish)
        except Crash:
            budget[0] = crashes.pop(0) if crashes else -1
            worker.restart()
            pos = committed
            continue
        pos += 1
        if pos % tr["commit_every"] == 0:
            committed = pos

    # every input event in exactly one place
    inputs = {(e.src, e.off): e for _, e in tr["events"]}
    assert not set(late) & set(dups)
    assert set(late) | set(dups) <= set(inputs)
    expected: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0, 0.0, 0, 0, 0])
    for key, e in inputs.items():
        if key in late or key in dups:
            continue
        x = expected[(e.sku, e.ts - e.ts % W)]
        if isinstance(e, OrderEnv):
            x[0] += 1
            x[1] += e.qty
            x[2] += e.qty * e.price
        else:
            x[3 + ["view", "add_to_cart", "remove_from_cart"].index(e.kind)] += 1
    got = {k: v for k, v in rows.items() if any(v[:2]) or any(v[3:])}
    assert {k: (v[0], v[1], round(v[2], 6), *v[3:]) for k, v in got.items()} == {
        k: (int(v[0]), int(v[1]), round(v[2], 6), *map(int, v[3:])) for k, v in expected.items()
    }
    # a duplicate repeats an accepted order of its SKU window; accepted orders' ids are distinct
    accepted_ids: dict[tuple[str, int], list[str]] = defaultdict(list)
    for key, e in inputs.items():
        if isinstance(e, OrderEnv) and key not in late and key not in dups:
            accepted_ids[(e.sku, e.ts - e.ts % W)].append(e.order_id)
    assert all(len(ids) == len(set(ids)) for ids in accepted_ids.values())
    for e in dups.values():
        assert e.order_id in accepted_ids[(e.sku, e.ts - e.ts % W)]
    # the shared model learned each label once, crashes and catch-up walks included
    record = load(PartitionState, worker.tables["meta"]["0"])
    if record.model:
        shared = FixedDecider()
        shared.restore(record.model)
        learned = [(sku, ws) for sku, ws, _ in shared.pooled]
        assert len(learned) == len(set(learned))
    # the engine's own accounting balances, nothing left open
    acct = record.accounting
    assert acct is not None
    assert acct.unaccounted == [0, 0], acct
    assert acct.open == [0, 0]
    n_dup_units = sum(e.qty for e in dups.values())
    assert acct.duplicate == [len(dups), n_dup_units]
    assert acct.late[0] == len(late)
    assert acct.accepted[0] == len(inputs)
