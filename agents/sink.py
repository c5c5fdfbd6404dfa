"""The ClickHouse sink: batch rows from Kafka topics into ClickHouse, idempotently.

The sink is a plain aiokafka consumer group (``<app_id>-sink``) running inside the worker, not a
Faust agent: it owns its offsets. Lifecycle of a batch: records are polled until
``sink_batch_rows`` rows or ``sink_flush_s`` seconds; the batch is inserted (in a worker thread,
never on the event loop); only when the insert returns are the batch's offsets committed, so an
offset is never committed before its rows are confirmed written. (Faust's ``stream.take`` acks
were not enough for this: a kill -9 run lost a batch whose offsets had been committed.) A failed
insert is retried with exponential backoff for as long as it takes, with the partitions paused
(the consumer keeps polling so it stays in its group; nothing new is fetched, so memory stays
bounded) while the window agent keeps repricing. Replays are harmless because every table is a
ReplacingMergeTree keyed by its natural key and read with ``FINAL``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from mode import Service

from infra.clickhouse import ClickHouseBackend, ClickHouseError, connect
from infra.kafka_client import aiokafka_config
from schemas import DeadLetter, PriceChange

if TYPE_CHECKING:
    from streams.app import Repricer

log = logging.getLogger(__name__)
Rows = dict[str, list[dict[str, Any]]]

_change_dec = msgspec.json.Decoder(PriceChange)
_dlq_dec = msgspec.json.Decoder(DeadLetter)
_agg_dec = msgspec.json.Decoder(dict[str, Any])


def aggregate_rows(values: Sequence[bytes]) -> Rows:
    rows: Rows = {}
    for v in values:
        msg = _agg_dec.decode(v)
        r = msg["r"]
        r["version"] = r.get("window_end", r["window_start"])
        rows.setdefault(msg["t"], []).append(r)
    return rows


def price_change_rows(values: Sequence[bytes]) -> Rows:
    out = []
    for v in values:
        try:
            c = _change_dec.decode(v)
        except msgspec.DecodeError as exc:
            log.warning("skipping undecodable price change: %s", exc)
            continue
        out.append(
            {
                "event_id": c.event_id,
                "sku": c.sku,
                "old_price": c.old_price,
                "new_price": c.new_price,
                "currency": c.currency,
                "decided_at": c.decided_at,
                "effective_at": c.effective_at,
                "window_start": c.window_start,
                "reasons": list(c.reasons),
                "forecast_old": c.forecast.units_at_old,
                "forecast_new": c.forecast.units_at_new,
                "elasticity": c.elasticity,
                "model_versions": json.dumps(c.model_versions, sort_keys=True),
                "guardrails": list(c.guardrails),
                "policy_version": c.policy_version,
                "version": c.decided_at,
            }
        )
    return {"price_changes": out}


def dead_letter_rows(values: Sequence[bytes]) -> Rows:
    out = []
    for v in values:
        try:
            d = _dlq_dec.decode(v)
        except msgspec.DecodeError as exc:
            log.warning("skipping undecodable dead letter: %s", exc)
            continue
        out.append(
            {
                "source_topic": d.source_topic,
                "source_partition": d.source_partition,
                "source_offset": d.source_offset,
                "reason": d.reason,
                "detail": d.detail,
                "payload_excerpt": d.payload_excerpt,
                "received_at": d.received_at,
                "version": d.received_at,
            }
        )
    return {"dead_letters": out}


class ClickHouseSink:
    """Inserts row batches with retry; one thread, because chdb is not thread-safe."""

    def __init__(self, url: str, *, retry_max_s: float = 10.0) -> None:
        self._url = url
        self._backend: ClickHouseBackend | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-sink")
        self.retry_max_s = retry_max_s

    def _insert_sync(self, rows: Rows) -> int:
        if self._backend is None:
            backend = connect(self._url)
            backend.init()
            self._backend = backend
        return sum(self._backend.insert(table, batch) for table, batch in rows.items() if batch)

    async def write(
        self,
        rows: Rows,
        *,
        on_error: Callable[[Exception], None],
        wait: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> int:
        """Insert ``rows``; returns only once they are written (retrying with backoff).

        ``wait(seconds)`` spends the backoff (the consumer uses it to keep polling, paused).
        """
        delay = 0.2
        loop = asyncio.get_running_loop()
        while True:
            try:
                return await loop.run_in_executor(self._pool, self._insert_sync, rows)
            except (ClickHouseError, OSError, EOFError) as exc:
                on_error(exc)
                log.warning("ClickHouse insert failed (%s); retrying in %.1fs", exc, delay)
                await wait(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.retry_max_s)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
        self._pool.shutdown(wait=False)


Batch = dict[TopicPartition, list[Any]]


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


async def start_group_consumer(rp: Repricer, role: str, topics: list[str]) -> AIOKafkaConsumer:
    """A started aiokafka consumer in group ``<app_id>-<role>`` that commits only when told to
    (ingest and sink own their offsets); assignments are logged and it is listed for /metrics."""
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
    consumer.subscribe(topics, listener=LogRebalance(role))
    rp.consumers[role] = consumer
    return consumer


class LogRebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Log which partitions a consumer group member gets and gives up (operators need it)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def on_partitions_revoked(self, revoked: Any) -> None:
        log.info("%s: partitions revoked %s", self.name, _tps(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("%s: partitions assigned %s", self.name, _tps(assigned))


def _tps(tps: Any) -> str:
    return ", ".join(sorted(f"{tp.topic}/{tp.partition}" for tp in tps)) or "none"


def register(rp: Repricer) -> None:
    s, t, stats = rp.settings, rp.topics, rp.stats
    to_rows: dict[str, Callable[[Sequence[bytes]], Rows]] = {
        t["aggregates"].get_topic_name(): aggregate_rows,
        s.topic_price_changes: price_change_rows,
        s.topic_dlq: dead_letter_rows,
    }

    def on_error(exc: Exception) -> None:
        stats.sink_errors += 1

    @rp.app.service
    class SinkService(Service):
        """One aiokafka consumer for every sink topic; commits only what ClickHouse holds."""

        consumer: AIOKafkaConsumer | None = None

        async def on_start(self) -> None:
            self.sink = ClickHouseSink(
                s.clickhouse_url.get_secret_value(), retry_max_s=s.sink_retry_max_s
            )
            await t["aggregates"].maybe_declare()
            self.consumer = await start_group_consumer(rp, "sink", list(to_rows))

        async def on_stop(self) -> None:
            if self.consumer is not None:
                await self.consumer.stop()
            self.sink.close()

        async def _paused_wait(self, seconds: float) -> None:
            """Backoff that keeps the consumer in its group without fetching more."""
            c = self.consumer
            assert c is not None
            c.pause(*c.assignment())
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not self.should_stop:
                await c.getmany(timeout_ms=int(min(0.5, seconds) * 1000))
            c.resume(*c.assignment())

        @Service.task
        async def _run(self) -> None:
            c = self.consumer
            assert c is not None
            while not self.should_stop:
                batch = await poll_batch(c, s.sink_batch_rows, s.sink_flush_s)
                if batch:
                    await self._write(c, batch)

        async def _write(self, c: AIOKafkaConsumer, batch: Batch) -> None:
            rows: Rows = {}
            for tp, records in batch.items():
                for table, trows in to_rows[tp.topic]([r.value for r in records]).items():
                    rows.setdefault(table, []).extend(trows)
            n = sum(len(v) for v in rows.values())
            if stats.sink_pending == 0 and n:
                stats.sink_pending_since = time.time()
            stats.sink_pending += n
            t0 = time.perf_counter()
            try:
                await self.sink.write(rows, on_error=on_error, wait=self._paused_wait)
            finally:
                stats.sink_pending -= n
            offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
            try:
                await c.commit(offsets)  # only now: the rows are in ClickHouse
            except (CommitFailedError, KafkaError) as exc:
                # partitions moved while inserting: their new owner inserts again (idempotent)
                log.warning("sink commit failed (%s); the rows will be written again", exc)
            stats.sink_last_batch_s = time.perf_counter() - t0
            stats.sink_last_ok_at = time.time()
            stats.sink_batches += 1
            for table, trows in rows.items():
                stats.sink_rows[table] += len(trows)
