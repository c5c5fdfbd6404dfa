"""What the ``worker_factory`` fixture (tests/conftest.py) hands a test: a running worker; and
:func:`send_windows`, which feeds it orders a window at a time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from kafka import KafkaProducer

from repricer.streams.settings import Settings
from repricer.streams.tools.runner import WorkerProcess

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: window 0 of send_windows
MIN = 60_000


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


def send_windows(started: StartedWorker, skus: Sequence[str], first: int, last: int) -> int:
    """Send one order of 2 units at 20 per SKU of ``skus`` in each minute window ``first`` to
    ``last`` (5 s into it; window 0 starts at ``T0``), one window at a time: before window ``w``
    goes out, the worker has closed every SKU's windows up to ``w - 2`` (window ``w - 1``'s
    orders close them), so a decision is made at every close. Windows are sent in order from 0
    over the worker's life (a call starts where the one before ended). Returns the orders sent."""
    settings, worker, producer = started
    for w in range(first, last + 1):
        if w >= 2:  # every window up to w-2 closed (by w-1) before w is sent
            closed = len(skus) * (w - 1)
            worker.wait_until(lambda st, n=closed: st.get("windows_closed", 0) >= n, timeout=60)
        for sku in skus:
            order = {
                "order_id": f"{sku}{w}",
                "ts": T0 + w * MIN + 5000,
                "sku": sku,
                "qty": 2,
                "unit_price": 20,
            }
            producer.send(settings.topic_orders, value=json.dumps(order).encode())
        producer.flush()
    return len(skus) * (last - first + 1)
