"""A worker with its web server on, on a real broker, and helpers to feed it (web tests)."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from repricer.infra.local.clickhouse_server import ClickHouseServer
from repricer.infra.local.tansu import free_port
from repricer.streams.settings import Settings
from repricer.streams.tools.runner import WorkerProcess
from tests.workers import WorkerFactory

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000
CATALOG = {
    "A": {"cost": 10.0, "base_price": 13.0, "min_price": 11.0, "max_price": 40.0},
    "B": {"cost": 50.0, "base_price": 80.0, "min_price": 55.0, "max_price": 150.0},
    "C": {"cost": 3.0, "base_price": 5.0, "min_price": 3.2, "max_price": 9.0},
    "D": {"cost": 20.0, "base_price": 30.0, "min_price": 22.0, "max_price": 60.0},
    "E": {"cost": 7.0, "base_price": 11.0, "min_price": 8.0, "max_price": 25.0},
}


@dataclass
class WebWorker:
    """A running worker (web enabled) plus a producer; every send is counted in ``sent``."""

    settings: Settings
    worker: WorkerProcess
    producer: KafkaProducer
    base_url: str
    sent: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def http(self, path: str, timeout: float = 15.0) -> tuple[int, str, str]:
        """(status, content type, body) of a GET; HTTP errors are returned, not raised."""
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), e.read().decode()

    def json(self, path: str) -> Any:
        status, _, body = self.http(path)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def catalog(self, skus: list[str]) -> None:
        for sku in skus:
            body = {"sku": sku, **CATALOG[sku]}
            self.producer.send(
                self.settings.topic_catalog, key=sku.encode(), value=json.dumps(body).encode()
            )
            self.sent += 1
        self.producer.flush()

    def windows(self, skus: list[str], first: int, last: int) -> None:
        """Orders and views for ``skus`` in windows ``first..last`` (event-time order)."""
        events: list[tuple[int, str, dict[str, Any]]] = []
        for w in range(first, last + 1):
            ws = T0 + w * MIN
            for sku in skus:
                for _ in range(self.rng.randint(1, 4)):
                    ts = ws + self.rng.randint(0, MIN - 1)
                    order = {
                        "order_id": uuid.uuid4().hex[:12],
                        "ts": ts,
                        "sku": sku,
                        "qty": self.rng.randint(1, 3),
                        "unit_price": CATALOG[sku]["base_price"],
                    }
                    events.append((ts, self.settings.topic_orders, order))
                for _ in range(self.rng.randint(2, 8)):
                    ts = ws + self.rng.randint(0, MIN - 1)
                    click = {
                        "event_id": uuid.uuid4().hex[:12],
                        "ts": ts,
                        "session_id": f"s{self.rng.randint(0, 9)}",
                        "sku": sku,
                        "type": "view",
                    }
                    events.append((ts, self.settings.topic_clicks, click))
        events.sort(key=lambda e: e[0])
        for _, topic, body in events:
            self.producer.send(topic, key=body["sku"].encode(), value=json.dumps(body).encode())
        self.sent += len(events)
        self.producer.flush()

    def tick(self, window: int) -> None:
        """A view at the start of ``window`` on every clickstream partition: closes earlier ones."""
        for p in range(self.settings.partitions):
            tick = {
                "event_id": f"tick{window}-{p}",
                "ts": T0 + window * MIN,
                "session_id": "t",
                "sku": "TICK",
                "type": "view",
            }
            self.producer.send(
                self.settings.topic_clicks, value=json.dumps(tick).encode(), partition=p
            )
        self.sent += self.settings.partitions
        self.producer.flush()

    def wait_processed(self, timeout: float = 90) -> dict[str, Any]:
        return self.worker.wait_until(
            lambda st: st.get("events_processed", 0) >= self.sent, timeout=timeout
        )

    def wait_http(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.http(path, timeout=5)[0] < 500:
                    return
            except OSError:
                pass
            if not self.worker.alive():
                raise RuntimeError(f"worker exited:\n{self.worker.tail_log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.base_url}{path} not up in {timeout}s")
            time.sleep(0.3)


@pytest.fixture
def web_worker_factory(worker_factory: WorkerFactory) -> Callable[[str], WebWorker]:
    """``start(sink_url)``: a worker with its web server on a free port, up and serving."""

    def start(sink_url: str) -> WebWorker:
        port = free_port()
        settings, worker, producer = worker_factory(
            app="web",
            producer={"linger_ms": 5},
            clickhouse_url=sink_url,
            partitions=2,
            lateness_s=2,
            idle_source_s=2,
            sink_flush_s=0.3,
            web_enabled=True,
            web_port=port,
        )
        ww = WebWorker(settings, worker, producer, f"http://127.0.0.1:{port}")
        ww.wait_http("/health", timeout=90)
        return ww

    return start


@pytest.fixture(params=["chdb", "clickhouse-18.16"])
def sink_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    db = f"t_{uuid.uuid4().hex[:8]}"
    if request.param == "chdb":
        return f"chdb://{tmp_path / 'chdb'}?database={db}"
    server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
    return server.url(db)
