"""``/livez`` and ``/readyz`` on a real broker and a real ClickHouse 18.16 server that goes down.

ClickHouse down is not a liveness failure: the worker goes on repricing and catches up when it
returns. So with the sink stuck, ``/livez`` and ``/readyz`` stay 200 while ``/health`` (the
overall status, not a probe) says "sink stuck" and the metrics say so too.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from repricer.infra.clickhouse import connect
from repricer.infra.local.clickhouse_server import start_clickhouse_server
from tests.integration.conftest import WebWorker
from tests.integration.promtext import parse_prometheus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def wait_for(ww: WebWorker, path: str, check: Callable[[int, Any], bool], timeout: float) -> Any:
    """Poll ``path`` until ``check(status, json body)``; the last answer is in the failure."""
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = ww.http(path)
        data = json.loads(body) if body.startswith("{") else body
        if check(status, data):
            return data
        assert time.monotonic() < deadline, (path, status, body, ww.worker.tail_log())
        time.sleep(0.3)


def test_sink_down_leaves_the_worker_live_and_ready(
    web_worker_factory: Callable[..., WebWorker], tmp_path: Path
) -> None:
    server = start_clickhouse_server(tmp_path / "ch")
    try:
        url = server.url(f"t_{uuid.uuid4().hex[:8]}")
        connect(url).init()
        ww = web_worker_factory(url, health_sink_stall_s=1.0, sink_retry_max_s=0.5)
        ready = wait_for(ww, "/readyz", lambda s, _: s == 200, 90)
        assert ready["state_recovered"] is True
        assert ready["groups_joined"] == {"ingest": True, "sink": True}
        live = ww.json("/livez")
        assert live["status"] == "live" and live["problems"] == []

        server.stop()  # ClickHouse goes away while rows are on their way
        ww.catalog(["A", "B"])
        ww.windows(["A", "B"], 0, 1)
        ww.tick(3)
        ww.wait_processed()
        stuck = wait_for(
            ww,
            "/health",
            lambda s, d: s == 503 and any("sink stuck" in p for p in d["problems"]),
            90,
        )
        assert stuck["sink_pending"] > 0
        status, _, body = ww.http("/livez")
        assert status == 200, body
        status, _, body = ww.http("/readyz")
        assert status == 200, body
        assert ww.worker.alive()
        metrics = parse_prometheus(ww.http("/metrics")[2])  # the alert rule's inputs
        assert metrics.value("repricer_sink_stuck") == 1
        assert metrics.value("repricer_sink_stall_seconds") > 1.0

        server.start()  # back on the same port: the held rows land, health turns green
        wait_for(ww, "/health", lambda s, _: s == 200, 90)
        assert parse_prometheus(ww.http("/metrics")[2]).value("repricer_sink_stuck") == 0
        assert ww.http("/livez")[0] == 200 and ww.http("/readyz")[0] == 200
    finally:
        server.stop()
