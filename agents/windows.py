"""The window agent: per-SKU windows, decisions at close, and publication of their outputs."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from agents.ingest import dead_letter
from schemas import Rejection, encode
from streams.envelope import OrderEnv, unpack

if TYPE_CHECKING:
    from streams.app import Repricer

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()


def register(rp: Repricer) -> None:
    t, st = rp.topics, rp.stats
    skus, meta, opens = rp.tables["skus"], rp.tables["meta"], rp.tables["opens"]
    engine = rp.engine

    async def windows(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                env = unpack(event.value)
            except msgspec.DecodeError as exc:  # only our own ingest writes here
                rej = Rejection(reason="bad_envelope", detail=str(exc)[:300])
                await t["dlq"].send(key=event.key, value=encode(dead_letter(rej, msg, event.value)))
                continue
            try:
                out = engine.handle(
                    env,
                    partition=msg.partition,
                    offset=msg.offset,
                    skus=skus,
                    meta=meta,
                    opens=opens,
                )
            except Exception as exc:  # a bug must not stop the stream: park the event, say why
                log.exception(
                    "window engine failed on %s@%s:%s", msg.topic, msg.partition, msg.offset
                )
                rej = Rejection(reason="processing_error", detail=repr(exc)[:300])
                await t["dlq"].send(key=event.key, value=encode(dead_letter(rej, msg, event.value)))
                st.dlq["processing_error"] += 1
                continue
            agg = t["aggregates"]
            for row in out.sales:
                await agg.send(
                    key=row.sku.encode(), value=_json.encode({"t": "sales_1m", "r": row})
                )
            for crow in out.clicks:
                await agg.send(
                    key=crow.sku.encode(), value=_json.encode({"t": "clicks_1m", "r": crow})
                )
            for frow in out.forecasts:
                await agg.send(
                    key=frow.sku.encode(), value=_json.encode({"t": "forecasts", "r": frow})
                )
            for change in out.changes:
                await t["price_changes"].send(key=change.sku.encode(), value=encode(change))
            for price in out.prices:
                await t["prices"].send(key=price.sku.encode(), value=encode(price))
            for late in out.late:
                kind = "order" if isinstance(late, OrderEnv) else "click"
                rej = Rejection(
                    reason="late_event",
                    detail=f"{kind} for {late.sku} at ts={late.ts} after its window closed",
                )
                dl = dead_letter(rej, msg, event.value)
                await t["dlq"].send(key=late.sku.encode(), value=encode(dl))
                st.dlq["late_event"] += 1
            st.windows_closed += out.windows_closed
            st.labels += out.labels
            st.forecast_rows += len(out.forecasts)
            st.decisions += out.decisions
            st.price_changes += len(out.changes)
            st.late_events += len(out.late)

    rp.app.agent(t["sku_events"], name="repricer.windows")(windows)
