"""Going live on the real broker and ClickHouse 18.16: a worker in shadow publishes no price and
records every would-be change; `repricer control live category:toys` moves that category only;
`repricer control rollback --to TIME '*'` restores the prices in force then and freezes them."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest

from repricer.infra.clickhouse import connect
from repricer.infra.local.clickhouse_server import ClickHouseServer
from repricer.infra.local.tansu import TansuBroker
from repricer.streams.tools.runner import settings_env
from tests.integration.test_pipeline import read_price_changes
from tests.workers import MIN, T0, WorkerFactory, send_windows

pytestmark = pytest.mark.integration

CATEGORY = {"A": "toys", "B": "toys", "C": "food", "D": "food"}


def _cli(settings: Any, *args: str) -> str:
    env = {**os.environ, **settings_env(settings)}
    done = subprocess.run(
        [sys.executable, "-m", "repricer.streams.cli", *args],
        check=True,
        env=env,
        timeout=60,
        capture_output=True,
        text=True,
    )
    return done.stdout


def test_shadow_then_a_live_category_then_a_rollback(
    broker: TansuBroker, worker_factory: WorkerFactory, clickhouse_server: ClickHouseServer
) -> None:
    started = worker_factory(
        app="golive",
        partitions=2,
        lateness_s=1,
        idle_source_s=1,
        min_change=0.0001,
        sink_flush_s=0.2,
        thompson_hold_s=60,  # a fresh elasticity draw every window: the policy keeps moving
        mode="shadow",
        clickhouse_url=clickhouse_server.url(f"t_{uuid.uuid4().hex[:8]}"),
    )
    settings, worker, producer = started
    sent = 0
    closed = 0

    def send(first: int, last: int) -> None:
        nonlocal sent, closed
        sent += send_windows(started, list(CATEGORY), first, last)
        closed = len(CATEGORY) * last  # every window up to last-1 closed (by last)

    def control_applied(total: int) -> None:
        """``total`` control commands sent so far: wait until ingest has read them all."""
        nonlocal sent
        sent += 1 if total == 1 else 2
        worker.wait_until(lambda st: st.get("ingested", {}).get("control", 0) >= total, timeout=60)

    for sku, cat in CATEGORY.items():
        item = {"sku": sku, "cost": 10, "base_price": 20, "min_price": 11, "max_price": 60}
        item["category"] = cat
        producer.send(settings.topic_catalog, key=sku.encode(), value=json.dumps(item).encode())
        sent += 1
    # 1. shadow: every SKU decided, nothing published
    send(0, 8)
    st = worker.wait_until(lambda st: st.get("events_processed", 0) >= sent, timeout=90)
    worker.wait_until(lambda st: st.get("windows_closed", 0) >= closed, timeout=60)
    st = worker.stats()
    assert st["price_changes"] == 0 and st["shadow_decisions"] > 0, st
    # 2. the toys go live; the food stays in shadow
    _cli(settings, "control", "live", "category:toys", "--who", "test", "--why", "slice")
    control_applied(1)
    send(9, 20)
    worker.wait_until(lambda st: st.get("events_processed", 0) >= sent, timeout=90)
    st = worker.wait_until(
        lambda st: (
            st.get("windows_closed", 0) >= closed
            and st.get("sink_rows", {}).get("price_changes", 0) >= st.get("price_changes", 0)
            and st.get("sink_rows", {}).get("shadow_decisions", 0) >= st.get("shadow_decisions", 0)
            and st.get("sink_pending", 0) == 0
        ),
        timeout=90,
        stable_s=1.0,
    )
    live = asyncio.run(
        read_price_changes(broker.bootstrap, settings.topic_price_changes, st["price_changes"])
    )
    assert len(live) == st["price_changes"] > 0
    assert {c["sku"] for c in live} == {"A", "B"}  # only the category that went live
    assert all(c["window_start"] >= T0 + 8 * MIN and c["category"] == "toys" for c in live)
    prices = asyncio.run(read_price_changes(broker.bootstrap, settings.topic_prices, 10**6, 5))
    assert prices and {p["sku"] for p in prices} <= {"A", "B"}
    # every would-be change is in ClickHouse, with its expected gain
    ch = connect(settings.clickhouse_url.get_secret_value())
    try:
        rows = ch.query(
            f"SELECT sku, count(), min(window_start) FROM {ch.database}.shadow_decisions FINAL "
            "GROUP BY sku ORDER BY sku"
        )
    finally:
        ch.close()
    by_sku = {sku: (int(n), ws) for sku, n, ws in rows}
    assert sum(n for n, _ in by_sku.values()) == st["shadow_decisions"]
    assert set(by_sku) == set(CATEGORY)  # A and B while in shadow, C and D throughout
    report = json.loads(_cli(settings, "report", "--shadow", "--no-accounting", "--json"))
    modes = {m["mode"]: m for m in report["shadow"]["by_mode"]}
    assert modes["shadow"]["skus"] == 4 and modes["shadow"]["decisions"] == st["shadow_decisions"]
    # 3. roll back to the middle of window 14: the price each live SKU had then
    at_s = (T0 + 14 * MIN + 30_000) // 1000
    expected: dict[str, float] = {}
    for c in sorted(live, key=lambda c: c["effective_at"]):
        if c["effective_at"] // 1000 <= at_s:
            expected[c["sku"]] = c["new_price"]
    assert set(expected) == {"A", "B"}
    moved_since = {c["sku"] for c in live if c["effective_at"] // 1000 > at_s}
    assert moved_since, "the test needs prices that moved after the rollback time"
    out = _cli(settings, "control", "rollback", "*", "--to", str(at_s), "--who", "ana")
    assert "sent 2 rollback(s)" in out, out
    control_applied(3)
    before = st["price_changes"]
    send(21, 26)  # frozen after the rollback: no more changes for A and B
    st = worker.wait_until(
        lambda st: st.get("events_processed", 0) >= sent and st.get("windows_closed", 0) >= closed,
        timeout=90,
        stable_s=1.0,
    )
    worker.stop()
    after = asyncio.run(
        read_price_changes(broker.bootstrap, settings.topic_price_changes, st["price_changes"])
    )[before:]
    rollbacks = {c["sku"]: c for c in after if c["reasons"] == ["rollback"]}
    assert set(rollbacks) == moved_since
    for sku, c in rollbacks.items():
        assert c["new_price"] == expected[sku], (sku, c, expected)
        assert 11 <= c["new_price"] <= 60 and c["issued_by"] == "ana"
    assert [c for c in after if c["reasons"] != ["rollback"]] == []  # frozen since
    # the chain holds: each change of a SKU starts from the price the one before left
    for sku in ("A", "B"):
        chain = [c for c in live + after if c["sku"] == sku]
        assert all(a["new_price"] == b["old_price"] for a, b in itertools.pairwise(chain))
