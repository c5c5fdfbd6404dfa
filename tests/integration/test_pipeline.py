"""The whole loop on a real broker (Tansu) and real ClickHouse (18.16 server, and chdb).

A known set of orders, clicks, catalog items and malformed events goes in; the test computes the
expected per-window aggregates itself and compares them with ClickHouse (read with FINAL), reads
the price changes back with a consumer-group consumer, validates them against the checked-in
JSON Schema and every guardrail, and checks that sending everything again changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from aiokafka import AIOKafkaConsumer

from repricer.infra.clickhouse import connect
from repricer.infra.local.tansu import TansuBroker
from repricer.schemas.export import JSON_DIR
from repricer.streams.tools.runner import drained
from tests.workers import WorkerFactory

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000
WINDOWS = 5
CATALOG = {
    "A": {"cost": 10.0, "base_price": 13.0, "min_price": 11.0, "max_price": 40.0},
    "B": {"cost": 50.0, "base_price": 80.0, "min_price": 55.0, "max_price": 150.0},
    "C": {"cost": 3.0, "base_price": 5.0, "min_price": 3.2, "max_price": 9.0},
}
MAX_STEP = 0.05
MIN_MARGIN = 0.05

# malformed payloads on `orders` (and one click, one catalog item) with the reason each must get
POISON: list[tuple[str, bytes, str]] = [
    ("orders", b'{"order_id": "bad', "malformed_json"),
    (
        "orders",
        b'{"order_id":"n1","ts":"2026-01-01T00:00:01","sku":"A","qty":1,"unit_price":3}',
        "naive_timestamp",
    ),
    (
        "orders",
        b'{"order_id":"n2","ts":1767225601000,"sku":"A","qty":1,"unit_price":-3}',
        "out_of_range",
    ),
    (
        "orders",
        b'{"order_id":"n3","ts":1767225601000,"sku":"A","qty":"2","unit_price":3}',
        "wrong_type",
    ),
    (
        "orders",
        b'{"order_id":"n4","ts":1767225601000,"sku":"A","qty":1,"unit_price":1e999}',
        "non_finite",
    ),
    ("orders", b"\xff\xfe\x00 binary", "not_utf8"),
    ("orders", b'{"ts":1767225601000,"sku":"A","qty":1,"unit_price":3}', "missing_field"),
    ("orders", b'{"order_id":"n5","pad":"' + b"x" * 5000 + b'"}', "oversize"),
    (
        "clickstream",
        b'{"event_id":"n6","ts":1767225601000,"session_id":"s","sku":"A","type":"purchase"}',
        "invalid_value",
    ),
    (
        "catalog",
        b'{"sku":"Z","cost":1,"base_price":2,"min_price":5,"max_price":3}',
        "invalid_value",
    ),
]


def _ts(ms: int, rng: random.Random) -> Any:
    """Half the events carry RFC 3339 with an offset, half epoch milliseconds."""
    if rng.random() < 0.5:
        return ms
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def make_events(seed: int = 11) -> tuple[list[tuple[str, dict[str, Any]]], dict, dict]:
    """Valid orders and clicks, in event-time order, with the expected aggregates per window."""
    rng = random.Random(seed)
    events: list[tuple[int, str, dict[str, Any]]] = []
    sales: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    clicks: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    n = 0
    for w in range(WINDOWS):
        ws = T0 + w * MIN
        for sku, cat in CATALOG.items():
            if sku == "C" and w in (1, 2, 3):
                continue  # zero-demand windows for C
            for _ in range(rng.randint(1, 4)):
                n += 1
                ts, qty = ws + rng.randint(0, MIN - 1), rng.randint(1, 3)
                price = cat["base_price"]
                events.append(
                    (
                        ts,
                        "orders",
                        {
                            "order_id": f"o{n}",
                            "ts": ts,
                            "sku": sku,
                            "qty": qty,
                            "unit_price": price,
                        },
                    )
                )
                s = sales[(sku, ws)]
                s[0] += 1
                s[1] += qty
                s[2] += qty * price
            for kind_i, kind in enumerate(("view", "add_to_cart", "remove_from_cart")):
                for _ in range(rng.randint(0, 6 - 2 * kind_i)):
                    n += 1
                    ts = ws + rng.randint(0, MIN - 1)
                    events.append(
                        (
                            ts,
                            "clickstream",
                            {
                                "event_id": f"c{n}",
                                "ts": ts,
                                "session_id": f"s{n % 7}",
                                "sku": sku,
                                "type": kind,
                            },
                        )
                    )
                    clicks[(sku, ws)][kind_i] += 1
    events.sort(key=lambda e: e[0])
    out = []
    for ts, topic, body in events:
        body = dict(body, ts=_ts(ts, rng))
        out.append((topic, body))
    return out, sales, clicks


def _event_ms(ts: int | str) -> int:
    """Epoch ms of a test event's ``ts`` (epoch ms or an ISO-8601 string with zone)."""
    return ts if isinstance(ts, int) else int(datetime.fromisoformat(ts).timestamp() * 1000)


