"""Dead letters of records read from Kafka: what went wrong with which record, and an excerpt.

Nothing is dropped silently: ingest, the window agent and the sink park a record they cannot
use on the dead-letter topic with its reason (``schemas.Rejection``) and where it came from.
"""

from __future__ import annotations

import time
from typing import Any

from repricer.schemas import DeadLetter, Rejection
from repricer.schemas.decode import excerpt


def dead_letter(rej: Rejection, message: Any, value: bytes | None) -> DeadLetter:
    """The dead letter of ``message`` (a Kafka record: ``topic``, ``partition``, ``offset``)
    whose ``value`` was rejected for ``rej``."""
    return DeadLetter(
        reason=rej.reason,
        detail=rej.detail,
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        payload_excerpt=excerpt(value),
        received_at=int(time.time() * 1000),
    )
