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
import functools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from operator import attrgetter, or_
from typing import TYPE_CHECKING, Any

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, KafkaError
from mode import Service
from msgspec import Struct

from repricer.infra.clickhouse import ClickHouseBackend, ClickHouseError, connect
from repricer.infra.clickhouse.tables import AGGREGATES, DEAD_LETTERS, PRICE_CHANGES, Table
from repricer.schemas import DeadLetter, PriceChange, Rejection, encode
from repricer.streams import shutdown
from repricer.streams.consumers import Batch, poll_batch, start_group_consumer
from repricer.streams.dead_letters import dead_letter

if TYPE_CHECKING:
    from repricer.streams.worker import Repricer

log = logging.getLogger(__name__)

TableColumns = dict[str, list[Any]]
"""One table's batch as columns: column name -> values in row order (DateTime as epoch ms)."""
Batches = dict[str, TableColumns]
"""Column batches by table."""


# An ``aggregates`` message is ``{"t": tag, "r": row}`` (the window agent encodes the message
# structs of the registry's aggregate tables, ``infra.clickhouse.AGGREGATES``). Its rows are
# decoded against the table's own row type (``Table.row_type``: every column typed and bounded
# like in ClickHouse), picked by the tag: so decoding is the validation, in C, and builds no dict
# per row; a row that does not fit its table fails to decode and goes to the dead-letter topic
# with the reason (``bad_sink_row``) instead of failing the insert.
# ``version`` (the ReplacingMergeTree version) is taken from the table's ``version_from`` column.
_AGG_MSGS: dict[Table, type[Struct]] = {
    table: msgspec.defstruct(
        f"_{table.row_type.__name__}Msg",
        [("r", table.row_type)],
        frozen=True,
        gc=False,
        tag_field="t",
        tag=table.tag,
    )
    for table in AGGREGATES
}
_agg_dec: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
    functools.reduce(or_, _AGG_MSGS.values())
)
_AGG_TABLES: dict[type[Struct], tuple[str, tuple[str, ...], str]] = {
    msg: (table.name, table.row_type.__struct_fields__, table.version_from)
    for table, msg in _AGG_MSGS.items()
}
# tables whose columns come only from rows decoded against their row_type
_DECODED_TABLES = frozenset(table.name for table in AGGREGATES)
# price_changes columns computed from a PriceChange rather than copied from one of its fields
_CHANGE_DERIVED = ("forecast_old", "forecast_new", "model_versions", "version")
_CHANGE_FIELDS = tuple(c for c in PRICE_CHANGES.column_names if c not in _CHANGE_DERIVED)
_LETTER_FIELDS = tuple(c for c in DEAD_LETTERS.column_names if c != "version")
_change_dec = msgspec.json.Decoder(PriceChange)
_dlq_dec = msgspec.json.Decoder(DeadLetter)


Rejected = list[tuple[int, str]]
"""Messages of a batch that did not decode: (index in the batch, reason)."""


def _decode_all(
    dec: msgspec.json.Decoder[Any], values: Sequence[bytes], rejected: Rejected | None
) -> list[Any]:
    """Every value decoded; an undecodable one is left out and noted in ``rejected``."""
    try:
        return list(map(dec.decode, values))  # the common case, without a Python-level loop
    except msgspec.DecodeError:
        pass
    out = []
    for i, v in enumerate(values):
        try:
            out.append(dec.decode(v))
        except msgspec.DecodeError as exc:
            if rejected is not None:
                rejected.append((i, str(exc)[:300]))
    return out


def _columns(structs: Sequence[Struct], fields: Sequence[str]) -> TableColumns:
    return {f: list(map(attrgetter(f), structs)) for f in fields}


def aggregate_columns(values: Sequence[bytes], rejected: Rejected | None = None) -> Batches:
    """Column batches by table from ``aggregates`` messages, without a dict per row."""
    msgs: list[Any] = _decode_all(_agg_dec, values, rejected)
    out: Batches = {}
    kinds: set[Any] = set(map(type, msgs))
    for kind in kinds:
        table, fields, version = _AGG_TABLES[kind]
        rows = (
            [m.r for m in msgs] if len(kinds) == 1 else [m.r for m in msgs if m.__class__ is kind]
        )
        cols = _columns(rows, fields)
        cols["version"] = cols[version].copy()  # its own list: batches are extended
        out[table] = cols
    return out


