"""What the ``worker_factory`` fixture (tests/conftest.py) hands a test: a running worker."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from kafka import KafkaProducer

from repricer.streams.settings import Settings
from repricer.streams.tools.runner import WorkerProcess


class StartedWorker(NamedTuple):
    """A worker process on its own topics, and a producer to feed them."""

    settings: Settings
    worker: WorkerProcess
    producer: KafkaProducer


class WorkerFactory(Protocol):
    def __call__(
        self, *, app: str, producer: dict[str, Any] | None = None, **settings: Any
    ) -> StartedWorker:
        """Start a worker: app id ``<app>-<random>``; ``producer``: extra ``KafkaProducer``
        arguments; ``settings``: ``Settings`` fields over the fixture's defaults."""
        ...
