"""Kafka topic administration: create repricer's topics with the right cleanup policy.

Uses kafka-python's admin client (which also works on Tansu). Creation is idempotent: existing
topics are left as they are.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from repricer.infra.kafka_client import KafkaSettings, kafka_python_config

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    compact: bool = False


class TopicSettings(KafkaSettings, Protocol):
    """What topic administration reads besides the connection (repricer's ``Settings`` has it)."""

    @property
    def app_id(self) -> str: ...
    @property
    def partitions(self) -> int: ...
    @property
    def topic_orders(self) -> str: ...
    @property
    def topic_clicks(self) -> str: ...
    @property
    def topic_catalog(self) -> str: ...
    @property
    def topic_control(self) -> str: ...
    @property
    def topic_price_changes(self) -> str: ...
    @property
    def topic_prices(self) -> str: ...
    @property
    def topic_dlq(self) -> str: ...


# The name callers used before infra.kafka_client existed; new code calls that module.
client_kwargs = kafka_python_config


def topic_specs(settings: TopicSettings) -> list[TopicSpec]:
    """Every public topic repricer reads or writes."""
    p = settings.partitions
    return [
        TopicSpec(settings.topic_orders, p),
        TopicSpec(settings.topic_clicks, p),
        TopicSpec(settings.topic_catalog, p, compact=True),
        TopicSpec(settings.topic_control, 1, compact=True),
        TopicSpec(settings.topic_price_changes, p),
        TopicSpec(settings.topic_prices, p, compact=True),
        TopicSpec(settings.topic_dlq, p),
    ]


def ensure_topics(settings: TopicSettings, *, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics; returns the names created. Retries until the broker answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(
                client_id=f"{settings.app_id}-admin", **kafka_python_config(settings)
            )
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    created = []
    try:
        existing = set(admin.list_topics())
        for spec in topic_specs(settings):
            if spec.name in existing:
                continue
            cfg = {"cleanup.policy": "compact" if spec.compact else "delete"}
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, 1, topic_configs=cfg)])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:  # pragma: no cover - depends on the broker
                log.warning("could not create topic %s: %r", spec.name, exc)
    finally:
        admin.close()
    if created:
        log.info("created topics: %s", ", ".join(created))
    return created
