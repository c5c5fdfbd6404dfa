"""`repricer replay` on a real broker: event-time order, bad rows counted, and the end-of-input
markers close the last windows of a replayed history in a running worker (real ClickHouse)."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from repricer.infra.clickhouse import connect
from repricer.infra.kafka_admin import ensure_topics
from repricer.infra.local.clickhouse_server import ClickHouseServer
from repricer.infra.local.tansu import TansuBroker
from repricer.streams import cli
from repricer.streams.settings import Settings
from repricer.streams.tools.replay.read import ReadOptions, load
from repricer.streams.tools.replay.send import replay_files
from repricer.streams.tools.runner import drained, settings_env
from tests.workers import WorkerFactory

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000
MIN = 60_000

CSV = """order_id,ts,sku,qty,unit_price,currency
o3,2026-01-01T00:02:00+00:00,A,1,9.5,EUR
o1,1767225600000,B,2,3.0,EUR
o2,2026-01-01T01:01:00+01:00,A,1,9.5,EUR
bad1,2026-01-01T00:03:00,A,1,9.5,EUR
bad2,1767225600000,A,-1,9.5,EUR
"""


def test_replay_orders_by_event_time(broker: TansuBroker, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(CSV)
    settings = Settings(broker=broker.url, partitions=1)
    h = load([("orders", path)], ReadOptions(), settings)
    assert [json.loads(r.payload)["order_id"] for r in h.events] == ["o1", "o2", "o3"]
    assert h.skipped_by_reason == {"naive_timestamp": 1, "out_of_range": 1}
    ensure_topics(settings)
    summary = replay_files([("orders", path)], opts=ReadOptions(), speed=0, settings=settings)
    assert summary["sent"] == {"catalog": 0, "orders": 3, "clicks": 0}
    assert summary["skipped"] == 2
    assert summary["skipped_by_reason"] == {"naive_timestamp": 1, "out_of_range": 1}
    assert [p.split(": ")[1] for p in summary["problems"]] == ["orders", "orders"]
    assert summary["first_event_time"] == "2026-01-01T00:00:00.000Z"
    assert summary["last_event_time"] == "2026-01-01T00:02:00.000Z"
    at = T0 + 2 * MIN + settings.window_ms + settings.lateness_ms + 1
    assert summary["end_of_input"]["at"] == at
    assert summary["end_of_input"]["partitions"] == {"orders": 1, "clicks": 1}
    got = []
    for topic in (settings.topic_orders, settings.topic_clicks):
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, consumer_timeout_ms=5000)
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        got += [(topic, m.headers, json.loads(m.value)) for m in consumer]
        consumer.close()
    assert [b.get("order_id") for _, _, b in got[:3]] == ["o1", "o2", "o3"]
    marker = [("repricer-watermark", str(at).encode())]
    assert got[3:] == [
        (settings.topic_orders, marker, {"watermark": at}),
        (settings.topic_clicks, marker, {"watermark": at}),
    ]


# ------------------------------------------------------------------ a history into a worker

SKUS = {
    "A": {"cost": 10.0, "base_price": 13.0, "min_price": 11.0, "max_price": 40.0},
    "B": {"cost": 50.0, "base_price": 80.0, "min_price": 55.0, "max_price": 150.0},
    "C": {"cost": 3.0, "base_price": 5.0, "min_price": 3.2, "max_price": 9.0},
}
HOUR = 3_600_000


def write_history(
    tmp: Path, last_window: int
) -> tuple[dict[tuple[str, int], int], dict[str, int], int]:
    """A shop export from T0 to ``last_window`` (orders CSV in epoch seconds with its own column
    names, clicks as JSON lines with ISO times, a catalog CSV) with a burst in the last window;
    returns the units per (SKU, day), of the last window per SKU, and the valid rows."""
    rng = random.Random(5)
    units: Counter[tuple[str, int]] = Counter()
    last: Counter[str] = Counter()
    orders, clicks = [], []
    for sku in SKUS:
        times = sorted(rng.randrange(T0, last_window, 1000) for _ in range(60))
        times += [last_window + 10_000 + 1000 * i for i in range(3)]  # the burst
        for i, ts in enumerate(times):
            qty = rng.randint(1, 3)
            orders.append((f"{sku}-{i}", ts, sku, qty, SKUS[sku]["base_price"]))
            units[(sku, (ts - T0) // DAY)] += qty
            if ts >= last_window:
                last[sku] += qty
        for i in range(80):
            ts = rng.randrange(T0, last_window + 40_000, 1000)
            clicks.append(
                {
                    "event_id": f"{sku}-c{i}",
                    "ts": datetime.fromtimestamp(ts / 1000, UTC).isoformat(),
                    "session_id": f"s{i % 9}",
                    "product_id": sku,
                    "type": rng.choice(["view", "view", "add_to_cart"]),
                }
            )
    rng.shuffle(orders)  # exports are not always in time order
    lines = ["id,created_at,product_id,quantity,price,email"]
    lines += [f"{o},{ts // 1000},{sku},{q},{p},someone@example.com" for o, ts, sku, q, p in orders]
    lines += [
        "bad-0,1767225700,A,0,13.0,",  # quantity 0
        "bad-1,1767225700,A,1,,",  # no price
    ]
    (tmp / "orders.csv").write_text("\n".join(lines) + "\n")
    (tmp / "clicks.jsonl").write_text("\n".join(json.dumps(c) for c in clicks) + "\n")
    cat = ["product_id,cost,base_price,min_price,max_price"]
    cat += [
        f"{s},{c['cost']},{c['base_price']},{c['min_price']},{c['max_price']}"
        for s, c in SKUS.items()
    ]
    (tmp / "catalog.csv").write_text("\n".join(cat) + "\n")
    return dict(units), dict(last), len(orders) + len(clicks) + len(SKUS)


def units_in_clickhouse(
    url: str, last_window: int
) -> tuple[dict[tuple[str, int], int], dict[str, int]]:
    """Units per (SKU, day) in sales_1m FINAL, and per SKU in the last window."""
    ch = connect(url)
    try:
        rows = ch.query(f"SELECT sku, window_start, units FROM {ch.database}.sales_1m FINAL")
    finally:
        ch.close()
    per_day: Counter[tuple[str, int]] = Counter()
    last: Counter[str] = Counter()
    for sku, ws, u in rows:
        ms = (
            int(ws.replace(tzinfo=UTC).timestamp() * 1000)
            if ws.tzinfo is None
            else int(ws.timestamp() * 1000)
        )
        if u:
            per_day[(sku, (ms - T0) // DAY)] += u
        if ms == last_window and u:
            last[sku] += u
    return dict(per_day), dict(last)


@pytest.mark.parametrize("hours", [20, 48])  # 48: one ingest batch spans more than a day
def test_end_of_input_markers_close_the_last_window(
    hours: int,
    worker_factory: WorkerFactory,
    clickhouse_server: ClickHouseServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = clickhouse_server.url(f"t_{uuid.uuid4().hex[:8]}")
    settings, worker, producer = worker_factory(
        app="replay",
        clickhouse_url=url,
        partitions=2,
        lateness_s=2,
        idle_source_s=2,
        sink_flush_s=0.3,
        lstm=False,
    )
    for k, v in settings_env(settings).items():  # `repricer replay` reads the same settings
        monkeypatch.setenv(k, v)
    last_window = T0 + hours * HOUR - MIN
    units, last, n_valid = write_history(tmp_path, last_window)
    assert set(last) == set(SKUS) and {d for _, d in units} == set(range(-(-hours // 24)))

    def replay(*args: str) -> dict:
        assert cli.main(["replay", *args]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    history = [
        "--catalog", str(tmp_path / "catalog.csv"),
        "--orders", str(tmp_path / "orders.csv"),
        "--clicks", str(tmp_path / "clicks.jsonl"),
        "--map", "order_id=id",
        "--map", "orders.ts=created_at",
        "--map", "sku=product_id",
        "--map", "qty=quantity",
        "--map", "unit_price=price",
        "--ts-unit", "s",
    ]  # fmt: skip

    # 1. the history without the end of input: the last window stays open
    s1 = replay(*history, "--no-end-of-input")
    assert sum(s1["sent"].values()) == n_valid
    assert s1["sent"]["catalog"] == len(SKUS)
    assert s1["skipped_by_reason"] == {"out_of_range": 1, "missing_field": 1}
    assert s1["end_of_input"] is None
    assert s1["last_event_time"] is not None
    sent = n_valid
    st = worker.wait_until(drained(sent), timeout=180, stable_s=2)
    closed_before = st["windows_closed"]
    per_day, in_last = units_in_clickhouse(url, last_window)
    assert in_last == {}, "without the marker nothing closes the last window"
    last_day = (last_window - T0) // DAY
    assert per_day == {k: u - (last[k[0]] if k[1] == last_day else 0) for k, u in units.items()}, (
        "every earlier window is complete"
    )

    # 2. only the markers, at the last event time of that history
    s2 = replay("--end-of-input-only", "--at", s1["last_event_time"])
    assert s2["end_of_input"]["partitions"] == {"orders": 2, "clicks": 2}
    sent += 4
    done = drained(sent)
    st = worker.wait_until(
        lambda st: (
            done(st)
            and st["ingested"].get("watermarks", 0) == 4
            and st["windows_closed"] > closed_before
        ),
        timeout=120,
        stable_s=2,
    )
    assert st["dlq"] == {}
    per_day, in_last = units_in_clickhouse(url, last_window)
    assert in_last == last, "the marker closed the last window"
    assert per_day == units, "every replayed unit is in sales_1m"

    # 3. the same history again, markers included: nothing is counted twice
    s3 = replay(*history)
    assert s3["sent"] == s1["sent"] and s3["end_of_input"]["at"] == s2["end_of_input"]["at"]
    sent += n_valid + 4
    # 4. a marker whose header is no epoch-ms integer is dead-lettered with its reason
    producer.send(
        settings.topic_orders,
        value=b'{"watermark": "soon"}',
        headers=[("repricer-watermark", b"soon")],
    )
    producer.flush()
    sent += 1
    done = drained(sent)
    st = worker.wait_until(
        lambda st: done(st) and st["dlq"].get("bad_watermark", 0) == 1, timeout=120, stable_s=2
    )
    assert st["ingested"]["watermarks"] == 8
    assert units_in_clickhouse(url, last_window) == (units, last)
    worker.stop()
    assert "Traceback" not in worker.tail_log(200_000), worker.tail_log()
