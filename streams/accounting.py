"""Read the engine's conservation counts back from its durable state (``repricer report``).

Each SKU partition's record in the ``partition-state`` table holds, after every tick, where the
events it accepted are (``streams.engine.state.Accounting``). This reads the latest record per
partition from the table's changelog topic to its end, without joining a consumer group
(:mod:`streams.topic_read`: the end offsets when the read starts; on a broker whose end offsets
lag, ``REPRICER_TOPIC_READ_SETTLE_S``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from repricer.infra.kafka_client import kafka_python_config
from repricer.streams.settings import Settings
from repricer.streams.topic_read import latest_per_key, read_records


def changelog_topic(settings: Settings) -> str:
    return f"{settings.app_id}-partition-state-changelog"


def latest_records(
    topic: str, *, settle_s: float = 0.0, timeout_s: float = 60.0, **config: Any
) -> dict[str, Any]:
    """The latest value per key of a changelog ``topic`` (JSON keys and values; a tombstone is
    None), read from the start of every partition to its end (:func:`read_records`; a read that
    cannot reach the end raises TimeoutError rather than answer from part of the topic).
    ``config``: kafka-python consumer settings."""
    raw, _ = latest_per_key(read_records(topic, config, settle_s=settle_s, timeout_s=timeout_s))
    return {json.loads(k): json.loads(v) if v else None for k, v in raw.items()}


def partition_accounting(records: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each partition's conservation counts from its ``partition-state`` records."""
    return {
        k: v["acct"]
        for k, v in sorted(records.items())
        if isinstance(v, dict) and v.get("acct") is not None  # null: no tick yet
    }


def read_accounting(settings: Settings, *, timeout_s: float = 60.0) -> dict[str, Any]:
    """``{"partitions": {p: counts}, "unaccounted": [events, units], "ok": bool}``; ``ok`` is
    None when no partition has recorded a tick yet."""
    records = latest_records(
        changelog_topic(settings),
        settle_s=settings.topic_read_settle_s,
        timeout_s=timeout_s,
        **kafka_python_config(settings),
    )
    partitions = partition_accounting(records)
    unaccounted = [sum(a["unaccounted"][i] for a in partitions.values()) for i in range(2)]
    return {
        "partitions": partitions,
        "unaccounted": unaccounted,
        "ok": (not any(unaccounted)) if partitions else None,
    }


def count_source_events(settings: Settings, *, timeout_s: float = 120.0) -> dict[str, Any]:
    """Valid orders and clicks in the input topics up to the ingest group's committed offsets,
    decoded exactly as ingest decodes them (end-of-input markers and rejected records are not
    events). ``{"events": n, "by_source": {"orders/0": n, ...}, "committed": {...}}``."""
    from repricer.schemas import Click, Order, Rejection, decode
    from repricer.schemas.decode import watermark_marker

    kinds = (settings.topic_orders, settings.topic_clicks)
    consumer = KafkaConsumer(
        group_id=f"{settings.app_id}-ingest",
        enable_auto_commit=False,
        **kafka_python_config(settings),
    )
    by_source: dict[str, int] = {}
    committed: dict[str, int] = {}
    try:
        ends: dict[TopicPartition, int] = {}
        for topic in kinds:
            for p in sorted(consumer.partitions_for_topic(topic) or ()):
                tp = TopicPartition(topic, p)
                ends[tp] = consumer.committed(tp) or 0
                committed[f"{topic}/{p}"] = ends[tp]
        todo = [tp for tp, end in ends.items() if end > 0]
        if todo:
            consumer.assign(todo)
            consumer.seek_to_beginning(*todo)
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for tp, msgs in consumer.poll(timeout_ms=500).items():
                src = f"{tp.topic}/{tp.partition}"
                for m in msgs:
                    if m.offset >= ends[tp]:
                        break
                    if m.headers and watermark_marker(m.headers) is not None:
                        continue
                    cap = settings.max_payload_bytes
                    result = (
                        decode(m.value, Order, max_bytes=cap)
                        if tp.topic == settings.topic_orders
                        else decode(m.value, Click, max_bytes=cap)
                    )
                    if not isinstance(result, Rejection):
                        by_source[src] = by_source.get(src, 0) + 1
            todo = [tp for tp in todo if consumer.position(tp) < ends[tp]]
        if todo:
            raise TimeoutError(f"could not read {todo} up to the committed offsets")
    finally:
        consumer.close()
    return {"events": sum(by_source.values()), "by_source": by_source, "committed": committed}


def audit(settings: Settings) -> dict[str, Any]:
    """The engine's accepted events against the valid events ingest committed, end to end.

    The partition records count what the engine accepted; this counts, independently, what ingest
    consumed and committed. When the worker is quiescent (everything it consumed was forwarded and
    a tick ran after the last event) the two are equal; a shortfall means events were lost below
    the engine's own counts (its state was restored short, say). While events are in flight the
    engine is behind by those: run it after the input has stopped.
    """
    acct = read_accounting(settings)
    src = count_source_events(settings)
    accepted = sum(a["accepted"][0] for a in acct["partitions"].values())
    return {
        "source_events": src["events"],
        "accepted_events": accepted,
        "missing_events": src["events"] - accepted,
        "by_source": src["by_source"],
        "ok": src["events"] == accepted,
    }
