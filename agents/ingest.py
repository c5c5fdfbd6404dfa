"""Ingest: decode and validate public events, dead-letter the bad, repartition by SKU.

Ingest is a plain aiokafka consumer group (``<app_id>-ingest``) inside the worker, not a Faust
agent per event: it polls a batch of records, decodes each (msgspec, size cap first), sends the
bad ones to the dead-letter topic with their reason and the valid ones to the SKU-keyed internal
topic as one ``BatchEnv`` per target partition, waits until the broker has acknowledged all of
that, and only then commits the batch's offsets. A crash before the commit replays the batch;
the window agent drops the replayed events by their source partition and offset.

Now and then a watermark is broadcast to every partition of the internal topic (so quiet
partitions still close windows): how far each source partition has been forwarded, only ever
counting events the broker has acknowledged. A record on an event topic with the header
``repricer-watermark`` (an end-of-input marker of ``repricer replay``) is no event: it advances
its source partition to the marker's event time.

On every (re)assignment the catalog and control partitions are read to their end before any
order or click is forwarded (the event partitions are paused meanwhile): the engine decides
only SKUs it has a catalog record for (``streams.side_inputs``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from mode import Service

from repricer.schemas import CatalogItem, Click, ControlCommand, Order, Rejection, decode
from repricer.schemas.decode import watermark_marker
from repricer.schemas.events import ts_ms
from repricer.streams import shutdown
from repricer.streams.consumers import start_group_consumer
from repricer.streams.dead_letters import dead_letter
from repricer.streams.envelope import (
    BatchEnv,
    CatalogEnv,
    ClickEnv,
    ControlEnv,
    OrderEnv,
    SkuEnvelope,
    WatermarkEnv,
    is_broadcast,
    pack,
    sku_partition,
)
from repricer.streams.headers import produced
from repricer.streams.side_inputs import SideInputBootstrap
from repricer.streams.source_watermarks import SourceWatermarks

if TYPE_CHECKING:
    from repricer.streams.worker import Repricer

log = logging.getLogger(__name__)
WATERMARK_FLUSH_S = 0.2
MAX_BATCH_EVENTS = 1000  # events per BatchEnv message (~60 KB)


def to_envelope(
    event: Order | Click | CatalogItem | ControlCommand, *, src: str = "", off: int = -1
) -> SkuEnvelope:
    """The internal envelope of a validated public event from source partition ``src``."""
    if isinstance(event, Order):
        return OrderEnv(
            sku=event.sku,
            ts=ts_ms(event.ts),
            qty=event.qty,
            price=event.unit_price,
            order_id=event.order_id,
            src=src,
            off=off,
        )
    if isinstance(event, Click):
        return ClickEnv(sku=event.sku, ts=ts_ms(event.ts), kind=event.type, src=src, off=off)
    if isinstance(event, CatalogItem):
        return CatalogEnv(
            sku=event.sku,
            cost=event.cost,
            base_price=event.base_price,
            min_price=event.min_price,
            max_price=event.max_price,
            currency=event.currency,
            stock=event.stock,
            src=src,
            off=off,
            category=event.category,
        )
    return ControlEnv(
        sku=event.sku,
        action=event.action,
        price=event.price,
        who=event.who,
        why=event.why,
        src=src,
        off=off,
    )


def register(rp: Repricer) -> None:
    s, t = rp.settings, rp.topics
    partitions = s.partitions
    kinds: dict[str, tuple[str, type]] = {
        s.topic_orders: ("orders", Order),
        s.topic_clicks: ("clicks", Click),
        s.topic_catalog: ("catalog", CatalogItem),
        s.topic_control: ("control", ControlCommand),
    }
    event_topics = {s.topic_orders, s.topic_clicks}
    ENVELOPE_HEADERS = produced("Envelope")
    # how far each source partition has been forwarded, and which are idle (no Kafka in it)
    wm = SourceWatermarks(event_topics, s.idle_source_s)
    # the side inputs (catalog, control) are read to their end before the events, per assignment
    boot = SideInputBootstrap(set(kinds) - event_topics, settle_s=s.topic_read_settle_s)

    @rp.app.service
    class IngestService(Service):
        """One aiokafka consumer for the public input topics; commits what is forwarded."""

        consumer: AIOKafkaConsumer | None = None
        reading = False

        async def on_start(self) -> None:
            self.reading = True
            self.done = asyncio.Event()  # set when _run has returned
            self.committed: dict[str, int] = {}
            await t["sku_events"].maybe_declare()
            self.consumer = await start_group_consumer(
                rp, "ingest", list(kinds), on_assigned=boot.assigned
            )
            rp.app.stop_hooks.append(self.stop_reading)

        async def stop_reading(self) -> None:
            """First step of a stop: no new batch; the one in hand is forwarded and committed
            (or, past the deadline, abandoned uncommitted and forwarded again after restart)."""
            if not self.reading:
                return
            self.reading = False
            c, self.consumer = self.consumer, None
            rp.consumers.pop("ingest", None)  # the watermark timer stops with it
            done, _ = await shutdown.bounded(self.done.wait(), 4.0, "ingest's batch in hand")
            if not done:
                self.abandon()
            if c is not None:
                await shutdown.bounded(c.stop(), 1.0, "stopping the ingest consumer")
            log.info(
                "ingest stopped: committed up to %s%s",
                ", ".join(f"{k}@{v}" for k, v in sorted(self.committed.items())) or "nothing",
                "" if done else "; the batch in hand was abandoned uncommitted",
            )

        def abandon(self) -> None:
            for task in self._futures:  # the _run task, stuck forwarding (a dead broker)
                task.cancel()

        async def on_stop(self) -> None:
            await self.stop_reading()

        @Service.task
        async def _run(self) -> None:
            c = self.consumer
            assert c is not None
            try:
                while self.reading and not self.should_stop:
                    batch = await c.getmany(timeout_ms=200, max_records=s.ingest_batch_events)
                    batch = boot.admit(c, batch)
                    if batch and self.reading:  # a batch got while stopping is left for restart
                        if not rp.stats.first_read_at:
                            rp.stats.first_read_at = time.time()
                        await self._forward(c, batch)
                    if self.reading:  # the catalog forwarded: the events may follow
                        await boot.step(c)
            finally:
                self.done.set()

        async def _forward(self, c: AIOKafkaConsumer, batch: dict[TopicPartition, list]) -> None:
            wm.batch_started(f"{tp.topic}/{tp.partition}" for tp in batch)
            try:
                await self._forward_batch(c, batch)
            finally:
                wm.batch_done()

        async def _forward_batch(
            self, c: AIOKafkaConsumer, batch: dict[TopicPartition, list]
        ) -> None:
            sends: list[Awaitable[Any]] = []
            per_partition: dict[int, list[OrderEnv | ClickEnv]] = {}
            newest: dict[str, int] = {}
            not_after_ms = int((time.time() + s.max_event_lead_s) * 1000)
            for tp, records in batch.items():
                topic_key, kind = kinds[tp.topic]
                src = f"{tp.topic}/{tp.partition}"
                for msg in records:
                    mark = (
                        watermark_marker(msg.headers, not_after_ms=not_after_ms)
                        if msg.headers and tp.topic in event_topics
                        else None
                    )
                    if isinstance(mark, int):  # end of input (`repricer replay`), not an event
                        rp.stats.ingested["watermarks"] += 1
                        newest[src] = max(newest.get(src, 0), mark)
                        continue
                    rp.stats.ingested[topic_key] += 1
                    result = (
                        mark
                        if mark is not None
                        else decode(
                            msg.value,
                            kind,
                            max_bytes=s.max_payload_bytes,
                            not_after_ms=not_after_ms,
                        )
                    )
                    if isinstance(result, Rejection):
                        rp.stats.dlq[result.reason] += 1
                        dl = dead_letter(result, msg, msg.value, cap=s.max_payload_bytes)
                        sends.append(
                            await t["dlq"].send(key=dl.key, value=dl.value, headers=dl.headers)
                        )
                        continue
                    env = to_envelope(result, src=src, off=msg.offset)
                    if isinstance(env, OrderEnv | ClickEnv):
                        per_partition.setdefault(sku_partition(env.sku, partitions), []).append(env)
                        newest[src] = max(newest.get(src, 0), env.ts)
                    elif isinstance(env, ControlEnv) and is_broadcast(env.sku):
                        for p in range(partitions):
                            sends.append(await self._send(b"*", pack(env), p))
                    else:
                        p = sku_partition(env.sku, partitions)
                        sends.append(await self._send(env.sku.encode(), pack(env), p))
            for p, events in per_partition.items():
                for i in range(0, len(events), MAX_BATCH_EVENTS):
                    value = pack(BatchEnv(events=events[i : i + MAX_BATCH_EVENTS]))
                    sends.append(await self._send(b"", value, p))
            await asyncio.gather(*sends)  # acknowledged by the broker: now it may be committed
            offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
            try:
                await c.commit(offsets)
                self.committed.update(
                    {f"{tp.topic}/{tp.partition}": o for tp, o in offsets.items()}
                )
            except (CommitFailedError, KafkaError) as exc:
                # partitions moved meanwhile: their new owner forwards again; the window agent
                # drops what it already has by source offset
                log.warning("ingest commit failed (%s); the batch will be forwarded again", exc)
            read = {f"{tp.topic}/{tp.partition}": off for tp, off in offsets.items()}
            wm.forwarded_batch(read, newest, time.monotonic())

        async def _send(self, key: bytes, value: bytes, partition: int) -> Awaitable[Any]:
            return await t["sku_events"].send(
                key=key, value=value, partition=partition, headers=list(ENVELOPE_HEADERS)
            )

    @rp.app.timer(WATERMARK_FLUSH_S)
    async def broadcast_watermarks() -> None:
        """Tell every SKU partition how far each source partition has been forwarded."""
        consumer = rp.consumers.get("ingest")
        if consumer is None:
            return
        now = time.monotonic()
        # Every partition of the event topics is announced, owned here or not (0 = "nothing
        # forwarded yet"): a window must never close on the sources one worker happens to own
        # while another source has no owner yet (a member that died before announcing its
        # partitions, a group still joining). A 0 never lowers what the owner announced.
        wm.start_round(
            (
                f"{topic}/{p}"
                for topic in event_topics
                for p in consumer.partitions_for_topic(topic) or ()
            ),
            time.time(),
        )
        # source partitions assigned here but silent since (re)start must not hold windows
        # open forever: once nothing is left to read in them, they become idle like any other
        for tp in consumer.assignment():
            if tp.topic not in event_topics or boot.holds(tp):  # held back: not idle
                continue
            src = f"{tp.topic}/{tp.partition}"
            hw = consumer.highwater(tp)
            if wm.idle_target(src, hw, consumer.last_poll_timestamp(tp), now) is None:
                continue
            pos = wm.next_offset.get(src)
            if pos is None:  # nothing read since it was assigned: where reading starts
                try:
                    pos = int(await asyncio.wait_for(consumer.position(tp), 0.5))
                except (TimeoutError, KafkaError, AssertionError, KeyError):
                    continue
                if not wm.still_unread(src):
                    continue
            wm.fetch_state(src, hw, pos, now)
        moved = wm.advance(now)
        if moved:
            log.info(
                "idle source partitions %s advanced to event time %s",
                moved,
                max(wm.forwarded.values()),
            )
        for src, ts in wm.unannounced():  # 0 = "assigned, nothing forwarded yet": hold windows
            wm.announced(src, ts)
            wm_env = pack(WatermarkEnv(src=src, ts=ts))
            for p in range(partitions):
                await t["sku_events"].send(
                    key=b"", value=wm_env, partition=p, headers=list(ENVELOPE_HEADERS)
                )
