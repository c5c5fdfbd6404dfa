"""Drive the closed-loop market simulator through Kafka.

Publishes the catalog, then each simulated minute's orders and clicks, and applies the price
changes it reads back from ``price-changes`` — so the shop reacts to repricer's own decisions.
Simulated time runs ``speed`` times faster than wall time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from repricer.infra.kafka_client import aiokafka_config, producer_batch_bytes
from repricer.schemas import Order, PriceChange, encode
from repricer.streams.settings import Settings
from repricer.streams.tools.simulator.market import Market

log = logging.getLogger(__name__)
MINUTE_MS = 60_000
DAY_MS = 86_400_000

# One of each kind of bad input, cycled through when poison is on.
POISON: tuple[bytes, ...] = (
    b'{"order_id": "bad-json", "ts": ',
    b'{"order_id":"p1","ts":"2024-01-01T00:00:00","sku":"X","qty":1,"unit_price":3.5}',
    b'{"order_id":"p2","ts":1700000000000,"sku":"X","qty":1,"unit_price":-4}',
    b'{"order_id":"p3","ts":1700000000000,"sku":"X","qty":"lots","unit_price":4}',
    b'{"order_id":"p4","ts":1700000000000,"sku":"X","qty":1,"unit_price":1e999}',
    b"\xff\xfe not utf-8",
)


def default_start_ms() -> int:
    """Midnight UTC a week ago: simulated time stays in the past of the wall clock."""
    now = int(time.time() * 1000)
    return now - now % DAY_MS - 7 * DAY_MS


@dataclass
class SimReport:
    minutes: int = 0
    orders: int = 0
    clicks: int = 0
    poison: int = 0
    price_changes_applied: int = 0
    price_paths: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    realised: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return self.orders + self.clicks + self.poison


async def run_simulation(
    settings: Settings,
    *,
    skus: int = 30,
    minutes: int = 60,
    speed: float = 240.0,
    seed: int = 7,
    poison_every: int = 0,
    start_ms: int | None = None,
    tail_minutes: int = 2,
    on_minute: Callable[[SimReport], None] | None = None,
) -> SimReport:
    """Run the market for ``minutes`` simulated minutes; returns what was sent and applied.

    ``tail_minutes`` extra minutes of clicks only at the end push the watermark past the last
    window so that it closes too.
    """
    start = start_ms if start_ms is not None else default_start_ms()
    market = Market(n_skus=skus, seed=seed, start_ms=start)
    rep = SimReport(price_paths={s: [(start, market.price(s))] for s in list(market.truths)[:5]})
    conn = aiokafka_config(settings)
    producer = AIOKafkaProducer(
        linger_ms=5, max_batch_size=producer_batch_bytes(settings, 256 * 1024), **conn
    )
    consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="latest", **conn)
    await producer.start()
    await consumer.start()
    dec = msgspec.json.Decoder(PriceChange)
    try:
        parts = await _partitions(consumer, settings.topic_price_changes)
        consumer.assign([TopicPartition(settings.topic_price_changes, p) for p in parts])
        for p in parts:  # start from the end: only changes decided from now on apply
            await consumer.seek_to_end(TopicPartition(settings.topic_price_changes, p))
        for item in market.catalog():
            await producer.send(settings.topic_catalog, key=item.sku.encode(), value=encode(item))
        await producer.flush()
        n = 0
        wall0 = time.monotonic()
        for minute in range(minutes + tail_minutes):
            t0 = start + minute * MINUTE_MS
            events = market.step(t0, t0 + MINUTE_MS)
            for ev in events:
                if minute >= minutes and isinstance(ev, Order):
                    continue
                if isinstance(ev, Order):
                    rep.orders += 1
                    await producer.send(
                        settings.topic_orders, key=ev.order_id.encode(), value=encode(ev)
                    )
                else:
                    rep.clicks += 1
                    await producer.send(
                        settings.topic_clicks, key=ev.session_id.encode(), value=encode(ev)
                    )
                n += 1
                if poison_every and n % poison_every == 0:
                    bad = POISON[rep.poison % len(POISON)]
                    rep.poison += 1
                    await producer.send(settings.topic_orders, key=b"poison", value=bad)
            await producer.flush()
            rep.minutes = minute + 1
            # apply the price changes that came back, then keep pace with simulated time
            deadline = wall0 + (minute + 1) * 60.0 / speed
            while True:
                batch = await consumer.getmany(
                    timeout_ms=max(0, int((deadline - time.monotonic()) * 1000))
                )
                for records in batch.values():
                    for r in records:
                        try:
                            change = dec.decode(r.value)
                        except msgspec.DecodeError:
                            continue
                        eff = max(change.effective_at, market.now_ms)
                        market.apply_price(change.sku, change.new_price, eff)
                        rep.price_changes_applied += 1
                        if change.sku in rep.price_paths:
                            rep.price_paths[change.sku].append((eff, change.new_price))
                if time.monotonic() >= deadline:
                    break
            if on_minute:
                on_minute(rep)
        rep.realised = market.realised()
    finally:
        await producer.stop()
        await consumer.stop()
    return rep


async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic!r} has no partitions (did `repricer init` run?)")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)
