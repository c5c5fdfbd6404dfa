"""REPRODUCTION, NOT YET PASSING (open issue "nothing lost, nothing counted twice"):
kill -9 of the worker at random moments, restarted each time: nothing lost, nothing doubled.

This file is deliberately not named ``test_*.py``, so ``make test`` does not collect it: it
fails today. Run it with ``make chaos``. Last result (15 SKUs, 16 simulated minutes, ~12.5k
events, 3 kills): the worker was processing again 3-10 s after each restart, but one window
(all SKUs) was missing from ClickHouse afterwards: its tick's state reached the changelog while
its rows never reached the sink. The same run without kills passes. The negative control
(replay dedup switched off) must be reported broken by the same checker.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from infra.clickhouse import connect
from infra.kafka_admin import ensure_topics
from infra.local.clickhouse_server import ClickHouseServer
from infra.local.tansu import TansuBroker
from schemas import Order, encode
from streams.runner import WorkerProcess
from streams.settings import Settings
from streams.simulator import Market
from tests.chaos.checker import Expected, check
from tests.integration.test_pipeline import read_price_changes

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
MIN = 60_000


def _wait_rows(url: str, n_rows: int, timeout: float) -> None:
    """Wait until ClickHouse holds ``n_rows`` sales windows (FINAL) and it stays so for 2 s."""
    deadline = time.monotonic() + timeout
    ch = connect(url)
    stable_since = None
    try:
        while time.monotonic() < deadline:
            n = ch.query(f"SELECT count() FROM {ch.database}.sales_1m FINAL")[0][0]
            if n >= n_rows:
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since > 2:
                    return
            else:
                stable_since = None
            time.sleep(0.5)
    finally:
        ch.close()
    raise TimeoutError(f"ClickHouse did not reach {n_rows} sales rows in {timeout}s")


def run_with_kills(
    broker: TansuBroker,
    url: str,
    tmp: Path,
    *,
    kills: int,
    dedupe: bool,
    seed: int,
    minutes: int,
    skus: int,
) -> dict[str, Any]:
    settings = Settings(
        app_id=f"chaos-{uuid.uuid4().hex[:6]}",
        broker=broker.url,
        clickhouse_url=url,
        data_dir=str(tmp / "faust"),
        partitions=2,
        lateness_s=5,
        idle_source_s=2,
        cooldown_s=0,
        sink_flush_s=0.3,
        kafka_session_timeout_s=6,
        unsafe_disable_replay_dedup=not dedupe,
        lstm=False,
    )
    ensure_topics(settings)
    connect(url).init()
    rng = random.Random(seed)
    market = Market(n_skus=skus, seed=seed, start_ms=T0)
    expected = Expected(window_ms=settings.window_ms)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    initial = {}
    for item in market.catalog():
        producer.send(settings.topic_catalog, key=item.sku.encode(), value=encode(item))
        initial[item.sku] = item.base_price
    kill_at = sorted(rng.sample(range(2, minutes - 1), kills))
    worker = WorkerProcess(settings, tmp / "worker.log").start()
    recoveries: list[float] = []
    sent = 0
    t_restart: float | None = None
    try:
        for minute in range(minutes):
            for ev in market.step(T0 + minute * MIN, T0 + (minute + 1) * MIN):
                if isinstance(ev, Order):
                    expected.add_order(ev.sku, ev.ts, ev.qty, ev.unit_price)  # type: ignore[arg-type]
                    producer.send(settings.topic_orders, key=ev.order_id.encode(), value=encode(ev))
                else:
                    expected.add_click(ev.sku, ev.ts, ev.type)  # type: ignore[arg-type]
                    producer.send(
                        settings.topic_clicks, key=ev.session_id.encode(), value=encode(ev)
                    )
                sent += 1
            producer.flush()
            if t_restart is not None:  # recovery: restart until new events are processed again
                st = worker.wait_until(
                    lambda s, t=t_restart: (
                        s.get("updated_at", 0) > t and s.get("events_processed", 0) > 0
                    ),
                    timeout=120,
                )
                recoveries.append(round(st["updated_at"] - t_restart, 1))
                t_restart = None
            time.sleep(0.3)
            if minute in kill_at:
                time.sleep(rng.uniform(0.0, 1.5))
                worker.kill()  # SIGKILL: no shutdown, no final commit
                t_restart = time.time()
                worker.start()
        for p in range(settings.partitions):  # a later tick closes every window sent
            tick = {
                "event_id": f"tick{p}",
                "ts": T0 + (minutes + 2) * MIN,
                "session_id": "t",
                "sku": "TICK",
                "type": "view",
            }
            producer.send(settings.topic_clicks, value=json.dumps(tick).encode(), partition=p)
        producer.flush()
        closed_until = T0 + (minutes + 1) * MIN
        n_rows = len(expected.rows(closed_until)[0])
        _wait_rows(url, n_rows, timeout=240)
        time.sleep(1.0)
        stats = worker.stats()
    finally:
        producer.close()
        worker.stop()
    changes = asyncio.run(
        read_price_changes(broker.bootstrap, settings.topic_price_changes, 10**9, timeout=8)
    )
    ch = connect(url)
    try:
        verdict = check(expected, closed_until, ch, changes, initial_prices=initial)
    finally:
        ch.close()
    if not verdict.ok:
        _diagnose(broker, settings, verdict, tmp)
    return {
        "verdict": verdict,
        "events": sent,
        "kills": len(kill_at),
        "recoveries_s": recoveries,
        "changes": len(changes),
        "stats": stats,
    }


def _diagnose(broker: TansuBroker, settings: Settings, verdict: Any, tmp: Path) -> None:
    """Where did a missing window get lost: never produced, or produced and not inserted?"""
    from kafka import KafkaConsumer, TopicPartition

    missing = set()
    for p in verdict.problems:
        m = re.match(r"(sales_1m|clicks_1m) \('([^']+)', (\d+)\): missing", p)
        if m:
            missing.add((m.group(1), m.group(2), int(m.group(3))))
    topic = f"{settings.app_id}-aggregates"
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    end = c.end_offsets(tps)
    found: dict[tuple[str, str, int], list[tuple[int, int]]] = {}
    n = 0
    while any(c.position(tp) < end[tp] for tp in tps):
        for tp, msgs in c.poll(timeout_ms=1000).items():
            for m in msgs:
                n += 1
                d = json.loads(m.value)
                key = (d["t"], d["r"]["sku"], d["r"]["window_start"])
                if key in missing:
                    found.setdefault(key, []).append((tp.partition, m.offset))
    c.close()
    for p in verdict.problems[:40]:
        print("[problem]", p)
    print(f"\n[diagnose] {len(missing)} missing rows; {n} messages in {topic}; end={end}")
    for key in sorted(missing)[:40]:
        print("[diagnose]", key, "in aggregates topic at", found.get(key))
    log = (tmp / "worker.log").read_text(errors="replace")
    for line in log.splitlines():
        if any(w in line for w in ("ERROR", "WARNING", "Traceback", "Discarded", "revoked")):
            print("[worker]", line[:300])


def test_kill_9_three_times_loses_and_doubles_nothing(
    broker: TansuBroker, clickhouse_server: ClickHouseServer, tmp_path: Path
) -> None:
    url = clickhouse_server.url(f"chaos_{uuid.uuid4().hex[:8]}")
    r = run_with_kills(broker, url, tmp_path, kills=3, dedupe=True, seed=21, minutes=20, skus=30)
    print(
        f"\n[chaos] events={r['events']} kills={r['kills']} recovery_s={r['recoveries_s']} "
        f"price_changes={r['changes']}"
    )
    assert r["events"] > 20_000
    assert r["kills"] == 3 and len(r["recoveries_s"]) == 3
    assert r["verdict"].ok, "\n".join(r["verdict"].problems[:30])


def test_negative_control_without_replay_dedup_is_reported_broken(
    broker: TansuBroker, clickhouse_server: ClickHouseServer, tmp_path: Path
) -> None:
    url = clickhouse_server.url(f"chaos_neg_{uuid.uuid4().hex[:8]}")
    r = run_with_kills(broker, url, tmp_path, kills=3, dedupe=False, seed=22, minutes=16, skus=15)
    assert not r["verdict"].ok, "the checker must notice double-counted replays"
