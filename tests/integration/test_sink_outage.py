"""ClickHouse down must not stop repricing; when it returns, every row lands exactly once."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from repricer.infra.clickhouse import connect
from repricer.infra.local.clickhouse_server import start_clickhouse_server
from repricer.streams.tools.runner import drained
from tests.workers import WorkerFactory

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
MIN = 60_000


def test_repricing_continues_while_clickhouse_is_down(
    worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    server = start_clickhouse_server(tmp_path / "ch")
    url = server.url(f"t_{uuid.uuid4().hex[:8]}")
    connect(url).init()
    server.stop()  # ClickHouse is down before the worker even starts
    settings, worker, producer = worker_factory(
        app="outage",
        clickhouse_url=url,
        partitions=1,
        lateness_s=1,
        min_change=0.001,
        sink_flush_s=0.2,
        sink_retry_max_s=0.5,
    )
    producer.send(
        settings.topic_catalog,
        key=b"A",
        value=json.dumps(
            {"sku": "A", "cost": 10, "base_price": 12, "min_price": 11, "max_price": 40}
        ).encode(),
    )
    windows = 8
    for w in range(windows + 1):
        ts = T0 + w * MIN + 1000
        order = {"order_id": f"o{w}", "ts": ts, "sku": "A", "qty": 1, "unit_price": 12}
        producer.send(settings.topic_orders, value=json.dumps(order).encode())
        producer.flush()
        if w:  # one tick per window, so the worker decides at every close
            worker.wait_until(lambda st, n=w: st.get("windows_closed", 0) >= n, timeout=60)
    # decisions and price changes keep flowing although no insert can succeed
    stats = worker.wait_until(
        lambda st: st.get("windows_closed", 0) >= windows and st.get("sink_errors", 0) > 0,
        timeout=90,
    )
    assert stats["decisions"] >= windows
    assert stats["price_changes"] >= 1
    assert stats["sink_rows"].get("sales_1m", 0) == 0
    server.start()  # back on the same port: the retries get through
    stats = worker.wait_until(drained(windows + 2), timeout=90, stable_s=1.0)
    worker.stop()
    try:
        ch = connect(url)
        rows = ch.query(
            f"SELECT window_start, units FROM {ch.database}.sales_1m FINAL ORDER BY window_start"
        )
        changes = ch.query(f"SELECT count() FROM {ch.database}.price_changes FINAL")[0][0]
        assert [u for _, u in rows] == [1] * stats["windows_closed"]
        assert changes == stats["price_changes"]
    finally:
        server.stop()
