"""Typed event contracts for every topic repricer reads or writes.

Incoming events (``Order``, ``Click``, ``CatalogItem``, ``ControlCommand``) are decoded with
:func:`schemas.decode`, which returns either the event or a :class:`Rejection` that goes to the
dead-letter topic. Outgoing events (``PriceChange``, ``PriceState``, ``DeadLetter``, the window
aggregates) are produced by repricer itself. ``PriceChange`` v1 is the public contract for
downstream services; its JSON Schema is checked in under ``schemas/json/``.

Timestamps on the wire are RFC 3339 strings *with* an offset, or integer epoch milliseconds.
Internally every timestamp is an ``int`` of epoch milliseconds (UTC), which is what
``ts_ms`` returns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

# Bounds that reject hostile values early; they are far outside anything a real shop sends.
_MAX_QTY = 1_000_000
_MAX_PRICE = 1e9
_MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
_MAX_TS_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z

SKU_PATTERN = r"^[A-Za-z0-9._:/-]+$"
SKU_MAX_LENGTH = 128
Sku = Annotated[str, Meta(min_length=1, max_length=SKU_MAX_LENGTH, pattern=SKU_PATTERN)]
Id = Annotated[str, Meta(min_length=1, max_length=128)]
Currency = Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]
Price = Annotated[float, Meta(gt=0, le=_MAX_PRICE)]
NonNegPrice = Annotated[float, Meta(ge=0, le=_MAX_PRICE)]
Qty = Annotated[int, Meta(gt=0, le=_MAX_QTY)]
AwareDatetime = Annotated[datetime, Meta(tz=True)]
EpochMs = Annotated[int, Meta(ge=_MIN_TS_MS, le=_MAX_TS_MS)]
Timestamp = AwareDatetime | EpochMs
ClickType = Literal["view", "add_to_cart", "remove_from_cart"]


def ts_ms(ts: datetime | int) -> int:
    """Epoch milliseconds (UTC) of a decoded wire timestamp."""
    if isinstance(ts, int):
        return ts
    return int(ts.timestamp() * 1000)


class _Event(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base for incoming events; unknown extra fields are ignored (forward compatibility)."""


class Order(_Event, frozen=True, kw_only=True):
    """One order line: ``qty`` units of ``sku`` sold at ``unit_price``."""

    order_id: Id
    ts: Timestamp
    sku: Sku
    qty: Qty
    unit_price: Price
    currency: Currency = "EUR"
    customer_id: Id | None = None


class Click(_Event, frozen=True, kw_only=True):
    """One clickstream event of a shopper session on a product page."""

    event_id: Id
    ts: Timestamp
    session_id: Id
    sku: Sku
    type: ClickType
    price_seen: Price | None = None


class CatalogItem(_Event, frozen=True, kw_only=True):
    """Cost and price bounds of one SKU; the ``catalog`` topic is compacted by SKU."""

    sku: Sku
    cost: NonNegPrice
    base_price: Price
    min_price: Price
    max_price: Price
    currency: Currency = "EUR"
    stock: Annotated[int, Meta(ge=0)] | None = None
    category: Annotated[str, Meta(max_length=128)] | None = None


class ControlCommand(_Event, frozen=True, kw_only=True):
    """Operator command on ``pricing-control``: ``sku`` is a SKU, ``"*"`` for all SKUs, or
    ``"category:<name>"`` for every SKU of a catalog category (``shadow``/``live`` only).

    ``shadow``/``live`` set who prices the SKUs: in shadow the policy decides and its would-be
    changes are recorded, but no price is published. ``rollback`` publishes ``price`` (the
    price in force at an earlier time, which ``repricer control rollback`` looks up) through
    the floor and ceiling, and freezes the SKU until it is unfrozen."""

    sku: Annotated[str, Meta(min_length=1, max_length=128)]
    action: Literal[
        "freeze", "unfreeze", "override", "clear_override", "shadow", "live", "rollback"
    ]
    price: Price | None = None
    who: Annotated[str, Meta(min_length=1, max_length=128)]
    why: Annotated[str, Meta(max_length=1024)] = ""
    ts: Timestamp | None = None


class Forecast(Struct, frozen=True, kw_only=True):
    """Forecast units for the next window at the old and at the new price."""

    units_at_old: float
    units_at_new: float


class PriceChange(Struct, frozen=True, kw_only=True):
    """PriceChange v1: the public event downstream services subscribe to.

    ``event_id`` is deterministic (same decision, same id), so consumers deduplicate by it.
    Timestamps are epoch milliseconds (UTC). ``effective_at`` is when the price applies.
    """

    schema_version: Literal[1] = 1
    event_id: str
    sku: str
    old_price: float
    new_price: float
    currency: str
    decided_at: int
    effective_at: int
    window_start: int
    reasons: list[str]
    forecast: Forecast
    elasticity: float
    model_versions: dict[str, str]
    guardrails: list[str]
    policy_version: str
    # the audit trail (added in place: consumers of v1 ignore fields they do not know)
    category: str = ""  # the SKU's catalog category when decided
    issued_by: str = "policy"  # "policy", or who issued the manual command (override, rollback)
    note: str = ""  # the manual command's why


