"""The window agent: per-SKU windows, decisions at close, and publication of their outputs.

Durability order (at-least-once without losing outputs): the engine's table writes are staged;
its outputs (aggregates, price changes, prices, dead letters) are sent and *acknowledged by the
broker* first; on a tick, everything earlier is flushed, then the phase-1 partition record
(shared model learned, tick under way), then the SKU records, then the final partition record
(tick done, this offset), each flushed before the next. A crash
anywhere in between replays the envelope: outputs are re-sent with the same deterministic ids
(harmless downstream), and state that did not reach its changelog is recomputed — a window is
never marked closed before its rows are safely in Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import msgspec

from repricer.infra.clickhouse.tables import CLICKS_1M, FORECASTS, SALES_1M
from repricer.schemas import DeadLetter, Rejection, encode
from repricer.schemas.decode import excerpt
from repricer.streams.continuity import Continuity, Step, applied_key
from repricer.streams.dead_letters import dead_letter
from repricer.streams.engine import OpenWindows, Outputs, PartitionState, SkuState
from repricer.streams.engine.state import Record, load
from repricer.streams.envelope import EventEnv, pack, unpack

if TYPE_CHECKING:
    from repricer.streams.worker import Repricer

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()


class Staged(MutableMapping[str, Any]):
    """A view of a table that records writes instead of sending them to the changelog.

    The table holds the engine's records (``typ``); a value recovered from the changelog is its
    JSON form, read as the record here (``streams.engine.state.load``).
    """

    def __init__(self, table: Any, typ: type[Record]) -> None:
        self.table = table
        self.typ = typ
        self.writes: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self.writes:
            return self.writes[key]
        value = self.table[key]
        if value is None:
            raise KeyError(key)
        return load(self.typ, value)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key in self.writes:
            return self.writes[key]
        value = self.table.get(key)
        return default if value is None else load(self.typ, value)

    def __contains__(self, key: object) -> bool:
        return key in self.writes or self.table.get(key) is not None

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes[key] = value

    def __delitem__(self, key: str) -> None:  # pragma: no cover - the engine never deletes
        raise NotImplementedError

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)

    def items(self):  # type: ignore[no-untyped-def,override]
        return ((k, load(self.typ, v)) for k, v in self.table.items() if v is not None)

    def commit(self) -> None:
        for key, value in self.writes.items():
            self.table[key] = value
        self.writes.clear()


def late_letter(late: EventEnv) -> bytes:
    """The dead letter of a late event, located at the event's own source partition and offset
    (many late events can share one batch envelope; each keeps its own row downstream)."""
    return event_letter(late, "late_event", "after its window closed")


def duplicate_letter(dup: EventEnv) -> bytes:
    """The dead letter of an order whose id was already counted in its SKU window."""
    return event_letter(dup, "duplicate_order", "whose order id its window already counted")


def event_letter(env: EventEnv, reason: str, why: str) -> bytes:
    kind = type(env).__name__.removesuffix("Env").lower()
    topic, _, partition = env.src.rpartition("/")
    return encode(
        DeadLetter(
            reason=reason,
            detail=f"{kind} for {env.sku} at ts={env.ts} from {env.src}@{env.off} {why}",
            source_topic=topic,
            source_partition=int(partition) if partition.isdigit() else -1,
            source_offset=env.off,
            payload_excerpt=excerpt(pack(env)),
            received_at=int(time.time() * 1000),
        )
    )


def where(msg: Any, reason: str) -> dict[str, Any]:
    """The structured fields of a log line about one SKU-topic record."""
    return {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset, "reason": reason}


def mark_applied(
    table: MutableMapping[str, Any], key: str, applied: int | None, offset: int
) -> None:
    """Record ``offset`` as the partition's last applied envelope (a replay never lowers it)."""
    if applied is None or offset > applied:
        table[key] = offset


def durable_steps(
    out: Outputs, s_meta: Staged, s_skus: Staged, s_opens: Staged, meta: MutableMapping[str, Any]
) -> list[Callable[[], None]]:
    """The table writes of one envelope, as steps; on a tick each is flushed before the next.

    A tick: the phase-1 partition record (shared model learned, tick under way), then the SKU
    state records, then their open-window records, then the final partition record (tick done, this envelope's offset). A crash
    anywhere replays the envelope and finishes the tick without learning anything twice.
    """

    if not (s_meta.writes and (s_skus.writes or s_opens.writes)):
        return [s_meta.commit, s_skus.commit, s_opens.commit]
    steps: list[Callable[[], None]] = []
    if out.tick_meta is not None:
        key, phase1 = out.tick_meta
        steps.append(lambda: meta.__setitem__(key, phase1))
    # one table per step: records of different changelog topics are not delivered in order
    # unless flushed in between, and a SKU's open-window record must never be ahead of its
    # state record (it would re-emit a closed window without the events folded into it)
    return [*steps, s_skus.commit, s_opens.commit, s_meta.commit]


