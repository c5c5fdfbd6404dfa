"""`repricer replay` sends valid historical orders in event-time order and skips bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from infra.kafka_admin import ensure_topics
from infra.local.tansu import TansuBroker
from streams.replay import read_orders, replay
from streams.settings import Settings

pytestmark = pytest.mark.integration

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
    rows, problems = read_orders(path)
    assert [json.loads(p)["order_id"] for _, p, _ in rows] == ["o1", "o2", "o3"]
    assert len(problems) == 2 and "naive_timestamp" in problems[0] and "out_of_range" in problems[1]
    settings = Settings(broker=broker.url, partitions=1)
    ensure_topics(settings)
    assert replay(path, speed=0, settings=settings) == {"sent": 3, "skipped": 2}
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, consumer_timeout_ms=5000)
    tp = TopicPartition(settings.topic_orders, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = [json.loads(m.value)["order_id"] for m in consumer]
    consumer.close()
    assert got == ["o1", "o2", "o3"]