def price_change_columns(values: Sequence[bytes], rejected: Rejected | None = None) -> Batches:
    changes = _decode_all(_change_dec, values, rejected)
    cols = _columns(changes, _CHANGE_FIELDS)
    cols["forecast_old"] = [c.forecast.units_at_old for c in changes]
    cols["forecast_new"] = [c.forecast.units_at_new for c in changes]
    cols["model_versions"] = [json.dumps(c.model_versions, sort_keys=True) for c in changes]
    cols["version"] = cols[PRICE_CHANGES.version_from].copy()
    return {PRICE_CHANGES.name: cols}


def dead_letter_columns(values: Sequence[bytes], rejected: Rejected | None = None) -> Batches:
    letters = _decode_all(_dlq_dec, values, rejected)
    cols = _columns(letters, _LETTER_FIELDS)
    cols["version"] = cols[DEAD_LETTERS.version_from].copy()
    return {DEAD_LETTERS.name: cols}


def batch_rows(batches: Batches) -> dict[str, int]:
    """Rows per table of column batches."""
    return {table: len(next(iter(cols.values()), ())) for table, cols in batches.items()}


def merge_batches(into: Batches, more: Batches) -> Batches:
    """``more``'s columns appended to ``into``'s (table by table); returns ``into``."""
    for table, cols in more.items():
        have = into.get(table)
        if have is None:
            into[table] = cols
        else:
            for name, values in cols.items():
                have[name].extend(values)
    return into


class InsertAbandoned(Exception):
    """The worker is stopping: a failing insert is given up (its offsets stay uncommitted)."""


class ClickHouseSink:
    """Inserts row batches with retry; one thread, because chdb is not thread-safe."""

    def __init__(self, url: str, *, retry_max_s: float = 10.0) -> None:
        self._url = url
        self._backend: ClickHouseBackend | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-sink")
        self.retry_max_s = retry_max_s

    def _insert_sync(self, batches: Batches) -> int:
        if self._backend is None:
            backend = connect(self._url)
            backend.init()
            self._backend = backend
        return sum(
            self._backend.insert_columns(table, cols, checked=table in _DECODED_TABLES)
            for table, cols in batches.items()
        )

    async def write(
        self,
        batches: Batches,
        *,
        on_error: Callable[[Exception], None],
        wait: Callable[[float], Awaitable[None]] = asyncio.sleep,
        stopping: Callable[[], bool] = lambda: False,
    ) -> int:
        """Insert ``batches``; returns only once they are written (retrying with backoff).

        ``wait(seconds)`` spends the backoff (the consumer uses it to keep polling, paused).
        Raises ``InsertAbandoned`` instead of retrying once ``stopping()`` is true.
        """
        delay = 0.2
        loop = asyncio.get_running_loop()
        while True:
            try:
                return await loop.run_in_executor(self._pool, self._insert_sync, batches)
            except (ClickHouseError, OSError, EOFError) as exc:
                on_error(exc)
                if stopping():
                    raise InsertAbandoned(str(exc)) from exc
                log.warning("ClickHouse insert failed (%s); retrying in %.1fs", exc, delay)
                await wait(delay * (0.5 + random.random()))
                if stopping():
                    raise InsertAbandoned(str(exc)) from exc
                delay = min(delay * 2, self.retry_max_s)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
        self._pool.shutdown(wait=False)