def register(rp: Repricer) -> None:
    t, st = rp.topics, rp.stats
    skus, meta, opens = rp.tables["skus"], rp.tables["meta"], rp.tables["opens"]
    engine = rp.engine

    guard = Continuity()

    async def rewind(msg: Any, target: int) -> None:
        """Seek the partition back to ``target``, the first envelope not applied yet (or, if the
        broker no longer holds it, to the earliest it holds, reporting the rest as lost)."""
        try:
            earliest = (await asyncio.wait_for(rp.app.consumer.earliest_offsets(msg.tp), 5.0)).get(
                msg.tp
            )
        except Exception as exc:  # the seek below is right either way unless retention struck
            log.warning("earliest offset of %s unknown (%r): rewinding anyway", msg.tp, exc)
            earliest = None
        if earliest is not None and earliest > target:
            st.envelopes_lost += earliest - target
            log.error(
                "%s/%s: envelopes %s..%s were never applied and the broker no longer holds them "
                "(retention shorter than the downtime): their events are lost; reading on from %s",
                msg.topic, msg.partition, target, earliest - 1, earliest,
                extra=where(msg, "envelopes_lost"),
            )  # fmt: skip
            meta[applied_key(msg.partition)] = earliest - 1
            target = earliest
        log.warning(
            "%s/%s: envelope %s delivered before %s..%s were applied; rewinding to %s",
            msg.topic, msg.partition, msg.offset, target, msg.offset - 1, target,
            extra=where(msg, "offset_rewind"),
        )  # fmt: skip
        try:
            await rp.app.consumer.seek(msg.tp, target)
        except Exception as exc:  # e.g. revoked meanwhile: the next envelope asks again
            log.warning(
                "%s/%s: rewinding to %s failed (%r); retried when its next envelope arrives",
                msg.topic, msg.partition, target, exc, extra=where(msg, "offset_rewind"),
            )  # fmt: skip

    async def windows(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            akey = applied_key(msg.partition)
            applied = meta.get(akey)
            action, target = guard.check(msg.partition, msg.offset, applied, time.monotonic())
            if action is not Step.APPLY:  # the guard's counters only move here
                st.offset_rewinds, st.envelopes_refused = guard.rewinds, guard.refused
                if action is Step.REWIND:
                    await rewind(msg, target)
                continue
            try:
                env = unpack(event.value)
            except msgspec.DecodeError as exc:  # only our own ingest writes here
                rej = Rejection(reason="bad_envelope", detail=str(exc)[:300])
                await t["dlq"].send(key=event.key, value=encode(dead_letter(rej, msg, event.value)))
                mark_applied(meta, akey, applied, msg.offset)
                continue
            s_skus, s_meta = Staged(skus, SkuState), Staged(meta, PartitionState)
            s_opens = Staged(opens, OpenWindows)
            try:
                out = engine.handle(
                    env,
                    partition=msg.partition,
                    offset=msg.offset,
                    skus=s_skus,
                    meta=s_meta,
                    opens=s_opens,
                )
            except Exception as exc:  # a bug must not stop the stream: park the event, say why
                log.exception(
                    "window engine failed on %s@%s:%s", msg.topic, msg.partition, msg.offset,
                    extra=where(msg, "processing_error"),
                )  # fmt: skip
                rej = Rejection(reason="processing_error", detail=repr(exc)[:300])
                await t["dlq"].send(key=event.key, value=encode(dead_letter(rej, msg, event.value)))
                st.dlq["processing_error"] += 1
                mark_applied(meta, akey, applied, msg.offset)
                continue
            agg = t["aggregates"]
            sent: list[Any] = []
            for row in out.sales:
                sent.append(
                    await agg.send(
                        key=row.sku.encode(), value=_json.encode({"t": SALES_1M.tag, "r": row})
                    )
                )
            for crow in out.clicks:
                sent.append(
                    await agg.send(
                        key=crow.sku.encode(), value=_json.encode({"t": CLICKS_1M.tag, "r": crow})
                    )
                )
            for frow in out.forecasts:
                sent.append(
                    await agg.send(
                        key=frow.sku.encode(), value=_json.encode({"t": FORECASTS.tag, "r": frow})
                    )
                )
            for change in out.changes:
                sent.append(
                    await t["price_changes"].send(key=change.sku.encode(), value=encode(change))
                )
            for price in out.prices:
                sent.append(await t["prices"].send(key=price.sku.encode(), value=encode(price)))
            for late in out.late:
                sent.append(await t["dlq"].send(key=late.sku.encode(), value=late_letter(late)))
                st.dlq["late_event"] += 1
            for dup in out.duplicates:
                sent.append(await t["dlq"].send(key=dup.sku.encode(), value=duplicate_letter(dup)))
                st.dlq["duplicate_order"] += 1
            if sent:  # outputs acknowledged before the state that says they happened
                await asyncio.gather(*sent)
            tick = bool(s_meta.writes and (s_skus.writes or s_opens.writes))
            if tick:  # everything folded before this tick is durable before the tick is
                await rp.app.producer.flush()
            steps = durable_steps(out, s_meta, s_skus, s_opens, meta)
            mark_applied(s_meta, akey, applied, msg.offset)  # committed with the partition record
            for i, step in enumerate(steps):
                step()
                if tick and i < len(steps) - 1:  # each step durable before the next
                    await rp.app.producer.flush()
            if out.folded:
                st.last_fold_at = time.time()
                if not st.events_folded:
                    st.first_fold_at = st.last_fold_at - 1e-3  # the first envelope's own time
                st.events_folded += out.folded
            st.windows_closed += out.windows_closed
            st.labels += out.labels
            st.forecast_rows += len(out.forecasts)
            st.decisions += out.decisions
            st.price_changes += len(out.changes)
            st.late_events += len(out.late)
            st.model_errors.update(out.model_errors)
            st.quiet_windows += out.quiet_windows
            if out.accounting is not None:
                st.accounting[msg.partition] = out.accounting.to_dict()

    rp.app.agent(t["sku_events"], name="repricer.windows")(windows)

    @rp.app.timer(10.0)
    async def reload_models() -> None:
        """Pick up a new ONNX model file without a restart (see README, upgrading the model)."""
        for model in engine.decider.models():
            if model.maybe_reload():
                info = model.info()
                log.info("reloaded %s: now %s", info.name, info.version)