def expected_rows(sales: dict, clicks: dict, closed_until: int) -> tuple[dict, dict]:
    """A row in each table for every SKU window with an event, up to the last closed one (a
    window without events is zero demand and has no row)."""
    exp_sales, exp_clicks = {}, {}
    for sku, ws in sorted(set(sales) | set(clicks)):
        if ws < closed_until:
            o, u, r = sales.get((sku, ws), [0, 0, 0.0])
            exp_sales[(sku, ws)] = (o, u, round(r, 4))
            exp_clicks[(sku, ws)] = tuple(clicks.get((sku, ws), [0, 0, 0]))
    return exp_sales, exp_clicks


def ch_rows(url: str) -> tuple[dict, dict, Counter[str], int]:
    ch = connect(url)
    try:
        db = ch.database
        sales = {
            (sku, int(ws.timestamp() * 1000)): (o, u, round(r, 4))
            for sku, ws, o, u, r in ch.query(
                f"SELECT sku, window_start, orders, units, revenue FROM {db}.sales_1m FINAL"
            )
        }
        clicks = {
            (sku, int(ws.timestamp() * 1000)): (v, a, r)
            for sku, ws, v, a, r in ch.query(
                f"SELECT sku, window_start, views, add_to_cart, remove_from_cart FROM {db}.clicks_1m FINAL"
            )
        }
        dlq = Counter(
            {
                reason: n
                for reason, n in ch.query(
                    f"SELECT reason, count() FROM {db}.dead_letters FINAL GROUP BY reason"
                )
            }
        )
        changes = ch.query(f"SELECT count() FROM {db}.price_changes FINAL")[0][0]
    finally:
        ch.close()
    return sales, clicks, dlq, changes


