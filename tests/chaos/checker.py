"""The shared end-to-end checker for fault runs.

It knows the exact events that were sent, computes the expected per-window aggregates itself,
and compares them with ClickHouse (read with FINAL) and with the ``price-changes`` topic:
no loss, no double count, duplicates only with an equal ``event_id``, and every SKU's price
changes forming one unbroken chain (a lost decision or a decision taken twice breaks it).
Decisions: every forecast row (the decision taken one window earlier) carries the true units of
its window as its label, every price change has its forecast row, and a window closed while no
worker was running gets no decision (the catch-up tick decides once, for the window still open).
Learning: the labels each SKU and the shared model learned (read back from the state
changelogs) must equal the labelled windows: a lost or repeated ``learn_one`` shows up.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from repricer.infra.clickhouse import ClickHouseBackend
from repricer.infra.local.tansu import TOPIC_READ_SETTLE_S
from repricer.streams.accounting import latest_records, partition_accounting
from repricer.streams.engine.state import PartitionState, SkuState, load

Key = tuple[str, int]


@dataclass
class Expected:
    """Aggregates computed from the events sent, independently of the pipeline."""

    window_ms: int
    sales: dict[Key, list[float]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0.0]))
    clicks: dict[Key, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    first: dict[str, int] = field(default_factory=dict)

    def add_order(self, sku: str, ts: int, qty: int, price: float) -> None:
        ws = ts - ts % self.window_ms
        s = self.sales[(sku, ws)]
        s[0] += 1
        s[1] += qty
        s[2] += qty * price
        self.first[sku] = min(self.first.get(sku, ws), ws)

    def add_click(self, sku: str, ts: int, kind: str) -> None:
        ws = ts - ts % self.window_ms
        self.clicks[(sku, ws)][("view", "add_to_cart", "remove_from_cart").index(kind)] += 1
        self.first[sku] = min(self.first.get(sku, ws), ws)

    def rows(self, closed_until: int) -> tuple[dict[Key, tuple], dict[Key, tuple]]:
        """The rows ClickHouse must hold: one per SKU window with events (quiet windows have
        none), in both tables."""
        sales, clicks = {}, {}
        for sku, ws in sorted(self.sales.keys() | self.clicks.keys()):
            if ws >= closed_until:
                continue
            o, u, r = self.sales.get((sku, ws), [0, 0, 0.0])
            sales[(sku, ws)] = (int(o), int(u), round(r, 2))
            clicks[(sku, ws)] = tuple(self.clicks.get((sku, ws), [0, 0, 0]))
        return sales, clicks

    def units(self, sku: str, ws: int) -> int:
        return int(self.sales.get((sku, ws), [0, 0, 0.0])[1])


@dataclass
class LearnedLabels:
    """Labels learned, as recorded in the state changelogs (per SKU, and by the shared model)."""

    per_sku: dict[str, int]
    pooled: int
    # each partition's conservation counts at its latest tick (Accounting.to_dict())
    accounting: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_learned_labels(bootstrap: str, app_id: str) -> LearnedLabels:
    """The latest SKU and partition records from the changelog topics (read, not consumed)."""
    latest = {
        table: latest_records(
            f"{app_id}-{table}-changelog",
            settle_s=TOPIC_READ_SETTLE_S,
            bootstrap_servers=bootstrap,
        )
        for table in ("sku-state", "partition-state")
    }
    # decoded as the engine's records: what a restarted worker would read back
    per_sku = {
        k: load(SkuState, v).labels for k, v in latest["sku-state"].items() if isinstance(v, dict)
    }
    pooled = sum(
        load(PartitionState, v).labels
        for v in latest["partition-state"].values()
        if isinstance(v, dict)
    )
    accounting = partition_accounting(latest["partition-state"])
    return LearnedLabels(per_sku=per_sku, pooled=pooled, accounting=accounting)


@dataclass
class Verdict:
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def check(
    expected: Expected,
    closed_until: int,
    ch: ClickHouseBackend,
    changes: list[dict[str, Any]],
    *,
    initial_prices: dict[str, float],
    final: bool = True,
    forecast_model: str | None = "ensemble",
    learned: LearnedLabels | None = None,
) -> Verdict:
    """Compare ClickHouse and the price-change events with what the sent events imply."""
    db, fin = ch.database, " FINAL" if final else ""
    problems: list[str] = []
    exp_sales, exp_clicks = expected.rows(closed_until)
    got_sales: dict[Key, list[tuple]] = defaultdict(list)
    for sku, ws, o, u, r in ch.query(
        f"SELECT sku, toUInt64(window_start) * 1000, orders, units, revenue FROM {db}.sales_1m{fin} "
        f"WHERE window_start < toDateTime(%(until)s)",
        {"until": closed_until // 1000},
    ):
        got_sales[(sku, int(ws))].append((int(o), int(u), round(float(r), 2)))
    got_clicks: dict[Key, list[tuple]] = defaultdict(list)
    for sku, ws, v, a, rm in ch.query(
        f"SELECT sku, toUInt64(window_start) * 1000, views, add_to_cart, remove_from_cart "
        f"FROM {db}.clicks_1m{fin} WHERE window_start < toDateTime(%(until)s)",
        {"until": closed_until // 1000},
    ):
        got_clicks[(sku, int(ws))].append((int(v), int(a), int(rm)))
    # every event the runs send is valid and on time: a dead letter means one was mistaken for
    # late (a window closed too early) or an event replayed into a closed window
    for reason, n in ch.query(
        f"SELECT reason, count() FROM {db}.dead_letters{fin} GROUP BY reason"
    ):
        problems.append(f"{n} dead letters ({reason}), but every event sent was valid and on time")
    for name, exp, got in (
        ("sales_1m", exp_sales, got_sales),
        ("clicks_1m", exp_clicks, got_clicks),
    ):
        for key, row in exp.items():
            rows = got.get(key, [])
            if not rows:
                problems.append(f"{name} {key}: missing (expected {row})")
            elif len(rows) > 1:
                problems.append(f"{name} {key}: {len(rows)} rows {rows}")
            elif rows[0] != row:
                problems.append(f"{name} {key}: got {rows[0]}, expected {row}")
        for key in got.keys() - exp.keys():
            problems.append(f"{name} {key}: unexpected row {got[key]}")
    labelled: dict[str, set[int]] = defaultdict(set)
    if forecast_model is not None:  # every label (the units of a decided window) is right
        for sku, ws, actual in ch.query(
            f"SELECT sku, toUInt64(window_start) * 1000, actual FROM {db}.forecasts{fin} "
            f"WHERE model = %(model)s AND window_start < toDateTime(%(until)s)",
            {"model": forecast_model, "until": closed_until // 1000},
        ):
            ws = int(ws)
            labelled[sku].add(ws)
            want = expected.units(sku, ws)  # a quiet window's label is 0
            if float(actual) != float(want):
                problems.append(f"forecasts {sku} {ws}: label {actual}, expected {want}")
        for sku in expected.first:
            n_windows = len(range(expected.first[sku], closed_until, expected.window_ms))
            if len(labelled[sku]) < n_windows // 2:
                problems.append(f"{sku}: only {len(labelled[sku])} of {n_windows} windows decided")
    if learned is not None:  # the engine's own conservation counts balance on every partition
        if not learned.accounting:
            problems.append("no partition record holds conservation counts")
        for p, acct in sorted(learned.accounting.items()):
            if any(acct["unaccounted"]):
                problems.append(f"partition {p}: unaccounted events/units {acct['unaccounted']}")
    if learned is not None:  # each label learned exactly once, per SKU and by the shared model
        for sku in expected.first:
            if learned.per_sku.get(sku) != len(labelled[sku]):
                problems.append(
                    f"{sku}: learned {learned.per_sku.get(sku)} labels for "
                    f"{len(labelled[sku])} labelled windows"
                )
        total = sum(len(v) for v in labelled.values())
        if learned.pooled != total:
            problems.append(f"shared model learned {learned.pooled} labels for {total} windows")
    # price changes: duplicates only with an equal event_id, and unbroken chains per SKU
    by_id: dict[str, dict[str, Any]] = {}
    for c in changes:
        prev = by_id.get(c["event_id"])
        if prev is not None and prev != c:
            problems.append(f"event_id {c['event_id']} published with different content")
        by_id[c["event_id"]] = c
    per_sku: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in by_id.values():
        per_sku[c["sku"]].append(c)
    for sku, cs in per_sku.items():
        cs.sort(key=lambda c: (c["window_start"], c["decided_at"]))
        seen_windows: set[int] = set()
        price = initial_prices.get(sku)
        for c in cs:
            if c["window_start"] in seen_windows:
                problems.append(f"{sku}: two different decisions for window {c['window_start']}")
            seen_windows.add(c["window_start"])
            if price is not None and abs(c["old_price"] - price) > 1e-9:
                problems.append(
                    f"{sku}: change at {c['window_start']} starts from {c['old_price']}, price was {price}"
                )
            price = c["new_price"]
            nxt = c["window_start"] + expected.window_ms
            if forecast_model is not None and nxt < closed_until and nxt not in labelled[sku]:
                problems.append(f"{sku}: change at {c['window_start']} without its forecast row")
    return Verdict(problems)
