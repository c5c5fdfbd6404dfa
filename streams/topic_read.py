"""Reading a Kafka topic to its end without a consumer group (``repricer dlq``, ``holdout draw``,
the conservation counts ``repricer report`` reads back).

:func:`read_topic` reads each partition from a given offset (or its beginning) up to the end
offsets it reads when it starts. Those end offsets are the contract, as Apache Kafka reports
them: records written after the read began are not part of this read (a consumer may see them;
they are left out), so a read of a busy topic ends.

Some brokers' end offsets lag behind batched writes: Tansu 0.6.0, the broker of the local demo
and the tests, reports a partition's end as the first offset of its last record batch + 1, so a
read to those ends misses the rest of that batch (200 dead letters written in batches of 25 over
4 partitions: 179 read). For such a broker, ``settle_s`` > 0 (``REPRICER_TOPIC_READ_SETTLE_S``)
takes every record the broker serves, also past the end offsets, and once at the end offsets
re-reads them and keeps polling until nothing new has come for ``settle_s``. On a topic that is
never quiet for that long the read then ends with its timeout: leave it at 0 (the default) on
Apache Kafka.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from repricer.infra.kafka_client import kafka_python_config
from repricer.streams.settings import Settings

Progress = Callable[[str], None]
PROGRESS_EVERY_S = 2.0


def read_topic(
    settings: Settings,
    topic: str,
    start: dict[int, int] | None = None,
    *,
    settle_s: float | None = None,
    timeout_s: float = 60.0,
    progress: Progress | None = None,
) -> Iterator[Any]:
    """Every record (kafka-python ``ConsumerRecord``) of ``topic`` up to the end offsets read
    when the read starts, from ``start[partition]`` where given (other partitions are not read),
    else from the beginning of every partition. ``settle_s`` (default:
    ``settings.topic_read_settle_s``) > 0 also takes what the broker serves past those ends
    until the topic is quiet for ``settle_s`` (see the module docstring). TimeoutError if the
    read takes longer than ``timeout_s``."""
    return read_records(
        topic,
        kafka_python_config(settings),
        start,
        settle_s=settings.topic_read_settle_s if settle_s is None else settle_s,
        timeout_s=timeout_s,
        progress=progress,
    )


def read_records(
    topic: str,
    config: dict[str, Any],
    start: dict[int, int] | None = None,
    *,
    settle_s: float = 0.0,
    timeout_s: float = 60.0,
    progress: Progress | None = None,
) -> Iterator[Any]:
    """:func:`read_topic` with kafka-python consumer settings ``config`` instead of
    :class:`Settings` (no consumer group is joined; ``group_id`` must not be set)."""
    settle = settle_s
    consumer = KafkaConsumer(enable_auto_commit=False, **config)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        tps = [TopicPartition(topic, p) for p in parts if start is None or p in start]
        if not tps:
            return
        ends: dict[TopicPartition, int] = consumer.end_offsets(tps)
        consumer.assign(tps)
        for tp in tps:
            first = (start or {}).get(tp.partition)
            if first is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, first)
        now = time.monotonic()
        deadline, said, last_new = now + timeout_s, now, now
        n = 0
        while True:
            if all(consumer.position(tp) >= ends[tp] for tp in tps):
                if settle <= 0:
                    break
                if time.monotonic() - last_new >= settle and not _later_ends(consumer, tps, ends):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {timeout_s:.0f}s")
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    if settle > 0:
                        ends[tp] = max(ends[tp], r.offset + 1)
                        last_new = time.monotonic()
                    elif r.offset >= ends[tp]:
                        continue  # written after the read began
                    n += 1
                    yield r
            if progress and time.monotonic() - said > PROGRESS_EVERY_S:
                progress(f"reading {topic}: {n} records so far")
                said = time.monotonic()
        if progress:
            progress(f"read {topic}: {n} records")
    finally:
        consumer.close()


def _later_ends(consumer: KafkaConsumer, tps: list[TopicPartition], ends: dict[Any, int]) -> bool:
    """Re-read the end offsets into ``ends``; whether a partition's end moved past its
    position (there is more to read)."""
    more = False
    for tp, end in consumer.end_offsets(tps).items():
        ends[tp] = max(ends[tp], end)
        more = more or consumer.position(tp) < ends[tp]
    return more


def latest_per_key(records: Iterable[Any]) -> tuple[dict[bytes, bytes | None], int]:
    """The latest value per key of ``records`` (a read of a compacted or changelog topic, in
    offset order per partition; an empty value is a tombstone, None) and how many were read."""
    latest: dict[bytes, bytes | None] = {}
    n = 0
    for r in records:
        latest[r.key or b""] = r.value or None
        n += 1
    return latest, n
