"""Internal messages on the SKU-keyed repartition topic (``<app_id>-sku-events``).

Ingest agents turn validated public events into these compact envelopes keyed by SKU, so each
SKU's events, catalog and control commands meet on one partition, in order. ``Watermark``
envelopes are broadcast to every partition so windows close even where a partition is quiet.
"""

from __future__ import annotations

import msgspec
from msgspec import Struct


class OrderEnv(Struct, frozen=True, tag="o", array_like=True):
    sku: str
    ts: int
    qty: int
    price: float
    order_id: str
    src: str  # source partition, e.g. "orders/3"
    off: int  # offset in the source partition: replays of the ingest hop are dropped by it


class ClickEnv(Struct, frozen=True, tag="c", array_like=True):
    sku: str
    ts: int
    kind: str
    src: str
    off: int


class CountsEnv(Struct, frozen=True, tag="n", array_like=True):
    """A whole window's totals for one SKU at once (backtests, history replay by window)."""

    sku: str
    ts: int  # any time inside the window
    orders: int
    units: int
    revenue: float
    views: int
    carts: int
    removes: int
    src: str
    off: int


class CatalogEnv(Struct, frozen=True, tag="cat", array_like=True):
    sku: str
    cost: float
    base_price: float
    min_price: float
    max_price: float
    currency: str
    stock: int | None
    src: str = ""  # source partition, e.g. "catalog/1" ("" when not from ingest)
    off: int = -1  # offset there: a record forwarded again after an ingest restart is dropped
    category: str | None = None  # last: envelopes written before it decode without it


class ControlEnv(Struct, frozen=True, tag="ctl", array_like=True):
    sku: str  # a SKU, "*" for every SKU, or "category:<name>" (both sent to every partition)
    action: str
    price: float | None
    who: str
    why: str
    src: str = ""  # source partition and offset, as for CatalogEnv
    off: int = -1


class BatchEnv(Struct, frozen=True, tag="b", array_like=True):
    """Many SKUs' events for one partition in one message: the ingest hop sends these, so the
    window agent pays Faust's per-message cost once per batch, not once per event. Each event
    keeps its own source partition and offset, so replays are still dropped event by event."""

    events: list[OrderEnv | ClickEnv]


class WatermarkEnv(Struct, frozen=True, tag="wm", array_like=True):
    src: str  # source partition the mark speaks for, e.g. "clickstream/0"
    ts: int  # highest event time forwarded from that source partition


EventEnv = OrderEnv | ClickEnv | CountsEnv
SkuEnvelope = OrderEnv | ClickEnv | CountsEnv | CatalogEnv | ControlEnv
Envelope = OrderEnv | ClickEnv | CountsEnv | CatalogEnv | ControlEnv | WatermarkEnv | BatchEnv

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(Envelope)


def is_broadcast(sku: str) -> bool:
    """A control record for many SKUs (``*`` or ``category:<name>``): every partition gets it.

    >>> is_broadcast("*"), is_broadcast("category:toys"), is_broadcast("A-1")
    (True, True, False)
    """
    return sku == "*" or sku.startswith("category:")


def sku_partition(sku: str, partitions: int) -> int:
    """The SKU-events partition of ``sku``: Kafka's default partitioner (murmur2 of the key)."""
    from kafka.partitioner.default import murmur2

    return (murmur2(sku.encode()) & 0x7FFFFFFF) % partitions


def pack(env: Envelope) -> bytes:
    return _enc.encode(env)


def unpack(raw: bytes) -> Envelope:
    return _dec.decode(raw)
