"""The poison-message table: hostile payloads among valid events, on a real broker and ClickHouse.

Each row of ``POISON`` is one hostile payload with the reason it must get. They are sent in
between the valid orders and clicks of ``tests/integration/test_pipeline.py``; the test then
finds every row's dead letter by its source coordinates -- on the DLQ topic (a consumer-group
consumer) and in ClickHouse ``dead_letters FINAL`` -- and compares ClickHouse's sales and clicks
with aggregates it computed itself: every valid event counted exactly once.

Decisions this table pins down (README, "Hostile input"):

* an order for a SKU that is not in the catalog is **accepted and windowed** (it is real revenue,
  and catalogs often lag behind new listings); the SKU gets no price decision until its catalog
  entry arrives;
* unknown extra fields are **accepted and ignored** (producers add fields before consumers know
  them), within the size cap and the nesting cap;
* the same ``order_id`` sent again (same or another offset or partition) is **counted once** in
  its SKU window; a copy arriving after the window closed is a ``late_event``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from repricer.infra.clickhouse import connect
from repricer.infra.local.clickhouse_server import ClickHouseServer
from repricer.infra.local.tansu import TansuBroker
from repricer.streams.tools.runner import drained
from tests.integration.test_pipeline import (
    CATALOG,
    MIN,
    T0,
    WINDOWS,
    ch_rows,
    expected_rows,
    make_events,
    read_price_changes,
)
from tests.workers import WorkerFactory

pytestmark = pytest.mark.integration

TS = T0 + 90_000  # inside window 1
BIG = 3 * 1024 * 1024


def order(**kw: object) -> bytes:
    body: dict[str, object] = {
        "order_id": f"p-{uuid.uuid4().hex[:8]}",
        "ts": TS,
        "sku": "A",
        "qty": 1,
        "unit_price": 13.0,
    }
    body.update(kw)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def ms(ts: int | str) -> int:
    return ts if isinstance(ts, int) else int(datetime.fromisoformat(ts).timestamp() * 1000)


def with_raw(field: str, raw: bytes) -> bytes:
    """An order whose ``field`` holds ``raw`` verbatim (for tokens json.dumps will not write)."""
    return order(**{field: "@@"}).replace(b'"@@"', raw)


@dataclass(frozen=True)
class Case:
    name: str
    topic: str  # "orders", "clickstream" or "catalog"
    payload: bytes | None
    reason: str


POISON: list[Case] = [
    Case("truncated JSON", "orders", order()[:30], "malformed_json"),
    Case("not JSON at all", "orders", b"hello, world", "malformed_json"),
    Case("empty value", "orders", b"", "malformed_json"),
    Case("null value (tombstone)", "orders", None, "empty"),
    Case(
        "non-UTF-8 bytes",
        "orders",
        order(order_id="\udcff").replace(b"\\udcff", b"\xff\xfe"),
        "not_utf8",
    ),
    Case("qty as a string", "orders", order(qty="2"), "wrong_type"),
    Case("price as a string", "orders", order(unit_price="13.00"), "wrong_type"),
    Case("price null", "orders", order(unit_price=None), "wrong_type"),
    Case("ts as a string of digits", "orders", order(ts=str(TS)), "invalid_value"),
    Case("NaN price", "orders", with_raw("unit_price", b"NaN"), "non_finite"),
    Case("Infinity price", "orders", with_raw("unit_price", b"Infinity"), "non_finite"),
    Case("-Infinity price", "orders", with_raw("unit_price", b"-Infinity"), "non_finite"),
    Case("price 1e999", "orders", with_raw("unit_price", b"1e999"), "non_finite"),
    Case("zero price", "orders", order(unit_price=0), "out_of_range"),
    Case("negative price", "orders", order(unit_price=-13.0), "out_of_range"),
    Case("zero qty", "orders", order(qty=0), "out_of_range"),
    Case("negative qty", "orders", order(qty=-1), "out_of_range"),
    Case("qty 1e12 (float)", "orders", with_raw("qty", b"1e12"), "wrong_type"),
    Case("qty 10**12 (int)", "orders", order(qty=10**12), "out_of_range"),
    Case("SKU with spaces", "orders", order(sku="A; DROP TABLE x"), "invalid_value"),
    Case("SKU of 500 chars", "orders", order(sku="A" * 500), "out_of_range"),
    Case("missing order_id", "orders", order(order_id=...), "missing_field"),
    Case("missing ts", "orders", order(ts=...), "missing_field"),
    Case("missing sku", "orders", order(sku=...), "missing_field"),
    Case("array instead of object", "orders", b"[1, 2, 3]", "wrong_type"),
    Case(
        "extra field of 40 nested arrays",
        "orders",
        with_raw("x", b"[" * 40 + b"]" * 40),
        "too_deep",
    ),
    Case("20k nested arrays", "orders", b"[" * 20_000 + b"]" * 20_000, "too_deep"),
    Case("3 MB payload", "orders", order(pad="x" * BIG), "oversize"),
    Case("timestamp without zone", "orders", order(ts="2026-01-01T00:01:30"), "naive_timestamp"),
    Case("far future, year 2090", "orders", order(ts="2090-01-01T00:00:00Z"), "future_timestamp"),
    Case("far future, year 2999", "orders", order(ts="2999-01-01T00:00:00Z"), "out_of_range"),
    Case("ancient, 1970", "orders", order(ts="1970-01-02T00:00:00Z"), "out_of_range"),
    Case("epoch seconds, not ms", "orders", order(ts=TS // 1000), "out_of_range"),
    Case(
        "click of an unknown type",
        "clickstream",
        json.dumps(
            {"event_id": "c-x", "ts": TS, "session_id": "s", "sku": "A", "type": "purchase"}
        ).encode(),
        "invalid_value",
    ),
    Case(
        "catalog with min > max",
        "catalog",
        json.dumps(
            {"sku": "Z", "cost": 1, "base_price": 2, "min_price": 5, "max_price": 3}
        ).encode(),
        "invalid_value",
    ),
]

# accepted on purpose (see the module docstring): they must be counted, once
NEW_SKU = "NEW-1"
ACCEPTED = [
    ("orders", {"order_id": "new-1", "ts": TS, "sku": NEW_SKU, "qty": 2, "unit_price": 5.0}),
    ("orders", {"order_id": "new-2", "ts": TS + MIN, "sku": NEW_SKU, "qty": 1, "unit_price": 5.0}),
    (
        "orders",
        {"order_id": "extra-1", "ts": TS, "sku": "B", "qty": 1, "unit_price": 80.0}
        | {"coupon": "SPRING", "channel": "app", "meta": {"ab": [1, 2]}},
    ),
]


@pytest.fixture
def sink_url(clickhouse_server: ClickHouseServer) -> str:
    return clickhouse_server.url(f"poison_{uuid.uuid4().hex[:8]}")


def test_every_poison_case_gets_its_reason_and_nothing_valid_is_lost(
    broker: TansuBroker, sink_url: str, worker_factory: WorkerFactory
) -> None:
    settings, worker, producer = worker_factory(
        app="poison",
        producer={"linger_ms": 5, "max_request_size": 8 * 1024 * 1024},
        clickhouse_url=sink_url,
        partitions=2,
        lateness_s=2,
        idle_source_s=2,
        sink_flush_s=0.3,
    )
    topics = {"orders": settings.topic_orders, "clickstream": settings.topic_clicks}
    topics["catalog"] = settings.topic_catalog
    where: dict[tuple[str, int, int], Case] = {}

    def send(topic: str, value: bytes | None, key: bytes, case: Case | None = None) -> Any:
        md = producer.send(topics[topic], key=key, value=value).get(timeout=30)
        if case is not None:
            where[(md.topic, md.partition, md.offset)] = case
        return (md.topic, md.partition, md.offset)

    for sku, cat in CATALOG.items():
        send("catalog", json.dumps({"sku": sku, **cat}).encode(), sku.encode())
    events, sales, clicks = make_events()
    for topic, body in ACCEPTED:  # in event-time order among the others
        at = next(i for i, (_, b) in enumerate(events) if ms(b["ts"]) > body["ts"])
        events.insert(at, (topic, body))
        s = sales[(body["sku"], body["ts"] - body["ts"] % MIN)]
        s[0], s[1], s[2] = s[0] + 1, s[1] + body["qty"], s[2] + body["qty"] * body["unit_price"]
    sent = len(CATALOG)
    step = len(events) // len(POISON)
    duplicates = 0
    dup_groups: list[set[tuple[str, int, int]]] = []
    for i, (topic, body) in enumerate(events):
        raw = json.dumps(body).encode()
        key = body["sku"].encode()
        first = send(topic, raw, key)
        sent += 1
        if topic == "orders" and i % 7 == 0:  # the same order again: same key, other key
            # whichever of the three the engine sees first counts, the other two are
            # dead-lettered as duplicate_order
            group = {first, send(topic, raw, key), send(topic, raw, b"another-key-" + key)}
            dup_groups.append(group)
            sent += 2
            duplicates += 2
        if i % step == 0 and i // step < len(POISON):
            case = POISON[i // step]
            send(case.topic, case.payload, b"poison", case)
            sent += 1
    assert len(where) == len(POISON) and duplicates >= 5
    worker.wait_until(
        lambda st: (
            st.get("events_processed", 0) >= sent
            and st.get("windows_closed", 0) + st.get("quiet_windows", 0) >= 3 * (len(CATALOG) + 1)
        ),  # every SKU's first ones
        timeout=180,
    )

    # an order from 2001 once the SKUs' first windows closed: late, not a new window
    ancient = Case(
        "ancient, 2001 (in range)", "orders", order(ts="2001-01-01T00:00:00Z"), "late_event"
    )
    send("orders", ancient.payload, b"late", ancient)
    # and one on the internal aggregates topic that its ClickHouse table cannot hold
    topics["aggregates"] = f"{settings.app_id}-aggregates"
    row = {"sku": "GHOST", "window_start": T0, "window_end": T0 + MIN, "orders": -1}
    row |= {"units": 1, "revenue": 1.0, "price": 1.0, "late_events": 0}
    bad_row = Case(
        "sink row out of its column's range",
        "aggregates",
        json.dumps({"t": "sales_1m", "r": row}).encode(),
        "bad_sink_row",
    )
    send("aggregates", bad_row.payload, b"GHOST", bad_row)
    # a tick on every clickstream partition moves the watermark past the last window
    for p in range(settings.partitions):
        tick = {"event_id": f"tick{p}", "ts": T0 + (WINDOWS + 2) * MIN, "session_id": "t"}
        tick |= {"sku": "TICK", "type": "view"}
        producer.send(settings.topic_clicks, value=json.dumps(tick).encode(), partition=p)
    producer.flush()
    sent += 1 + settings.partitions  # (the aggregates row is not an input event)
    stats = worker.wait_until(drained(sent), timeout=180, stable_s=1.5)
    dlq_topic = asyncio.run(
        read_price_changes(broker.bootstrap, settings.topic_dlq, len(where) + duplicates)
    )  # any topic of JSON records: here the DLQ, as a downstream consumer reads it
    worker.stop()
    assert "Traceback" not in worker.tail_log(10**7), worker.tail_log()

    cases = [*POISON, ancient, bad_row]
    expected_reasons = Counter(c.reason for c in cases)
    expected_reasons["duplicate_order"] = duplicates
    assert stats["dlq"] == dict(expected_reasons)
    # two duplicate letters per order sent three times, each at one of its three offsets
    dup_letters = [dl for dl in dlq_topic if dl["reason"] == "duplicate_order"]
    dlq_topic = [dl for dl in dlq_topic if dl["reason"] != "duplicate_order"]
    for group in dup_groups:
        at = [dl for dl in dup_letters if (dl["source_topic"], dl["source_partition"],
                                           dl["source_offset"]) in group]  # fmt: skip
        assert len(at) == 2 and len({dl["source_offset"] for dl in at}) == 2, (group, at)
    assert len(dup_letters) == duplicates

    def case_of(dl: dict) -> Case:
        if dl["reason"] == "late_event":  # found by the windows agent: source is in the detail
            src, off = dl["detail"].split(" from ", 1)[1].split(" ", 1)[0].split("@")
            topic, part = src.rsplit("/", 1)
            return where[(topic, int(part), int(off))]
        return where[(dl["source_topic"], dl["source_partition"], dl["source_offset"])]

    # every case's dead letter, on the topic and in ClickHouse, carries the case's reason
    got_topic = {case_of(dl).name: dl["reason"] for dl in dlq_topic}
    assert got_topic == {c.name: c.reason for c in cases}
    assert all(len(dl["payload_excerpt"]) <= 2048 for dl in dlq_topic)
    ch = connect(sink_url)
    try:
        rows = ch.query(
            f"SELECT source_topic, source_partition, source_offset, reason, detail "
            f"FROM {ch.database}.dead_letters FINAL"
        )
    finally:
        ch.close()
    got_ch = {
        case_of(
            {"source_topic": t, "source_partition": p, "source_offset": o, "reason": r, "detail": d}
        ).name: r
        for t, p, o, r, d in rows
        if r != "duplicate_order"
    }
    assert sum(r == "duplicate_order" for *_, r, _ in rows) == duplicates
    assert got_ch == got_topic

    # every valid event counted exactly once: duplicates and poison changed nothing
    exp_sales, exp_clicks = expected_rows(sales, clicks, T0 + (WINDOWS + 1) * MIN)
    got_sales, got_clicks, dlq, _ = ch_rows(sink_url)
    assert got_sales == exp_sales
    assert got_clicks == exp_clicks
    assert dlq == expected_reasons
    assert (NEW_SKU, T0 + MIN) in got_sales and got_sales[(NEW_SKU, T0 + MIN)][:2] == (1, 2)
