"""A fault run: a simulated shop sends minute after minute of events while faults are injected.

``FaultRun`` owns the broker-side setup, the workers (child processes, ``kill -9`` able), the
producer and the independent expectation (``checker.Expected``). A scenario calls
``send_minute`` in a loop and injects its faults between minutes; ``finish`` closes every window
sent, waits until ClickHouse holds all of it, stops the workers and returns the checker's
verdict together with the run's figures.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from repricer.infra.clickhouse import connect
from repricer.infra.kafka_admin import ensure_topics
from repricer.infra.local.tansu import TansuBroker
from repricer.schemas import Order, encode
from repricer.streams.settings import Settings
from repricer.streams.tools.runner import WorkerProcess
from repricer.streams.tools.simulator.market import Market
from tests.chaos.checker import Expected, Verdict, check, read_learned_labels
from tests.integration.test_pipeline import read_price_changes

T0 = 1_767_225_600_000
MIN = 60_000


def rss_bytes(worker: WorkerProcess) -> int:
    """Resident memory of a worker process (0 if it is not running)."""
    if worker.proc is None:
        return 0
    try:
        for line in Path(f"/proc/{worker.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Result:
    verdict: Verdict
    events: int
    changes: int
    recoveries_s: list[float]
    stats: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"events={self.events} recoveries_s={self.recoveries_s} "
            f"price_changes={self.changes} {self.extra}"
        )


class FaultRun:
    """Events of ``skus`` simulated SKUs into ``workers`` repricer workers, one minute at a time."""

    def __init__(
        self,
        broker: TansuBroker,
        clickhouse_url: str,
        tmp: Path,
        *,
        seed: int,
        skus: int,
        partitions: int = 2,
        workers: int = 1,
        dedupe: bool = True,
        **overrides: Any,
    ) -> None:
        self.broker, self.url, self.tmp = broker, clickhouse_url, tmp
        self.rng = random.Random(seed)
        app_id = f"chaos-{uuid.uuid4().hex[:6]}"
        base = dict(
            app_id=app_id,
            broker=broker.url,
            clickhouse_url=clickhouse_url,
            partitions=partitions,
            lateness_s=5,
            # events here run ~50x faster than real time: a source partition quiet for a few wall
            # seconds is not idle, it is between minutes; only the end of the run is idle
            idle_source_s=10,
            cooldown_s=0,
            sink_flush_s=0.3,
            kafka_session_timeout_s=6,
            unsafe_disable_replay_dedup=not dedupe,
            lstm=False,
            # Tansu 0.6.0 under-reports a partition's end offset, so Faust's changelog recovery
            # after a kill would stop short (tests/integration/test_broker_offsets.py)
            kafka_single_record_batches=True,
        )
        base.update(overrides)
        self.settings = [Settings(**base, data_dir=str(tmp / f"worker{i}")) for i in range(workers)]
        s = self.settings[0]
        ensure_topics(s)
        connect(clickhouse_url).init()
        self.market = Market(n_skus=skus, seed=seed, start_ms=T0)
        self.expected = Expected(window_ms=s.window_ms)
        self.producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        self.initial: dict[str, float] = {}
        for item in self.market.catalog():
            self.producer.send(s.topic_catalog, key=item.sku.encode(), value=encode(item))
            self.initial[item.sku] = item.base_price
        self.workers = [
            WorkerProcess(ws, tmp / f"worker{i}.log").start() for i, ws in enumerate(self.settings)
        ]
        self.sent = 0
        self.minute = 0
        self.recoveries: list[float] = []
        self._restarted: list[tuple[WorkerProcess, float]] = []

    # -- driving -------------------------------------------------------------------------
    def send_minute(self, pause_s: float = 0.3) -> None:
        """Send the next simulated minute of orders and clicks; note recoveries after restarts."""
        s = self.settings[0]
        start = T0 + self.minute * MIN
        for ev in self.market.step(start, start + MIN):
            if isinstance(ev, Order):
                self.expected.add_order(ev.sku, ev.ts, ev.qty, ev.unit_price)  # type: ignore[arg-type]
                self.producer.send(s.topic_orders, key=ev.order_id.encode(), value=encode(ev))
            else:
                self.expected.add_click(ev.sku, ev.ts, ev.type)  # type: ignore[arg-type]
                self.producer.send(s.topic_clicks, key=ev.session_id.encode(), value=encode(ev))
            self.sent += 1
        self.producer.flush()
        self.minute += 1
        for worker, t_restart in self._restarted:  # processing again after a restart
            st = worker.wait_until(
                lambda st, t=t_restart: (
                    st.get("updated_at", 0) > t and st.get("events_processed", 0) > 0
                ),
                timeout=120,
            )
            self.recoveries.append(round(st["updated_at"] - t_restart, 1))
        self._restarted.clear()
        time.sleep(pause_s)

    def kill(self, i: int = 0, *, restart: bool = True) -> None:
        """``kill -9`` worker ``i`` at a random moment in the next 1.5 s (and restart it)."""
        time.sleep(self.rng.uniform(0.0, 1.5))
        self.workers[i].kill()
        if restart:
            self.restart(i)

    def wait_balanced(self, timeout: float) -> list[list[int]]:
        """Until the SKU partitions are split evenly over the workers (each owns its share)."""
        p, n = self.settings[0].partitions, len(self.workers)
        deadline = time.monotonic() + timeout
        while True:
            got = [list(w.stats().get("partitions", [])) for w in self.workers]
            owned = sorted(x for g in got for x in g)
            if owned == list(range(p)) and all(len(g) == p // n for g in got):
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"partitions {got} are not split evenly over {n} workers")
            time.sleep(0.25)

    def restart(self, i: int, *, until_processing: bool = True) -> None:
        """Start worker ``i`` again; with ``until_processing`` the next ``send_minute`` waits
        until it processes new events (with a second worker, the survivor may have read them
        all: then wait with ``wait_balanced`` instead)."""
        self.workers[i].start()
        if until_processing:
            self._restarted.append((self.workers[i], time.time()))

    # -- finishing -----------------------------------------------------------------------
    def finish(self, *, timeout: float = 240) -> Result:
        """Close every window sent, wait for ClickHouse, stop the workers, run the checker."""
        s = self.settings[0]
        for p in range(s.partitions):  # a later event on every partition closes every window
            tick = {
                "event_id": f"tick{p}",
                "ts": T0 + (self.minute + 2) * MIN,
                "session_id": "t",
                "sku": "TICK",
                "type": "view",
            }
            self.producer.send(s.topic_clicks, value=json.dumps(tick).encode(), partition=p)
        self.producer.flush()
        closed_until = T0 + (self.minute + 1) * MIN
        sales, _ = self.expected.rows(closed_until)
        try:
            self._wait_clickhouse(len(sales), closed_until, timeout)
            time.sleep(1.0)
            stats = [w.stats() for w in self.workers]
        finally:
            self.producer.close()
            for w in self.workers:
                w.stop()
        changes = asyncio.run(
            read_price_changes(self.broker.bootstrap, s.topic_price_changes, 10**9, timeout=8)
        )
        learned = read_learned_labels(self.broker.bootstrap, s.app_id)
        ch = connect(self.url)
        try:
            verdict = check(
                self.expected,
                closed_until,
                ch,
                changes,
                initial_prices=self.initial,
                learned=learned,
            )
        finally:
            ch.close()
        return Result(
            verdict=verdict,
            events=self.sent,
            changes=len(changes),
            recoveries_s=self.recoveries,
            stats=stats,
            extra={"windows": len(sales), "labels_learned": learned.pooled},
        )

    def _wait_clickhouse(self, rows: int, until: int, timeout: float) -> None:
        """Until ClickHouse holds ``rows`` sales windows, and its forecast rows stay put for 2 s."""
        deadline = time.monotonic() + timeout
        ch = connect(self.url)
        db = ch.database
        stable_since = None
        got: tuple[int, int] = (0, 0)
        last = got
        try:
            while time.monotonic() < deadline:
                for w in self.workers:
                    if w.proc is not None and not w.alive():
                        raise RuntimeError(f"worker died:\n{w.tail_log()}")
                q = {"until": until // 1000}
                got = (
                    ch.query(
                        f"SELECT count() FROM {db}.sales_1m FINAL "
                        f"WHERE window_start < toDateTime(%(until)s)",
                        q,
                    )[0][0],
                    ch.query(
                        f"SELECT count() FROM {db}.forecasts FINAL WHERE model = 'ensemble' "
                        f"AND window_start < toDateTime(%(until)s)",
                        q,
                    )[0][0],
                )
                if got[0] >= rows and got == last:
                    stable_since = stable_since or time.monotonic()
                    if time.monotonic() - stable_since > 2:
                        return
                else:
                    stable_since = None
                last = got
                time.sleep(0.5)
        finally:
            ch.close()
        # not fatal here: the checker says precisely what is missing
        print(f"[chaos] ClickHouse reached {got[0]} of {rows} sales rows in {timeout}s")
