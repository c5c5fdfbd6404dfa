"""``repricer tail``: the example downstream consumer of ``price-changes``.

It joins a consumer group (aiokafka), validates each event against ``PriceChange`` v1, drops
duplicates by ``event_id`` and prints one JSON line per change. A real subscriber is this, plus
whatever it does with the price.
"""

from __future__ import annotations

import sys

import msgspec
from aiokafka import AIOKafkaConsumer

from repricer.infra.kafka_client import aiokafka_config
from repricer.schemas import PriceChange
from repricer.streams.settings import Settings


async def tail(
    settings: Settings,
    *,
    group: str,
    from_beginning: bool = False,
    max_events: int = 0,
    idle_timeout: float = 0,
) -> int:
    dec = msgspec.json.Decoder(PriceChange)
    consumer = AIOKafkaConsumer(
        settings.topic_price_changes,
        group_id=group,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=True,
        **aiokafka_config(settings),
    )
    await consumer.start()
    seen: set[str] = set()
    n = 0
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1000 if idle_timeout else 60_000)
            if not batch and idle_timeout:
                idle_timeout -= 1
                if idle_timeout <= 0:
                    return 0
            for records in batch.values():
                for r in records:
                    try:
                        change = dec.decode(r.value)
                    except msgspec.DecodeError as exc:
                        print(f"invalid price change at offset {r.offset}: {exc}", file=sys.stderr)
                        continue
                    if change.event_id in seen:
                        continue
                    seen.add(change.event_id)
                    print(msgspec.json.encode(change).decode(), flush=True)
                    n += 1
                    if max_events and n >= max_events:
                        return 0
    finally:
        await consumer.stop()
