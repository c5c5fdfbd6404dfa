"""ClickHouse sink agents: batch rows from Kafka topics into ClickHouse, idempotently.

Lifecycle of a batch: rows are buffered by ``stream.take(sink_batch_rows, within=sink_flush_s)``;
the batch is inserted (in a worker thread, never on the event loop); only when the insert
returns are the batch's events acknowledged, so their offsets are committed *after* the rows are
confirmed written. A failed insert is retried with exponential backoff for as long as it takes:
the topic backs up in Kafka (bounded memory in the worker) while the window agent keeps
repricing. Replays are harmless because every table is a ReplacingMergeTree keyed by its natural
key and read with ``FINAL``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import msgspec

from infra.clickhouse import ClickHouseBackend, ClickHouseError, connect
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

    async def write(self, rows: Rows, *, on_error: Callable[[Exception], None]) -> int:
        """Insert ``rows``; returns only once they are written (retrying with backoff)."""
        delay = 0.2
        loop = asyncio.get_running_loop()
        while True:
            try:
                return await loop.run_in_executor(self._pool, self._insert_sync, rows)
            except (ClickHouseError, OSError, EOFError) as exc:
                on_error(exc)
                log.warning("ClickHouse insert failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.retry_max_s)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
        self._pool.shutdown(wait=False)


def register(rp: Repricer) -> None:
    s, t, stats = rp.settings, rp.topics, rp.stats
    sink = ClickHouseSink(s.clickhouse_url.get_secret_value(), retry_max_s=s.sink_retry_max_s)

    def on_error(exc: Exception) -> None:
        stats.sink_errors += 1

    def make(topic_key: str, to_rows: Callable[[Sequence[bytes]], Rows]) -> None:
        async def agent(stream: Any) -> None:
            async for values in stream.take(s.sink_batch_rows, within=s.sink_flush_s):
                rows = to_rows(values)
                n = sum(len(v) for v in rows.values())
                if stats.sink_pending == 0 and n:
                    stats.sink_pending_since = time.time()
                stats.sink_pending += n
                t0 = time.perf_counter()
                try:
                    await sink.write(rows, on_error=on_error)
                finally:
                    stats.sink_pending -= n
                stats.sink_last_batch_s = time.perf_counter() - t0
                stats.sink_last_ok_at = time.time()
                stats.sink_batches += 1
                for table, batch in rows.items():
                    stats.sink_rows[table] += len(batch)

        rp.app.agent(t[topic_key], name=f"repricer.sink.{topic_key}")(agent)

    make("aggregates", aggregate_rows)
    make("price_changes", price_change_rows)
    make("dlq", dead_letter_rows)