def register(rp: Repricer) -> None:
    s, t, stats = rp.settings, rp.topics, rp.stats
    to_columns: dict[str, Callable[[Sequence[bytes], Rejected], Batches]] = {
        t["aggregates"].get_topic_name(): aggregate_columns,
        s.topic_price_changes: price_change_columns,
        s.topic_dlq: dead_letter_columns,
    }

    def on_error(exc: Exception) -> None:
        stats.sink_errors += 1

    @rp.app.service
    class SinkService(Service):
        """One aiokafka consumer for every sink topic; commits only what ClickHouse holds."""

        consumer: AIOKafkaConsumer | None = None
        writing = False
        sink: ClickHouseSink | None = None

        async def on_start(self) -> None:
            self.writing = True
            self.done = asyncio.Event()  # set when _run has returned
            self.committed = 0  # rows inserted and committed since start
            self.sink = ClickHouseSink(
                s.clickhouse_url.get_secret_value(), retry_max_s=s.sink_retry_max_s
            )
            await t["aggregates"].maybe_declare()
            self.consumer = await start_group_consumer(rp, "sink", list(to_columns))
            rp.app.stop_hooks.append(self.stop_writing)

        def stopping(self) -> bool:
            return not self.writing or self.should_stop

        async def stop_writing(self) -> None:
            """First step of a stop: no new batch; the insert in hand is committed once it
            returns, a failing one is abandoned uncommitted (the next worker inserts it)."""
            if not self.writing:
                return
            self.writing = False
            c, self.consumer = self.consumer, None
            done, _ = await shutdown.bounded(self.done.wait(), 4.0, "the sink's insert in hand")
            if not done:
                for task in self._futures:  # the _run task, stuck in an insert or a commit
                    task.cancel()
            if c is not None:
                await shutdown.bounded(c.stop(), 1.0, "stopping the sink consumer")
            if self.sink is not None:
                self.sink.close()
            log.info(
                "sink stopped: %d rows inserted and committed since start%s",
                self.committed,
                "" if done else "; the batch in hand was abandoned uncommitted",
            )

        async def on_stop(self) -> None:
            await self.stop_writing()

        async def _paused_wait(self, seconds: float) -> None:
            """Backoff that keeps the consumer in its group without fetching more."""
            c = self.consumer
            if c is None:
                return
            c.pause(*c.assignment())
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not self.stopping():
                await c.getmany(timeout_ms=int(min(0.5, seconds) * 1000))
            c.resume(*c.assignment())

        @Service.task
        async def _run(self) -> None:
            c = self.consumer
            assert c is not None
            try:
                while not self.stopping():
                    batch = await poll_batch(c, s.sink_batch_rows, s.sink_flush_s)
                    if batch and not self.stopping():  # one polled while stopping: restart's
                        await self._write(c, batch)
            finally:
                self.done.set()

        async def _write(self, c: AIOKafkaConsumer, batch: Batch) -> None:
            by_topic: dict[str, list[Any]] = {}
            for tp, records in batch.items():
                by_topic.setdefault(tp.topic, []).extend(records)
            columns: Batches = {}
            letters: list[Awaitable[Any]] = []
            for topic, records in by_topic.items():  # one decode per topic, into columns
                rejected: Rejected = []
                merge_batches(columns, to_columns[topic]([r.value for r in records], rejected))
                for i, reason in rejected:  # a row its table cannot hold: parked, with why
                    rej = Rejection(reason="bad_sink_row", detail=reason)
                    letter = encode(dead_letter(rej, records[i], records[i].value))
                    letters.append(await t["dlq"].send(key=records[i].key, value=letter))
                    stats.dlq["bad_sink_row"] += 1
                    log.warning("dead-lettered a %s row ClickHouse cannot hold: %s", topic, reason)
            if letters:
                await asyncio.gather(*letters)  # parked before the batch is committed
            rows = batch_rows(columns)
            n = sum(rows.values())
            if stats.sink_pending == 0 and n:
                stats.sink_pending_since = time.time()
            stats.sink_pending += n
            t0 = time.perf_counter()
            assert self.sink is not None
            try:
                await self.sink.write(
                    columns, on_error=on_error, wait=self._paused_wait, stopping=self.stopping
                )
            except InsertAbandoned as exc:
                log.warning(
                    "stopping: abandoned an insert of %d rows that fails (%s); not committed, "
                    "the next worker inserts them",
                    n,
                    exc,
                )
                return
            finally:
                stats.sink_pending -= n
            offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
            try:
                await c.commit(offsets)  # only now: the rows are in ClickHouse
                self.committed += n
            except (CommitFailedError, KafkaError) as exc:
                # partitions moved while inserting: their new owner inserts again (idempotent)
                log.warning("sink commit failed (%s); the rows will be written again", exc)
            stats.sink_last_batch_s = time.perf_counter() - t0
            stats.sink_last_ok_at = time.time()
            stats.sink_batches += 1
            for table, k in rows.items():
                stats.sink_rows[table] += k
