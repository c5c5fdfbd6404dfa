"""The Faust app factory: topics, tables, the window engine and the agents of one worker.

This is the top of the worker: it wires the agents (``agents/``) to the engine; what the agents
share (``Repricer``, ``Stats``) lives below them in ``streams.worker``.

No module-global app: ``create_app(settings)`` builds everything, so tests and the demo can run
several differently-configured apps, and importing a module never connects anywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import faust

from repricer.agents import ingest, sink, web, windows
from repricer.infra.kafka_client import faust_credentials, producer_batch_bytes
from repricer.streams.build import build_engine
from repricer.streams.durable import AckedTable, make_flush_durable
from repricer.streams.settings import Settings
from repricer.streams.shutdown import RepricerApp
from repricer.streams.worker import Repricer, Stats

log = logging.getLogger(__name__)


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

    ingest.register(rp)  # the agents register themselves on this app
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
