"""A freeze sent with `repricer control` stops a SKU's price changes on a running worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from repricer.infra.local.tansu import TansuBroker
from repricer.streams.tools.runner import drained, settings_env
from tests.integration.test_pipeline import read_price_changes
from tests.workers import WorkerFactory

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
MIN = 60_000


def test_freeze_stops_price_changes_for_that_sku(
    broker: TansuBroker, worker_factory: WorkerFactory
) -> None:
    settings, worker, producer = worker_factory(
        app="ctl",
        partitions=1,
        lateness_s=1,
        idle_source_s=1,
        min_change=0.0001,
        sink_flush_s=0.2,
        thompson_hold_s=60,  # a fresh elasticity draw every window: the policy keeps moving B
    )
    sent = 0

    def send_windows(first: int, last: int, *, one_tick_each: bool = False) -> None:
        nonlocal sent
        for w in range(first, last + 1):
            if one_tick_each and w >= 2:  # windows up to w-2 closed (by w-1) before w is sent
                closed = 2 * (w - 1)
                worker.wait_until(lambda st, n=closed: st.get("windows_closed", 0) >= n, timeout=60)
            for sku in ("A", "B"):
                order = {
                    "order_id": f"{sku}{w}",
                    "ts": T0 + w * MIN + 5000,
                    "sku": sku,
                    "qty": 2,
                    "unit_price": 20,
                }
                producer.send(settings.topic_orders, value=json.dumps(order).encode())
                sent += 1
            producer.flush()

    for sku in ("A", "B"):
        item = {"sku": sku, "cost": 10, "base_price": 20, "min_price": 11, "max_price": 60}
        producer.send(settings.topic_catalog, key=sku.encode(), value=json.dumps(item).encode())
        sent += 1
    send_windows(0, 10, one_tick_each=True)  # a decision at every close before the freeze
    worker.wait_until(
        lambda st: st.get("events_processed", 0) >= sent and st.get("windows_closed", 0) >= 18,
        timeout=90,
    )
    env = {**os.environ, **settings_env(settings)}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "repricer.streams.cli",
            "control",
            "freeze",
            "A",
            "--who",
            "test",
            "--why",
            "integration test",
        ],
        check=True,
        env=env,
        timeout=60,
    )
    sent += 1
    worker.wait_until(lambda st: st.get("ingested", {}).get("control", 0) >= 1, timeout=60)
    before = worker.stats()["price_changes"]
    send_windows(11, 30, one_tick_each=True)  # and after it: B decided at every close
    stats = worker.wait_until(drained(sent), timeout=120, stable_s=1.0)
    assert stats["price_changes"] > before, "B keeps being repriced"
    worker.stop()
    changes = asyncio.run(
        read_price_changes(broker.bootstrap, settings.topic_price_changes, stats["price_changes"])
    )
    a_before = [c for c in changes if c["sku"] == "A" and c["window_start"] < T0 + 10 * MIN]
    a_after = [c for c in changes if c["sku"] == "A" and c["window_start"] >= T0 + 11 * MIN]
    b_after = [c for c in changes if c["sku"] == "B" and c["window_start"] >= T0 + 11 * MIN]
    assert a_before, "A was being repriced before the freeze (the test can tell a difference)"
    assert a_after == [], a_after
    assert b_after
