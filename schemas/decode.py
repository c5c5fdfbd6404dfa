"""Decode and validate raw Kafka payloads: a typed event or a :class:`Rejection`, never an exception.

Errors are data here (bytewax's ``oks``/``errs`` split): callers route rejections to the
dead-letter topic and carry on with the stream.
"""

from __future__ import annotations

import math
import re
from typing import Any, TypeVar

import msgspec

from repricer.schemas.events import (
    CatalogItem,
    Click,
    ControlCommand,
    Order,
    Rejection,
    ts_in_range,
    ts_ms,
)

DEFAULT_MAX_BYTES = 64 * 1024
# Kafka header of an end-of-input marker on an event topic (``repricer replay``): its value is
# an ASCII epoch-ms event time T, "nothing older than T will come on this partition".
WATERMARK_HEADER = "repricer-watermark"
EXCERPT_BYTES = 512
# Our events are flat objects; a payload nesting arrays/objects deeper than this is hostile.
MAX_DEPTH = 16

T = TypeVar("T", Order, Click, CatalogItem, ControlCommand)

_decoders: dict[type, msgspec.json.Decoder] = {
    t: msgspec.json.Decoder(t) for t in (Order, Click, CatalogItem, ControlCommand)
}
_PATH = re.compile(r" - at `([^`]*)`$")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(rb"[\[\]{}]")
_BAD_BYTE = re.compile(r"invalid character \(byte (\d+)\)")


def _depth_exceeds(payload: bytes, limit: int) -> bool:
    """True if arrays/objects nest deeper than ``limit`` (brackets inside strings do not count).

    Cheap for real events: only payloads with more than ``limit`` brackets are scanned.
    """
    if payload.count(b"[") + payload.count(b"{") <= limit:
        return False
    depth = 0
    for m in _BRACKET.finditer(_STRING.sub(b'""', payload)):
        depth += 1 if m.group() in (b"[", b"{") else -1
        if depth > limit:
            return True
    return False


def _non_finite_token(payload: bytes, message: str) -> bool:
    """Did JSON decoding stop at ``NaN``/``Infinity`` (not JSON, but what some encoders emit)?"""
    m = _BAD_BYTE.search(message)
    if m is None:
        return False
    return payload[int(m.group(1)) :].lstrip(b"-").startswith((b"NaN", b"Infinity"))


def _classify(message: str) -> str:
    if "timezone" in message:
        return "naive_timestamp"
    if "missing required field" in message:
        return "missing_field"
    if "Number out of range" in message:
        return "non_finite"
    if re.search(r"Expected `[^`]+` (>|<|>=|<=) ", message) or "length" in message:
        return "out_of_range"
    if "Expected `" in message and ", got `" in message:
        return "wrong_type"
    return "invalid_value"


def decode(
    payload: bytes | None,
    kind: type[T],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    not_after_ms: int | None = None,
) -> T | Rejection:
    """Decode ``payload`` as ``kind``; return a :class:`Rejection` with a reason code if it is bad.

    The size cap and the nesting cap apply before decoding. ``not_after_ms`` rejects event
    times after it (``future_timestamp``): the ingest agent passes its wall clock plus the
    allowed lead, so one event from the far future cannot drag the watermark ahead. Unknown
    extra fields are ignored (forward compatibility), within the size and nesting caps.

    >>> decode(b'{"order_id":"o1","ts":1700000000000,"sku":"A","qty":2,"unit_price":9.5}', Order).qty
    2
    >>> decode(b'{"order_id":"o1","ts":"2024-01-01T00:00:00","sku":"A","qty":1,"unit_price":1}', Order).reason
    'naive_timestamp'
    """
    if payload is None:
        return Rejection(reason="empty", detail="message has no value")
    if len(payload) > max_bytes:
        return Rejection(reason="oversize", detail=f"{len(payload)} bytes > limit {max_bytes}")
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(reason="not_utf8", detail=str(exc)[:200])
    if _depth_exceeds(payload, MAX_DEPTH):
        return Rejection(reason="too_deep", detail=f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        event = _decoders[kind].decode(payload)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        return Rejection(reason=_classify(msg), detail=msg[:300])
    except msgspec.DecodeError as exc:
        msg = str(exc)
        if _non_finite_token(payload, msg):
            return Rejection(
                reason="non_finite", detail=f"NaN/Infinity is not a JSON number: {msg}"
            )
        return Rejection(reason="malformed_json", detail=msg[:300])
    except RecursionError:
        return Rejection(reason="too_deep", detail="JSON nesting deeper than the decoder allows")
    ts = getattr(event, "ts", None)
    if ts is not None and not ts_in_range(ts_ms(ts)):
        return Rejection(
            reason="out_of_range", detail="timestamp outside 2000-01-01..2100-01-01 - at `$.ts`"
        )
    if ts is not None and not_after_ms is not None and ts_ms(ts) > not_after_ms:
        ahead = (ts_ms(ts) - not_after_ms) / 1000
        return Rejection(
            reason="future_timestamp",
            detail=f"event time {ahead:.0f} s beyond the allowed lead over the wall clock "
            "- at `$.ts`",
        )
    if isinstance(event, CatalogItem):
        if event.min_price > event.max_price:
            return Rejection(reason="invalid_value", detail="min_price > max_price")
    for name in (
        "unit_price",
        "price_seen",
        "cost",
        "base_price",
        "min_price",
        "max_price",
        "price",
    ):
        v = getattr(event, name, None)
        if isinstance(v, float) and not math.isfinite(v):  # pragma: no cover - bounds catch inf
            return Rejection(reason="non_finite", detail=f"{name} is not finite")
    return event


def watermark_marker(headers: Any, *, not_after_ms: int | None = None) -> int | Rejection | None:
    """The event time of an end-of-input marker (header :data:`WATERMARK_HEADER`), ``None`` for
    a record without that header, or a Rejection: ``bad_watermark`` (not an integer of epoch
    ms in 2000..2100) or ``future_timestamp`` (beyond ``not_after_ms``, like an event).

    >>> watermark_marker([("repricer-watermark", b"1767225600000")])
    1767225600000
    >>> watermark_marker([("repricer-watermark", b"soon")]).reason
    'bad_watermark'
    """
    raw = next((v for k, v in headers or () if k == WATERMARK_HEADER), None)
    if raw is None:
        return None
    text = raw.decode("ascii", errors="replace").strip() if isinstance(raw, bytes) else str(raw)
    if not text.isdigit():
        return Rejection(
            reason="bad_watermark",
            detail=f"header {WATERMARK_HEADER}={text[:40]!r} is not an integer of epoch ms",
        )
    ts = int(text)
    if not ts_in_range(ts):
        return Rejection(
            reason="bad_watermark",
            detail=f"header {WATERMARK_HEADER}={ts} outside 2000-01-01..2100-01-01",
        )
    if not_after_ms is not None and ts > not_after_ms:
        return Rejection(
            reason="future_timestamp",
            detail=f"header {WATERMARK_HEADER}={ts} is {(ts - not_after_ms) / 1000:.0f} s beyond "
            "the allowed lead over the wall clock",
        )
    return ts


def excerpt(payload: bytes | None, limit: int = EXCERPT_BYTES) -> str:
    """A printable, bounded excerpt of a payload for the dead-letter record."""
    if not payload:
        return ""
    return payload[:limit].decode("utf-8", errors="backslashreplace")
