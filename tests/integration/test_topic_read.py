"""A topic read to its end (``streams.topic_read``) on the real broker (Tansu).

Dead letters written in batches are all listed with the settle the test fixtures set (without
it Tansu's end offsets, which lag batched writes, cut each partition's last batch: 179 of 200
were read). Without the settle a read ends at the end offsets taken when it starts, also while
records keep coming (single-record batches, whose end offsets Tansu reports right); with it a
topic that is never quiet ends in the timeout, which is why it is off by default.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from kafka import KafkaProducer

from repricer.infra.kafka_admin import ensure_topics
from repricer.infra.kafka_client import kafka_python_config, producer_batch_bytes
from repricer.infra.local.tansu import TOPIC_READ_SETTLE_S, TansuBroker
from repricer.schemas import Rejection
from repricer.streams import dead_letters
from repricer.streams.settings import Settings
from repricer.streams.tools import dlq
from repricer.streams.topic_read import read_topic

pytestmark = pytest.mark.integration
LETTERS = 200
BATCH = 25


def _settings(broker: TansuBroker, **kw: Any) -> Settings:
    s = Settings(broker=broker.url, topic_dlq=f"dlq-{uuid.uuid4().hex[:6]}", **kw)
    ensure_topics(s)
    return s


def test_dead_letters_written_in_batches_are_all_listed(broker: TansuBroker) -> None:
    settings = _settings(broker, topic_read_settle_s=TOPIC_READ_SETTLE_S)
    written: set[str] = set()
    p = KafkaProducer(linger_ms=50, **kafka_python_config(settings))
    try:
        for i in range(LETTERS):
            letter = dead_letters.letter(
                Rejection(reason="wrong_type", detail=f"letter {i}"),
                topic=settings.topic_orders,
                partition=i % 3,
                offset=i,
                key=b"SKU-%d" % i,
                value=b'{"qty": "three", "n": %d}' % i,
            )
            p.send(settings.topic_dlq, key=letter.key, value=letter.value, headers=letter.headers)
            written.add(f"{settings.topic_orders}/{i % 3}@{i}")
            if i % BATCH == BATCH - 1:
                p.flush()  # batches of up to 25 records over the partitions
    finally:
        p.close()
    said: list[str] = []
    entries, unreadable = dlq.read_letters(settings, timeout_s=60, progress=said.append)
    assert unreadable == 0
    assert sorted(e.id for e in entries) == sorted(written)
    listed = dlq.summary(entries, ["reason"])
    assert listed["letters"] == LETTERS and listed["groups"][0]["letters"] == LETTERS
    assert said[-1] == f"read {settings.topic_dlq}: {LETTERS} records"

    # from given offsets: only those partitions, each from its offset on
    by_part: dict[int, list[int]] = {}
    for e in entries:
        by_part.setdefault(e.partition, []).append(e.offset)
    part = min(by_part)
    got = [(r.partition, r.offset) for r in read_topic(settings, settings.topic_dlq, {part: 3})]
    assert got == [(part, o) for o in sorted(by_part[part]) if o >= 3]


def test_without_settle_a_read_ends_at_the_end_offsets_it_started_with(
    broker: TansuBroker,
) -> None:
    settings = _settings(broker, kafka_single_record_batches=True)
    assert settings.topic_read_settle_s == 0  # the production default
    p = KafkaProducer(batch_size=producer_batch_bytes(settings), **kafka_python_config(settings))
    try:
        for i in range(30):
            p.send(settings.topic_dlq, value=b"before %d" % i, partition=0)
        p.flush()
        read = read_topic(settings, settings.topic_dlq, timeout_s=60)
        first = next(read)  # the read has begun: its end offsets are taken
        for i in range(10):
            p.send(settings.topic_dlq, value=b"after %d" % i, partition=0)
        p.flush()
        rest = list(read)
    finally:
        p.close()
    assert [r.value for r in [first, *rest]] == [b"before %d" % i for i in range(30)]
    # the records written after the read began are there for the next read
    assert len(list(read_topic(settings, settings.topic_dlq, timeout_s=60))) == 40


def test_with_settle_a_topic_that_is_never_quiet_ends_in_the_timeout(
    broker: TansuBroker,
) -> None:
    settings = _settings(broker, topic_read_settle_s=TOPIC_READ_SETTLE_S)
    stop = threading.Event()

    def write() -> None:  # a record every 0.1 s, at most 150 (15 s)
        p = KafkaProducer(**kafka_python_config(settings))
        try:
            for i in range(150):
                if stop.is_set():
                    break
                p.send(settings.topic_dlq, value=b"busy %d" % i, partition=0).get(timeout=10)
                time.sleep(0.1)
        finally:
            p.close()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        time.sleep(0.5)
        with pytest.raises(TimeoutError, match="could not read"):
            for _ in read_topic(settings, settings.topic_dlq, timeout_s=4):
                pass
        # the same busy topic read without the settle ends
        assert list(read_topic(settings, settings.topic_dlq, settle_s=0, timeout_s=60))
    finally:
        stop.set()
        writer.join(timeout=30)
