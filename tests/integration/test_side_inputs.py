"""The side-input bootstrap on a real broker: a group consumer of the public topics, as ingest's,
returns no event before its catalog and control partitions are read to their end, and no record
is skipped or returned twice, also when the bootstrap hits its bound."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from kafka import KafkaProducer

from repricer.infra.kafka_admin import ensure_topics
from repricer.infra.kafka_client import aiokafka_config, kafka_python_config
from repricer.infra.local.tansu import TOPIC_READ_SETTLE_S, TansuBroker
from repricer.streams.consumers import LogRebalance
from repricer.streams.settings import Settings
from repricer.streams.side_inputs import SideInputBootstrap

pytestmark = pytest.mark.integration

CATALOG = 300
ORDERS = 3000


def write_inputs(settings: Settings) -> dict[str, int]:
    """The catalog, then the orders (as `repricer replay` sends them): records per topic."""
    p = KafkaProducer(**kafka_python_config(settings), linger_ms=5)
    try:
        for i in range(CATALOG):
            item = {"sku": f"S{i}", "cost": 1.0, "base_price": 2.0, "min_price": 1.5,
                    "max_price": 4.0, "currency": "EUR"}  # fmt: skip
            p.send(
                settings.topic_catalog, key=item["sku"].encode(), value=json.dumps(item).encode()
            )
        p.flush()
        for i in range(ORDERS):
            p.send(settings.topic_orders, value=b'{"order": %d}' % i)
        p.flush()
    finally:
        p.close()
    return {settings.topic_catalog: CATALOG, settings.topic_orders: ORDERS}


async def consume(
    settings: Settings, boot: SideInputBootstrap, expected: int
) -> list[tuple[str, int, int]]:
    """(topic, partition, offset) of every record the consumer hands out, in that order, read
    as ingest reads (small batches; the bootstrap's step after each), until ``expected``."""
    consumer = AIOKafkaConsumer(
        group_id=f"side-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **aiokafka_config(settings),
    )
    await consumer.start()
    topics = [settings.topic_orders, settings.topic_clicks, settings.topic_catalog,
              settings.topic_control]  # fmt: skip
    consumer.subscribe(topics, listener=LogRebalance("test", consumer, boot.assigned))
    got: list[tuple[str, int, int]] = []
    try:
        async with asyncio.timeout(90):
            while len(got) < expected or boot.pending:
                batch: dict[Any, list[Any]] = await consumer.getmany(timeout_ms=200, max_records=25)
                for tp, records in boot.admit(consumer, batch).items():
                    got += [(tp.topic, tp.partition, r.offset) for r in records]
                await boot.step(consumer)
    finally:
        await consumer.stop()
    return got


def check_exactly_once(got: list[tuple[str, int, int]], counts: dict[str, int]) -> None:
    """Every record of every partition once, in offset order per partition."""
    per: dict[tuple[str, int], list[int]] = {}
    for topic, partition, offset in got:
        per.setdefault((topic, partition), []).append(offset)
    for offsets in per.values():
        assert offsets == list(range(len(offsets)))
    for topic, n in counts.items():
        assert sum(len(v) for (t, _), v in per.items() if t == topic) == n, topic


def test_no_event_before_the_catalog_is_read(broker: TansuBroker) -> None:
    settings = Settings(broker=broker.url, partitions=2)
    ensure_topics(settings)
    counts = write_inputs(settings)
    boot = SideInputBootstrap(
        [settings.topic_catalog, settings.topic_control], settle_s=TOPIC_READ_SETTLE_S
    )
    got = asyncio.run(consume(settings, boot, sum(counts.values())))
    check_exactly_once(got, counts)
    first_order = next(i for i, (t, _, _) in enumerate(got) if t == settings.topic_orders)
    assert all(t == settings.topic_catalog for t, _, _ in got[:first_order])
    assert first_order == CATALOG  # the whole catalog, then the events
    assert boot.records == CATALOG and not boot.pending


def test_bounded_bootstrap_goes_on_and_loses_nothing(
    broker: TansuBroker, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(broker=broker.url, partitions=2)
    ensure_topics(settings)
    counts = write_inputs(settings)
    # a bound already passed at the first step: the events resume at once, with a warning
    boot = SideInputBootstrap(
        [settings.topic_catalog, settings.topic_control], settle_s=3600.0, timeout_s=0.0
    )
    with caplog.at_level(logging.INFO, logger="repricer.streams.side_inputs"):
        got = asyncio.run(consume(settings, boot, sum(counts.values())))
    check_exactly_once(got, counts)
    # the bootstrap's own warnings: the Kafka client may add its own (kafka-python warns when
    # one of its network tasks held its loop over 0.1 s on a busy machine)
    warned = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "repricer.streams.side_inputs"
    ]
    assert len(warned) == 1 and "not read to the end in 0 s" in warned[0].getMessage()


async def two_members(settings: Settings, expected: int) -> list[tuple[str, int, int]]:
    """Two members of one group read as ingest does (hand out a batch, commit it, step), one of
    them slowly while it reads its part of the catalog: every record either member hands out, in
    the order they are handed out."""
    group = f"side-{uuid.uuid4().hex[:6]}"
    topics = [settings.topic_orders, settings.topic_clicks, settings.topic_catalog,
              settings.topic_control]  # fmt: skip
    members = []
    for _ in range(2):
        boot = SideInputBootstrap(
            [settings.topic_catalog, settings.topic_control], settle_s=TOPIC_READ_SETTLE_S
        )
        c = AIOKafkaConsumer(
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            heartbeat_interval_ms=300,  # the first member hears of the second's join sooner
            **aiokafka_config(settings),
        )
        await c.start()
        c.subscribe(topics, listener=LogRebalance("test", c, boot.assigned))
        members.append((c, boot))
    got: list[tuple[str, int, int]] = []

    def owns_one_catalog_partition(c: AIOKafkaConsumer) -> bool:
        return sum(tp.topic == settings.topic_catalog for tp in c.assignment()) == 1

    async def run(c: AIOKafkaConsumer, boot: SideInputBootstrap, pause_s: float) -> None:
        while len(got) < expected or boot.pending:
            batch: dict[Any, list[Any]] = await c.getmany(timeout_ms=200, max_records=10)
            admitted = boot.admit(c, batch)
            for tp, records in admitted.items():
                got.extend((tp.topic, tp.partition, r.offset) for r in records)
            if admitted:
                await c.commit({tp: rs[-1].offset + 1 for tp, rs in admitted.items() if rs})
                if boot.pending:  # slow while it forwards its part of the catalog
                    await asyncio.sleep(pause_s)
            await boot.step(c)

    try:
        async with asyncio.timeout(120):
            # both in the group, one catalog partition each, before either hands anything out
            while not all(owns_one_catalog_partition(c) for c, _ in members):
                await asyncio.sleep(0.2)
            (fast, fast_boot), (slow, slow_boot) = members
            await asyncio.gather(run(fast, fast_boot, 0.0), run(slow, slow_boot, 0.3))
    finally:
        for c, _ in members:
            await c.stop()
    return got


def test_no_event_before_the_groups_whole_catalog(broker: TansuBroker) -> None:
    """The fast member reads its half of the catalog in a few batches; its events still wait
    until the slow member has forwarded (committed) the other half."""
    settings = Settings(broker=broker.url, partitions=2)
    ensure_topics(settings)
    counts = write_inputs(settings)
    got = asyncio.run(two_members(settings, sum(counts.values())))
    check_exactly_once(got, counts)
    first_order = next(i for i, (t, _, _) in enumerate(got) if t == settings.topic_orders)
    assert first_order == CATALOG, [t for t, _, _ in got[: first_order + 1]].count(
        settings.topic_catalog
    )
