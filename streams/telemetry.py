"""The worker's timings as Prometheus histograms, and Faust's own sensor numbers beside them.

One ``Timings`` per worker (``Repricer.timings``), each with its own registry, so several
workers in one process (tests, the demo) never share a series. Observed by the agents:

* ``repricer_tick_duration_seconds``: one tick of a SKU partition, from the envelope that moved
  the watermark past a window to its state durable (engine, outputs acknowledged, table writes
  flushed).
* ``repricer_close_to_publish_seconds``: window close to price published: from the moment ingest
  forwarded the envelope that closed the window (its Kafka timestamp) to the broker's
  acknowledgement of the price changes it decided.
* ``repricer_sink_insert_duration_seconds``: one ClickHouse insert batch, retries included.

Faust's sensors (``faust.Sensor``, added to ``app.sensors``) report commits, rebalances and
send errors; ``FaustSensor`` turns them into ``repricer_faust_*`` series. Faust's own
``PrometheusMonitor`` is not used: it replaces the app's monitor, serves its own ``/metrics``
and names series against the conventions (milliseconds, a ``_total_rebalances`` gauge).
"""

from __future__ import annotations

import time
from typing import Any

from faust.sensors import Sensor
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

# the ``*_created`` series only matter to OpenMetrics scrapers; in the text format each is one
# more gauge family per histogram and counter
disable_created_metrics()

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class FaustSensor(Sensor):
    """Faust's commit, rebalance and send-error callbacks, as Prometheus series."""

    def __init__(self, registry: CollectorRegistry, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commit = Histogram(
            "repricer_faust_commit_duration_seconds",
            "Offset commits of Faust's consumer (the window agent's), from start to done.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rebalances = Counter(
            "repricer_faust_rebalances_total",
            "Consumer-group rebalances this worker's Faust app went through.",
            registry=registry,
        )
        self.rebalance = Histogram(
            "repricer_faust_rebalance_duration_seconds",
            "Rebalances from start to end, table recovery included.",
            buckets=(*LATENCY_BUCKETS, 120.0, 300.0),
            registry=registry,
        )
        self.send_errors = Counter(
            "repricer_faust_send_errors_total",
            "Records Faust's producer failed to send.",
            registry=registry,
        )

    def on_commit_initiated(self, consumer: Any) -> Any:
        return time.monotonic()

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        self.commit.observe(time.monotonic() - float(state))

    def on_rebalance_start(self, app: Any) -> dict[str, Any]:
        self.rebalances.inc()
        return {"time_start": time.monotonic()}

    def on_rebalance_end(self, app: Any, state: dict[str, Any]) -> None:
        self.rebalance.observe(time.monotonic() - state["time_start"])

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        self.send_errors.inc()


class Timings:
    """The histograms of one worker, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tick = Histogram(
            "repricer_tick_duration_seconds",
            "One tick of a SKU partition: windows closed, decided and made durable.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.close_to_publish = Histogram(
            "repricer_close_to_publish_seconds",
            "Window close (ingest forwarded the closing envelope) to its price changes "
            "acknowledged by the broker.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.sink_insert = Histogram(
            "repricer_sink_insert_duration_seconds",
            "One ClickHouse insert batch, retries included.",
            buckets=(*LATENCY_BUCKETS, 120.0, 300.0),
            registry=self.registry,
        )
        self._faust: FaustSensor | None = None

    def faust_sensor(self) -> FaustSensor:
        """The sensor to add to ``app.sensors`` (made once, on first use)."""
        if self._faust is None:
            self._faust = FaustSensor(self.registry)
        return self._faust
