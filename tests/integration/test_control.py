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
from tests.workers import MIN, T0, WorkerFactory, send_windows

pytestmark = pytest.mark.integration


def test_freeze_stops_price_changes_for_that_sku(
    broker: TansuBroker, worker_factory: WorkerFactory
) -> None:
    started = worker_factory(
        app="ctl",
        partitions=1,
        lateness_s=1,
        idle_source_s=1,
        min_change=0.0001,
        sink_flush_s=0.2,
        thompson_hold_s=60,  # a fresh elasticity draw every window: the policy keeps moving B
    )
    settings, worker, producer = started
    sent = 0
    for sku in ("A", "B"):
        item = {"sku": sku, "cost": 10, "base_price": 20, "min_price": 11, "max_price": 60}
        producer.send(settings.topic_catalog, key=sku.encode(), value=json.dumps(item).encode())
        sent += 1
    sent += send_windows(started, ("A", "B"), 0, 10)  # a decision at every close before the freeze
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
    sent += send_windows(started, ("A", "B"), 11, 30)  # and after it: B decided at every close
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