async def read_price_changes(
    bootstrap: str, topic: str, expected: int, timeout: float = 60
) -> list[dict]:
    """What a downstream service sees: a consumer-group consumer on `price-changes`."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"downstream-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    out: list[dict] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(out) < expected and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(json.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    return out


def test_pipeline_end_to_end(
    broker: TansuBroker, sink_url: str, worker_factory: WorkerFactory
) -> None:
    settings, worker, producer = worker_factory(
        app="it",
        producer={"linger_ms": 5},
        clickhouse_url=sink_url,
        partitions=2,
        window_s=60,
        lateness_s=2,
        idle_source_s=2,
        max_step=MAX_STEP,
        min_margin=MIN_MARGIN,
        min_change=0.001,
        max_payload_bytes=4096,
        sink_flush_s=0.3,
    )
    topics = {
        "orders": settings.topic_orders,
        "clickstream": settings.topic_clicks,
        "catalog": settings.topic_catalog,
    }
    for sku, cat in CATALOG.items():
        producer.send(
            settings.topic_catalog,
            key=sku.encode(),
            value=json.dumps({"sku": sku, **cat}).encode(),
        )
    events, sales, clicks = make_events()
    payloads = [(t, json.dumps(body).encode()) for t, body in events]
    # poison goes in among the valid events; the stream must carry on around it
    mixed: list[tuple[str, bytes, int | None]] = [
        (t, json.dumps(body).encode(), (_event_ms(body["ts"]) - T0) // MIN) for t, body in events
    ]
    for i, (topic, raw, _) in enumerate(POISON):
        mixed.insert(1 + i * (len(payloads) // len(POISON)), (topic, raw, None))
    # one window at a time, the one before closed before the next is sent: a decision at
    # every close
    # (exploration is per SKU and window; how many windows one tick closes is timing)
    window = 0
    for topic, raw, w in mixed:
        if w is not None and w > window:
            producer.flush()
            worker.wait_until(
                lambda st, n=(w - 1) * len(CATALOG): (
                    st.get("windows_closed", 0) + st.get("quiet_windows", 0) >= n
                ),
                timeout=60,
            )
            window = w
        producer.send(topics[topic], key=b"k" + raw[:8], value=raw)
    producer.flush()
    sent = len(mixed) + len(CATALOG)
    worker.wait_until(lambda st: st.get("events_processed", 0) >= sent, timeout=120)

    # a later tick on every clickstream partition moves the watermark past window 5
    tick_ts = T0 + (WINDOWS + 2) * MIN
    for p in range(settings.partitions):
        tick = {
            "event_id": f"tick{p}",
            "ts": tick_ts,
            "session_id": "t",
            "sku": "TICK",
            "type": "view",
        }
        producer.send(settings.topic_clicks, value=json.dumps(tick).encode(), partition=p)
    producer.flush()
    sent += settings.partitions
    closed_until = T0 + (WINDOWS + 1) * MIN
    exp_sales, exp_clicks = expected_rows(sales, clicks, closed_until)
    # drained: everything in and written out, *and* the tick's windows closed (ingest is
    # batched now, so "all events processed" can hold before the tick's close is folded)
    done = drained(sent)
    stats = worker.wait_until(
        lambda st: done(st) and st.get("windows_closed", 0) >= len(exp_sales),
        timeout=120,
        stable_s=1.5,
    )
    assert stats["windows_closed"] == len(exp_sales)
    assert stats["late_events"] == 0
    n_changes = stats["price_changes"]
    assert n_changes >= len(CATALOG), "early exploration moves every SKU at least once"

    # downstream view of price changes: schema-valid, guardrails respected
    changes = asyncio.run(
        read_price_changes(broker.bootstrap, settings.topic_price_changes, n_changes)
    )
    assert len({c["event_id"] for c in changes}) == n_changes
    schema = json.loads((JSON_DIR / "PriceChange.json").read_text())
    last_price = {sku: cat["base_price"] for sku, cat in CATALOG.items()}
    for c in sorted(changes, key=lambda c: c["decided_at"]):
        jsonschema.validate(c, schema)
        cat = CATALOG[c["sku"]]
        floor = max(cat["min_price"], cat["cost"] * (1 + MIN_MARGIN))
        assert floor <= c["new_price"] <= cat["max_price"], c
        assert c["old_price"] == last_price[c["sku"]], "changes chain from the price in force"
        assert abs(c["new_price"] - c["old_price"]) <= MAX_STEP * c["old_price"] + 1e-9, c
        assert round(c["new_price"] * 100) == pytest.approx(c["new_price"] * 100, abs=1e-6)
        assert c["new_price"] != c["old_price"]
        last_price[c["sku"]] = c["new_price"]

    # the same events again: nothing may be counted twice
    for topic, raw in payloads:
        producer.send(topics[topic], key=b"again", value=raw)
    producer.flush()
    sent += len(payloads)
    worker.wait_until(drained(sent), timeout=120, stable_s=1.5)
    worker.stop()
    assert "Traceback" not in worker.tail_log(200_000), worker.tail_log()

    got_sales, got_clicks, dlq, ch_changes = ch_rows(sink_url)
    assert got_sales == exp_sales
    assert got_clicks == exp_clicks
    expected_dlq = Counter(reason for _, _, reason in POISON)
    expected_dlq["late_event"] = len(payloads)  # the resent events belong to closed windows
    assert dlq == expected_dlq
    assert ch_changes == n_changes
