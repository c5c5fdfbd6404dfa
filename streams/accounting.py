"""Read the engine's conservation counts back from its durable state (``repricer report``).

Each SKU partition's record in the ``partition-state`` table holds, after every tick, where the
events it accepted are (``streams.windowing.Accounting``). This reads the latest record per
partition from the table's changelog topic, without joining a consumer group and without
trusting a broker's end offsets (it reads until the topic has been quiet for ``idle_s``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from infra.kafka_client import kafka_python_config
from streams.settings import Settings


def changelog_topic(settings: Settings) -> str:
    return f"{settings.app_id}-partition-state-changelog"


def read_accounting(
    settings: Settings, *, idle_s: float = 1.5, timeout_s: float = 60.0
) -> dict[str, Any]:
    """``{"partitions": {p: counts}, "unaccounted": [events, units], "ok": bool}``; ``ok`` is
    None when no partition has recorded a tick yet."""
    topic = changelog_topic(settings)
    consumer = KafkaConsumer(enable_auto_commit=False, **kafka_python_config(settings))
    latest: dict[str, Any] = {}
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if tps:
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            deadline = time.monotonic() + timeout_s
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < idle_s and time.monotonic() < deadline:
                batch = consumer.poll(timeout_ms=300)
                for msgs in batch.values():
                    for m in msgs:
                        latest[json.loads(m.key)] = json.loads(m.value) if m.value else None
                if batch:
                    quiet_since = time.monotonic()
    finally:
        consumer.close()
    partitions = {
        k: v["acct"] for k, v in sorted(latest.items()) if isinstance(v, dict) and "acct" in v
    }
    unaccounted = [sum(a["unaccounted"][i] for a in partitions.values()) for i in range(2)]
    return {
        "partitions": partitions,
        "unaccounted": unaccounted,
        "ok": (not any(unaccounted)) if partitions else None,
    }
