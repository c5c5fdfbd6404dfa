"""Ingest agents: decode and validate public events, dead-letter the bad, repartition by SKU.

Valid orders and clicks are forwarded to the SKU-keyed internal topic, followed now and then by
a watermark broadcast to every partition of it (so quiet partitions still close windows).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from schemas import CatalogItem, Click, ControlCommand, DeadLetter, Order, Rejection, decode, encode
from schemas.decode import excerpt
from schemas.events import ts_ms
from streams.envelope import (
    CatalogEnv,
    ClickEnv,
    ControlEnv,
    OrderEnv,
    SkuEnvelope,
    WatermarkEnv,
    pack,
)
from streams.windowing import advance_idle_sources

if TYPE_CHECKING:
    from streams.app import Repricer

log = logging.getLogger(__name__)
WATERMARK_FLUSH_S = 0.2


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
        )
    return ControlEnv(
        sku=event.sku, action=event.action, price=event.price, who=event.who, why=event.why
    )


def dead_letter(rej: Rejection, message: Any, value: bytes | None) -> DeadLetter:
    return DeadLetter(
        reason=rej.reason,
        detail=rej.detail,
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        payload_excerpt=excerpt(value),
        received_at=int(time.time() * 1000),
    )


def register(rp: Repricer) -> None:
    s, t = rp.settings, rp.topics
    partitions = s.partitions
    # highest event time forwarded per source partition, and what was last broadcast for it
    forwarded: dict[str, int] = {}
    broadcast: dict[str, int] = {}
    last_event: dict[str, float] = {}
    last_offset: dict[str, int] = {}
    event_topics = {s.topic_orders, s.topic_clicks}

    def make(topic_key: str, kind: type) -> None:
        async def agent(stream: Any) -> None:
            async for event in stream.events():
                msg, value = event.message, event.value
                result = decode(
                    value,
                    kind,
                    max_bytes=s.max_payload_bytes,
                    not_after_ms=int((time.time() + s.max_event_lead_s) * 1000),
                )
                rp.stats.ingested[topic_key] += 1
                src = f"{msg.topic}/{msg.partition}"
                last_offset[src] = msg.offset
                if isinstance(result, Rejection):
                    rp.stats.dlq[result.reason] += 1
                    await t["dlq"].send(
                        key=event.key, value=encode(dead_letter(result, msg, value))
                    )
                    continue
                env = to_envelope(result, src=src, off=msg.offset)
                if isinstance(env, ControlEnv) and env.sku == "*":
                    for p in range(partitions):
                        await t["sku_events"].send(key=b"*", value=pack(env), partition=p)
                    continue
                await t["sku_events"].send(key=env.sku.encode(), value=pack(env))
                if isinstance(env, OrderEnv | ClickEnv):
                    last_event[src] = time.monotonic()
                    if env.ts > forwarded.get(src, 0):
                        forwarded[src] = env.ts

        agent.__name__ = f"ingest_{topic_key}"
        agent.__qualname__ = agent.__name__
        rp.app.agent(t[topic_key], name=f"repricer.ingest.{topic_key}")(agent)

    make("orders", Order)
    make("clicks", Click)
    make("catalog", CatalogItem)
    make("control", ControlCommand)

    @rp.app.timer(WATERMARK_FLUSH_S)
    async def broadcast_watermarks() -> None:
        """Tell every SKU partition how far each source partition has been forwarded."""
        now = time.monotonic()
        consumer = rp.app.consumer
        committed = getattr(consumer, "_committed_offset", None) or {}
        caught_up: set[str] = set()
        # source partitions assigned here but silent since (re)start must not hold windows
        # open forever: once nothing is left to read in them, they become idle like any other
        for tp in consumer.assignment():
            if tp.topic not in event_topics:
                continue
            src = f"{tp.topic}/{tp.partition}"
            if src not in forwarded:
                forwarded[src] = 0
                last_event.setdefault(src, now)
            try:
                hw = consumer.highwater(tp)
            except Exception:  # not fetched yet: unknown, so not idle
                continue
            done = max(last_offset.get(src, -1), committed.get(tp) or -1)
            if hw is not None and (hw == 0 or done >= hw - 1):
                caught_up.add(src)
            elif hw is not None:
                last_event[src] = max(last_event.get(src, now), now - s.idle_source_s / 2)
        moved = advance_idle_sources(forwarded, last_event, now, s.idle_source_s, caught_up)
        if moved:
            log.info(
                "idle source partitions %s advanced to event time %s",
                moved,
                max(forwarded.values()),
            )
        for src, ts in list(forwarded.items()):
            if broadcast.get(src) == ts:  # 0 = "assigned, nothing forwarded yet": hold windows
                continue
            broadcast[src] = ts
            wm = pack(WatermarkEnv(src=src, ts=ts))
            for p in range(partitions):
                await t["sku_events"].send(key=b"", value=wm, partition=p)
