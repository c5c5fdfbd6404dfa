"""The Faust app factory: topics, tables, the window engine and the agents of one worker.

No module-global app: ``create_app(settings)`` builds everything, so tests and the demo can run
several differently-configured apps, and importing a module never connects anywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust

from infra.kafka_client import faust_credentials, producer_batch_bytes
from streams.build import build_engine
from streams.durable import AckedTable, make_flush_durable
from streams.engine import WindowEngine
from streams.settings import Settings
from streams.shutdown import RepricerApp

log = logging.getLogger(__name__)


@dataclass
class Stats:
    """Counters of one worker, written to ``<data_dir>/stats.json`` every second."""

    ingested: Counter[str] = field(default_factory=Counter)
    dlq: Counter[str] = field(default_factory=Counter)
    events_folded: int = 0  # orders and clicks folded into windows by the window agent
    first_read_at: float = 0.0  # wall time ingest first got records since start (throughput)
    first_fold_at: float = 0.0  # wall time of the first fold since start
    last_fold_at: float = 0.0  # wall time of the latest fold
    windows_closed: int = 0
    labels: int = 0
    forecast_rows: int = 0
    decisions: int = 0
    price_changes: int = 0
    late_events: int = 0
    model_errors: Counter[str] = field(default_factory=Counter)  # decider calls that raised
    sink_rows: Counter[str] = field(default_factory=Counter)
    sink_errors: int = 0
    sink_pending: int = 0
    sink_batches: int = 0
    sink_last_batch_s: float = 0.0  # latency of the last successful insert (incl. retries)
    sink_last_ok_at: float = 0.0  # wall time of the last successful insert
    sink_pending_since: float = 0.0  # wall time pending rows went from 0 to > 0
    started_at: float = field(default_factory=time.time)
    partitions: list[int] = field(default_factory=list)  # SKU partitions owned by this worker
    quiet_windows: int = 0  # windows closed without a row (no event in them)
    # per SKU partition: its conservation counts as of its latest tick (Accounting.to_dict())
    accounting: dict[int, dict[str, Any]] = field(default_factory=dict)
    event_loop: str = ""  # class of the running event loop, e.g. uvloop.Loop
    # SKU-topic envelopes delivered ahead of a missing one: the partition was rewound to it
    offset_rewinds: int = 0
    envelopes_refused: int = 0  # delivered ahead of a missing one, read again after the rewind
    envelopes_lost: int = 0  # missing envelopes the broker no longer held (retention)

    def unaccounted(self) -> list[int]:
        """Events and units accepted but in no emitted window, open window or dead letter."""
        return [sum(a["unaccounted"][i] for a in self.accounting.values()) for i in range(2)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ingested": dict(self.ingested),
            "events_processed": sum(self.ingested.values()),
            "dlq": dict(self.dlq),
            "events_folded": self.events_folded,
            "first_read_at": self.first_read_at,
            "first_fold_at": self.first_fold_at,
            "last_fold_at": self.last_fold_at,
            "windows_closed": self.windows_closed,
            "labels": self.labels,
            "forecast_rows": self.forecast_rows,
            "decisions": self.decisions,
            "price_changes": self.price_changes,
            "late_events": self.late_events,
            "model_errors": dict(self.model_errors),
            "sink_rows": dict(self.sink_rows),
            "sink_errors": self.sink_errors,
            "sink_pending": self.sink_pending,
            "sink_batches": self.sink_batches,
            "sink_last_batch_s": round(self.sink_last_batch_s, 4),
            "sink_last_ok_at": self.sink_last_ok_at,
            "uptime_s": round(time.time() - self.started_at, 1),
            "partitions": self.partitions,
            "quiet_windows": self.quiet_windows,
            "accounting": {str(p): a for p, a in sorted(self.accounting.items())},
            "unaccounted": self.unaccounted(),
            "event_loop": self.event_loop,
            "offset_rewinds": self.offset_rewinds,
            "envelopes_refused": self.envelopes_refused,
            "envelopes_lost": self.envelopes_lost,
            "updated_at": time.time(),
        }


@dataclass
class Repricer:
    """Everything one worker runs: the Faust app plus what its agents share."""

    settings: Settings
    app: RepricerApp
    topics: dict[str, faust.TopicT]
    tables: dict[str, Any]
    engine: WindowEngine
    stats: Stats

    stats_path: Path
    consumers: dict[str, Any] = field(default_factory=dict)  # ingest/sink aiokafka consumers


def create_app(settings: Settings) -> Repricer:
    """Build a worker's Faust app with all topics, tables and agents registered."""
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    app = RepricerApp(  # stops ingest and sink first, agents between events (shutdown.py)
        settings.app_id,
        broker=settings.broker,
        broker_credentials=faust_credentials(settings),
        store=settings.store,
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        web_host="127.0.0.1",
        table_standby_replicas=0,
        producer_linger_ms=5,
        producer_max_batch_size=producer_batch_bytes(settings),
        stream_buffer_maxsize=8192,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_commit_interval=settings.kafka_commit_interval_s,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_s / 3),
        key_serializer="json",  # table keys (SKUs) round-trip as str; topics here set their own
        value_serializer="json",
        Table=AckedTable,  # changelog writes the pre-commit flush waits for (streams/durable.py)
    )

    def topic(name: str, **kw: Any) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw", **kw)

    p = settings.partitions
    topics: dict[str, faust.TopicT] = {
        "orders": topic(settings.topic_orders),
        "clicks": topic(settings.topic_clicks),
        "catalog": topic(settings.topic_catalog),
        "control": topic(settings.topic_control),
        "price_changes": topic(settings.topic_price_changes),
        "prices": topic(settings.topic_prices),
        "dlq": topic(settings.topic_dlq),
        "sku_events": topic(f"{settings.app_id}-sku-events", partitions=p, internal=True),
        "aggregates": topic(f"{settings.app_id}-aggregates", partitions=p, internal=True),
    }
    tables = {
        "skus": app.Table("sku-state", default=None, partitions=p, key_type=str),
        "meta": app.Table("partition-state", default=None, partitions=p, key_type=str),
        "opens": app.Table("sku-open", default=None, partitions=p, key_type=str),
    }
    make_flush_durable(app, tables.values())
    engine = build_engine(settings)
    rp = Repricer(
        settings=settings,
        app=app,
        topics=topics,
        tables=tables,
        engine=engine,
        stats=Stats(),
        stats_path=Path(settings.data_dir).resolve() / "stats.json",
    )

    from agents import ingest, sink, web, windows  # agents register themselves on this app

    ingest.register(rp)
    windows.register(rp)
    sink.register(rp)
    web.register(rp)

    @app.timer(1.0)
    async def _write_stats() -> None:
        if not rp.stats.event_loop:
            loop = type(asyncio.get_running_loop())
            rp.stats.event_loop = f"{loop.__module__}.{loop.__qualname__}"
        sku_topic = topics["sku_events"].get_topic_name()
        rp.stats.partitions = sorted(
            tp.partition for tp in app.consumer.assignment() if tp.topic == sku_topic
        )
        for p in set(rp.stats.accounting) - set(rp.stats.partitions):
            del rp.stats.accounting[p]  # moved to another worker: it accounts for them now
        tmp = rp.stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rp.stats.as_dict()))
        tmp.replace(rp.stats_path)

    return rp
