"""What a worker says about itself: its Prometheus metrics, consumer lag, progress and health.

``agents.web`` serves these on ``/metrics``, ``/health`` and ``/api/stats``; they read the
worker's ``Stats`` and its consumers (no broker round trip) and never block. ``/metrics`` is a
``prometheus_client`` registry: ``WorkerCollector`` reads the counters at scrape time, the
histograms are ``Repricer.timings`` (``streams.telemetry``), plus the process collector.

* ``/health`` is unhealthy when the worker has stopped consuming (no progress for
  ``health_stall_s`` while lag > 0), the sink is stuck (rows pending and no successful insert
  for ``health_sink_stall_s``), or an accepted event is unaccounted (``Stats.accounting``: the
  engine's conservation counts per partition).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import ProcessCollector
from prometheus_client.registry import Collector

from repricer.infra.prometheus import counter, gauge, registry_of, render
from repricer.models.base import ModelInfo

if TYPE_CHECKING:
    from repricer.streams.worker import Repricer

log = logging.getLogger(__name__)


def provider_models(rp: Repricer) -> list[ModelInfo]:
    """What the decider's demand models that run on an execution provider (the ONNX LSTM) say
    about themselves."""
    infos = (m.info() for m in rp.engine.decider.models())
    return [i for i in infos if i.provider is not None]


def consumer_lag(rp: Repricer) -> dict[tuple[str, int], int]:
    """Highwater minus committed offset for every assigned partition of the agents' topics.

    Read from Faust's consumer and the ingest and sink consumers without any broker round trip
    (aiokafka keeps the highwater of each fetched partition; for the ingest and sink consumers
    the position read so far stands in for the committed offset). Partitions whose highwater is not known yet are left out; changelog
    and assignor topics are not counted (they are not consumed after recovery).
    """
    names = {t.get_topic_name() for t in rp.topics.values()}
    out: dict[tuple[str, int], int] = {}
    try:
        consumer = rp.app.consumer
        committed = getattr(consumer, "_committed_offset", {}) or {}
        for tp in consumer.assignment():
            if tp.topic not in names:
                continue
            try:
                hw = consumer.highwater(tp)
            except Exception:
                continue
            if hw is None:
                continue
            pos = committed.get(tp)
            out[(tp.topic, tp.partition)] = max(0, int(hw) - int(pos or 0))
    except Exception as exc:  # consumer not started, rebalancing, ...
        log.debug("consumer lag unavailable: %s", exc)
    for name, c in rp.consumers.items():  # the ingest and sink consumer groups
        try:
            for tp in c.assignment():
                hw = c.highwater(tp)
                state = c._subscription.subscription.assignment.state_value(tp)
                if hw is None or not state.has_valid_position:
                    continue
                out[(tp.topic, tp.partition)] = max(0, int(hw) - int(state.position))
        except Exception as exc:
            log.debug("%s consumer lag unavailable: %s", name, exc)
    return out


@dataclass
class Progress:
    """Remembers when the worker last made progress (any event in or any row out)."""

    signature: tuple[int, ...] = ()
    last_progress_at: float = field(default_factory=time.time)

    def observe(self, rp: Repricer, now: float | None = None) -> None:
        st = rp.stats
        sig = (
            sum(st.ingested.values()),
            st.windows_closed,
            sum(st.sink_rows.values()),
            int(getattr(rp.app.monitor, "events_total", 0) or 0),
        )
        if sig != self.signature:
            self.signature = sig
            self.last_progress_at = time.time() if now is None else now


def sink_stall(rp: Repricer, now: float) -> float:
    """Seconds the sink has held rows without a successful insert (0 with nothing pending)."""
    st = rp.stats
    if st.sink_pending <= 0:
        return 0.0
    return now - max(st.sink_last_ok_at, st.sink_pending_since)


def health(
    rp: Repricer, progress: Progress, now: float | None = None
) -> tuple[bool, dict[str, Any]]:
    """(healthy, details) of a worker: consuming while there is lag, sink not stuck."""
    now = time.time() if now is None else now
    s, st = rp.settings, rp.stats
    lag = sum(consumer_lag(rp).values())
    idle_s = now - progress.last_progress_at
    consuming = not (lag > 0 and idle_s > s.health_stall_s)
    sink_stalled_s = sink_stall(rp, now)
    sink_ok = sink_stalled_s <= s.health_sink_stall_s
    problems = []
    unaccounted = st.unaccounted()
    if any(unaccounted):
        problems.append(
            f"unaccounted events: {unaccounted[0]} events ({unaccounted[1]} units) accepted but "
            "in no emitted window, open window or dead letter"
        )
    if st.envelopes_lost:
        problems.append(
            f"lost envelopes: {st.envelopes_lost} SKU-topic envelopes were deleted by the broker "
            "before this worker applied them (retention shorter than the downtime)"
        )
    if not consuming:
        problems.append(f"not consuming: no progress for {idle_s:.0f}s with lag {lag}")
    if not sink_ok:
        problems.append(
            f"sink stuck: {st.sink_pending} rows pending, no insert for {sink_stalled_s:.0f}s"
        )
    details = {
        "status": "ok" if not problems else "unhealthy",
        "problems": problems,
        "consumer_lag": lag,
        "seconds_since_progress": round(idle_s, 1),
        "sink_pending": st.sink_pending,
        "sink_errors": st.sink_errors,
        "seconds_since_sink_ok": round(now - st.sink_last_ok_at, 1) if st.sink_last_ok_at else None,
        "events_processed": sum(st.ingested.values()),
        "unaccounted_events": unaccounted[0],
        "unaccounted_units": unaccounted[1],
        "uptime_s": round(now - st.started_at, 1),
    }
    return not problems, details


def _topic_name(rp: Repricer, key: str) -> str:
    topic = rp.topics.get(key)
    return topic.get_topic_name() if topic is not None else key


class WorkerCollector(Collector):
    """The worker's counters and gauges, read from its ``Stats`` when Prometheus scrapes."""

    def __init__(self, rp: Repricer, progress: Progress | None = None) -> None:
        self.rp, self.progress = rp, progress

    def collect(self) -> Iterator[Any]:
        rp = self.rp
        st, now = rp.stats, time.time()
        yield counter(
            "repricer_events_total",
            "Events consumed from the public topics, by topic (valid and rejected).",
            [({"topic": _topic_name(rp, k)}, v) for k, v in sorted(st.ingested.items())],
            ["topic"],
        )
        yield counter(
            "repricer_dlq_total",
            "Events sent to the dead-letter topic, by reason.",
            [({"reason": k}, v) for k, v in sorted(st.dlq.items())],
            ["reason"],
        )
        yield counter(
            "repricer_windows_closed_total",
            "Per-SKU windows closed with events (a row each in sales_1m and clicks_1m).",
            st.windows_closed,
        )
        yield counter(
            "repricer_quiet_windows_total",
            "Per-SKU windows closed with no event in them (no row is written for them).",
            st.quiet_windows,
        )
        for i, unit in enumerate(("events", "units")):
            rows = []
            for p, a in sorted(st.accounting.items()):
                for where in ("accepted", "emitted", "open", "late", "duplicate", "unaccounted"):
                    rows.append(({"partition": str(p), "state": where}, a[where][i]))
            yield gauge(
                f"repricer_accounted_{unit}",
                f"Conservation of accepted {unit} per SKU partition at its latest tick: "
                "accepted = emitted + open + late + duplicate; unaccounted must be 0.",
                rows,
                ["partition", "state"],
            )
        yield counter(
            "repricer_offset_rewinds_total",
            "SKU-topic partitions rewound because an envelope was delivered ahead of a missing one.",
            st.offset_rewinds,
        )
        yield counter(
            "repricer_envelopes_lost_total",
            "Missing SKU-topic envelopes the broker no longer held (deleted by retention): "
            "must be 0.",
            st.envelopes_lost,
        )
        yield counter(
            "repricer_decisions_total", "Pricing decisions taken at window close.", st.decisions
        )
        yield counter("repricer_price_changes_total", "Price changes published.", st.price_changes)
        yield counter(
            "repricer_shadow_decisions_total",
            "Would-be price changes recorded (shadow mode, holdout), not published.",
            st.shadow_decisions,
        )
        yield counter(
            "repricer_late_events_total", "Events for already closed windows.", st.late_events
        )
        yield counter(
            "repricer_model_errors_total",
            "Decider calls that raised at window close, by stage (the tick went on without them).",
            [({"stage": k}, v) for k, v in sorted(st.model_errors.items())],
            ["stage"],
        )
        yield counter(
            "repricer_labels_total", "Demand labels learned from closed windows.", st.labels
        )
        yield counter(
            "repricer_forecast_rows_total",
            "Forecast rows written for evaluation.",
            st.forecast_rows,
        )
        yield from self._sink(now)
        yield from self._lag(now)
        yield gauge(
            "repricer_model_info",
            "Demand model loaded, with its ONNX provider.",
            [
                ({"model": i.name, "provider": str(i.provider), "version": i.version}, 1)
                for i in provider_models(rp)
            ],
            ["model", "provider", "version"],
        )
        yield gauge(
            "repricer_uptime_seconds", "Seconds since the worker started.", now - st.started_at
        )
        monitor = getattr(rp.app, "monitor", None)
        yield counter(
            "repricer_faust_events_total",
            "Stream events Faust's monitor counted (the window agent's envelopes).",
            int(getattr(monitor, "events_total", 0) or 0),
        )

    def _sink(self, now: float) -> Iterator[Any]:
        st, s = self.rp.stats, self.rp.settings
        yield counter(
            "repricer_sink_rows_total",
            "Rows inserted into ClickHouse, by table.",
            [({"table": k}, v) for k, v in sorted(st.sink_rows.items())],
            ["table"],
        )
        yield counter(
            "repricer_sink_errors_total",
            "Failed ClickHouse inserts (each retried).",
            st.sink_errors,
        )
        yield counter(
            "repricer_sink_batches_total", "Successful ClickHouse insert batches.", st.sink_batches
        )
        yield gauge(
            "repricer_sink_pending_rows",
            "Rows taken from Kafka and not yet written.",
            st.sink_pending,
        )
        yield gauge(
            "repricer_sink_last_batch_seconds",
            "Duration of the last successful insert batch, retries included.",
            st.sink_last_batch_s,
        )
        yield gauge(
            "repricer_sink_last_success_timestamp_seconds",
            "Unix time of the last successful insert (0 before the first).",
            st.sink_last_ok_at,
        )
        stall = sink_stall(self.rp, now)
        yield gauge(
            "repricer_sink_stall_seconds",
            "Seconds rows have been pending without a successful insert (0 when none pend).",
            stall,
        )
        yield gauge(
            "repricer_sink_stuck",
            "1 when the sink has held rows longer than REPRICER_HEALTH_SINK_STALL_S without a "
            "successful insert (ClickHouse down or refusing): an alert, not a liveness failure.",
            int(stall > s.health_sink_stall_s),
        )

    def _lag(self, now: float) -> Iterator[Any]:
        rp, st = self.rp, self.rp.stats
        lag = consumer_lag(rp)
        yield gauge(
            "repricer_consumer_lag_messages",
            "Highwater minus committed offset, per assigned partition (sum() for the total).",
            [({"topic": t, "partition": str(p)}, v) for (t, p), v in sorted(lag.items())],
            ["topic", "partition"],
        )
        yield gauge(
            "repricer_event_time_lag_seconds",
            "How far each SKU partition's watermark trails the wall clock.",
            [
                ({"partition": str(p)}, max(0.0, now - wm / 1000))
                for p, wm in sorted(st.watermarks.items())
            ],
            ["partition"],
        )
        if self.progress is not None:
            idle_s = now - self.progress.last_progress_at
            yield gauge(
                "repricer_last_progress_timestamp_seconds",
                "Unix time the worker last processed an event or wrote a row.",
                self.progress.last_progress_at,
            )
            yield gauge(
                "repricer_stalled",
                "1 when no progress was made for REPRICER_HEALTH_STALL_S while consumer lag > 0.",
                int(sum(lag.values()) > 0 and idle_s > rp.settings.health_stall_s),
            )


def metrics_text(rp: Repricer, progress: Progress | None = None) -> str:
    """The Prometheus exposition of one worker: its counters, its histograms, its process."""
    collectors: list[Collector] = [WorkerCollector(rp, progress)]
    timings = getattr(rp, "timings", None)
    if timings is not None:
        collectors.append(timings.registry)
    collectors.append(ProcessCollector(registry=None))
    return render(registry_of(*collectors))