class PriceState(Struct, frozen=True, kw_only=True):
    """Current price of a SKU, on the compacted ``prices`` topic."""

    sku: str
    price: float
    currency: str
    since: int
    version: int


class DeadLetter(Struct, frozen=True, kw_only=True):
    """A record repricer could not use, with the reason, where it came from, and its bytes.

    ``payload`` is the original record value (``payload_encoding``: UTF-8 text as it was, or
    base64 when it was not UTF-8), up to the ``max_payload_bytes`` cap: a larger one keeps its
    first ``max_payload_bytes`` bytes with ``payload_truncated`` set and ``payload_size`` the
    original size. ``payload_kind`` is ``record`` (the bytes read from ``source_topic``, which
    ``repricer dlq resend`` can send again) or ``envelope`` (the window agent's internal form of
    an event). The same provenance travels in the record's Kafka headers (``repricer-dlq-*``).
    Fields after ``received_at`` are v2 additions; a v1 letter decodes with their defaults.
    """

    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    payload_excerpt: str
    received_at: int
    payload: str = ""
    payload_encoding: Literal["utf8", "base64"] = "utf8"
    payload_size: int = 0
    payload_truncated: bool = False
    payload_kind: Literal["record", "envelope"] = "record"
    key: str | None = None
    key_encoding: Literal["utf8", "base64"] = "utf8"
    source_timestamp: int = -1
    repricer_version: str = ""
    resend_of: str = ""


# The window aggregates hold only str, int and float, so they can never be part of a reference
# cycle: ``gc=False`` keeps the cyclic garbage collector from tracking them. The sink decodes
# tens of thousands per batch, and tracked ones made the collector run 3x the decode time.


class SalesWindow(Struct, frozen=True, kw_only=True, gc=False):
    """Orders of one SKU in one closed window (zero-demand windows included).

    ``cost`` is the unit cost the engine knew from the catalog when it closed the window (0 when
    it had no catalog record); profit is ``revenue - units * cost``. Added in place: a message
    without it decodes with 0."""

    sku: str
    window_start: int
    window_end: int
    orders: int
    units: int
    revenue: float
    price: float
    late_events: int
    cost: float = 0.0


class ClicksWindow(Struct, frozen=True, kw_only=True, gc=False):
    """Clickstream counts of one SKU in one closed window."""

    sku: str
    window_start: int
    window_end: int
    views: int
    add_to_cart: int
    remove_from_cart: int


class ForecastRow(Struct, frozen=True, kw_only=True, gc=False):
    """One model's forecast for one SKU's window, scored against what it actually sold."""

    sku: str
    window_start: int
    model: str
    predicted: float
    actual: float


class ShadowDecision(Struct, frozen=True, kw_only=True, gc=False):
    """A price change the policy would have made for a SKU it does not price (shadow mode, or
    a holdout SKU), and the gain it expected from it: on the shadow topic and in ClickHouse
    ``shadow_decisions``. Nothing is published to ``prices``/``price-changes`` for it.

    ``expected_gain`` is the forecast profit of the next window at ``would_price`` minus at
    ``current_price``: ``(would - cost) * forecast_new - (current - cost) * forecast_old``."""

    event_id: str
    sku: str
    mode: str  # "shadow" or "holdout"
    current_price: float
    would_price: float
    cost: float
    currency: str
    decided_at: int
    window_start: int
    reasons: list[str]
    guardrails: list[str]
    forecast_old: float
    forecast_new: float
    expected_gain: float
    model_versions: str  # JSON object: model -> version
    policy_version: str


class Rejection(Struct, frozen=True, kw_only=True):
    """Why an incoming payload was refused: a machine ``reason`` code and a human ``detail``."""

    reason: str
    detail: str


IncomingEvent = Order | Click | CatalogItem | ControlCommand

PUBLIC_CONTRACTS: dict[str, type[Struct]] = {
    "Order": Order,
    "Click": Click,
    "CatalogItem": CatalogItem,
    "ControlCommand": ControlCommand,
    "PriceChange": PriceChange,
    "PriceState": PriceState,
    "DeadLetter": DeadLetter,
    "SalesWindow": SalesWindow,
    "ClicksWindow": ClicksWindow,
    "ForecastRow": ForecastRow,
    "ShadowDecision": ShadowDecision,
}

_encoder = msgspec.json.Encoder()


def encode(obj: Struct) -> bytes:
    """JSON bytes of an event."""
    return _encoder.encode(obj)


def ts_in_range(ms: int) -> bool:
    return _MIN_TS_MS <= ms <= _MAX_TS_MS
