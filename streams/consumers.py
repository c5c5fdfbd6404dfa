"""The worker's own aiokafka consumer groups (ingest and sink): started, logged, polled.

Ingest and the sink are not Faust agents: each owns its offsets and commits only what it has
forwarded (ingest) or written (sink). Both start their consumer here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from repricer.infra.kafka_client import aiokafka_config

if TYPE_CHECKING:
    from repricer.streams.worker import Repricer

log = logging.getLogger(__name__)

Batch = dict[TopicPartition, list[Any]]


OnAssigned = Callable[[AIOKafkaConsumer, set[TopicPartition]], None]


async def start_group_consumer(
    rp: Repricer, role: str, topics: list[str], *, on_assigned: OnAssigned | None = None
) -> AIOKafkaConsumer:
    """A started aiokafka consumer in group ``<app_id>-<role>`` that commits only when told to
    (ingest and sink own their offsets); assignments are logged and it is listed for /metrics.
    ``on_assigned(consumer, partitions)`` runs on every assignment, before anything of it is
    fetched (ingest pauses its event partitions there)."""
    s = rp.settings
    consumer = AIOKafkaConsumer(
        group_id=f"{s.app_id}-{role}",
        client_id=f"{s.app_id}-{role}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(s.kafka_session_timeout_s * 1000),
        heartbeat_interval_ms=int(min(3.0, s.kafka_session_timeout_s / 3) * 1000),
        **aiokafka_config(s),
    )
    await consumer.start()
    consumer.subscribe(topics, listener=LogRebalance(role, consumer, on_assigned))
    rp.consumers[role] = consumer
    return consumer


class LogRebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Log which partitions a consumer group member gets and gives up (operators need it), and
    hand each assignment to ``on_assigned`` (aiokafka calls this before fetching any of it)."""

    def __init__(
        self,
        name: str,
        consumer: AIOKafkaConsumer | None = None,
        on_assigned: OnAssigned | None = None,
    ) -> None:
        self.name = name
        self.consumer = consumer
        self.on_assigned = on_assigned

    def on_partitions_revoked(self, revoked: Any) -> None:
        log.info("%s: partitions revoked %s", self.name, _tps(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("%s: partitions assigned %s", self.name, _tps(assigned))
        if self.on_assigned is not None and self.consumer is not None:
            self.on_assigned(self.consumer, set(assigned))


def _tps(tps: Any) -> str:
    return ", ".join(sorted(f"{tp.topic}/{tp.partition}" for tp in tps)) or "none"


async def poll_batch(consumer: AIOKafkaConsumer, max_records: int, flush_s: float) -> Batch:
    """Records until ``max_records`` or ``flush_s`` after the first one ({} after an idle poll)."""
    batch: Batch = {}
    n, deadline = 0, None
    loop = asyncio.get_running_loop()
    while n < max_records:
        timeout = flush_s if deadline is None else max(0.0, deadline - loop.time())
        got = await consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_records - n)
        for tp, records in got.items():
            batch.setdefault(tp, []).extend(records)
            n += len(records)
        if deadline is None:
            if not got:
                return batch  # idle: let the caller check whether to stop
            deadline = loop.time() + flush_s
        elif loop.time() >= deadline:
            break
    return batch
