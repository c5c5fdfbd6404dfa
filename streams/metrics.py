"""What a worker says about itself: its Prometheus metrics, consumer lag, progress and health.

``agents.web`` serves these on ``/metrics``, ``/health`` and ``/api/stats``; they read the
worker's ``Stats`` and its consumers (no broker round trip) and never block.

* ``/health`` is unhealthy when the worker has stopped consuming (no progress for
  ``health_stall_s`` while lag > 0), the sink is stuck (rows pending and no successful insert
  for ``health_sink_stall_s``), or an accepted event is unaccounted (``Stats.accounting``: the
  engine's conservation counts per partition).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from repricer.infra.prometheus import Exposition
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


def health(
    rp: Repricer, progress: Progress, now: float | None = None
) -> tuple[bool, dict[str, Any]]:
    """(healthy, details) of a worker: consuming while there is lag, sink not stuck."""
    now = time.time() if now is None else now
    s, st = rp.settings, rp.stats
    lag = sum(consumer_lag(rp).values())
    idle_s = now - progress.last_progress_at
    consuming = not (lag > 0 and idle_s > s.health_stall_s)
    sink_since = max(st.sink_last_ok_at, st.sink_pending_since)
    sink_stalled_s = now - sink_since if st.sink_pending > 0 else 0.0
    sink_ok = not (st.sink_pending > 0 and sink_stalled_s > s.health_sink_stall_s)
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


def metrics_text(rp: Repricer) -> str:
    """The Prometheus exposition of one worker."""
    st = rp.stats
    e = Exposition()
    e.family(
        "repricer_events_total",
        "counter",
        "Events consumed from the public topics, by topic (valid and rejected).",
        [({"topic": _topic_name(rp, k)}, v) for k, v in sorted(st.ingested.items())],
    )
    e.family(
        "repricer_dlq_total",
        "counter",
        "Events sent to the dead-letter topic, by reason.",
        [({"reason": k}, v) for k, v in sorted(st.dlq.items())],
    )
    e.one(
        "repricer_windows_closed_total",
        "counter",
        "Per-SKU windows closed with events (a row each in sales_1m and clicks_1m).",
        st.windows_closed,
    )
    e.one(
        "repricer_quiet_windows_total",
        "counter",
        "Per-SKU windows closed with no event in them (no row is written for them).",
        st.quiet_windows,
    )
    for i, unit in enumerate(("events", "units")):
        rows = []
        for p, a in sorted(st.accounting.items()):
            for where in ("accepted", "emitted", "open", "late", "duplicate", "unaccounted"):
                rows.append(({"partition": str(p), "state": where}, a[where][i]))
        e.family(
            f"repricer_accounted_{unit}",
            "gauge",
            f"Conservation of accepted {unit} per SKU partition at its latest tick: accepted = "
            "emitted + open + late + duplicate; unaccounted must be 0.",
            rows,
        )
    e.one(
        "repricer_offset_rewinds_total",
        "counter",
        "SKU-topic partitions rewound because an envelope was delivered ahead of a missing one.",
        st.offset_rewinds,
    )
    e.one(
        "repricer_envelopes_lost_total",
        "counter",
        "Missing SKU-topic envelopes the broker no longer held (deleted by retention): must be 0.",
        st.envelopes_lost,
    )
    e.one(
        "repricer_decisions_total",
        "counter",
        "Pricing decisions taken at window close.",
        st.decisions,
    )
    e.one("repricer_price_changes_total", "counter", "Price changes published.", st.price_changes)
    e.one(
        "repricer_late_events_total",
        "counter",
        "Events for already closed windows.",
        st.late_events,
    )
    e.family(
        "repricer_model_errors_total",
        "counter",
        "Decider calls that raised at window close, by stage (the tick went on without them).",
        [({"stage": k}, v) for k, v in sorted(st.model_errors.items())],
    )
    e.one(
        "repricer_labels_total", "counter", "Demand labels learned from closed windows.", st.labels
    )
    e.one(
        "repricer_forecast_rows_total",
        "counter",
        "Forecast rows written for evaluation.",
        st.forecast_rows,
    )
    e.family(
        "repricer_sink_rows_total",
        "counter",
        "Rows inserted into ClickHouse, by table.",
        [({"table": k}, v) for k, v in sorted(st.sink_rows.items())],
    )
    e.one(
        "repricer_sink_errors_total",
        "counter",
        "Failed ClickHouse inserts (each retried).",
        st.sink_errors,
    )
    e.one(
        "repricer_sink_batches_total",
        "counter",
        "Successful ClickHouse insert batches.",
        st.sink_batches,
    )
    e.one(
        "repricer_sink_pending_rows",
        "gauge",
        "Rows taken from Kafka and not yet written.",
        st.sink_pending,
    )
    e.one(
        "repricer_sink_last_batch_seconds",
        "gauge",
        "Duration of the last successful insert batch, retries included.",
        st.sink_last_batch_s,
    )
    e.one(
        "repricer_sink_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful insert (0 before the first).",
        st.sink_last_ok_at,
    )
    lag = consumer_lag(rp)
    e.family(
        "repricer_consumer_lag",
        "gauge",
        "Highwater minus committed offset, per assigned partition.",
        [({"topic": t, "partition": str(p)}, v) for (t, p), v in sorted(lag.items())],
    )
    e.one(
        "repricer_consumer_lag_total",
        "gauge",
        "Sum of consumer lag over partitions.",
        sum(lag.values()),
    )
    models = []
    for info in provider_models(rp):
        models.append(
            ({"model": info.name, "provider": str(info.provider), "version": info.version}, 1)
        )
    e.family("repricer_model_info", "gauge", "Demand model loaded, with its ONNX provider.", models)
    e.one(
        "repricer_uptime_seconds",
        "gauge",
        "Seconds since the worker started.",
        time.time() - st.started_at,
    )
    return e.render()
